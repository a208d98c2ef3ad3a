//! The command line (SPEC §1): parsing, wiring and exit codes.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand, ValueEnum};

use crate::config::Settings;
use crate::connectors::files;
use crate::report::Report;
use crate::{engine, values};

/// Exit codes of SPEC §1.
pub mod exit {
    pub const OK: u8 = 0;
    /// Finished, but some records or calls failed.
    pub const PARTIAL: u8 = 1;
    /// The input cannot be used at all.
    pub const DATA: u8 = 65;
    /// The configuration is invalid.
    pub const CONFIG: u8 = 78;
}

#[derive(Debug, Parser)]
#[command(
    name = "channel-sync",
    version,
    about = "Channel-program conflicts, protection windows and partner scorecards"
)]
pub struct Cli {
    /// Log format: JSON lines (the default for `run`, on stdout) or text (the
    /// default elsewhere, on stderr). The level comes from RUST_LOG.
    #[arg(long, value_enum, global = true)]
    pub log_format: Option<LogFormat>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Json,
    Text,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Json,
    Text,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Read a folder of CSV/JSONL exports, run the rules once, print the report.
    Detect {
        /// The folder holding accounts, opportunities, partners, partner_reps,
        /// registrations (and optionally users) as .csv or .jsonl.
        #[arg(long)]
        input: PathBuf,
        /// Evaluate as of this time instead of now (RFC 3339, Salesforce form, or a date).
        #[arg(long, value_parser = parse_now)]
        now: Option<DateTime<Utc>>,
        /// The TOML configuration (default: config/channel-sync.toml when present).
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t = Format::Json)]
        format: Format,
    },
    /// One full cycle: pull, detect, alert, write back, record state.
    Once {
        /// The TOML configuration (default: config/channel-sync.toml when present).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Print the alerts and write-backs the cycle would make; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Run as of this time instead of now.
        #[arg(long, value_parser = parse_now)]
        now: Option<DateTime<Utc>>,
        /// Read every CRM/PRM record again, not only what changed.
        #[arg(long)]
        full: bool,
        /// How a dry run shows the alerts: as a person would read them (text)
        /// or as the raw Block Kit JSON that would be posted.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// The state store: `state migrate --from sqlite:PATH --to postgres://…`.
    State {
        #[command(subcommand)]
        command: StateCommand,
    },
    /// The daemon: cycles on schedule.cron, plus /healthz, /readyz and /metrics.
    Run {
        /// The TOML configuration (default: config/channel-sync.toml when present).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Start the daemon's clock at this time instead of now; it then
        /// advances in real time (demos, and tests that must not depend on
        /// today's date).
        #[arg(long, value_parser = parse_now)]
        now: Option<DateTime<Utc>>,
    },
    /// Calls the running daemon's /healthz; exits 0 when it answers 200.
    Healthcheck {
        /// The TOML configuration whose server.listen locates the daemon
        /// (default: config/channel-sync.toml when present).
        #[arg(long)]
        config: Option<PathBuf>,
        /// The daemon's base URL (`http://host:9090`) or its health URL
        /// (`http://host:9090/healthz`); default: from server.listen.
        #[arg(long)]
        url: Option<String>,
    },
    /// List the findings the state remembers (any source), largest value at
    /// risk first, then oldest: kind, key, severity, account, partners,
    /// status, age, amount at stake. `findings show KEY` tells one's story.
    Findings {
        #[command(subcommand)]
        action: Option<FindingsAction>,
        /// The TOML configuration (default: config/channel-sync.toml when present).
        #[arg(long, global = true)]
        config: Option<PathBuf>,
        #[arg(long, global = true, value_enum, default_value_t = crate::findings_cmd::ListFormat::Text)]
        format: crate::findings_cmd::ListFormat,
        /// Only these statuses (repeatable; default: open and snoozed).
        #[arg(long, global = true, value_enum)]
        status: Vec<crate::decisions::Status>,
        /// Only these kinds (repeatable), e.g. direct_vs_partner.
        #[arg(long, global = true)]
        kind: Vec<String>,
        /// Only findings naming this partner (an id, or part of a name).
        #[arg(long, global = true)]
        partner: Option<String>,
        /// Only these severities (repeatable): critical, warning, info.
        #[arg(long, global = true)]
        severity: Vec<String>,
        /// Only findings first seen at least this many days ago.
        #[arg(long, global = true)]
        min_age: Option<i64>,
        /// Only findings with this verdict (partner_keeps, direct_keeps,
        /// split, not_a_conflict), or `none`.
        #[arg(long, global = true)]
        decision: Option<String>,
        /// Only findings assigned to this person.
        #[arg(long, global = true)]
        assignee: Option<String>,
        /// Ages and snoozes as of this time instead of now.
        #[arg(long, global = true, value_parser = parse_now)]
        now: Option<DateTime<Utc>>,
    },
    /// Record a decision on a finding: a verdict (partner_keeps, direct_keeps,
    /// split, not_a_conflict), a snooze until a date, or an assignment.
    Decide {
        /// The finding's key (see `channel-sync findings`).
        key: String,
        /// partner_keeps, direct_keeps, split, not_a_conflict, snooze or assign.
        #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(crate::decisions::OUTCOMES))]
        outcome: String,
        /// Who decided (an email, a Slack user, a name).
        #[arg(long)]
        by: String,
        /// Why (kept in the audit trail).
        #[arg(long)]
        note: Option<String>,
        /// For a snooze: the last day without reminders (YYYY-MM-DD).
        #[arg(long, value_parser = parse_day)]
        until: Option<chrono::NaiveDate>,
        /// For an assignment: the person (an email or a Slack user id).
        #[arg(long)]
        to: Option<String>,
        /// Record as of this time instead of now.
        #[arg(long, value_parser = parse_now)]
        now: Option<DateTime<Utc>>,
        /// The TOML configuration (default: config/channel-sync.toml when present).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Validate the configuration, report every problem at once, and print it
    /// with secrets redacted.
    CheckConfig {
        /// The TOML configuration to check (default: config/channel-sync.toml when present).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// The channel review (SPEC §6): the four metrics, ROI, MDF and dormant
    /// partners over the last N full quarters plus the quarter to date.
    Review {
        /// A files-source folder (plus optional program_costs and mdf);
        /// without it, the configured files source is read.
        #[arg(long)]
        input: Option<PathBuf>,
        /// The TOML configuration (default: config/channel-sync.toml when present).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Review as of this time instead of now.
        #[arg(long, value_parser = parse_now)]
        now: Option<DateTime<Utc>>,
        /// Full fiscal quarters before the current one.
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=40))]
        quarters: u16,
        #[arg(long, value_enum, default_value_t = crate::review::Format::Json)]
        format: crate::review::Format,
    },
}

