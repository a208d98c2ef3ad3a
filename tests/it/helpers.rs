use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const NOW: &str = "2026-11-26T00:00:00Z";

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn sample() -> PathBuf {
    repo().join("sample")
}

/// Runs the real binary from the repository root.
pub fn channel_sync(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_channel-sync"))
        .args(args)
        .current_dir(repo())
        .env_remove("RUST_LOG")
        .output()
        .expect("the binary runs")
}

pub fn detect_json(input: &Path) -> (i32, serde_json::Value, String) {
    let out = channel_sync(&[
        "detect",
        "--input",
        input.to_str().unwrap(),
        "--now",
        NOW,
        "--format",
        "json",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let report = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}); stderr: {stderr}"));
    (out.status.code().unwrap_or(-1), report, stderr)
}

/// Copies the sample program's CSV files into `dir/data`; returns that folder.
pub fn copy_sample(dir: &Path) -> PathBuf {
    let data = dir.join("data");
    std::fs::create_dir(&data).unwrap();
    for f in std::fs::read_dir(sample()).unwrap() {
        let f = f.unwrap().path();
        if f.extension().is_some_and(|e| e == "csv") {
            std::fs::copy(&f, data.join(f.file_name().unwrap())).unwrap();
        }
    }
    data
}

/// What a run of the binary printed and returned.
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The summary lines that start with `starts`.
    pub fn line(&self, starts: &str) -> String {
        self.stdout
            .lines()
            .filter(|l| l.starts_with(starts))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Fails the test, showing both outputs, unless the run exited 0.
    #[track_caller]
    pub fn assert_ok(&self) {
        assert_eq!(self.code, Some(0), "{}\n{}", self.stdout, self.stderr);
    }

    /// Fails the test, showing the output, unless the summary's `synced`
    /// line of `object` (e.g. `deals`, `Opportunity`) contains `text`.
    #[track_caller]
    pub fn assert_synced(&self, object: &str, text: &str) {
        let line = self.line(&format!("synced      {object}"));
        assert!(line.contains(text), "{}", self.stdout);
    }
}

/// Runs the binary off the async runtime (which serves the fakes).
pub async fn run_async(args: Vec<String>, env: Vec<(String, String)>) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_channel-sync"));
    cmd.args(&args).current_dir(repo()).env_remove("RUST_LOG");
    for (k, v) in &env {
        cmd.env(k, v);
    }
    let out = tokio::task::spawn_blocking(move || cmd.output().expect("the binary runs"))
        .await
        .expect("the runner thread");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs `command --config CONFIG [--now NOW for once] EXTRA...` with `env`
