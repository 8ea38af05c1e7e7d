//! End-to-end tests of the web dashboard (`/ui/`) in a real headless Chromium, driven over
//! WebDriver (`chromedriver`, started by each test on a free port) with `fantoccini`.
//!
//! Every test starts its own `cairn agent -dev` on free ports and its own browser with a
//! fresh profile, and is bounded (see [`TEST_LIMIT`]). Screenshots of every view are written
//! to `docs/screenshots/`.
//!
//! Chromium and chromedriver come from Debian's `chromium` and `chromium-driver` packages
//! (`scripts/test` installs them; when run as root the tests also try to install them once).
//! When they cannot be installed the browser tests print `SKIPPED` with the reason and
//! return; the HTTP-level test of the asset server always runs.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::{Agent, free_port};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

/// Upper bound of one test's own work (browser start included, waiting for a slot not).
const TEST_LIMIT: Duration = Duration::from_secs(55);
/// How long a test waits for something to show up in the page.
const UI_WAIT: Duration = Duration::from_secs(15);

/// At most two browsers at a time: Chromium is heavy and test machines are small.
static SLOTS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

/// Paths of the browser and its driver, or why they are not available.
struct Tools {
    chromium: PathBuf,
    chromedriver: PathBuf,
}

/// Finds an executable in `PATH`.
fn which(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    for dir in std::env::split_paths(&path) {
        for n in names {
            let p = dir.join(n);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

fn find_tools() -> Option<Tools> {
    Some(Tools {
        chromium: which(&["chromium", "chromium-browser", "google-chrome"])?,
        chromedriver: which(&["chromedriver"])?,
    })
}

/// Chromium and chromedriver, installing Debian's packages once if they are missing and
/// this runs as root. `Err` carries the reason to print when skipping.
fn tools() -> &'static Result<Tools, String> {
    static TOOLS: OnceLock<Result<Tools, String>> = OnceLock::new();
    TOOLS.get_or_init(|| {
        if let Some(t) = find_tools() {
            return Ok(t);
        }
        let root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
        if !root {
            return Err(
                "chromium/chromedriver are not installed and this is not root \
                        (install Debian's chromium and chromium-driver)"
                    .into(),
            );
        }
        eprintln!("ui tests: installing chromium and chromium-driver with apt-get");
        let ok = |c: &mut Command| c.stdout(Stdio::null()).status().is_ok_and(|s| s.success());
        let updated = ok(Command::new("apt-get").args(["update", "-qq"]));
        let installed = ok(Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y", "-qq", "chromium", "chromium-driver"]));
        find_tools().ok_or_else(|| {
            format!(
                "chromium/chromedriver could not be installed (apt-get update ok: {updated}, \
                 install ok: {installed})"
            )
        })
    })
}

/// Where screenshots go: `docs/screenshots/` of the repository.
fn screenshot_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("docs")
        .join("screenshots")
}

/// A chromedriver process (in its own process group, with the browsers it starts) and a
/// WebDriver session. The group is killed on drop, so no browser outlives its test.
struct Browser {
    driver: Child,
    client: Client,
    driver_url: String,
    profile: PathBuf,
    log: PathBuf,
}

impl Browser {
    /// Starts chromedriver on a free port and opens a headless Chromium session with a fresh
    /// profile, `width`×`height` pixels.
    async fn start(t: &Tools, width: u32, height: u32) -> Browser {
        use std::os::unix::process::CommandExt;
        let dir = std::env::temp_dir().join(format!("cairn-ui-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("create browser dir");
        let profile = dir.join("profile");
        let log = dir.join("chromedriver.log");
        let port = free_port();
        let driver = Command::new(&t.chromedriver)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("spawn chromedriver");
        let driver_url = format!("http://127.0.0.1:{port}");
        let http = common::client();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(r) = http.get(format!("{driver_url}/status")).send().await
                && r.status().is_success()
            {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".into(), json!("chrome"));
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": t.chromium,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--no-first-run", "--hide-scrollbars",
                    format!("--user-data-dir={}", profile.display()),
                    format!("--window-size={width},{height}"),
                ],
            }),
        );
        caps.insert("goog:loggingPrefs".into(), json!({"browser": "ALL"}));
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&driver_url)
            .await
            .expect("open a WebDriver session");
        Browser {
            driver,
            client,
            driver_url,
            profile: dir,
            log,
        }
    }

    /// Runs JavaScript (a function body; `arguments` available) and returns its result.
    async fn js(&self, script: &str, args: Vec<Value>) -> Value {
        self.client
            .execute(script, args)
            .await
            .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// Waits until `script` returns a truthy value; returns it. Fails with the page's text.
    async fn wait_js(&self, what: &str, script: &str, args: Vec<Value>) -> Value {
        let deadline = Instant::now() + UI_WAIT;
        loop {
            let v = self.client.execute(script, args.clone()).await;
            if let Ok(v) = &v
                && !matches!(v, Value::Null | Value::Bool(false))
                && v.as_str() != Some("")
            {
                return v.clone();
            }
            if Instant::now() > deadline {
                let page = self
                    .client
                    .execute("return document.body.innerText", vec![])
                    .await
                    .unwrap_or(Value::Null);
                let console = self.console().await;
                panic!(
                    "timed out waiting for {what} (last result: {v:?})\n--- page text ---\n{}\n--- console ---\n{console}",
                    page.as_str().unwrap_or("?")
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits for an element matching `css` and returns its text.
    async fn wait_css(&self, css: &str) -> String {
        self.wait_js(
            &format!("element {css}"),
            "const e = document.querySelector(arguments[0]); return e ? (e.innerText || e.value || ' ') : null;",
            vec![json!(css)],
        )
        .await
        .as_str()
        .unwrap_or_default()
        .to_string()
    }

    /// The browser console so far (chromedriver's log endpoint), for failure messages.
    async fn console(&self) -> String {
        let Ok(Some(id)) = self.client.session_id().await else {
            return String::new();
        };
        let r = common::client()
            .post(format!("{}/session/{id}/se/log", self.driver_url))
            .json(&json!({"type": "browser"}))
            .send()
            .await;
        match r {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(e) => format!("(no console: {e})"),
        }
    }

    /// Asserts that the browser console has no errors (failed loads, exceptions, CSP).
    async fn assert_clean_console(&self) {
        let log = self.console().await;
        assert!(
            !log.contains("SEVERE"),
            "errors in the browser console: {log}"
        );
    }

    /// Sends a Chrome DevTools Protocol command through chromedriver.
    async fn cdp(&self, cmd: &str, params: Value) {
        let id = self
            .client
            .session_id()
            .await
            .expect("session id")
            .expect("a session");
        let r = common::client()
            .post(format!("{}/session/{id}/goog/cdp/execute", self.driver_url))
            .json(&json!({"cmd": cmd, "params": params}))
            .send()
            .await
            .expect("CDP request");
        assert!(
            r.status().is_success(),
            "CDP {cmd}: {}",
            r.text().await.unwrap_or_default()
        );
    }

    /// Emulates the system colour scheme (`prefers-color-scheme`).
    async fn prefer(&self, scheme: &str) {
        self.cdp(
            "Emulation.setEmulatedMedia",
            json!({"features": [{"name": "prefers-color-scheme", "value": scheme}]}),
        )
        .await;
    }

    /// Saves a PNG of the window to `docs/screenshots/<name>.png`.
    async fn screenshot(&self, name: &str) {
        let png = self.client.screenshot().await.expect("take a screenshot");
        assert!(png.starts_with(b"\x89PNG"), "screenshot is a PNG");
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).expect("create docs/screenshots");
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("write screenshot");
        eprintln!("screenshot: {}", path.display());
    }

    /// Loads a dashboard URL and waits until the app has started.
    async fn open(&self, url: &str) {
        self.client.goto(url).await.expect("navigate");
        self.wait_js(
            "the dashboard to start",
            "return document.body.dataset.ready === 'true'",
            vec![],
        )
        .await;
    }

    /// Marks the current document; [`Browser::same_document`] tells whether it was reloaded.
    async fn mark(&self) {
        self.js("window.__cairnMark = 'still-here'; return true", vec![])
            .await;
    }

    async fn same_document(&self) -> bool {
        self.js("return window.__cairnMark === 'still-here'", vec![])
            .await
            == json!(true)
    }

    /// Clicks the element matching `css`. Live updates may replace the element between
    /// finding and clicking it, so a stale element is looked up again.
    async fn click(&self, css: &str) {
        let deadline = Instant::now() + UI_WAIT;
        loop {
            self.wait_css(css).await;
            let r = match self.client.find(Locator::Css(css)).await {
                Ok(e) => e.click().await,
                Err(e) => Err(e),
            };
            match r {
                Ok(()) => return,
                Err(e) if Instant::now() < deadline => {
                    eprintln!("click {css}: {e}; retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("click {css}: {e}"),
            }
        }
    }

    /// Types into the element matching `css` (after clearing it if `clear`).
    async fn type_into(&self, css: &str, text: &str, clear: bool) {
        self.wait_css(css).await;
        let e = self
            .client
            .find(Locator::Css(css))
            .await
            .expect("find input");
        if clear {
            e.clear().await.expect("clear input");
        }
        e.send_keys(text).await.expect("type");
    }

    /// Ends the session (the process group is killed on drop anyway).
    async fn close(self) {
        let _ = self.client.clone().close().await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // chromedriver leads its own process group, which holds the browsers it started.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.driver.id())])
            .status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            eprintln!(
                "---- chromedriver log (last lines) ----\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// Runs a browser test: skips (loudly) without Chromium, limits concurrency and time.
async fn browser_test<F, Fut>(name: &str, width: u32, height: u32, f: F)
where
    F: FnOnce(Browser) -> Fut,
    Fut: Future<Output = ()>,
{
    let t = match tools() {
        Ok(t) => t,
        Err(why) => {
            eprintln!("SKIPPED ui test {name}: {why}");
            return;
        }
    };
    let _slot = SLOTS.acquire().await.expect("semaphore open");
    tokio::time::timeout(TEST_LIMIT, async {
        let b = Browser::start(t, width, height).await;
        f(b).await;
    })
    .await
    .unwrap_or_else(|_| panic!("ui test {name} took longer than {TEST_LIMIT:?}"));
}

/// The agent's datacenter.
async fn dc(a: &Agent) -> String {
    a.get("/v1/agent/self").await.body["Config"]["Datacenter"]
        .as_str()
        .expect("datacenter")
        .to_string()
}

/// Registers a few services so that the views have something to show.
async fn seed(a: &Agent) {
    for (name, id, port, tags, status) in [
        ("api", "api-1", 9000, json!(["v2", "public"]), "passing"),
        ("api", "api-2", 9001, json!(["v2", "public"]), "warning"),
        ("db", "db-1", 5432, json!(["primary"]), "passing"),
        ("cache", "cache-1", 6379, json!([]), "critical"),
    ] {
        a.register_service(&json!({
            "Name": name, "ID": id, "Port": port, "Tags": tags,
            "Meta": {"version": "1.4.2", "team": "platform"},
            "Check": {"TTL": "10m", "Status": status, "Name": format!("{name} TTL")},
        }))
        .await;
    }
    a.put_empty("/v1/agent/check/fail/service:cache-1?note=connection%20refused")
        .await
        .expect_status(200);
}

#[tokio::test]
async fn services_list_shows_a_new_registration_without_reload() {
    browser_test("services", 1280, 860, |b| async move {
        let a = Agent::start().await;
        seed(&a).await;
        let dc = dc(&a).await;
        b.open(&a.url("/ui/")).await;
        // `/ui/` goes to the services of the agent's datacenter.
        b.wait_css("#services-list tr[data-service='consul']").await;
        let url = b.client.current_url().await.expect("url");
        assert_eq!(url.path(), format!("/ui/{dc}/services"));
        // Exact counts by health arrive per row.
        b.wait_js(
            "api's counts",
            "const r = document.querySelector(\"tr[data-service='api'] .health\"); \
             return r && /1 passing/.test(r.innerText) && /1 warning/.test(r.innerText);",
            vec![],
        )
        .await;
        b.mark().await;
        a.register_service(&json!({
            "Name": "web", "ID": "web-1", "Port": 8080, "Tags": ["v1"],
            "Check": {"TTL": "10m", "Status": "passing"},
        }))
        .await;
        let row = b.wait_css("#services-list tr[data-service='web']").await;
        assert!(row.contains("v1"), "tags shown: {row}");
        assert!(b.same_document().await, "the page was not reloaded");
        b.wait_js(
            "web's counts",
            "const r = document.querySelector(\"tr[data-service='web'] .health\"); return r && /1 passing/.test(r.innerText);",
            vec![],
        )
        .await;
        b.screenshot("services").await;

        // Filters: by name, by health, by tag; reflected in the URL.
        b.type_into("input[type=search]", "we", false).await;
        b.wait_js(
            "the name filter",
            "return document.querySelectorAll('#services-list tbody tr').length === 1 && !!document.querySelector(\"tr[data-service='web']\")",
            vec![],
        )
        .await;
        assert!(b.client.current_url().await.expect("url").query().unwrap_or("").contains("q=we"));
        b.js("const q = document.querySelector('input[type=search]'); q.value = ''; q.dispatchEvent(new Event('input')); \
              const s = document.querySelector(\"select[aria-label='Health']\"); s.value = 'critical'; s.dispatchEvent(new Event('change')); return true", vec![]).await;
        b.wait_js(
            "the health filter",
            "const rows = [...document.querySelectorAll('#services-list tbody tr')].map(r => r.dataset.service); return rows.length === 1 && rows[0] === 'cache'",
            vec![],
        )
        .await;
        b.js("const s = document.querySelector(\"select[aria-label='Health']\"); s.value = ''; s.dispatchEvent(new Event('change')); \
              const t = document.querySelector(\"select[aria-label='Tag']\"); t.value = 'primary'; t.dispatchEvent(new Event('change')); return true", vec![]).await;
        b.wait_js(
            "the tag filter",
            "const rows = [...document.querySelectorAll('#services-list tbody tr')].map(r => r.dataset.service); return rows.length === 1 && rows[0] === 'db'",
            vec![],
        )
        .await;
        b.assert_clean_console().await;
        b.close().await;
    })
    .await;
}

#[tokio::test]
async fn service_view_shows_a_check_turning_critical() {
    browser_test("service", 1280, 1000, |b| async move {
        let a = Agent::start().await;
        seed(&a).await;
        let dc = dc(&a).await;
        a.register_service(&json!({
            "Name": "web", "ID": "web-1", "Port": 8080, "Tags": ["v1", "canary"],
            "Meta": {"commit": "4f2a9c1"},
            "Check": {"TTL": "10m", "Name": "web heartbeat"},
        }))
        .await;
        a.put_empty("/v1/agent/check/pass/service:web-1?note=all%20good")
            .await
            .expect_status(200);
        b.open(&a.url(&format!("/ui/{dc}/services/web"))).await;
        let check = "[data-instance='web-1'] [data-check='service:web-1']";
        b.wait_css(&format!("{check}[data-status='passing']")).await;
        let text = b.wait_css("[data-instance='web-1']").await;
        assert!(
            text.contains("8080") && text.contains("canary") && text.contains("4f2a9c1"),
            "{text}"
        );
        assert!(text.contains(&a.node), "node shown: {text}");
        b.mark().await;
        a.put_empty("/v1/agent/check/fail/service:web-1?note=upstream%20timeout")
            .await
            .expect_status(200);
        let critical = b
            .wait_css(&format!("{check}[data-status='critical']"))
            .await;
        assert!(
            critical.contains("upstream timeout"),
            "output shown: {critical}"
        );
        assert!(critical.contains("last change"), "{critical}");
        assert!(b.same_document().await, "the page was not reloaded");
        b.screenshot("service").await;

        // Navigating by link (no reload) to the node of the instance.
        b.click(&format!(
            "[data-instance='web-1'] a[href$='/nodes/{}']",
            a.node
        ))
        .await;
        b.wait_css("#services-title").await;
        b.wait_js(
            "the node's services",
            "return [...document.querySelectorAll('td')].some(td => td.innerText === 'web-1')",
            vec![],
        )
        .await;
        assert!(b.same_document().await, "in-app navigation");
        b.assert_clean_console().await;
        b.close().await;
    })
    .await;
}

#[tokio::test]
async fn kv_create_edit_and_conflict() {
    browser_test("kv", 1280, 900, |b| async move {
        let a = Agent::start().await;
        let dc = dc(&a).await;
        a.put("/v1/kv/config/feature-flags", "{\"beta\": true}").await.expect_status(200);
        b.open(&a.url(&format!("/ui/{dc}/kv/"))).await;
        b.wait_css("#kv-list a.folder").await;
        b.screenshot("kv-folder").await;

        // Create through the form.
        b.type_into("#kv-new-key", "app/settings", false).await;
        b.type_into("#kv-new-value", "replicas=2", false).await;
        b.click("#kv-create-button").await;
        b.wait_js(
            "the key view",
            "return location.pathname.endsWith('/kv/app/settings') && document.querySelector('#kv-value') && document.querySelector('#kv-value').value === 'replicas=2'",
            vec![],
        )
        .await;
        let raw = a.get("/v1/kv/app/settings?raw").await.expect_status(200);
        assert_eq!(raw.text(), "replicas=2");

        // Edit and save (check-and-set on the loaded ModifyIndex).
        b.type_into("#kv-value", "replicas=3", true).await;
        b.type_into("#kv-flags", "42", true).await;
        b.click("#kv-save").await;
        b.wait_css("#kv-result .ok").await;
        let entry = a.get("/v1/kv/app/settings").await.expect_status(200).body;
        assert_eq!(entry[0]["Flags"], 42);
        assert_eq!(a.get("/v1/kv/app/settings?raw").await.text(), "replicas=3");

        // Someone else writes between our load and our save: the save is refused and reported.
        b.type_into("#kv-value", "replicas=4", true).await;
        a.put("/v1/kv/app/settings", "replicas=9").await.expect_status(200);
        b.wait_css("#kv-notice .notice").await;
        b.click("#kv-save").await;
        let conflict = b.wait_css("#kv-conflict").await;
        assert!(conflict.contains("Conflict"), "{conflict}");
        assert!(conflict.contains("replicas=9"), "their version shown: {conflict}");
        assert_eq!(
            a.get("/v1/kv/app/settings?raw").await.text(),
            "replicas=9",
            "the other write was not overwritten"
        );
        b.js("document.querySelector('#kv-conflict').scrollIntoView({block: 'end'}); return true", vec![]).await;
        b.screenshot("kv").await;
        // Overwriting is an explicit choice.
        b.click("#kv-overwrite").await;
        b.wait_css("#kv-result .ok").await;
        assert_eq!(a.get("/v1/kv/app/settings?raw").await.text(), "replicas=4");

        // A lock holder is shown.
        let sid = a
            .put_json("/v1/session/create", &json!({"Name": "leader-election"}))
            .await
            .expect_status(200)
            .body["ID"]
            .as_str()
            .expect("session id")
            .to_string();
        a.put(&format!("/v1/kv/app/leader?acquire={sid}"), "me").await.expect_status(200);
        b.open(&a.url(&format!("/ui/{dc}/kv/app/leader"))).await;
        b.wait_js(
            "the lock holder",
            "return /leader-election/.test(document.body.innerText) && document.body.innerText.includes(arguments[0])",
            vec![json!(sid)],
        )
        .await;
        b.assert_clean_console().await;
        b.close().await;
    })
    .await;
}

#[tokio::test]
async fn theme_follows_the_system_and_can_be_overridden() {
    browser_test("theme", 1280, 860, |b| async move {
        let a = Agent::start().await;
        seed(&a).await;
        let dc = dc(&a).await;
        let bg = "return getComputedStyle(document.body).backgroundColor";
        b.prefer("light").await;
        b.open(&a.url(&format!("/ui/{dc}/services"))).await;
        assert_eq!(b.js(bg, vec![]).await, json!("rgb(246, 247, 249)"));
        b.prefer("dark").await;
        b.wait_js("the dark theme", "return getComputedStyle(document.body).backgroundColor === 'rgb(18, 21, 27)'", vec![]).await;
        b.wait_js(
            "api's counts",
            "const r = document.querySelector(\"tr[data-service='api'] .health\"); return r && /warning/.test(r.innerText)",
            vec![],
        )
        .await;
        b.screenshot("services-dark").await;
        // `?theme=light` wins over the system; `?theme=dark` over a light system.
        b.open(&a.url(&format!("/ui/{dc}/services?theme=light"))).await;
        assert_eq!(b.js(bg, vec![]).await, json!("rgb(246, 247, 249)"));
        b.prefer("light").await;
        b.open(&a.url(&format!("/ui/{dc}/services?theme=dark"))).await;
        assert_eq!(b.js(bg, vec![]).await, json!("rgb(18, 21, 27)"));
        b.close().await;
    })
    .await;
}

#[tokio::test]
async fn deep_links_survive_a_reload() {
    browser_test("deep-links", 1280, 900, |b| async move {
        let a = Agent::start().await;
        seed(&a).await;
        let dc = dc(&a).await;
        a.put("/v1/kv/config/db/url", "postgres://db:5432")
            .await
            .expect_status(200);
        for (path, expect) in [
            (
                format!("/ui/{dc}/services/api"),
                "[data-instance='api-2']".to_string(),
            ),
            (
                format!("/ui/{dc}/nodes/{}", a.node),
                "#checks-title".to_string(),
            ),
            (
                format!("/ui/{dc}/kv/config/db/url"),
                "#kv-editor".to_string(),
            ),
            (
                format!("/ui/{dc}/kv/config/"),
                "#kv-list a.folder".to_string(),
            ),
            (
                format!("/ui/{dc}/services?q=ap"),
                "tr[data-service='api']".to_string(),
            ),
        ] {
            b.open(&a.url(&path)).await;
            b.wait_css(&expect).await;
            b.client.refresh().await.expect("reload");
            b.wait_css(&expect).await;
            let url = b.client.current_url().await.expect("url");
            assert_eq!(
                format!(
                    "{}{}",
                    url.path(),
                    url.query().map(|q| format!("?{q}")).unwrap_or_default()
                ),
                path
            );
        }
        // Count the page's requests in flight, per path, from the first script on.
        b.cdp(
            "Page.addScriptToEvaluateOnNewDocument",
            json!({"source": "window.__inflight = {}; const f = window.fetch; \
                window.fetch = function (u, o) { const k = String(u).split('?')[0]; \
                  __inflight[k] = (__inflight[k] || 0) + 1; const p = f.apply(this, arguments); \
                  const done = () => { __inflight[k] -= 1; }; p.then(done, done); return p; };"}),
        )
        .await;
        let inflight = "const n = window.__inflight || {}; return [...arguments].every(([k, v]) => (n[k] || 0) === v)";
        // Back and forward work between in-app navigations.
        b.open(&a.url(&format!("/ui/{dc}/services"))).await;
        b.wait_js(
            "the services view's blocking queries",
            inflight,
            vec![json!(["/v1/catalog/services", 1]), json!(["/v1/health/state/any", 1])],
        )
        .await;
        b.click("tr[data-service='db'] a").await;
        b.wait_css("[data-instance='db-1']").await;
        // Navigating cancelled the list's queries; the service view runs its own one.
        b.wait_js(
            "the list's queries to be cancelled",
            inflight,
            vec![
                json!(["/v1/catalog/services", 0]),
                json!(["/v1/health/state/any", 0]),
                json!(["/v1/health/service/db", 1]),
            ],
        )
        .await;
        b.client.back().await.expect("back");
        b.wait_css("tr[data-service='db']").await;
        b.close().await;
    })
    .await;
}

#[tokio::test]
async fn nodes_sessions_and_agent_views() {
    browser_test("views", 1280, 860, |b| async move {
        let a = Agent::start().await;
        seed(&a).await;
        let dc = dc(&a).await;
        a.put_json(
            "/v1/catalog/register",
            &json!({"Node": "db-replica-7", "Address": "10.0.3.7", "NodeMeta": {"rack": "r12"},
                    "Service": {"Service": "db", "ID": "db-7", "Port": 5432, "Tags": ["replica"]},
                    "Check": {"CheckID": "disk", "Name": "Disk space", "Status": "warning", "Output": "91% used"}}),
        )
        .await
        .expect_status(200);
        a.put_json("/v1/session/create", &json!({"Name": "deploy-lock", "TTL": "300s"}))
            .await
            .expect_status(200);

        b.open(&a.url(&format!("/ui/{dc}/nodes"))).await;
        let me = b.wait_css(&format!("tr[data-node='{}']", a.node)).await;
        assert!(me.contains("alive") && me.contains("server"), "gossip status and role: {me}");
        let other = b.wait_css("tr[data-node='db-replica-7']").await;
        assert!(other.contains("10.0.3.7") && other.contains("not a member"), "{other}");
        b.screenshot("nodes").await;

        b.open(&a.url(&format!("/ui/{dc}/nodes/{}", a.node))).await;
        b.wait_js("the node's checks", "return document.querySelector(\"[data-check='serfHealth']\")", vec![]).await;
        b.wait_js("the node's services", "return /cache-1/.test(document.body.innerText)", vec![]).await;
        b.screenshot("node").await;

        b.open(&a.url(&format!("/ui/{dc}/sessions"))).await;
        let s = b.wait_css("#sessions-list tbody tr").await;
        assert!(s.contains("deploy-lock"), "{s}");
        b.screenshot("sessions").await;
        b.mark().await;
        a.put_json("/v1/session/create", &json!({"Name": "second-lock"}))
            .await
            .expect_status(200);
        b.wait_js("a new session", "return /second-lock/.test(document.body.innerText)", vec![]).await;
        assert!(b.same_document().await);

        b.open(&a.url(&format!("/ui/{dc}/agent"))).await;
        let version = b.wait_css("#agent-version").await;
        assert!(version.contains("1.21.0"), "{version}");
        b.wait_js(
            "the Raft leader's address",
            "const l = document.querySelector('#raft-leader'); return l && /:\\d+$/.test(l.innerText)",
            vec![],
        )
        .await;
        b.wait_css("#agent-members tbody tr").await;
        b.screenshot("agent").await;

        // Narrow screen: the list is still readable (stacked rows, no horizontal scroll).
        b.client.set_window_size(390, 844).await.expect("resize");
        b.open(&a.url(&format!("/ui/{dc}/services"))).await;
        b.wait_css("tr[data-service='api']").await;
        let overflow = b
            .js("return document.documentElement.scrollWidth <= window.innerWidth + 1", vec![])
            .await;
        assert_eq!(overflow, json!(true), "no horizontal scrolling on a narrow screen");
        b.screenshot("services-narrow").await;
        b.assert_clean_console().await;
        b.close().await;
    })
    .await;
}

#[tokio::test]
async fn unreachable_agent_is_reported_and_so_is_its_return() {
    browser_test("unreachable", 1280, 800, |b| async move {
        let a = Agent::start().await;
        let dc = dc(&a).await;
        b.open(&a.url(&format!("/ui/{dc}/services"))).await;
        b.wait_css("tr[data-service='consul']").await;
        // The network goes away (emulated), then comes back.
        let offline = |off: bool| {
            json!({"offline": off, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1})
        };
        b.cdp("Network.enable", json!({})).await;
        b.cdp("Network.emulateNetworkConditions", offline(true)).await;
        b.click("#nav a[data-section='nodes']").await; // new blocking queries fail
        let text = b.wait_css("#banner.down").await;
        assert!(text.contains("unreachable"), "{text}");
        b.cdp("Network.emulateNetworkConditions", offline(false)).await;
        let text = b.wait_css("#banner.up").await;
        assert!(text.contains("reachable again"), "{text}");
        b.wait_css(&format!("tr[data-node='{}']", a.node)).await;
        drop(a); // kills the agent while the page's blocking queries are waiting
        let text = b.wait_css("#banner.down").await;
        assert!(text.contains("unreachable"), "{text}");
        b.close().await;
    })
    .await;
}

#[tokio::test]
async fn token_is_kept_and_sent_and_errors_are_shown() {
    browser_test("token", 1280, 800, |b| async move {
        let a = Agent::start().await;
        let dc = dc(&a).await;
        b.open(&a.url(&format!("/ui/{dc}/services"))).await;
        b.wait_css("tr[data-service='consul']").await;
        // Record the token header of every request the page makes from now on.
        b.js(
            "window.__tokens = []; const f = window.fetch; \
             window.fetch = (u, o) => { window.__tokens.push((o && o.headers && o.headers['X-Consul-Token']) || null); return f(u, o); }; \
             return true",
            vec![],
        )
        .await;
        b.click("#token-button").await;
        b.type_into("#token-input", "3f9a-secret", true).await;
        b.click("#token-dialog button[value='save']").await;
        b.wait_js("a request with the token", "return window.__tokens.includes('3f9a-secret')", vec![]).await;
        assert_eq!(
            b.js("return localStorage.getItem('cairn.token')", vec![]).await,
            json!("3f9a-secret")
        );
        b.client.refresh().await.expect("reload");
        let button = b.wait_css("#token-button").await;
        assert!(button.contains('✓'), "token kept across reloads: {button}");
        // Keyboard: "/" focuses the search box.
        b.wait_css("tr[data-service='consul']").await;
        b.client.find(Locator::Css("body")).await.expect("body").send_keys("/").await.expect("keys");
        b.wait_js("focus in the search box", "return document.activeElement && document.activeElement.type === 'search'", vec![]).await;
        // The datacenter switcher lists /v1/catalog/datacenters.
        b.wait_js(
            "the datacenter switcher",
            "const s = document.querySelector('#dc-select'); return s.value === arguments[0] && [...s.options].some(o => o.value === arguments[0])",
            vec![json!(dc)],
        )
        .await;
        // An API error is shown with the agent's own text.
        b.open(&a.url("/ui/no-such-dc/services")).await;
        let err = b.wait_css(".error").await;
        assert!(err.contains("No path to datacenter"), "{err}");
        // The console check used by other tests does see failed requests.
        assert!(b.console().await.contains("SEVERE"), "the 500 is in the console log");
        b.close().await;
    })
    .await;
}

/// Fills the catalog with `services` services (one instance and one check each, statuses
/// cycling passing/warning/critical) spread over `nodes` nodes, through `/v1/txn`.
async fn seed_large(a: &Agent, services: usize, nodes: usize) {
    let mut ops = Vec::new();
    async fn flush(a: &Agent, ops: &mut Vec<Value>) {
        if !ops.is_empty() {
            a.put_json("/v1/txn", &Value::Array(std::mem::take(ops)))
                .await
                .expect_status(200);
        }
    }
    for i in 0..nodes {
        ops.push(json!({"Node": {"Verb": "set", "Node": {
            "Node": format!("node-{i:04}"), "Address": format!("10.1.{}.{}", i / 250, i % 250)}}}));
        if ops.len() >= 64 {
            flush(a, &mut ops).await;
        }
    }
    flush(a, &mut ops).await;
    for i in 0..services {
        let node = format!("node-{:04}", i % nodes);
        let status = ["passing", "warning", "critical"][i % 3];
        ops.push(json!({"Service": {"Verb": "set", "Node": node, "Service": {
            "ID": format!("svc-{i:04}"), "Service": format!("svc-{i:04}"), "Port": 8000 + i % 100,
            "Tags": [format!("t{}", i % 7)]}}}));
        ops.push(json!({"Check": {"Verb": "set", "Check": {
            "Node": node, "CheckID": format!("chk-{i:04}"), "Name": "probe",
            "Status": status, "ServiceID": format!("svc-{i:04}")}}}));
        if ops.len() >= 64 {
            flush(a, &mut ops).await;
        }
    }
    flush(a, &mut ops).await;
}

#[tokio::test]
async fn large_catalog_renders_one_page_quickly() {
    browser_test("large", 1280, 900, |b| async move {
        let a = Agent::start().await;
        seed_large(&a, 5000, 1000).await;
        let dc = dc(&a).await;
        let started = Instant::now();
        b.open(&a.url(&format!("/ui/{dc}/services"))).await;
        b.wait_js(
            "the first page with counts",
            "const r = document.querySelector(\"tr[data-service='svc-0001'] .health\"); return r && /1 warning/.test(r.innerText)",
            vec![],
        )
        .await;
        let first_page = started.elapsed();
        let rows = b.js("return document.querySelectorAll('#services-list tbody tr').length", vec![]).await;
        assert_eq!(rows, json!(50), "one page of rows in the DOM");
        let pager = b.wait_css("#services-list .pager").await;
        assert!(pager.contains("of 5001 services"), "{pager}");
        // Filtering by health over the whole list uses the checks of the datacenter.
        b.js("const s = document.querySelector(\"select[aria-label='Health']\"); s.value = 'critical'; s.dispatchEvent(new Event('change')); return true", vec![]).await;
        let t = Instant::now();
        b.wait_js("the critical filter", "return /of 1666 services/.test(document.querySelector('#services-list .pager').innerText)", vec![]).await;
        let filter = t.elapsed();
        b.click("button[data-key='pager-next']").await;
        b.wait_js("page 2", "return /51–100 of 1666/.test(document.querySelector('#services-list .pager').innerText)", vec![]).await;
        b.js("window.scrollTo(0, 0); return true", vec![]).await;
        b.screenshot("services-5000").await;
        let t = Instant::now();
        b.open(&a.url(&format!("/ui/{dc}/nodes"))).await;
        let pager = b.wait_css("#nodes-list .pager").await;
        assert!(pager.contains("of 1001 nodes"), "{pager}");
        let nodes = t.elapsed();
        eprintln!("5,000 services: first page with counts in {first_page:?}, health filter in {filter:?}; 1,000 nodes in {nodes:?}");
        assert!(first_page < Duration::from_secs(10), "services page took {first_page:?}");
        assert!(nodes < Duration::from_secs(10), "nodes page took {nodes:?}");
        b.close().await;
    })
    .await;
}

/// The asset server over plain HTTP (no browser needed).
#[tokio::test]
async fn assets_are_served_with_types_and_caching() {
    let a = Agent::start().await;
    let root = a.get("/").await;
    assert_eq!(root.status, 301);
    assert_eq!(root.header("location").as_deref(), Some("/ui/"));
    for path in ["/ui/", "/ui/dc1/services/web", "/ui/dc1/kv/a/b/"] {
        let r = a.get(path).await.expect_status(200);
        assert_eq!(
            r.header("content-type").as_deref(),
            Some("text/html; charset=utf-8")
        );
        assert_eq!(r.header("cache-control").as_deref(), Some("no-cache"));
    }
    let index = a.get("/ui/").await.text();
    let prefix = index
        .split("src=\"")
        .nth(1)
        .and_then(|s| s.split("/js/").next())
        .expect("a versioned script URL")
        .to_string();
    assert!(prefix.starts_with("/ui/assets/"), "{prefix}");
    for (file, ty) in [
        ("js/app.js", "text/javascript; charset=utf-8"),
        ("js/views/kv.js", "text/javascript; charset=utf-8"),
        ("style.css", "text/css; charset=utf-8"),
        ("favicon.svg", "image/svg+xml"),
    ] {
        let r = a.get(&format!("{prefix}/{file}")).await.expect_status(200);
        assert_eq!(r.header("content-type").as_deref(), Some(ty), "{file}");
        assert_eq!(
            r.header("cache-control").as_deref(),
            Some("public, max-age=31536000, immutable"),
            "{file}"
        );
        assert!(!r.bytes.is_empty());
    }
    // An old version still gets the file, but it must not be cached under that name.
    let old = a
        .get("/ui/assets/0000000000000000/js/app.js")
        .await
        .expect_status(200);
    assert_eq!(old.header("cache-control").as_deref(), Some("no-cache"));
    a.get(&format!("{prefix}/nope.js")).await.expect_status(404);
    // Revalidation.
    let etag = a
        .get(&format!("{prefix}/style.css"))
        .await
        .header("etag")
        .expect("etag");
    let r = a
        .client()
        .get(a.url(&format!("{prefix}/style.css")))
        .header("If-None-Match", etag)
        .send()
        .await
        .expect("request");
    assert_eq!(r.status().as_u16(), 304);
}
