//! Live logs for `GET /v1/agent/monitor` and `cairn monitor`: a tracing layer that hands each
//! log event to the monitors attached at that moment (nothing is kept, and with no monitor
//! attached an event costs one atomic load), rendered as Consul's text or JSON log lines.
//!
//! Monitors see what the agent logs: a monitor can ask for fewer levels than `-log-level`,
//! not more.

use std::fmt::Write as _;
use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::broadcast;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

/// One log event.
#[derive(Clone, Debug)]
pub struct Line {
    /// Milliseconds since the Unix epoch.
    pub unix_ms: u128,
    /// Level.
    pub level: Level,
    /// Module (the event's target).
    pub target: String,
    /// The message.
    pub message: String,
    /// Other fields, in order.
    pub fields: Vec<(String, String)>,
}

/// Lines buffered per monitor before the slowest one starts losing lines.
///
/// A monitor that falls this far behind loses the oldest lines instead of slowing down the agent's
/// logging.
const BUFFER: usize = 1024;

/// One process-wide channel: the tracing layer is installed once per process, and every monitor
/// subscribes to it.
fn channel() -> &'static broadcast::Sender<Arc<Line>> {
    static TX: OnceLock<broadcast::Sender<Arc<Line>>> = OnceLock::new();
    TX.get_or_init(|| broadcast::channel(BUFFER).0)
}

/// Attaches a monitor: it receives every line logged from now on.
pub fn subscribe() -> broadcast::Receiver<Arc<Line>> {
    channel().subscribe()
}

/// The layer that feeds monitors.
///
/// It sits after the log-level filter, so monitors see exactly what the agent logs.
pub struct MonitorLayer;

/// The event's fields as text: `message` apart, the others in the order they were recorded, as
/// hclog prints them.
#[derive(Default)]
struct Fields {
    message: String,
    rest: Vec<(String, String)>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_string();
        } else {
            self.rest
                .push((field.name().to_string(), value.to_string()));
        }
    }

    // Every other field type arrives here: numbers, booleans and `%`/`?` values are rendered once,
    // as text, since lines are only ever shown.
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let text = format!("{value:?}");
        if field.name() == "message" {
            self.message = text;
        } else {
            self.rest.push((field.name().to_string(), text));
        }
    }
}

impl<S: Subscriber> Layer<S> for MonitorLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let tx = channel();
        // The common case: nobody watching, so no formatting and no allocation.
        if tx.receiver_count() == 0 {
            return;
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        let line = Line {
            // Wall-clock time: log lines are read by people and compared with other logs.
            unix_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis()),
            level: *event.metadata().level(),
            target: event.metadata().target().to_string(),
            message: fields.message,
            fields: fields.rest,
        };
        // `Arc`: every monitor gets the same line without a copy each.
        let _ = tx.send(Arc::new(line));
    }
}

/// Parses a `loglevel` parameter (Consul's names, `warning` and `err` included).
pub fn parse_level(s: &str) -> Option<Level> {
    match s.to_ascii_lowercase().as_str() {
        "trace" => Some(Level::TRACE),
        "debug" => Some(Level::DEBUG),
        "" | "info" => Some(Level::INFO),
        "warn" | "warning" => Some(Level::WARN),
        "err" | "error" => Some(Level::ERROR),
        _ => None,
    }
}

/// Consul's (hclog's) name of a level.
fn level_name(l: Level) -> &'static str {
    match l {
        Level::TRACE => "TRACE",
        Level::DEBUG => "DEBUG",
        Level::INFO => "INFO",
        Level::WARN => "WARN",
        Level::ERROR => "ERROR",
    }
}

/// RFC 3339 UTC timestamp with milliseconds.
///
/// Hand-written to avoid a date-time dependency for one format.
fn timestamp(unix_ms: u128) -> String {
    let secs = u64::try_from(unix_ms / 1000).unwrap_or(0);
    let ms = unix_ms % 1000;
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

impl Line {
    /// Whether the line is at `max` or more severe.
    ///
    /// `tracing` orders levels from most to least verbose (`TRACE > ERROR`), hence `<=`.
    pub fn within(&self, max: Level) -> bool {
        self.level <= max
    }

    /// Consul's text form: `2024-05-01T10:00:00.000Z [INFO]  agent: message: key=value`.
    pub fn text(&self) -> String {
        let name = level_name(self.level);
        // Levels are padded to five letters, as hclog does.
        let pad = if name.len() == 4 { " " } else { "" };
        let mut out = format!(
            "{} [{name}] {pad}{}: {}",
            timestamp(self.unix_ms),
            self.target,
            self.message
        );
        if !self.fields.is_empty() {
            out.push(':');
            for (k, v) in &self.fields {
                let _ = write!(out, " {k}={v}");
            }
        }
        out.push('\n');
        out
    }

    /// Consul's JSON form (`@timestamp`, `@level`, `@module`, `@message`, then the fields).
    pub fn json(&self) -> String {
        let mut map = serde_json::Map::new();
        map.insert("@timestamp".into(), timestamp(self.unix_ms).into());
        map.insert(
            "@level".into(),
            level_name(self.level).to_ascii_lowercase().into(),
        );
        map.insert("@module".into(), self.target.clone().into());
        map.insert("@message".into(), self.message.clone().into());
        for (k, v) in &self.fields {
            map.insert(k.clone(), v.clone().into());
        }
        let mut s = serde_json::Value::Object(map).to_string();
        s.push('\n');
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(timestamp(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(timestamp(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(timestamp(1_795_564_800_000), "2026-11-25T00:00:00.000Z");
    }

    #[test]
    fn lines_render_as_consul_does() {
        let l = Line {
            unix_ms: 0,
            level: Level::INFO,
            target: "cairn::agent".into(),
            message: "synced service".into(),
            fields: vec![("service".into(), "web".into())],
        };
        assert_eq!(
            l.text(),
            "1970-01-01T00:00:00.000Z [INFO]  cairn::agent: synced service: service=web\n"
        );
        let v: serde_json::Value = serde_json::from_str(&l.json()).expect("json");
        assert_eq!(v["@level"], "info");
        assert_eq!(v["service"], "web");
        assert!(l.within(Level::DEBUG));
        assert!(!l.within(Level::WARN));
        assert_eq!(parse_level("warning"), Some(Level::WARN));
        assert_eq!(parse_level("loud"), None);
    }
}
