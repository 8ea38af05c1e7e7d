//! Results: every figure is one JSON line (a record) appended to a file; the report groups them
//! by row, takes the median of each side's runs, and prints Cairn, the peer, the ratio and
//! whether the bar is met.

use std::collections::HashMap;
use std::io::Write;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Error;

#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct Record {
    /// The table row, for example "P1 KV PUT, 64 clients, 3 servers".
    pub row: String,
    /// "cairn", "peer" or "limit" (a machine limit, shown on its own).
    pub side: String,
    /// The system, for example "etcd 3.4, 3 members".
    pub system: String,
    pub value: f64,
    pub unit: String,
    /// The bar: `min_ratio:X` (Cairn/peer >= X), `max_ratio:X` (<= X), `max:X` or `min:X`
    /// (Cairn's own value), or empty.
    #[serde(default)]
    pub bar: String,
    #[serde(default)]
    pub detail: Value,
}

pub fn append(path: &str, rec: &Record) -> Result<(), Error> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    writeln!(f, "{}", serde_json::to_string(rec)?)?;
    Ok(())
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn fmt(v: f64) -> String {
    if v.is_nan() {
        "-".into()
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else if v.abs() >= 0.1 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

struct Side {
    system: String,
    unit: String,
    values: Vec<f64>,
    p99: Vec<f64>,
}

struct Row {
    name: String,
    bar: String,
    cairn: Option<Side>,
    peer: Option<Side>,
    limit: Option<Side>,
}

/// Builds the table (markdown when `markdown`, otherwise aligned text).
pub fn table(path: &str, markdown: bool) -> Result<String, Error> {
    let text = std::fs::read_to_string(path)?;
    let mut rows: Vec<Row> = Vec::new();
    let mut at: HashMap<String, usize> = HashMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let r: Record = serde_json::from_str(line)?;
        let i = *at.entry(r.row.clone()).or_insert_with(|| {
            rows.push(Row {
                name: r.row.clone(),
                bar: String::new(),
                cairn: None,
                peer: None,
                limit: None,
            });
            rows.len() - 1
        });
        let row = &mut rows[i];
        if !r.bar.is_empty() {
            row.bar = r.bar.clone();
        }
        let slot = match r.side.as_str() {
            "cairn" => &mut row.cairn,
            "peer" => &mut row.peer,
            _ => &mut row.limit,
        };
        let side = slot.get_or_insert_with(|| Side {
            system: r.system.clone(),
            unit: r.unit.clone(),
            values: Vec::new(),
            p99: Vec::new(),
        });
        side.values.push(r.value);
        if r.unit == "ops/s"
            && let Some(p) = r.detail.get("p99_ms").and_then(Value::as_f64)
        {
            side.p99.push(p);
        }
    }
    let mut out: Vec<[String; 6]> = Vec::new();
    for row in &mut rows {
        let cell = |s: &mut Option<Side>| -> (String, f64) {
            match s {
                None => ("-".into(), f64::NAN),
                Some(s) => {
                    let m = median(&mut s.values);
                    let mut c = format!("{} {}", fmt(m), s.unit);
                    if !s.p99.is_empty() {
                        c += &format!(" (p99 {} ms)", fmt(median(&mut s.p99)));
                    }
                    if s.values.len() > 1 {
                        c += &format!(" [n={}]", s.values.len());
                    }
                    c = format!("{}: {c}", s.system);
                    (c, m)
                }
            }
        };
        let (c_cell, c) = cell(&mut row.cairn);
        let (p_cell, p) = cell(&mut row.peer);
        let (l_cell, l) = cell(&mut row.limit);
        // Against the peer when there is one, else against the machine limit.
        let ratio = if row.peer.is_some() { c / p } else { c / l };
        let verdict = verdict(&row.bar, c, ratio);
        let peer_cell = if row.limit.is_some() && row.peer.is_none() {
            l_cell
        } else {
            p_cell
        };
        out.push([
            row.name.clone(),
            c_cell,
            peer_cell,
            if ratio.is_finite() {
                format!("{}x", fmt(ratio))
            } else {
                "-".into()
            },
            bar_text(&row.bar),
            verdict,
        ]);
    }
    let head = ["scenario", "Cairn", "peer / limit", "ratio", "bar", "meets"];
    let mut s = String::new();
    if markdown {
        s += &format!("| {} |\n", head.join(" | "));
        s += &format!("|{}\n", " --- |".repeat(head.len()));
        for r in &out {
            s += &format!("| {} |\n", r.join(" | "));
        }
    } else {
        let mut w = head.map(str::len);
        for r in &out {
            for (i, c) in r.iter().enumerate() {
                w[i] = w[i].max(c.chars().count());
            }
        }
        let line = |cells: &[String]| {
            cells
                .iter()
                .enumerate()
                .map(|(i, c)| format!("{c:<width$}", width = w[i]))
                .collect::<Vec<_>>()
                .join("  ")
                .trim_end()
                .to_string()
        };
        s += &line(&head.map(String::from));
        s += "\n";
        for r in &out {
            s += &line(r);
            s += "\n";
        }
    }
    Ok(s)
}

fn parse_bar(bar: &str) -> Option<(&str, f64)> {
    let (k, v) = bar.split_once(':')?;
    Some((k, v.parse().ok()?))
}

fn bar_text(bar: &str) -> String {
    match parse_bar(bar) {
        Some(("min_ratio", v)) => format!(">= {}x", fmt(v)),
        Some(("max_ratio", v)) => format!("<= {}x", fmt(v)),
        Some(("max", v)) => format!("<= {}", fmt(v)),
        Some(("min", v)) => format!(">= {}", fmt(v)),
        _ => String::new(),
    }
}

fn verdict(bar: &str, cairn: f64, ratio: f64) -> String {
    let ok = match parse_bar(bar) {
        Some(("min_ratio", v)) => ratio >= v,
        Some(("max_ratio", v)) => ratio <= v,
        Some(("max", v)) => cairn <= v,
        Some(("min", v)) => cairn >= v,
        _ => return String::new(),
    };
    if cairn.is_nan() {
        "-".into()
    } else if ok {
        "yes".into()
    } else {
        "NO".into()
    }
}
