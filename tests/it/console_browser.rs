//! The console in a real headless Chromium (Debian's `chromium` and
//! `chromium-driver`), driven over the W3C WebDriver protocol by a few
//! lines on `reqwest` (already a dependency; a WebDriver crate would add a
//! second HTTP stack to build for the handful of commands used here).
//!
//! Without chromedriver the tests print a NOTE to the terminal (past the
//! test harness's capture) and pass; `.ci/run` installs both packages so CI
//! always runs them. `CHROMEDRIVER` names another driver binary.

use std::io::Write as _;
use std::os::unix::process::CommandExt as _;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::console::{KEY, TOKEN, start};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A chromedriver and its Chromium, in a process group of their own: a
/// session's Chromium outlived chromedriver's kill (three browsers left
/// running after each run of these tests), so the whole group is killed
/// when the driver is done or a test fails.
struct Driver {
    child: Child,
    /// chromedriver's own URL.
    base: String,
    /// The session's URL, once started.
    url: String,
    http: reqwest::Client,
    _profile: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        // The group's id is chromedriver's pid (`process_group(0)`).
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.wait();
    }
}

/// The chromedriver binary, or a printed note saying why the test skips.
fn chromedriver(test: &str) -> Option<String> {
    let bin = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
    let found = Command::new(&bin)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        // Straight to the terminal: libtest captures print! and eprint!.
        let _ = writeln!(
            std::io::stderr(),
            "NOTE: {test} skipped: no chromedriver (apt-get install chromium chromium-driver, or run .ci/run)"
        );
        return None;
    }
    Some(bin)
}

