//! Config files and directories: finding them, reading them, and parsing JSON or HCL into a
//! JSON object.
//!
//! HCL is turned into the shape Consul's JSON form has: attributes become keys, a block becomes
//! an object, a block repeated at the same level (`service { ... } service { ... }`) becomes a
//! list of objects, and block labels (`service "web" { ... }`) become nested keys. Expressions
//! are evaluated without variables or functions (so `-1`, `"a${"b"}"` and heredocs work).
//!
//! Going through JSON keeps one checker for every source: `schema` sees the same shape
//! whether a key came from a flag, a JSON file or an HCL block. The one difference it must
//! still handle is that a block written once is an object and a block repeated is a list.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::fs;
use std::path::{Path, PathBuf};

use hcl::eval::{Context, Evaluate};
use serde_json::{Map, Value};

/// A config file syntax.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    /// JSON.
    Json,
    /// HCL.
    Hcl,
}

impl Format {
    /// The `-config-format` value.
    pub(crate) fn from_flag(s: &str) -> Option<Format> {
        match s {
            "json" => Some(Format::Json),
            "hcl" => Some(Format::Hcl),
            _ => None,
        }
    }

    /// Only `.json` and `.hcl` are recognized, as in Consul: a backup such as `agent.json.bak`
    /// in a config directory must not be read as config.
    fn from_extension(path: &Path) -> Option<Format> {
        match path.extension().and_then(|e| e.to_str()) {
            Some("json") => Some(Format::Json),
            Some("hcl") => Some(Format::Hcl),
            _ => None,
        }
    }
}

/// One file that was read: its path and its contents as a JSON object.
#[derive(Debug)]
pub(crate) struct Loaded {
    /// Where it was read from: kept for `Config::config_sources` and for messages.
    pub path: PathBuf,
    /// The top-level object, not yet checked.
    pub map: Map<String, Value>,
}

/// Reads a `-config-file` or `-config-dir` argument. A directory yields its `*.json` and
/// `*.hcl` files (all regular files when `format` is set) in lexical order; other files in it
/// are skipped with a warning, and subdirectories are skipped.
pub(crate) fn read_path(
    path: &Path,
    format: Option<Format>,
    warnings: &mut Vec<String>,
) -> Result<Vec<Loaded>, String> {
    let meta = fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if !meta.is_dir() {
        let format = format.or_else(|| Format::from_extension(path)).ok_or_else(|| {
            format!(
                "{}: unknown config format: name the file *.json or *.hcl, or set -config-format",
                path.display()
            )
        })?;
        let map = read_file(path, format)?;
        return Ok(vec![Loaded {
            path: path.to_path_buf(),
            map,
        }]);
    }
    let entries = fs::read_dir(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| format!("{}: {e}", path.display()))?;
        let file = entry.path();
        // Follow symlinks, as Consul does.
        // (Kubernetes ConfigMap volumes, for one, are made of symlinks.)
        let Ok(meta) = fs::metadata(&file) else {
            warnings.push(format!("{}: cannot read; skipped", file.display()));
            continue;
        };
        // Subdirectories are not descended into: only one level is read, as in Consul.
        if meta.is_dir() {
            continue;
        }
        match format.or_else(|| Format::from_extension(&file)) {
            Some(fmt) => files.push((entry.file_name(), file, fmt)),
            None => warnings.push(format!(
                "{}: skipped: the extension must be .json or .hcl, or -config-format must be set",
                file.display()
            )),
        }
    }
    // Lexical order by file name, whatever order the directory lists them in: later files
    // override earlier ones, so the order must not change between machines or restarts.
    files.sort_by(|a, b| a.0.cmp(&b.0));
    files
        .into_iter()
        .map(|(_, file, fmt)| read_file(&file, fmt).map(|map| Loaded { path: file, map }))
        .collect()
}

/// Reads and parses one file; messages start with its path.
fn read_file(path: &Path, format: Format) -> Result<Map<String, Value>, String> {
    let text = fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    parse_text(&text, format).map_err(|e| format!("{}: {e}", path.display()))
}

/// Parses config text into a JSON object.
///
/// Also used for `-hcl` snippets, which have no file behind them.
pub(crate) fn parse_text(text: &str, format: Format) -> Result<Map<String, Value>, String> {
    match format {
        Format::Json => {
            // An empty file is an empty config, where `serde_json` would see an error; an
            // empty HCL file already parses to an empty body.
            if text.trim().is_empty() {
                return Ok(Map::new());
            }
            match serde_json::from_str::<Value>(text) {
                Ok(Value::Object(map)) => Ok(map),
                Ok(_) => Err("invalid JSON config: the top level must be an object".into()),
                Err(e) => Err(format!("invalid JSON: {e}")),
            }
        }
        Format::Hcl => {
            let body = match hcl::parse(text) {
                Ok(body) => body,
                Err(first) => {
                    // Consul reads HCL 1, where a block may hold quoted keys
                    // (`service_ttl { "*" = "5s" }`); HCL 2 only allows that in an object
                    // (`service_ttl = { "*" = "5s" }`). Retry with map blocks rewritten so.
                    let rewritten = map_blocks_as_objects(text);
                    match (rewritten != text).then(|| hcl::parse(&rewritten)) {
                        Some(Ok(body)) => body,
                        // If the rewrite does not help, the first error is the one reported: it is
                        // about the text the user wrote, not the rewritten one.
                        _ => return Err(format!("invalid HCL: {first}")),
                    }
                }
            };
            hcl_body(&body)
        }
    }
}

