//! The console (issue 16) over HTTP, in process on port 0, on the sample's
//! state after one cycle (files source, pinned clock): sign-in, sessions,
//! CSRF, the proxy header, security headers, escaping, the pages, and a
//! decision leaving the open list. The browser tests are in
//! `console_browser.rs`.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use channel_sync::config::Settings;
use channel_sync::console::{self, Console};
use channel_sync::daemon::Clock;

use crate::decisions::{config, run};
use crate::helpers::{NOW, copy_sample};

pub const TOKEN: &str = "console-test-token-0123456789";
pub const KEY: &str = "direct_vs_partner:R-02:O-005";

/// A console on the sample's state: its base URL, and the directory.
pub struct Running {
    pub base: String,
    pub dir: tempfile::TempDir,
    pub console: Arc<Console>,
}

pub fn now() -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(NOW)
        .unwrap()
        .with_timezone(&chrono::Utc)
}

/// Runs one cycle on a copy of the sample, then serves the console with
/// `extra` configuration (after a `[console]` header).
pub async fn start(extra: &str) -> Running {
    let dir = tempfile::tempdir().unwrap();
    copy_sample(dir.path());
    // The cycle without the console (it needs no token), then the console.
    let path = config(dir.path(), "");
    let (code, out, err) = run(&["once", "--config", path.to_str().unwrap(), "--now", NOW]);
    assert_eq!(code, 0, "{out}\n{err}");
    let path = config(dir.path(), &format!("[console]\n{extra}\n"));
    let settings = Settings::load_with_env(
        Some(&path),
        [(
            "CHANNEL_SYNC__CONSOLE__TOKEN".to_string(),
            TOKEN.to_string(),
        )],
    )
    .unwrap();
    serve(settings, dir).await
}

