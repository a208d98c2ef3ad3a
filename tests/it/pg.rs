//! A real PostgreSQL server for the tests: `CHANNEL_SYNC_TEST_PG_URL`
//! (`postgres://user:password@host:port/db`, set by `.ci/run`). Each test
//! gets a database of its own, dropped afterwards. Without the variable the
//! PostgreSQL tests print a NOTE and return (never silently). With
//! `CHANNEL_SYNC_TEST_PG_CA` (the server's CA, PEM; `.ci/run` makes one)
//! the program connects over verified TLS (`sslmode=require`, `ca_file`).

use std::sync::atomic::{AtomicU32, Ordering};

/// A fresh database: the URL the program is given (no password) and the
/// password for `CHANNEL_SYNC__STATE__PASSWORD`.
pub struct TestDb {
    admin: String,
    pub name: String,
    pub url: String,
    pub password: String,
    /// The server's CA certificate file, when it serves TLS.
    pub ca: Option<String>,
}

/// `CHANNEL_SYNC_TEST_PG_CA`, when set.
pub fn test_ca() -> Option<String> {
    std::env::var("CHANNEL_SYNC_TEST_PG_CA")
        .ok()
        .filter(|c| !c.is_empty())
}

/// The server, or `None` after printing why the test is skipped.
fn server(test: &str) -> Option<String> {
    match std::env::var("CHANNEL_SYNC_TEST_PG_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            // Straight to stderr, not through eprintln!: the test harness
            // captures the print macros of passing tests, and a skip must show.
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "NOTE: {test} skipped: no PostgreSQL (set CHANNEL_SYNC_TEST_PG_URL, as .ci/run does)"
            );
            None
        }
    }
}

/// Runs blocking client work away from any tokio runtime.
pub fn blocking<R: Send>(work: impl FnOnce() -> R + Send) -> R {
    std::thread::scope(|s| s.spawn(work).join().unwrap())
}

impl TestDb {
    /// A new empty database for `test`, or `None` (NOTE printed).
    pub fn create(test: &str) -> Option<TestDb> {
        static N: AtomicU32 = AtomicU32::new(0);
        let admin = server(test)?;
        let name = format!(
            "cs_{}_{}_{}",
            test.chars()
                .filter(|c| c.is_ascii_alphanumeric())
                .take(20)
                .collect::<String>()
                .to_lowercase(),
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        let config: postgres::Config = admin.parse().expect("CHANNEL_SYNC_TEST_PG_URL");
        let password = config
            .get_password()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .unwrap_or_default();
        let user = config.get_user().unwrap_or("postgres").to_string();
        let (host, port) = match (config.get_hosts().first(), config.get_ports().first()) {
            (Some(postgres::config::Host::Tcp(h)), Some(p)) => (h.clone(), *p),
            _ => ("127.0.0.1".to_string(), 5432),
        };
        let sql = format!("CREATE DATABASE {name}");
        let a = admin.clone();
        blocking(move || {
            let mut c = a
                .parse::<postgres::Config>()
                .unwrap()
                .connect(postgres::NoTls)
                .unwrap();
            c.batch_execute(&sql).unwrap();
        });
        let ca = test_ca();
        let tls = if ca.is_some() { "?sslmode=require" } else { "" };
        Some(TestDb {
            url: format!("postgres://{user}@{host}:{port}/{name}{tls}"),
            admin,
            name,
            password,
            ca,
        })
    }

    /// A client on the test database (for checks).
    pub fn query<R: Send>(&self, work: impl FnOnce(&mut postgres::Client) -> R + Send) -> R {
        let mut config: postgres::Config = self.admin.parse().unwrap();
        config.dbname(&self.name);
        blocking(move || {
            let mut c = config.connect(postgres::NoTls).unwrap();
            work(&mut c)
        })
    }

    /// Counts rows of a table.
    pub fn count(&self, table: &str) -> i64 {
        let sql = format!("SELECT count(*) FROM {table}");
        self.query(move |c| c.query_one(sql.as_str(), &[]).unwrap().get(0))
    }

    /// The `[state]` lines that point the program here.
    pub fn state_toml(&self) -> String {
        let mut toml = format!("url = \"{}\"\n", self.url);
        if let Some(ca) = &self.ca {
            toml.push_str(&format!("ca_file = \"{ca}\"\n"));
        }
        toml
    }

    /// The environment naming the CA for `state migrate`, when there is one.
    pub fn ca_env(&self) -> Option<(&'static str, String)> {
        self.ca
            .clone()
            .map(|ca| ("CHANNEL_SYNC__STATE__CA_FILE", ca))
    }

    /// The environment that carries the password.
    pub fn env(&self) -> (&'static str, String) {
        ("CHANNEL_SYNC__STATE__PASSWORD", self.password.clone())
    }

    /// The program's state settings (for in-process calls).
    pub fn settings(&self) -> channel_sync::config::StateSettings {
        channel_sync::config::StateSettings {
            url: Some(self.url.clone()),
            password: Some(channel_sync::config::Secret::new(self.password.clone())),
            ca_file: self.ca.clone().map(Into::into),
            ..Default::default()
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        let admin = self.admin.clone();
        blocking(move || {
            if let Ok(mut c) = admin
                .parse::<postgres::Config>()
                .unwrap()
                .connect(postgres::NoTls)
            {
                let _ = c.batch_execute(&sql);
            }
        });
    }
}