/// `findings list` (the default) or `findings show KEY`.
#[derive(Debug, Subcommand)]
pub enum FindingsAction {
    /// List the findings (the default).
    List,
    /// One finding: evidence, timeline (first seen, alerts, changes,
    /// decisions) and record links.
    Show {
        /// The finding's key.
        key: String,
    },
}

fn parse_day(s: &str) -> Result<chrono::NaiveDate, String> {
    values::parse_date(s).ok_or_else(|| format!("not a date: '{s}' (use YYYY-MM-DD)"))
}

fn parse_now(s: &str) -> Result<DateTime<Utc>, String> {
    values::parse_timestamp(s).ok_or_else(|| {
        format!("not a timestamp: '{s}' (use RFC 3339, e.g. 2026-11-26T00:00:00Z, or a date)")
    })
}

/// Runs the command line; the return value is the process exit code.
pub fn main() -> ExitCode {
    small_pages();
    let cli = Cli::parse();
    init_logging(&cli);
    ExitCode::from(run(cli))
}

/// Turns transparent huge pages off for this process (Linux). mimalloc asks
/// for them (`MADV_HUGEPAGE`) on the memory it maps, and a fault in such a
/// region zeroes, and may first compact, a whole 2 MiB page. For a program
/// that fills most of its memory once and soon exits, as `detect` and `once`
/// do, that made system time 0.8-1.4 s of a 2-3 s `detect` at 1M
/// opportunities, against 0.35-0.4 s without (BENCHMARKS.md, issue 14); the
/// user time grows by about 0.1 s. Nothing else changes: the kernel serves
/// the same memory in 4 KiB pages. A failure (an old kernel) is ignored.
fn small_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: prctl with PR_SET_THP_DISABLE takes plain integers and only
    // sets a flag on this process.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

