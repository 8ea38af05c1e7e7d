//! The web dashboard at `/ui/`, embedded in the binary, and the redirect from `/`.
//!
//! Every file of `web-ui/` is compiled in with `include_bytes!` and listed in `ASSETS`.
//! Assets are served under a versioned prefix, `/ui/assets/<version>/<path>`, where the
//! version is a hash of all embedded files: a new build gets new URLs, so assets can be
//! cached for a year (`immutable`) while `index.html`, which names the current version, is
//! served with `no-cache`. JavaScript modules import each other with relative paths, so they
//! stay inside one version.
//!
//! Any other path under `/ui/` (a deep link such as `/ui/dc1/services/web`) answers with
//! `index.html`, whose router then shows that view: reloading a page works.
//!
//! The dashboard uses only the public `/v1` API (no `/v1/internal/ui/*` as Consul's has), so
//! it sees exactly what any client sees. Everything is compiled in, so the binary needs no
//! files at run time and a dashboard can never be out of step with its agent.

use std::sync::LazyLock;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::AppState;

/// One embedded file of `web-ui/`.
struct Asset {
    /// Path relative to `web-ui/`, as used in URLs.
    path: &'static str,
    /// The file's bytes.
    body: &'static [u8],
}

/// Embeds `web-ui/<path>`; a listed file that does not exist fails the build.
macro_rules! asset {
    ($path:literal) => {
        Asset {
            path: $path,
            body: include_bytes!(concat!("../../../web-ui/", $path)),
        }
    };
}

/// The HTML shell; `{{ASSETS}}` is replaced by the versioned asset prefix.
const INDEX_TEMPLATE: &str = include_str!("../../../web-ui/index.html");

/// Every asset the page loads (everything in `web-ui/` except `index.html`). A file added to
/// `web-ui/` must be listed here too, or it answers 404.
const ASSETS: &[Asset] = &[
    asset!("style.css"),
    asset!("favicon.svg"),
    asset!("js/theme.js"),
    asset!("js/app.js"),
    asset!("js/api.js"),
    asset!("js/dom.js"),
    asset!("js/list.js"),
    asset!("js/views/services.js"),
    asset!("js/views/service.js"),
    asset!("js/views/nodes.js"),
    asset!("js/views/node.js"),
    asset!("js/views/kv.js"),
    asset!("js/views/sessions.js"),
    asset!("js/views/agent.js"),
];

/// Cache policy of versioned assets: a year, and `immutable` so that browsers do not even
/// revalidate on reload. Safe because a changed file gets a new URL.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// Hash of every embedded file (FNV-1a, 64 bits, hex): the asset URL version.
/// Paths are hashed too, each with a separator, so that renaming or moving a file changes the
/// version even when the bytes do not.
static VERSION: LazyLock<String> = LazyLock::new(|| {
    let mut h = Fnv::new();
    h.write(INDEX_TEMPLATE.as_bytes());
    for a in ASSETS {
        h.write(a.path.as_bytes());
        h.write(&[0]);
        h.write(a.body);
    }
    format!("{:016x}", h.0)
});

/// `index.html` with the asset prefix filled in.
static INDEX: LazyLock<String> =
    LazyLock::new(|| INDEX_TEMPLATE.replace("{{ASSETS}}", &format!("/ui/assets/{}", *VERSION)));

/// FNV-1a: tiny, stable across builds and platforms, good enough to tell versions apart.
/// (Not `DefaultHasher`, whose algorithm may change between Rust releases; nothing here needs
/// resistance to crafted input.)
struct Fnv(u64);

impl Fnv {
    /// FNV's 64-bit offset basis.
    fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }

    /// XOR then multiply by FNV's 64-bit prime, per byte (the "1a" order).
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

/// The `Content-Type` of a file, by extension. It must be right: assets are served with
/// `nosniff`, and browsers then refuse a script or stylesheet of any other type. Hence the
/// test that every embedded asset has a known one.
fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("json") => "application/json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("woff2") => "font/woff2",
        _ => "application/octet-stream",
    }
}