impl Driver {
    /// A headless Chromium session with a viewport of `width` x `height`
    /// (phone sizes through Chrome's mobile emulation).
    async fn start(bin: &str, width: u32, height: u32) -> Driver {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let child = Command::new(bin)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap();
        let profile = tempfile::tempdir().unwrap();
        let url = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        for _ in 0..100 {
            if http.get(format!("{url}/status")).send().await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut options = json!({
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--hide-scrollbars", "--force-device-scale-factor=1",
                format!("--window-size={width},{height}"),
                format!("--user-data-dir={}", profile.path().display()),
            ],
        });
        if let Ok(chrome) = std::env::var("CHROME") {
            options["binary"] = json!(chrome);
        }
        if width < 600 {
            options["mobileEmulation"] = json!({
                "deviceMetrics": { "width": width, "height": height, "pixelRatio": 1.0 }
            });
        }
        let mut d = Driver {
            child,
            base: url.clone(),
            url,
            http,
            _profile: profile,
        };
        let res = d
            .raw(
                reqwest::Method::POST,
                "/session",
                json!({ "capabilities": { "alwaysMatch": {
                    "browserName": "chrome", "goog:chromeOptions": options
                } } }),
            )
            .await;
        let id = res["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {res}"))
            .to_string();
        d.url = format!("{}/session/{id}", d.url);
        d
    }

    async fn raw(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.url));
        if method != reqwest::Method::GET {
            req = req.json(&body);
        }
        req.send().await.unwrap().json().await.unwrap()
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.raw(reqwest::Method::POST, path, body).await
    }

    async fn get(&self, path: &str) -> Value {
        self.raw(reqwest::Method::GET, path, Value::Null).await
    }

    async fn goto(&self, url: &str) {
        self.post("/url", json!({ "url": url })).await;
    }

    /// The element for `css`, waiting (up to 10 s) while the page that
    /// holds it is still loading: a click that submits a form can return
    /// before the next document has a body.
    async fn find(&self, css: &str) -> String {
        let mut v = Value::Null;
        for _ in 0..100 {
            v = self
                .post("/element", json!({ "using": "css selector", "value": css }))
                .await;
            if let Some(id) = v["value"][ELEMENT].as_str() {
                return id.to_string();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no element {css}: {v}")
    }

    async fn count(&self, css: &str) -> usize {
        let v = self
            .post(
                "/elements",
                json!({ "using": "css selector", "value": css }),
            )
            .await;
        v["value"].as_array().map_or(0, Vec::len)
    }

    async fn click(&self, css: &str) {
        let el = self.find(css).await;
        self.post(&format!("/element/{el}/click"), json!({})).await;
        self.settle().await;
    }

    /// Waits (up to 10 s) until the current document has finished loading,
    /// so a count taken after a click counts the page the click led to.
    async fn settle(&self) {
        for _ in 0..100 {
            let v = self
                .post(
                    "/execute/sync",
                    json!({ "script": "return document.readyState", "args": [] }),
                )
                .await;
            if v["value"].as_str() == Some("complete") {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn type_in(&self, css: &str, text: &str) {
        let el = self.find(css).await;
        self.post(&format!("/element/{el}/value"), json!({ "text": text }))
            .await;
    }

    /// The page's text; asked again when the body went stale under a
    /// navigation between finding it and reading it.
    async fn text(&self) -> String {
        let mut v = Value::Null;
        for _ in 0..100 {
            let body = self.find("body").await;
            v = self.get(&format!("/element/{body}/text")).await;
            if let Some(text) = v["value"].as_str() {
                return text.to_string();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no page text: {v}")
    }

    /// Waits (up to 10 s) for the URL to pass `check`: a click that submits
    /// a form may return before the navigation it starts.
    async fn wait_url(&self, check: impl Fn(&str) -> bool) -> String {
        let mut url = String::new();
        for _ in 0..100 {
            url = self.current().await;
            if check(&url) {
                self.settle().await;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        url
    }

    /// Waits (up to 10 s) for the page's text to contain `what`; the text.
    async fn wait_text(&self, what: &str) -> String {
        let mut text = String::new();
        for _ in 0..100 {
            text = self.text().await;
            if text.contains(what) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        text
    }

    async fn current(&self) -> String {
        self.get("/url").await["value"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Runs a script through the driver (DevTools; the page's CSP does not
    /// apply), as a person with the browser's developer tools could.
    async fn script(&self, js: &str) -> Value {
        self.post("/execute/sync", json!({ "script": js, "args": [] }))
            .await
    }

    /// A Chrome DevTools command (extra request headers, for the forged
    /// proxy header).
    async fn cdp(&self, cmd: &str, params: Value) -> Value {
        self.post("/goog/cdp/execute", json!({ "cmd": cmd, "params": params }))
            .await
    }

    async fn screenshot(&self) -> Vec<u8> {
        use base64::Engine as _;
        let v = self.get("/screenshot").await;
        base64::engine::general_purpose::STANDARD
            .decode(v["value"].as_str().unwrap_or_default())
            .unwrap()
    }

    async fn sign_in(&self, base: &str, name: &str, token: &str) {
        self.goto(&format!("{base}/login")).await;
        self.type_in("input[name=name]", name).await;
        self.type_in("input[name=token]", token).await;
        self.click("form.login button").await;
        // Signed in (off the form) or refused (the form again, saying so).
        for _ in 0..100 {
            if !self.current().await.ends_with("/login")
                || self.text().await.contains("Wrong token.")
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Ends the session and lets chromedriver close its browser and exit;
    /// whatever is left of the group is killed on drop.
    async fn quit(mut self) {
        let _ = self.raw(reqwest::Method::DELETE, "", Value::Null).await;
        let _ = self
            .http
            .get(format!("{}/shutdown", self.base))
            .send()
            .await;
        for _ in 0..50 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

const CONSOLE: &str = "listen = \"127.0.0.1:0\"\nsecure_cookie = false";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_browser_sign_in_filter_open_decide_and_it_leaves_the_open_list() {
    let Some(bin) = chromedriver("console_browser::in_a_browser_sign_in_...") else {
        return;
    };
    let c = start(CONSOLE).await;
    main_scenario(&bin, &c.base).await;
}

/// The same scenario with the state in PostgreSQL (when
/// `CHANNEL_SYNC_TEST_PG_URL` names a server; over verified TLS with
/// `CHANNEL_SYNC_TEST_PG_CA`): the decision lands there, as the signed-in
/// user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_browser_on_postgresql_sign_in_filter_open_decide_and_it_leaves_the_open_list() {
    let Some(bin) = chromedriver("console_browser::in_a_browser_on_postgresql_...") else {
        return;
    };
    let Some(db) = crate::pg::TestDb::create("browser_pg") else {
        return;
    };
    let c = crate::console::start_on_pg(&db, CONSOLE).await;
    main_scenario(&bin, &c.base).await;
    let by: Vec<(String, String)> = db.query(|c| {
        c.query(
            "SELECT decided_by, outcome FROM decisions WHERE finding_key = $1",
            &[&KEY],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
    });
    assert_eq!(by, [("Ana".to_string(), "partner_keeps".to_string())]);
}

/// Sign in (a wrong token first), see the overview, filter the findings,
/// open one, decide it, and see it leave the open list for the decided one.
async fn main_scenario(bin: &str, base: &str) {
    let d = Driver::start(bin, 1440, 900).await;

    // A wrong token: refused, still at the form.
    d.sign_in(base, "Ana", "not-the-token-at-all").await;
    let text = d.text().await;
    assert!(
        text.contains("Wrong token."),
        "{text} at {}",
        d.current().await
    );
    assert!(d.current().await.ends_with("/login"));

    // The right one: the overview.
    d.sign_in(base, "Ana", TOKEN).await;
    let home = format!("{base}/");
    assert_eq!(d.wait_url(|u| u == home).await, home);
    let text = d.text().await;
    assert!(
        text.contains("Overview") && text.contains("Value at risk"),
        "{text}"
    );
    assert!(d.count("svg.chart").await >= 3, "the trend charts");

    // Filter the findings by kind.
    d.goto(&format!("{base}/findings")).await;
    let all = d.count("table.findings tbody tr").await;
    d.click("select[name=kind] option[value=direct_vs_partner]")
        .await;
    d.click("form.filters button").await;
    assert!(
        d.wait_url(|u| u.contains("kind=direct_vs_partner"))
            .await
            .contains("kind=direct_vs_partner")
    );
    let rows = d.count("table.findings tbody tr").await;
    assert!(rows > 0 && rows < all, "{rows} of {all}");
    let link = format!("a[href='/finding?key={}']", KEY.replace(':', "%3A"));
    assert_eq!(d.count(&link).await, 1);

    // Open it and decide it.
    d.click(&link).await;
    let text = d.wait_text("Timeline").await;
    assert!(
        text.contains("Evidence") && text.contains("Timeline"),
        "{text}"
    );
    d.click("button[value=partner_keeps]").await;
    let url = d.wait_url(|u| u.ends_with("/findings")).await;
    assert!(url.ends_with("/findings"), "{url}");
    assert_eq!(d.count(&link).await, 0, "decided: off the open list");
    d.goto(&format!("{base}/findings?status=decided")).await;
    assert_eq!(d.count(&link).await, 1, "on the decided list");
    d.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_browser_a_form_without_its_csrf_token_is_refused() {
    let Some(bin) = chromedriver("console_browser::in_a_browser_a_form_without_...") else {
        return;
    };
    let c = start(CONSOLE).await;
    let d = Driver::start(&bin, 1440, 900).await;
    d.sign_in(&c.base, "Ana", TOKEN).await;
    d.goto(&format!(
        "{}/finding?key={}",
        c.base,
        KEY.replace(':', "%3A")
    ))
    .await;
    d.script("document.querySelectorAll('input[name=csrf]').forEach(e => e.remove())")
        .await;
    d.click("button[value=split]").await;
    let text = d.wait_text("CSRF").await;
    assert!(text.contains("missing or wrong CSRF token"), "{text}");
    d.goto(&format!("{}/findings", c.base)).await;
    let link = format!("a[href='/finding?key={}']", KEY.replace(':', "%3A"));
    assert_eq!(d.count(&link).await, 1, "still open: nothing recorded");
    d.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_browser_a_forged_proxy_header_is_refused() {
    let Some(bin) = chromedriver("console_browser::in_a_browser_a_forged_proxy_...") else {
        return;
    };
    // The console trusts a proxy at another address than the browser's.
    let c =
        start("listen = \"127.0.0.1:0\"\nauth = \"proxy\"\ntrusted_proxies = [\"10.9.8.7\"]").await;
    let d = Driver::start(&bin, 1440, 900).await;
    d.cdp("Network.enable", json!({})).await;
    d.cdp(
        "Network.setExtraHTTPHeaders",
        json!({ "headers": { "X-Forwarded-User": "boss@example.com" } }),
    )
    .await;
    d.goto(&format!("{}/", c.base)).await;
    let text = d.text().await;
    assert!(text.contains("not a trusted proxy"), "{text}");
    assert!(!text.contains("Value at risk"), "{text}");
    d.quit().await;
}

/// Regenerates docs/screenshots/ from the sample:
/// `cargo test --test it console_browser::screenshots -- --ignored`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "writes docs/screenshots/; run on purpose"]
async fn screenshots() {
    let Some(bin) = chromedriver("console_browser::screenshots") else {
        return;
    };
    let c = start(CONSOLE).await;
    let out = crate::helpers::repo().join("docs/screenshots");
    std::fs::create_dir_all(&out).unwrap();
    let pages = [
        ("overview", "/".to_string()),
        ("findings", "/findings".into()),
        (
            "finding",
            format!("/finding?key={}", KEY.replace(':', "%3A")),
        ),
        ("partners", "/partners".into()),
        ("partner", "/partner?id=P-1".into()),
        ("registrations", "/registrations".into()),
        ("review", "/review".into()),
    ];
    for (size, w, h) in [("desktop", 1440, 900), ("phone", 390, 844)] {
        let d = Driver::start(&bin, w, h).await;
        d.sign_in(&c.base, "Ana Lopez", TOKEN).await;
        for (name, path) in &pages {
            d.goto(&format!("{}{path}", c.base)).await;
            std::fs::write(out.join(format!("{name}-{size}.png")), d.screenshot().await).unwrap();
        }
        d.quit().await;
    }
}