/// `run` logs JSON lines to stdout at `info`; the other commands keep stdout
/// for their output and log text to stderr at `warn`. RUST_LOG overrides.
fn init_logging(cli: &Cli) {
    let daemon = matches!(cli.command, Command::Run { .. });
    let format = cli.log_format.unwrap_or(if daemon {
        LogFormat::Json
    } else {
        LogFormat::Text
    });
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(if daemon {
            "info,tokio_cron_scheduler=warn"
        } else {
            "warn"
        })
    });
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let _ = match (format, daemon) {
        (LogFormat::Json, true) => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(std::io::stdout)
            .try_init(),
        (LogFormat::Json, false) => builder
            .json()
            .flatten_event(true)
            .with_writer(std::io::stderr)
            .try_init(),
        (LogFormat::Text, true) => builder.with_writer(std::io::stdout).try_init(),
        (LogFormat::Text, false) => builder.with_writer(std::io::stderr).try_init(),
    };
}

pub fn run(cli: Cli) -> u8 {
    match cli.command {
        Command::Detect {
            input,
            now,
            config,
            format,
        } => detect(&input, now, config.as_deref(), format),
        Command::Once {
            config,
            dry_run,
            now,
            full,
            format,
        } => once(config.as_deref(), dry_run, now, full, format),
        Command::CheckConfig { config } => check_config(config.as_deref()),
        Command::Findings {
            action,
            config,
            format,
            status,
            kind,
            partner,
            severity,
            min_age,
            decision,
            assignee,
            now,
        } => {
            let settings = match load_settings(config.as_deref()) {
                Ok(s) => s,
                Err(code) => return code,
            };
            let currency = &settings.scorecard.currency;
            let now = now.unwrap_or_else(Utc::now);
            let mut stdout = std::io::stdout();
            let done = match action {
                Some(FindingsAction::Show { key }) => crate::findings_cmd::run_show(
                    &settings.state,
                    &key,
                    currency,
                    format,
                    now,
                    &mut stdout,
                ),
                None | Some(FindingsAction::List) => {
                    let filter = crate::findings_cmd::Filter {
                        kinds: kind,
                        partner,
                        severities: severity,
                        min_age_days: min_age,
                        decision,
                        statuses: status,
                        assignee,
                    };
                    crate::findings_cmd::run(
                        &settings.state,
                        currency,
                        format,
                        &filter,
                        now,
                        &mut stdout,
                    )
                }
            };
            match done {
                Ok(()) => exit::OK,
                Err(e) => {
                    eprintln!("channel-sync: {e:#}");
                    exit::PARTIAL
                }
            }
        }
        Command::Decide {
            key,
            outcome,
            by,
            note,
            until,
            to,
            now,
            config,
        } => {
            let args = crate::decide_cmd::Args {
                key,
                outcome,
                by,
                note,
                until,
                to,
            };
            decide(config.as_deref(), &args, now)
        }
        Command::Run { config, now } => run_daemon(config.as_deref(), now),
        Command::State {
            command: StateCommand::Migrate { from, to },
        } => state_migrate(&from, &to),
        Command::Healthcheck { config, url } => healthcheck(config.as_deref(), url),
        Command::Review {
            input,
            config,
            now,
            quarters,
            format,
        } => review(input.as_deref(), config.as_deref(), now, quarters, format),
    }
}

/// `review`: the logic lives in `crate::review`; this maps its outcome to
/// output and exit codes.
fn review(
    input: Option<&std::path::Path>,
    config: Option<&std::path::Path>,
    now: Option<DateTime<Utc>>,
    quarters: u16,
    format: crate::review::Format,
) -> u8 {
    let settings = match load_settings(config) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let now = now.unwrap_or_else(Utc::now);
    let api = input.is_none()
        && settings
            .crm
            .kind
            .is_some_and(|k| k != crate::config::CrmKind::Files);
    let made = if api {
        // An API source: read as a dry run does (nothing stored).
        match runtime() {
            Ok(rt) => rt.block_on(crate::review::make_from_sources(
                &settings,
                now,
                usize::from(quarters),
            )),
            Err(code) => return code,
        }
    } else {
        crate::review::make(&settings, input, now, usize::from(quarters))
    };
    let outcome = match made {
        Ok(o) => o,
        Err(e) => {
            eprintln!("channel-sync: {e:#}");
            return match e {
                crate::review::ReviewError::Input(_) => exit::DATA,
                crate::review::ReviewError::Config { .. } => exit::CONFIG,
                crate::review::ReviewError::State(_) | crate::review::ReviewError::Upstream(_) => {
                    exit::PARTIAL
                }
            };
        }
    };
    let text = crate::review::render(&outcome, format);
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        eprintln!("channel-sync: writing the review: {e}");
        return exit::PARTIAL;
    }
    let rejected = outcome.rejected.len();
    if rejected > 0 {
        for r in outcome.rejected.iter().take(20) {
            eprintln!("channel-sync: {}: line {}: {}", r.file, r.line, r.reason);
        }
        eprintln!("channel-sync: {rejected} row(s) rejected; see \"rejected\" in --format json");
        exit::PARTIAL
    } else {
        exit::OK
    }
}