/// and the fake Slack's webhook.
pub async fn run_command(
    command: &str,
    config: &Path,
    extra: &[&str],
    env: &[(String, String)],
    slack: &wiremock::MockServer,
) -> Run {
    let mut args = vec![
        command.to_string(),
        "--config".into(),
        config.display().to_string(),
    ];
    if command == "once" {
        args.extend(["--now".to_string(), NOW.to_string()]);
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    let mut env = env.to_vec();
    env.push((
        "CHANNEL_SYNC__ALERTS__SLACK__WEBHOOK_URL".into(),
        format!("{}/hook", slack.uri()),
    ));
    run_async(args, env).await
}

/// A Slack webhook that accepts everything, and the bodies it received.
pub async fn fake_slack() -> wiremock::MockServer {
    let slack = wiremock::MockServer::start().await;
    wiremock::Mock::given(wiremock::matchers::method("POST"))
        .respond_with(wiremock::ResponseTemplate::new(200).set_body_string("ok"))
        .mount(&slack)
        .await;
    slack
}

pub async fn slack_texts(slack: &wiremock::MockServer) -> Vec<String> {
    slack
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .collect()
}

/// The environment that runs a process with the machine's clock a year ahead
/// (libfaketime, Debian's `faketime` package), or `None` with a printed note
/// when libfaketime is not installed (`.ci/run` installs it).
pub fn a_year_ahead() -> Option<Vec<(String, String)>> {
    let lib = std::fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .flatten()
        .flat_map(|d| {
            ["libfaketimeMT.so.1", "libfaketime.so.1"].map(|f| d.path().join("faketime").join(f))
        })
        .find(|p| p.is_file());
    let Some(lib) = lib else {
        eprintln!(
            "NOTE: libfaketime is not installed (apt-get install faketime): skipping the run with the clock a year ahead"
        );
        return None;
    };
    Some(vec![
        ("LD_PRELOAD".into(), lib.display().to_string()),
        ("FAKETIME".into(), "+365d".into()),
        // Timers and timeouts keep the real monotonic clock.
        ("FAKETIME_DONT_FAKE_MONOTONIC".into(), "1".into()),
    ])
}

/// Runs the binary from the repository root with extra environment.
pub fn channel_sync_env(args: &[&str], env: &[(String, String)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_channel-sync"))
        .args(args)
        .current_dir(repo())
        .env_remove("RUST_LOG")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .expect("the binary runs")
}

/// One object's mirror in a state file, by id.
pub fn mirrored(
    state: &Path,
    source: &str,
    object: &str,
) -> std::collections::BTreeMap<String, serde_json::Value> {
    let state = channel_sync::store::State::open(state).unwrap();
    let mut out = std::collections::BTreeMap::new();
    channel_sync::sync::scan(&state, source, object, |id, record| {
        out.insert(
            id.to_string(),
            serde_json::Value::Object(record.unwrap().to_map()),
        );
    })
    .unwrap();
    out
}

/// Moves the last sync of the cursor `key` (`source/object`) `days` back.
pub fn backdate_cursor(state: &Path, key: &str, days: i64) {
    let state = channel_sync::store::State::open(state).unwrap();
    let text = state.cursor(key).unwrap().expect("a cursor");
    let mut cursor: serde_json::Value = serde_json::from_str(&text).unwrap();
    let synced: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(cursor["synced_at"].clone()).unwrap();
    cursor["synced_at"] = serde_json::to_value(synced - chrono::Duration::days(days)).unwrap();
    state
        .set_cursor(key, &cursor.to_string(), chrono::Utc::now())
        .unwrap();
}

/// A test's configuration, built typed instead of `format!`-ed TOML. It
/// starts from the bundled config/channel-sync.toml (its rules and exchange
/// rates) or from nothing; each setter sets keys by dotted path, so a later
/// setter overrides an earlier one instead of repeating a table, and the
/// `toml` crate quotes paths and URLs.
#[derive(Debug, Clone)]
pub struct TestConfig {
    table: toml::Table,
}

impl TestConfig {
    /// The bundled configuration.
    pub fn bundled() -> TestConfig {
        let text = std::fs::read_to_string(repo().join("config/channel-sync.toml")).unwrap();
        TestConfig {
            table: text.parse().expect("the bundled configuration parses"),
        }
    }

    /// No keys at all: every default.
    pub fn empty() -> TestConfig {
        TestConfig {
            table: toml::Table::new(),
        }
    }

    /// Sets `key`, a dotted path (`alerts.slack.per_second`), to `value`.
    pub fn set(mut self, key: &str, value: impl Into<toml::Value>) -> TestConfig {
        let mut parts: Vec<&str> = key.split('.').collect();
        let last = parts.pop().expect("a key");
        let mut table = &mut self.table;
        for part in parts {
            table = table
                .entry(part)
                .or_insert_with(|| toml::Value::Table(toml::Table::new()))
                .as_table_mut()
                .unwrap_or_else(|| panic!("{key}: {part} is not a table"));
        }
        table.insert(last.to_string(), value.into());
        self
    }

    /// Merges a TOML fragment (keys the typed setters do not cover yet);
    /// its keys override.
    pub fn merge(mut self, fragment: &str) -> TestConfig {
        fn merge_into(into: &mut toml::Table, from: toml::Table) {
            for (k, v) in from {
                match (into.get_mut(&k), v) {
                    (Some(toml::Value::Table(a)), toml::Value::Table(b)) => merge_into(a, b),
                    (_, v) => {
                        into.insert(k, v);
                    }
                }
            }
        }
        let from: toml::Table = fragment
            .parse()
            .unwrap_or_else(|e| panic!("a TOML fragment: {e}\n{fragment}"));
        merge_into(&mut self.table, from);
        self
    }

    /// The files CRM (and PRM beside it): exports in `dir`, write-back
    /// files in `out_dir`.
    pub fn files(self, dir: &Path, out_dir: &Path) -> TestConfig {
        self.set("crm.kind", "files")
            .set("crm.files.dir", path(dir))
            .set("crm.files.out_dir", path(out_dir))
    }

    /// The state file.
    pub fn state(self, file: &Path) -> TestConfig {
        self.set("state.path", path(file))
    }

    /// The default Slack webhook (tests pass a fake's URL).
    pub fn slack(self, webhook_url: &str) -> TestConfig {
        self.set("alerts.slack.webhook_url", webhook_url)
    }

    /// `schedule.cron` and `schedule.run_at_start`.
    pub fn schedule(self, cron: &str, run_at_start: bool) -> TestConfig {
        self.set("schedule.cron", cron)
            .set("schedule.run_at_start", run_at_start)
    }

    /// The ops server on any free local port.
    pub fn listen_on_any_port(self) -> TestConfig {
        self.set("server.listen", "127.0.0.1:0")
    }

    pub fn toml(&self) -> String {
        toml::to_string(&self.table).expect("a TOML table renders")
    }

    /// Writes the configuration to `file`; returns the path.
    pub fn write(&self, file: &Path) -> PathBuf {
        std::fs::write(file, self.toml()).unwrap();
        file.to_path_buf()
    }

    /// The settings the daemon would load from it (for in-process tests).
    pub fn settings(&self) -> channel_sync::config::Settings {
        channel_sync::config::Settings::from_toml(&self.toml())
            .unwrap_or_else(|e| panic!("{e}\n{}", self.toml()))
    }
}

fn path(p: &Path) -> String {
    p.to_str().expect("a UTF-8 test path").to_string()
}