/// Keys whose value is a free-form map, so that their keys may need quotes.
///
/// Only these get the block-to-object rewrite: in a block with fixed keys (`ports {}`) the
/// keys never need quotes, and rewriting it would change how repeated blocks merge.
const MAP_KEYS: &[&str] = &[
    "service_ttl",
    "node_meta",
    "meta",
    "tagged_addresses",
    "header",
    "tokens",
];

/// Rewrites `name {` into `name = {` for the keys in [`MAP_KEYS`].
///
/// A line-based text rewrite, tried only after a first parse failed, so that a file valid
/// as HCL 2 is never touched. Only a block opener at the start of a line (after any
/// indentation) is rewritten.
fn map_blocks_as_objects(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim_start();
        let indent = &line[..line.len() - trimmed.len()];
        let rewritten = MAP_KEYS.iter().find_map(|key| {
            let rest = trimmed.strip_prefix(key)?;
            let after = rest.trim_start();
            after
                .starts_with('{')
                .then(|| format!("{indent}{key} = {after}"))
        });
        out.push_str(rewritten.as_deref().unwrap_or(line));
    }
    out
}

/// A key of an HCL body while its blocks are being collected.
///
/// The shape of a key is only known once the whole body is read (one block or several),
/// hence this intermediate form before JSON.
enum Node {
    /// An attribute's value.
    Value(Value),
    /// The bodies of one or more blocks with this name.
    Blocks(Vec<Map<String, Value>>),
    /// Labelled blocks: label → what is below it.
    Labels(BTreeMap<String, Node>),
}

impl Node {
    /// One block becomes an object and repeated blocks a list of objects: the two shapes
    /// `schema` accepts for a block key.
    fn into_json(self) -> Value {
        match self {
            Node::Value(v) => v,
            Node::Blocks(mut bodies) => {
                if bodies.len() == 1 {
                    Value::Object(bodies.remove(0))
                } else {
                    Value::Array(bodies.into_iter().map(Value::Object).collect())
                }
            }
            Node::Labels(map) => Value::Object(
                map.into_iter()
                    .map(|(k, node)| (k, node.into_json()))
                    .collect(),
            ),
        }
    }
}

/// Adds one attribute or block under `key`. Blocks of the same name accumulate; labelled
/// blocks merge label by label (`service "a" {}` then `service "b" {}` gives both); any
/// other repeat, such as an attribute set twice, keeps the last one.
fn add_node(nodes: &mut BTreeMap<String, Node>, key: String, node: Node) {
    match nodes.entry(key) {
        Entry::Vacant(slot) => {
            slot.insert(node);
        }
        Entry::Occupied(mut slot) => match (slot.get_mut(), node) {
            (Node::Blocks(a), Node::Blocks(b)) => a.extend(b),
            (Node::Labels(a), Node::Labels(b)) => {
                for (k, n) in b {
                    add_node(a, k, n);
                }
            }
            (existing, node) => *existing = node,
        },
    }
}

/// Converts an HCL body into a JSON object (see the module docs for the shape).
///
/// Expressions are evaluated in an empty context: a config file is data, and a reference
/// such as `var.dc` is an error that names the key rather than an empty value.
fn hcl_body(body: &hcl::Body) -> Result<Map<String, Value>, String> {
    let ctx = Context::new();
    let mut nodes = BTreeMap::new();
    for structure in body.iter() {
        match structure {
            hcl::Structure::Attribute(attr) => {
                let value = attr
                    .expr()
                    .evaluate(&ctx)
                    .map_err(|e| format!("{}: {e}", attr.key()))?;
                let json =
                    serde_json::to_value(value).map_err(|e| format!("{}: {e}", attr.key()))?;
                add_node(&mut nodes, attr.key().to_string(), Node::Value(json));
            }
            hcl::Structure::Block(block) => {
                let inner =
                    hcl_body(block.body()).map_err(|e| format!("{}: {e}", block.identifier()))?;
                let mut node = Node::Blocks(vec![inner]);
                // Wrap from the innermost label out, so that `a "x" "y" {}` becomes
                // `{"a": {"x": {"y": {...}}}}`.
                for label in block.labels().iter().rev() {
                    let mut labels = BTreeMap::new();
                    labels.insert(label.as_str().to_string(), node);
                    node = Node::Labels(labels);
                }
                add_node(&mut nodes, block.identifier().to_string(), node);
            }
        }
    }
    Ok(nodes.into_iter().map(|(k, n)| (k, n.into_json())).collect())
}