/// Loads the configuration and says which one: a line on stderr (a JSON log
/// line for the daemon, whose stdout is its log).
fn load_settings(config: Option<&std::path::Path>) -> Result<Settings, u8> {
    let source = crate::config::describe_source(config, std::env::vars());
    if tracing::enabled!(tracing::Level::INFO) {
        tracing::info!(source = %source, "Using configuration.");
    } else {
        eprintln!("channel-sync: using configuration: {source}");
    }
    Settings::load(config).map_err(|e| {
        eprintln!("channel-sync: {e}");
        exit::CONFIG
    })
}

fn decide(
    config: Option<&std::path::Path>,
    args: &crate::decide_cmd::Args,
    now: Option<DateTime<Utc>>,
) -> u8 {
    let settings = match load_settings(config) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let now = now.unwrap_or_else(Utc::now);
    match crate::decide_cmd::run(&settings.state, args, now, &mut std::io::stdout()) {
        Ok(()) => exit::OK,
        Err(e) => {
            eprintln!("channel-sync: {e}");
            if e.is_input() {
                exit::DATA
            } else {
                exit::PARTIAL
            }
        }
    }
}

fn once(
    config: Option<&std::path::Path>,
    dry_run: bool,
    now: Option<DateTime<Utc>>,
    full: bool,
    format: Format,
) -> u8 {
    let settings = match load_settings(config) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let runtime = match runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    let options = crate::cycle::Options {
        now: now.unwrap_or_else(Utc::now),
        dry_run,
        full,
        preview: match format {
            Format::Json => crate::cycle::Preview::Json,
            Format::Text => crate::cycle::Preview::Text,
        },
        progress: true,
    };
    let mut stdout = std::io::stdout();
    let result = runtime.block_on(once_until_signal(&settings, &options, &mut stdout));
    match result {
        Ok(summary) => {
            print!("{}", summary.to_text());
            summary.exit_code()
        }
        Err(e) => {
            eprintln!("channel-sync: {e:#}");
            e.exit_code()
        }
    }
}

/// One cycle with `run`'s graceful stop: on SIGTERM or SIGINT (a CronJob's
/// pod is stopped with SIGTERM) the cycle sends no further message, writes
/// back and records what it did, and `once` exits as usual (0 when nothing
/// failed); what was not sent stays in the outbox for the next run. A
/// second signal ends the process at once (the state stays consistent).
async fn once_until_signal(
    settings: &Settings,
    options: &crate::cycle::Options,
    out: &mut (dyn Write + Send),
) -> Result<crate::cycle::Summary, crate::cycle::CycleError> {
    let runner = crate::cycle::Runner::new(settings.clone(), None)?.exiting_after_one_cycle();
    let stopping = runner.stopping.clone();
    let watcher = tokio::spawn(async move {
        crate::daemon::signal().await;
        stopping.store(true, std::sync::atomic::Ordering::SeqCst);
        tracing::warn!("Signal received: stopping at the next message.");
        eprintln!(
            "channel-sync: signal received: stopping at the next message; what is not sent stays in the outbox for the next run"
        );
        crate::daemon::signal().await;
        eprintln!("channel-sync: second signal: stopping at once (the state stays consistent)");
        std::process::exit(i32::from(exit::PARTIAL));
    });
    let result = runner.cycle(options, out).await;
    watcher.abort();
    result
}

fn runtime() -> Result<tokio::runtime::Runtime, u8> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("channel-sync: starting the runtime: {e}");
            exit::PARTIAL
        })
}

fn run_daemon(config: Option<&std::path::Path>, now: Option<DateTime<Utc>>) -> u8 {
    let settings = match load_settings(config) {
        Ok(s) => s,
        Err(code) => return code,
    };
    if let Err(e) = crate::cycle::check(&settings) {
        tracing::error!(key = %e.key, "{e}");
        eprintln!("channel-sync: {e}");
        return exit::CONFIG;
    }
    let runtime = match runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    let clock = now
        .map(crate::daemon::Clock::starting_at)
        .unwrap_or_default();
    match runtime.block_on(crate::daemon::run(settings, clock)) {
        Ok(code) => code,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "The daemon could not start.");
            eprintln!("channel-sync: {e:#}");
            exit::PARTIAL
        }
    }
}