/// Routes of this area: outside `/v1`, so none of Consul's API conventions apply here.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(to_ui))
        .route("/ui", get(to_ui))
        .route("/ui/", get(index))
        .route("/ui/{*path}", get(ui_path))
}

/// Consul answers `/` with a 301 to the dashboard. `/ui` without the slash is redirected too,
/// since the dashboard's own URLs all live under `/ui/`.
async fn to_ui() -> Response {
    (StatusCode::MOVED_PERMANENTLY, [(header::LOCATION, "/ui/")]).into_response()
}

/// The HTML shell, never cached without revalidation (it names the asset version).
///
/// The content security policy allows scripts, styles and API calls from this origin only,
/// and no inline script: a KV value or a service name shown in the page cannot run as code
/// even if it slipped past escaping. `frame-ancestors 'none'` keeps the page out of other
/// sites' frames (clickjacking), and `same-origin` keeps the dashboard's URLs, which name keys
/// and services, out of `Referer` headers sent to other sites.
async fn index() -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(
                    "default-src 'self'; script-src 'self'; style-src 'self'; \
                     img-src 'self' data:; connect-src 'self'; object-src 'none'; \
                     base-uri 'none'; frame-ancestors 'none'; form-action 'self'",
                ),
            ),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("same-origin"),
            ),
        ],
        INDEX.as_str(),
    )
        .into_response()
}

/// `/ui/assets/<version>/<file>` serves an asset; anything else under `/ui/` is a view of
/// the single-page app and gets `index.html`.
async fn ui_path(Path(path): Path<String>, headers: HeaderMap) -> Response {
    let Some(rest) = path.strip_prefix("assets/") else {
        return index().await;
    };
    let Some((version, file)) = rest.split_once('/') else {
        return not_found();
    };
    let Some(asset) = ASSETS.iter().find(|a| a.path == file) else {
        return not_found();
    };
    // One ETag for every asset of a build: the version already says whether the file changed.
    let current = version == VERSION.as_str();
    let etag = format!("\"{}\"", *VERSION);
    if current
        && headers
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').any(|t| t.trim() == etag))
    {
        return (
            StatusCode::NOT_MODIFIED,
            [
                (header::ETAG, etag),
                (header::CACHE_CONTROL, IMMUTABLE.to_string()),
            ],
        )
            .into_response();
    }
    // An old version's URL (a page loaded before an upgrade) still gets today's file, but
    // must not be cached under that name.
    let cache = if current { IMMUTABLE } else { "no-cache" };
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(content_type(asset.path)),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static(cache)),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (
                header::ETAG,
                HeaderValue::from_str(&etag).unwrap_or(HeaderValue::from_static("\"\"")),
            ),
        ],
        asset.body,
    )
        .into_response()
}

/// Go's 404 text, not cached: a file missing during an upgrade may exist a moment later.
fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        "404 page not found",
    )
        .into_response()
}

/// The embedded set is checked without serving it: every asset must have a type browsers
/// accept under `nosniff`, and the index must name the current version.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_by_extension() {
        assert_eq!(content_type("a/b.js"), "text/javascript; charset=utf-8");
        assert_eq!(content_type("style.css"), "text/css; charset=utf-8");
        assert_eq!(content_type("favicon.svg"), "image/svg+xml");
        assert_eq!(content_type("noext"), "application/octet-stream");
    }

    #[test]
    fn every_asset_has_a_known_type_and_the_index_names_the_version() {
        for a in ASSETS {
            assert_ne!(
                content_type(a.path),
                "application/octet-stream",
                "{}",
                a.path
            );
        }
        assert!(INDEX.contains(&format!("/ui/assets/{}/", *VERSION)));
        assert!(!INDEX.contains("{{ASSETS}}"));
        assert_eq!(VERSION.len(), 16);
    }
}