pub async fn serve(settings: Settings, dir: tempfile::TempDir) -> Running {
    let console = Arc::new(Console::new(&settings, Clock::starting_at(now())).unwrap());
    console.refresh(&settings, now());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    tokio::spawn(console::serve(
        listener,
        console.clone(),
        std::future::pending::<()>(),
    ));
    Running {
        base: format!("http://{addr}"),
        dir,
        console,
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Signs in as `name`; the session cookie (`name=value`).
pub async fn sign_in(base: &str, name: &str) -> String {
    let res = client()
        .post(format!("{base}/login"))
        .form(&[("name", name), ("token", TOKEN)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let cookie = res
        .headers()
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    cookie.split(';').next().unwrap().to_string()
}

pub async fn get(base: &str, path: &str, cookie: &str) -> (u16, String) {
    let res = client()
        .get(format!("{base}{path}"))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

/// The CSRF token in a page's forms.
fn csrf(page: &str) -> String {
    let at = page.find("name=\"csrf\" value=\"").unwrap() + 19;
    page[at..at + 64].to_string()
}

const TOKEN_MODE: &str = "listen = \"127.0.0.1:0\"\nsecure_cookie = true";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_sign_in_sets_a_strict_session_cookie_and_a_wrong_token_is_refused() {
    let c = start(TOKEN_MODE).await;
    // Not signed in: to the form.
    let res = client().get(format!("{}/", c.base)).send().await.unwrap();
    assert_eq!(res.status(), 303);
    assert_eq!(res.headers()["location"], "/login");
    // A wrong token: refused, no cookie.
    let res = client()
        .post(format!("{}/login", c.base))
        .form(&[("name", "ana"), ("token", "console-test-token-WRONG")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert!(res.headers().get("set-cookie").is_none());
    assert!(res.text().await.unwrap().contains("Wrong token."));
    // The right one: a session cookie with every flag.
    let res = client()
        .post(format!("{}/login", c.base))
        .form(&[("name", "ana"), ("token", TOKEN)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let set = res.headers()["set-cookie"].to_str().unwrap().to_string();
    for flag in ["HttpOnly", "SameSite=Strict", "Secure", "Path=/"] {
        assert!(set.contains(flag), "{flag} missing: {set}");
    }
    let cookie = set.split(';').next().unwrap();
    let (status, page) = get(&c.base, "/", cookie).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Overview") && page.contains("ana"), "{page}");
    // A made-up session is no session.
    let (status, _) = get(
        &c.base,
        "/",
        "channel_sync_session=0000000000000000000000000000000000000000000000000000000000000000",
    )
    .await;
    assert_eq!(status, 303);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_response_carries_a_strict_policy_and_pages_have_no_script() {
    let c = start(TOKEN_MODE).await;
    let cookie = sign_in(&c.base, "ana").await;
    for path in [
        "/login",
        "/",
        "/findings",
        &format!("/finding?key={KEY}"),
        "/partners",
        "/partner?id=P-1",
        "/registrations",
        "/review",
    ] {
        let res = client()
            .get(format!("{}{path}", c.base))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{path}");
        let csp = res.headers()["content-security-policy"].to_str().unwrap();
        assert_eq!(csp, console::CSP, "{path}");
        assert_eq!(res.headers()["x-content-type-options"], "nosniff");
        let page = res.text().await.unwrap();
        assert!(!page.contains("<script"), "{path}");
        assert!(!page.contains(" style="), "no inline style on {path}");
    }
    // The printable review allows exactly its own <style> block by hash.
    let res = client()
        .get(format!("{}/review/print", c.base))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let csp = res.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        csp.starts_with("default-src 'none'; style-src 'sha256-"),
        "{csp}"
    );
    assert!(!csp.contains("unsafe"), "{csp}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_without_the_csrf_token_is_refused_and_records_nothing() {
    let c = start(TOKEN_MODE).await;
    let cookie = sign_in(&c.base, "ana").await;
    for form in [
        vec![("key", KEY), ("decision", "split")],
        vec![("key", KEY), ("decision", "split"), ("csrf", "f00d")],
    ] {
        let res = client()
            .post(format!("{}/finding/decide", c.base))
            .header("cookie", &cookie)
            .form(&form)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 403, "{form:?}");
    }
    // Another session's token does not do either.
    let other = sign_in(&c.base, "bob").await;
    let (_, page) = get(&c.base, "/", &other).await;
    let theirs = csrf(&page);
    let res = client()
        .post(format!("{}/finding/decide", c.base))
        .header("cookie", &cookie)
        .form(&[("key", KEY), ("decision", "split"), ("csrf", &theirs)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    // A form posted from another site is refused even with the token.
    let (_, page) = get(&c.base, "/", &cookie).await;
    let mine = csrf(&page);
    let res = client()
        .post(format!("{}/finding/decide", c.base))
        .header("cookie", &cookie)
        .header("origin", "https://evil.example")
        .form(&[("key", KEY), ("decision", "split"), ("csrf", &mine)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    let state = c.dir.path().join("state/channel-sync.db");
    let conn = rusqlite::Connection::open(state).unwrap();
    let n: i64 = conn
        .query_row("SELECT COUNT(*) FROM decisions", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 0, "nothing recorded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decision_is_recorded_as_the_signed_in_user_and_leaves_the_open_list() {
    let c = start(TOKEN_MODE).await;
    let cookie = sign_in(&c.base, "Ana Lopez").await;
    let (_, list) = get(&c.base, "/findings", &cookie).await;
    let link = format!("/finding?key={}", KEY.replace(':', "%3A"));
    assert!(list.contains(&link), "{list}");
    let (_, page) = get(&c.base, &link, &cookie).await;
    assert!(
        page.contains("Evidence") && page.contains("Timeline"),
        "{page}"
    );
    assert!(page.contains("Partner keeps"), "{page}");
    let res = client()
        .post(format!("{}/finding/decide", c.base))
        .header("cookie", &cookie)
        .form(&[
            ("key", KEY),
            ("decision", "partner_keeps"),
            ("csrf", &csrf(&page)),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    assert_eq!(res.headers()["location"], "/findings");
    let (_, list) = get(&c.base, "/findings", &cookie).await;
    assert!(!list.contains(&link), "left the open list");
    let (_, decided) = get(&c.base, "/findings?status=decided", &cookie).await;
    assert!(decided.contains(&link), "{decided}");
    let (_, page) = get(&c.base, &link, &cookie).await;
    assert!(
        page.contains("Decided: partner keeps by Ana Lopez"),
        "{page}"
    );
    // The audit trail has the signed-in user.
    let conn = rusqlite::Connection::open(c.dir.path().join("state/channel-sync.db")).unwrap();
    let by: String = conn
        .query_row(
            "SELECT decided_by FROM decisions WHERE finding_key = ?1",
            [KEY],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(by, "Ana Lopez");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_header_is_believed_only_from_a_trusted_proxy() {
    let trusted =
        start("listen = \"127.0.0.1:0\"\nauth = \"proxy\"\ntrusted_proxies = [\"127.0.0.1\"]")
            .await;
    let res = client()
        .get(format!("{}/", trusted.base))
        .header("X-Forwarded-User", "ana@example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.text().await.unwrap().contains("ana@example.com"));
    let res = client()
        .get(format!("{}/", trusted.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401, "no header, no user");

    // The same header from an address that is not the proxy: forged.
    let other =
        start("listen = \"127.0.0.1:0\"\nauth = \"proxy\"\ntrusted_proxies = [\"10.9.8.7\"]").await;
    let res = client()
        .get(format!("{}/", other.base))
        .header("X-Forwarded-User", "ana@example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    assert!(!res.text().await.unwrap().contains("Overview"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crm_and_prm_values_are_escaped_on_every_page() {
    let dir = tempfile::tempdir().unwrap();
    copy_sample(dir.path());
    // A hostile partner name and customer name in the data.
    let evil = "<img src=x onerror=alert(1)>";
    for file in ["partners.csv", "registrations.csv", "accounts.csv"] {
        let p = dir.path().join("data").join(file);
        let text = std::fs::read_to_string(&p).unwrap();
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        // The second column is the name in each of these files.
        for l in lines.iter_mut().skip(1) {
            let mut cells: Vec<String> = l.split(',').map(str::to_string).collect();
            if file == "registrations.csv" {
                if let Some(i) = text
                    .lines()
                    .next()
                    .unwrap()
                    .split(',')
                    .position(|h| h == "customer_name")
                {
                    cells[i] = format!("\"{evil}\"");
                }
            } else {
                cells[1] = format!("\"{evil}\"");
            }
            *l = cells.join(",");
        }
        std::fs::write(&p, lines.join("\n") + "\n").unwrap();
    }
    let path = config(dir.path(), "");
    let (code, out, err) = run(&["once", "--config", path.to_str().unwrap(), "--now", NOW]);
    // The edit breaks a row or two (rejected, which sets the exit code);
    // the rest runs.
    assert!(out.contains("findings "), "{code}: {out}\n{err}");
    let path = config(dir.path(), "[console]\nlisten = \"127.0.0.1:0\"\n");
    let settings = Settings::load_with_env(
        Some(&path),
        [("CHANNEL_SYNC__CONSOLE__TOKEN".into(), TOKEN.to_string())],
    )
    .unwrap();
    let c = serve(settings, dir).await;
    let cookie = sign_in(&c.base, "<b>ana</b>").await;
    let mut seen_escaped = 0;
    for path in [
        "/".to_string(),
        "/findings".into(),
        format!("/finding?key={KEY}"),
        "/partners".into(),
        "/partner?id=P-1".into(),
        "/registrations".into(),
        "/review".into(),
    ] {
        let (status, page) = get(&c.base, &path, &cookie).await;
        assert_eq!(status, 200, "{path}");
        assert!(!page.contains("<img"), "unescaped on {path}");
        assert!(!page.contains("<b>ana"), "user name unescaped on {path}");
        if page.contains("&lt;img src=x onerror=alert(1)&gt;") {
            seen_escaped += 1;
        }
    }
    assert!(
        seen_escaped >= 4,
        "the names are shown, escaped: {seen_escaped}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pages_show_the_program() {
    let c = start(TOKEN_MODE).await;
    let cookie = sign_in(&c.base, "ana").await;
    let (_, overview) = get(&c.base, "/", &cookie).await;
    assert!(overview.contains("Value at risk"), "{overview}");
    assert!(overview.contains("Last cycle: <strong>"), "{overview}");
    assert!(overview.contains("<svg class=\"chart\""), "{overview}");
    let (_, filtered) = get(&c.base, "/findings?kind=partner_vs_partner", &cookie).await;
    assert!(!filtered.contains("direct vs partner</a>"), "{filtered}");
    let (_, partners) = get(&c.base, "/partners?sort=name", &cookie).await;
    assert!(partners.contains("/partner?id=P-1"), "{partners}");
    let (_, partner) = get(&c.base, "/partner?id=P-1", &cookie).await;
    assert!(partner.contains("Reps who sold"), "{partner}");
    assert!(partner.contains("Reps who did not"), "{partner}");
    let (_, regs) = get(&c.base, "/registrations?state=expiring", &cookie).await;
    assert!(regs.contains("Registrations"), "{regs}");
    let (status, _) = get(&c.base, "/partner?id=nope", &cookie).await;
    assert_eq!(status, 404);
}

/// A partner's reps come 100 a page, those who sold first: a partner with
/// 250 reps (130 sold) has three pages, each link leading to the next, the
/// counts of both groups on every page that shows the group.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partners_reps_come_a_hundred_a_page_sellers_first() {
    use channel_sync::console::snapshot::RepRow;
    let c = start(TOKEN_MODE).await;
    let mut snap = (*c.console.snapshot()).clone();
    let p = snap.partners.iter_mut().find(|p| p.id == "P-1").unwrap();
    p.rep_list = (0..250)
        .map(|i| RepRow {
            name: format!("Rep {i:03}"),
            email: Some(format!("rep{i:03}@example.com")),
            active: true,
            deals: if i < 130 { 200 - i } else { 0 },
        })
        .collect();
    c.console.publish(snap);
    let cookie = sign_in(&c.base, "ana").await;
    let rows = |page: &str| -> Vec<String> {
        page.split("<td>Rep ")
            .skip(1)
            .map(|s| format!("Rep {}", &s[..3]))
            .collect()
    };
    let (_, first) = get(&c.base, "/partner?id=P-1", &cookie).await;
    let names = rows(&first);
    assert_eq!(names.len(), 100, "{first}");
    assert_eq!(
        (names[0].as_str(), names[99].as_str()),
        ("Rep 000", "Rep 099")
    );
    assert!(first.contains("Reps who sold in "), "{first}");
    assert!(first.contains(": 130</h2>"), "{first}");
    assert!(!first.contains("Reps who did not"), "no idle rep on page 1");
    assert!(first.contains("Reps 1–100 of 250"), "{first}");
    assert!(!first.contains("rel=\"prev\""), "{first}");
    let next = "href=\"/partner?id=P-1&amp;reps_page=2\"";
    assert!(first.contains(next), "{first}");

    let (_, second) = get(&c.base, "/partner?id=P-1&reps_page=2", &cookie).await;
    let names = rows(&second);
    assert_eq!((names.len(), names[0].as_str()), (100, "Rep 100"));
    assert!(
        second.contains(": 130</h2>") && second.contains("Reps who did not: 120</h2>"),
        "{second}"
    );
    // The sellers end the sold table; the idle ones start theirs.
    let sold_at = second.find("Rep 129").unwrap();
    let idle_at = second.find("Reps who did not").unwrap();
    assert!(sold_at < idle_at && second.find("Rep 130").unwrap() > idle_at);
    assert!(
        second.contains("href=\"/partner?id=P-1&amp;reps_page=1\""),
        "{second}"
    );
    assert!(
        second.contains("href=\"/partner?id=P-1&amp;reps_page=3\""),
        "{second}"
    );

    let (_, last) = get(&c.base, "/partner?id=P-1&reps_page=3", &cookie).await;
    assert_eq!(rows(&last).len(), 50);
    assert!(!last.contains("Reps who sold in "), "no seller on page 3");
    assert!(last.contains("Reps 201–250 of 250"), "{last}");
    assert!(!last.contains("rel=\"next\""), "{last}");
    // Past the end: the last page.
    let (status, beyond) = get(&c.base, "/partner?id=P-1&reps_page=99", &cookie).await;
    assert_eq!((status, rows(&beyond)), (200, rows(&last)));
    // A page of 100 reps stays small.
    assert!(first.len() < 60_000, "{} bytes", first.len());
}

/// Configuration: on only with `listen`; the token from the environment.
#[test]
fn the_console_needs_a_token_or_trusted_proxies() {
    let dir = tempfile::tempdir().unwrap();
    let path = config(dir.path(), "[console]\nlisten = \"127.0.0.1:8080\"\n");
    let e = Settings::load_with_env(Some(Path::new(&path)), Vec::<(String, String)>::new())
        .unwrap_err();
    assert_eq!(e.key, "console.token");
    let path = config(
        dir.path(),
        "[console]\nlisten = \"127.0.0.1:8080\"\nauth = \"proxy\"\n",
    );
    let e = Settings::load_with_env(Some(Path::new(&path)), Vec::<(String, String)>::new())
        .unwrap_err();
    assert_eq!(e.key, "console.trusted_proxies");
    let path = config(
        dir.path(),
        "[console]\ntoken = \"in-the-file-0123456789\"\n",
    );
    let e = Settings::load_with_env(Some(Path::new(&path)), Vec::<(String, String)>::new())
        .unwrap_err();
    assert_eq!(e.key, "console.token", "secrets come from the environment");
}

/// A page without its session-bound parts (the CSRF token).
fn without_csrf(page: &str) -> String {
    let mut out = String::with_capacity(page.len());
    let mut rest = page;
    while let Some(at) = rest.find("name=\"csrf\" value=\"") {
        let end = at + 19;
        out.push_str(&rest[..end]);
        rest = &rest[(end + 64).min(rest.len())..];
    }
    out.push_str(rest);
    out
}

/// Runs one cycle on a copy of the sample with the state in the database
/// `db`, then serves the console on it with `extra` configuration (after a
/// `[console]` header).
pub async fn start_on_pg(db: &crate::pg::TestDb, extra: &str) -> Running {
    let dir = tempfile::tempdir().unwrap();
    copy_sample(dir.path());
    let with_url = |extra: &str| {
        let path = config(dir.path(), extra);
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(
            &path,
            text.replacen("[state]\n", &format!("[state]\n{}", db.state_toml()), 1),
        )
        .unwrap();
        path
    };
    let path = with_url("");
    let (k, v) = db.env();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_channel-sync"))
        .args(["once", "--config", path.to_str().unwrap(), "--now", NOW])
        .env_remove("RUST_LOG")
        .env_remove("CHANNEL_SYNC__ALERTS__SLACK__WEBHOOK_URL")
        .env(k, &v)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(db.count("findings") > 0);
    let path = with_url(&format!("[console]\n{extra}\n"));
    let settings = Settings::load_with_env(
        Some(&path),
        [
            (
                "CHANNEL_SYNC__CONSOLE__TOKEN".to_string(),
                TOKEN.to_string(),
            ),
            (k.to_string(), v.clone()),
        ],
    )
    .unwrap();
    assert!(settings.state.url.is_some(), "the console reads PostgreSQL");
    serve(settings, dir).await
}

/// The same cycle on the sample, with the state in PostgreSQL: the console
/// shows the same pages as on the SQLite file, and a decision taken there
/// lands in the shared state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_on_a_postgresql_state_shows_what_it_shows_on_sqlite() {
    let Some(db) = crate::pg::TestDb::create("console_http") else {
        return;
    };
    let file = start(TOKEN_MODE).await;
    let pg = start_on_pg(&db, TOKEN_MODE).await;
    let (file_cookie, pg_cookie) = (
        sign_in(&file.base, "Ana Lopez").await,
        sign_in(&pg.base, "Ana Lopez").await,
    );
    let link = format!("/finding?key={}", KEY.replace(':', "%3A"));
    for page in [
        "/",
        "/findings",
        "/findings?page=2",
        "/findings?kind=partner_vs_partner",
        "/findings?partner=P-1",
        "/findings?account=acme",
        link.as_str(),
    ] {
        let (file_status, on_file) = get(&file.base, page, &file_cookie).await;
        let (pg_status, on_pg) = get(&pg.base, page, &pg_cookie).await;
        assert_eq!((file_status, pg_status), (200, 200), "{page}");
        assert_eq!(without_csrf(&on_file), without_csrf(&on_pg), "{page}");
        if page.starts_with("/findings") && page != "/findings?page=2" {
            assert!(
                on_pg.contains("/finding?key="),
                "{page} lists findings: {on_pg}"
            );
        }
    }
    let (_, list) = get(&pg.base, "/findings", &pg_cookie).await;
    assert!(list.contains(&link), "{list}");
    // A decision on PostgreSQL: recorded as the signed-in user, off the list.
    let (_, page) = get(&pg.base, &link, &pg_cookie).await;
    let res = client()
        .post(format!("{}/finding/decide", pg.base))
        .header("cookie", &pg_cookie)
        .form(&[
            ("key", KEY),
            ("decision", "partner_keeps"),
            ("csrf", &csrf(&page)),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let (_, list) = get(&pg.base, "/findings", &pg_cookie).await;
    assert!(!list.contains(&link), "left the open list");
    let (_, decided) = get(&pg.base, "/findings?status=decided", &pg_cookie).await;
    assert!(decided.contains(&link), "{decided}");
    let by: String = db.query(|c| {
        c.query_one(
            "SELECT decided_by FROM decisions WHERE finding_key = $1",
            &[&KEY],
        )
        .unwrap()
        .get(0)
    });
    assert_eq!(by, "Ana Lopez");
    // The database drops the console's connection (a failover): the request
    // that meets it may fail, the next one reconnects.
    let ended: i64 = db.query(|c| {
        c.query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
            &[],
        )
        .unwrap()
        .len() as i64
    });
    assert!(ended >= 1, "the console's connection was open");
    let _ = get(&pg.base, "/findings", &pg_cookie).await;
    let (status, list) = get(&pg.base, "/findings?status=decided", &pg_cookie).await;
    assert_eq!(status, 200, "{list}");
    assert!(list.contains(&link), "read again after reconnecting");
}