fn healthcheck(config: Option<&std::path::Path>, url: Option<String>) -> u8 {
    let url = match url {
        Some(u) => health_url(&u),
        None => {
            let settings = match load_settings(config) {
                Ok(s) => s,
                Err(code) => return code,
            };
            let Ok(addr) = settings.server.listen.parse::<std::net::SocketAddr>() else {
                return exit::CONFIG;
            };
            // A wildcard listen address is reached on loopback.
            let host = match addr.ip() {
                ip if ip.is_unspecified() && ip.is_ipv4() => "127.0.0.1".to_string(),
                ip if ip.is_unspecified() => "[::1]".to_string(),
                std::net::IpAddr::V6(ip) => format!("[{ip}]"),
                ip => ip.to_string(),
            };
            format!("http://{host}:{}/healthz", addr.port())
        }
    };
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return exit::PARTIAL;
    };
    let result = runtime.block_on(async {
        reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(3))
            .build()?
            .get(&url)
            .send()
            .await
    });
    match result {
        Ok(r) if r.status().is_success() => exit::OK,
        Ok(r) => {
            eprintln!("channel-sync: {url}: {}", r.status());
            exit::PARTIAL
        }
        Err(e) => {
            eprintln!("channel-sync: {url}: {e}");
            exit::PARTIAL
        }
    }
}

/// `--url` may name the daemon (`http://host:9090`) or its health endpoint.
fn health_url(url: &str) -> String {
    let trimmed = url.trim_end_matches('/');
    let has_path = trimmed
        .split_once("://")
        .map_or(trimmed, |(_, rest)| rest)
        .contains('/');
    if has_path {
        url.to_string()
    } else {
        format!("{trimmed}/healthz")
    }
}

fn check_config(config: Option<&std::path::Path>) -> u8 {
    let source = crate::config::describe_source(config, std::env::vars());
    eprintln!("channel-sync: using configuration: {source}");
    // Unknown keys and wrong types stop here (one at a time: the parser's);
    // everything else is gathered and reported together.
    let settings = match Settings::load_unchecked(config, std::env::vars()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("channel-sync: configuration: {e}");
            return exit::CONFIG;
        }
    };
    let mut report = crate::config::check::all(&settings);
    if settings.crm.kind.is_some()
        && let Err(e) = crate::cycle::check(&settings)
    {
        report.problems.push(e);
    }
    for w in &report.warnings {
        eprintln!("channel-sync: warning: {w}");
    }
    for p in &report.problems {
        eprintln!("channel-sync: configuration: {p}");
    }
    if !report.problems.is_empty() {
        eprintln!(
            "channel-sync: {} problem(s) found; nothing was contacted",
            report.problems.len()
        );
        return exit::CONFIG;
    }
    // An API CRM: sign in and check every configured field exists.
    if settings
        .crm
        .kind
        .is_some_and(|k| k != crate::config::CrmKind::Files)
    {
        let checked = runtime().map(|rt| rt.block_on(crate::connectors::check(&settings)));
        match checked {
            Err(code) => return code,
            Ok(Ok(Some(answer))) => eprintln!("channel-sync: {answer}"),
            Ok(Ok(None)) => {}
            Ok(Err(e)) => {
                return match e.source {
                    crate::connectors::Failure::Config(e) => {
                        eprintln!("channel-sync: {e}");
                        exit::CONFIG
                    }
                    source => {
                        eprintln!("channel-sync: {}: {source}", e.vendor);
                        exit::PARTIAL
                    }
                };
            }
        }
    }
    match serde_json::to_string_pretty(&settings) {
        Ok(text) => {
            println!("{text}");
            eprintln!("channel-sync: OK: {}", report.ready_for);
            exit::OK
        }
        Err(e) => {
            eprintln!("channel-sync: {e}");
            exit::PARTIAL
        }
    }
}

