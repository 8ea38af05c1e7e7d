//! Agent metrics: counters and gauges in a small registry, rendered as Consul's JSON
//! (`/v1/agent/metrics`) or in the Prometheus text format (`?format=prometheus`). What the
//! agent reports is listed in `telemetry`.

use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Value, json};

/// A monotonically increasing counter.
///
/// Relaxed atomics: counters are read for display only and need no ordering with other memory.
#[derive(Default, Debug)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds one.
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    /// Current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Metrics kept by the agent itself; state-derived gauges are computed when rendered.
#[derive(Default, Debug)]
pub struct Metrics {
    /// HTTP requests served.
    pub http_requests: Counter,
    /// HTTP requests answered with a 4xx.
    pub http_client_errors: Counter,
    /// HTTP requests answered with a 5xx.
    pub http_server_errors: Counter,
    /// Blocking queries started.
    pub blocking_queries: Counter,
    /// Local state changes.
    pub local_changes: Counter,
    /// Anti-entropy passes that wrote to the catalog.
    pub syncs: Counter,
}

/// One sample for rendering.
///
/// One list of samples feeds both renderings, so the JSON and Prometheus views cannot list
/// different metrics.
pub struct Sample {
    /// Name without prefix, dotted (`raft.apply`).
    pub name: &'static str,
    /// Help text.
    pub help: &'static str,
    /// Counter or gauge.
    pub counter: bool,
    /// Value.
    pub value: f64,
}

impl Metrics {
    /// A new registry.
    pub fn new() -> Metrics {
        Metrics::default()
    }
}

/// Resident set size of this process in bytes (Linux), 0 when unknown.
pub fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<u64>().ok())
        })
        // Assumes 4 KiB pages, the usual Linux page size; on other page sizes the figure is off by
        // that factor.
        .map_or(0, |pages| pages * 4096)
}

/// Prometheus text exposition (version 0.0.4).
pub fn render_prometheus(prefix: &str, samples: &[Sample]) -> String {
    let mut out = String::new();
    for s in samples {
        // Prometheus names allow only `[a-zA-Z0-9_:]`: Consul's dotted names become underscored.
        let name = format!("{prefix}_{}", s.name.replace(['.', '-'], "_"));
        let kind = if s.counter { "counter" } else { "gauge" };
        out.push_str(&format!(
            "# HELP {name} {}\n# TYPE {name} {kind}\n{name} {}\n",
            s.help, s.value
        ));
    }
    out
}

/// Consul's JSON metrics shape.
pub fn render_json(prefix: &str, samples: &[Sample], timestamp: &str) -> Value {
    let gauges: Vec<Value> = samples
        .iter()
        .filter(|s| !s.counter)
        .map(|s| json!({"Name": format!("{prefix}.{}", s.name), "Value": s.value, "Labels": {}}))
        .collect();
    let counters: Vec<Value> = samples
        .iter()
        .filter(|s| s.counter)
        .map(|s| {
            // Consul reports counters as aggregates over an interval; a monotonic count fills every
            // field with the total, so clients that read `Count` or `Sum` both get it.
            // `Count` is an integer in Consul's (go-metrics') shape; clients decode it into one.
            let count = s.value.max(0.0).round() as u64;
            json!({"Name": format!("{prefix}.{}", s.name), "Count": count, "Sum": s.value,
                   "Min": s.value, "Max": s.value, "Mean": s.value, "Stddev": 0.0, "Labels": {}})
        })
        .collect();
    json!({"Timestamp": timestamp, "Gauges": gauges, "Points": [], "Counters": counters, "Samples": []})
}
