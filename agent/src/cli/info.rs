//! `cairn info`: the agent's `Stats` from `/v1/agent/self`, grouped and sorted as
//! `consul info` prints them.
//!
//! Sorting both levels (the JSON object has no order of its own) gives a stable output, so
//! two runs can be diffed.

use std::process::ExitCode;

use serde_json::Value;

use super::output::{fail, out};
use crate::cli::spec::{Http, Spec};

const SPEC: Spec = Spec {
    usage: "
Usage: cairn info [options]

  Provides debugging information for operators.
",
    flags: &[],
    http: Http::Client,
};

/// A stat as printed: strings without quotes, anything else as JSON.
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Runs `cairn info`.
pub(crate) async fn run(args: &[String]) -> ExitCode {
    let p = match super::parse(&SPEC, args) {
        Ok(p) => p,
        Err(code) => return code,
    };
    if let Err(code) = super::no_args(&p) {
        return code;
    }
    let client = match super::connect(&p) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let me: Value = match client.get_json("/v1/agent/self", &[]).await {
        Ok(v) => v,
        Err(e) => return fail(format!("Error querying agent: {e}")),
    };
    let Some(Value::Object(stats)) = me.get("Stats") else {
        return fail(format!("Agent response did not contain 'Stats' key: {me}"));
    };
    let mut groups: Vec<(&String, &Value)> = stats.iter().collect();
    groups.sort_by(|a, b| a.0.cmp(b.0));
    for (group, values) in groups {
        out(&format!("{group}:"));
        let Value::Object(values) = values else {
            return fail(format!("Got invalid subkey in stats: {values}"));
        };
        let mut keys: Vec<(&String, &Value)> = values.iter().collect();
        keys.sort_by(|a, b| a.0.cmp(b.0));
        for (k, v) in keys {
            out(&format!("\t{k} = {}", text(v)));
        }
    }
    ExitCode::SUCCESS
}
