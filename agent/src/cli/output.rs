//! Writing to the terminal: columns laid out like Consul's (`columnize`, `tabwriter`), JSON
//! with Go's indentation, and writes that tolerate a closed pipe (`cairn kv get | head`).
//!
//! Write errors are ignored on purpose: Rust's `println!` panics on a closed stdout, which
//! would turn `cairn ... | head -1` into a crash report. Layouts copy Consul's byte for byte,
//! since scripts parse them with `awk` and `cut`.

use std::io::Write;
use std::process::ExitCode;

use serde::Serialize;

/// Writes `text` and a newline to stdout, ignoring a closed pipe.
///
/// Flushed at once: a command that prints and then waits (`watch`, `monitor`) must show
/// its output before the next event, whether stdout is a terminal or a pipe.
pub(crate) fn out(text: &str) {
    let mut o = std::io::stdout().lock();
    let _ = o.write_all(text.as_bytes());
    let _ = o.write_all(b"\n");
    let _ = o.flush();
}

/// Writes raw bytes and a newline to stdout (KV values need not be UTF-8).
pub(crate) fn out_bytes(bytes: &[u8]) {
    let mut o = std::io::stdout().lock();
    let _ = o.write_all(bytes);
    let _ = o.write_all(b"\n");
    let _ = o.flush();
}

/// Writes `text` and a newline to stderr.
///
/// Messages and help go here, so that stdout carries only results.
pub(crate) fn err(text: &str) {
    let mut e = std::io::stderr().lock();
    let _ = e.write_all(text.as_bytes());
    let _ = e.write_all(b"\n");
}

/// Prints an error message and returns exit code 1.
pub(crate) fn fail(text: impl AsRef<str>) -> ExitCode {
    err(text.as_ref());
    ExitCode::from(1)
}

/// Lays rows out in columns separated by two spaces, as Consul's `columnize` does. Every
/// column but the last is padded to its widest cell.
pub(crate) fn columns(rows: &[Vec<String>]) -> String {
    let ncols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0usize; ncols];
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            // Width in characters, not bytes, so a non-ASCII name does not shift its row.
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut lines = Vec::with_capacity(rows.len());
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            line.push_str(cell);
            if i + 1 < row.len() {
                let pad = widths[i].saturating_sub(cell.chars().count());
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        // No trailing spaces, as `columnize` writes none.
        lines.push(line.trim_end().to_string());
    }
    lines.join("\n")
}

/// Two columns as Go's `tabwriter.NewWriter(w, 0, 2, 6, ' ', 0)` lays them out: the first
/// column is as wide as its widest cell plus six spaces.
///
/// Used where Consul prints with that `tabwriter` (`kv get -detailed`, `catalog services
/// -tags`), whose minimum padding differs from `columnize`'s two spaces.
pub(crate) fn pairs(rows: &[(String, String)]) -> String {
    let width = rows
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0)
        + 6;
    rows.iter()
        .map(|(k, v)| {
            let pad = width - k.chars().count();
            format!("{k}{}{v}", " ".repeat(pad))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// JSON indented with the given unit, as Go's `json.MarshalIndent(v, "", indent)`.
///
/// Consul prints JSON output through `MarshalIndent`, whose layout (a space after `:`,
/// empty arrays and objects as `[]` and `{}`) serde's pretty printer reproduces with the
/// same indent unit.
pub(crate) fn json_indent<T: Serialize>(value: &T, indent: &str) -> String {
    let mut buf = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(indent.as_bytes());
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
    match value.serialize(&mut ser) {
        Ok(()) => String::from_utf8_lossy(&buf).into_owned(),
        // Cannot fail for the values printed here; `null` rather than a panic if it ever does.
        Err(_) => "null".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The last column is not padded, so lines carry no trailing spaces.
    #[test]
    fn columns_pad_all_but_the_last() {
        let rows = vec![
            vec!["Node".to_string(), "Address".to_string(), "S".to_string()],
            vec![
                "a-long-name".to_string(),
                "1".to_string(),
                "alive".to_string(),
            ],
        ];
        assert_eq!(
            columns(&rows),
            "Node         Address  S\na-long-name  1        alive"
        );
    }

    /// Six spaces after the widest key, as the `tabwriter` settings give.
    #[test]
    fn pairs_like_tabwriter() {
        let rows = vec![
            ("CreateIndex".to_string(), "3".to_string()),
            ("Key".to_string(), "k".to_string()),
        ];
        assert_eq!(pairs(&rows), "CreateIndex      3\nKey              k");
    }

    /// Tab indentation and an empty array, as Go writes them.
    #[test]
    fn json_with_tabs() {
        let v = serde_json::json!([{"key": "a"}]);
        assert_eq!(json_indent(&v, "\t"), "[\n\t{\n\t\t\"key\": \"a\"\n\t}\n]");
        assert_eq!(json_indent(&serde_json::json!([]), "\t"), "[]");
    }
}