fn detect(
    input: &std::path::Path,
    now: Option<DateTime<Utc>>,
    config: Option<&std::path::Path>,
    format: Format,
) -> u8 {
    let settings = match load_settings(config) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let now = now.unwrap_or_else(Utc::now);
    let started = Instant::now();
    let loaded = match files::load(input, &settings.scorecard) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("channel-sync: {e}");
            return exit::DATA;
        }
    };
    let read = started.elapsed();
    let evaluation = engine::evaluate(&loaded.dataset, &settings, now);
    let rules = started.elapsed() - read;
    let rejected = loaded.rejected.len();
    for m in &evaluation.missing_rates {
        eprintln!("channel-sync: {}", m.message());
    }
    // The process ends right after the report: freeing millions of records
    // one by one would only delay the exit. The OS takes the memory back.
    std::mem::forget(loaded.dataset);
    let mut report =
        Report::new(now, evaluation, loaded.rejected).with_currency(&settings.scorecard.currency);
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
    let written = match format {
        Format::Json => report.write_json(&mut out).and_then(|()| writeln!(out)),
        Format::Text => out.write_all(report.to_text().as_bytes()),
    }
    .and_then(|()| out.flush());
    if let Err(e) = written {
        eprintln!("channel-sync: writing the report: {e}");
        return exit::PARTIAL;
    }
    tracing::info!(
        read_ms = read.as_millis() as u64,
        rules_ms = rules.as_millis() as u64,
        output_ms = (started.elapsed() - read - rules).as_millis() as u64,
        findings = report.findings.len(),
        rejected,
        "Detect finished."
    );
    // As for the dataset above: the process is about to exit.
    std::mem::forget(report);
    if rejected > 0 {
        eprintln!("channel-sync: {rejected} row(s) rejected; see \"rejected\" in the report");
        exit::PARTIAL
    } else {
        exit::OK
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    #[test]
    fn huge_pages_are_turned_off_for_the_process() {
        small_pages();
        // SAFETY: a read of this process's flag.
        let disabled = unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0) };
        assert_eq!(disabled, 1);
    }

    #[test]
    fn the_health_url_may_be_the_base_url() {
        assert_eq!(health_url("http://host:9090"), "http://host:9090/healthz");
        assert_eq!(health_url("http://host:9090/"), "http://host:9090/healthz");
        assert_eq!(
            health_url("http://host:9090/healthz"),
            "http://host:9090/healthz"
        );
        assert_eq!(
            health_url("https://ops.example/cs/healthz"),
            "https://ops.example/cs/healthz"
        );
    }

    #[test]
    fn every_config_flag_says_what_it_is() {
        use clap::CommandFactory;
        let cli = Cli::command();
        for sub in cli.get_subcommands() {
            for arg in sub.get_arguments() {
                if arg.get_id() == "config" {
                    assert!(
                        arg.get_help().is_some(),
                        "{} --config has no help",
                        sub.get_name()
                    );
                }
            }
        }
    }
}

#[derive(Debug, clap::Subcommand)]
pub enum StateCommand {
    /// Copy a SQLite state file into an empty PostgreSQL database (password
    /// from CHANNEL_SYNC__STATE__PASSWORD, extra CAs for TLS from
    /// CHANNEL_SYNC__STATE__CA_FILE) and check the row counts.
    Migrate {
        /// `sqlite:PATH`: the state file.
        #[arg(long)]
        from: String,
        /// `postgres://user@host:port/db` (no password in it).
        #[arg(long)]
        to: String,
    },
}

/// `state migrate`: 0 when every row arrived, 65 for bad arguments, 1 when
/// the copy failed (nothing kept).
fn state_migrate(from: &str, to: &str) -> u8 {
    let Some(path) = from.strip_prefix("sqlite:") else {
        eprintln!("channel-sync: --from must be sqlite:PATH");
        return exit::DATA;
    };
    let password = std::env::var("CHANNEL_SYNC__STATE__PASSWORD").ok();
    let ca_file = std::env::var_os("CHANNEL_SYNC__STATE__CA_FILE").map(std::path::PathBuf::from);
    let target = match crate::store::pg::Target::new(to, password.as_deref(), ca_file.as_deref()) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("channel-sync: --to: {e}");
            return exit::DATA;
        }
    };
    match crate::store::copy::sqlite_to_postgres(std::path::Path::new(path), &target) {
        Ok(counts) => {
            for (table, n) in counts {
                println!("{table}: {n} rows copied");
            }
            println!("Copied {path} into {} (counts checked).", target.label());
            exit::OK
        }
        Err(e) => {
            eprintln!("channel-sync: state migrate: {e}");
            exit::PARTIAL
        }
    }
}
