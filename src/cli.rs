//! The command line (SPEC §1): parsing, wiring and exit codes.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand, ValueEnum};

use crate::config::Settings;
use crate::report::Report;
use crate::sources::files;
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
    },
    /// The daemon: cycles on schedule.cron, plus /healthz, /readyz and /metrics.
    Run {
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Calls the running daemon's /healthz; exits 0 when it answers 200.
    Healthcheck {
        #[arg(long)]
        config: Option<PathBuf>,
        /// The health URL (default: from server.listen).
        #[arg(long)]
        url: Option<String>,
    },
    /// Validate the configuration and print it, secrets redacted.
    CheckConfig {
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Write a synthetic channel program (a files-source folder) for demos and benchmarks.
    Generate {
        /// The folder to write (created if missing).
        #[arg(long)]
        out: PathBuf,
        /// Number of opportunities; everything else scales with it
        /// (1,000,000 : 200,000 accounts : 100,000 registrations : 50,000 reps : 2,000 partners).
        #[arg(long, default_value_t = 10_000)]
        opportunities: usize,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// The clock the data is laid out around.
        #[arg(long, value_parser = parse_now)]
        now: Option<DateTime<Utc>>,
        /// How account names are built: `default` (invented brand words) or
        /// `skewed` (a small real vocabulary, Zipf-distributed, common first
        /// words, numbered branches: the hard case for fuzzy matching).
        #[arg(long, value_enum, default_value_t = Names::Default)]
        names: Names,
    },
}

/// `generate --names`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Names {
    Default,
    Skewed,
}

fn parse_now(s: &str) -> Result<DateTime<Utc>, String> {
    values::parse_timestamp(s).ok_or_else(|| {
        format!("not a timestamp: '{s}' (use RFC 3339, e.g. 2026-11-26T00:00:00Z, or a date)")
    })
}

/// Runs the command line; the return value is the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli);
    ExitCode::from(run(cli))
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
        } => once(config.as_deref(), dry_run, now, full),
        Command::CheckConfig { config } => check_config(config.as_deref()),
        Command::Run { config } => run_daemon(config.as_deref()),
        Command::Healthcheck { config, url } => healthcheck(config.as_deref(), url),
        Command::Generate {
            out,
            opportunities,
            seed,
            now,
            names,
        } => generate(&out, opportunities, seed, now, names),
    }
}

fn load_settings(config: Option<&std::path::Path>) -> Result<Settings, u8> {
    Settings::load(config).map_err(|e| {
        eprintln!("channel-sync: {e}");
        exit::CONFIG
    })
}

fn once(
    config: Option<&std::path::Path>,
    dry_run: bool,
    now: Option<DateTime<Utc>>,
    full: bool,
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
    };
    let mut stdout = std::io::stdout();
    let result = runtime.block_on(crate::cycle::once(&settings, &options, &mut stdout));
    match result {
        Ok(summary) => {
            print!("{}", summary.to_text());
            summary.exit_code()
        }
        Err(e) => {
            eprintln!("channel-sync: {e:#}");
            match e {
                crate::cycle::CycleError::Config(_) => exit::CONFIG,
                crate::cycle::CycleError::Input(_) => exit::DATA,
                _ => exit::PARTIAL,
            }
        }
    }
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

fn run_daemon(config: Option<&std::path::Path>) -> u8 {
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
    match runtime.block_on(crate::daemon::run(settings)) {
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
        Some(u) => u,
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

fn check_config(config: Option<&std::path::Path>) -> u8 {
    let settings = match load_settings(config) {
        Ok(s) => s,
        Err(code) => return code,
    };
    if settings.crm.kind.is_some() {
        if let Err(e) = crate::cycle::check(&settings) {
            eprintln!("channel-sync: {e}");
            return exit::CONFIG;
        }
        if settings.crm.kind == Some(crate::config::CrmKind::Hubspot) {
            let checked = runtime().map(|rt| rt.block_on(check_hubspot(&settings)));
            match checked {
                Err(code) => return code,
                Ok(Err(code)) => return code,
                Ok(Ok(())) => {}
            }
        }
        if settings.crm.kind == Some(crate::config::CrmKind::Salesforce) {
            // Every configured field must exist in the org: ask it.
            let checked = runtime().map(|rt| rt.block_on(check_salesforce(&settings)));
            match checked {
                Err(code) => return code,
                Ok(Err(code)) => return code,
                Ok(Ok(())) => {}
            }
        }
    } else {
        eprintln!("channel-sync: crm.kind is not set: this configuration serves detect only");
    }
    if settings.alerts.slack.webhook_url.is_none() && settings.alerts.slack.routes.is_empty() {
        eprintln!(
            "channel-sync: no Slack webhook (CHANNEL_SYNC__ALERTS__SLACK__WEBHOOK_URL): alerts are off"
        );
    }
    match serde_json::to_string_pretty(&settings) {
        Ok(text) => {
            println!("{text}");
            exit::OK
        }
        Err(e) => {
            eprintln!("channel-sync: {e}");
            exit::PARTIAL
        }
    }
}

/// Signs in to Salesforce and checks the configured fields with describe.
async fn check_salesforce(settings: &Settings) -> Result<(), u8> {
    use crate::sources::salesforce::{PullError, SalesforceSource};
    let source = SalesforceSource::new(settings, None).map_err(|e| {
        eprintln!("channel-sync: {e}");
        exit::CONFIG
    })?;
    match source.plan(settings).await {
        Ok(plan) => {
            let objects: Vec<String> = plan
                .objects()
                .iter()
                .map(|o| format!("{} ({} fields)", o.object, o.fields.len()))
                .collect();
            eprintln!(
                "channel-sync: Salesforce answered; every configured field exists. Reads: {}",
                objects.join(", ")
            );
            Ok(())
        }
        Err(PullError::Config(e)) => {
            eprintln!("channel-sync: {e}");
            Err(exit::CONFIG)
        }
        Err(e) => {
            eprintln!("channel-sync: Salesforce: {e}");
            Err(exit::PARTIAL)
        }
    }
}

/// Calls HubSpot and checks the configured properties exist (the write-back
/// ones may be missing when `crm.hubspot.create_properties` will create them).
async fn check_hubspot(settings: &Settings) -> Result<(), u8> {
    use crate::sources::hubspot::{HubSpotSource, PullError};
    let source = HubSpotSource::new(settings, None).map_err(|e| {
        eprintln!("channel-sync: {e}");
        exit::CONFIG
    })?;
    // Checking writes nothing: missing properties are reported, not created.
    source
        .dry_run
        .store(true, std::sync::atomic::Ordering::SeqCst);
    match source.plan(settings).await {
        Ok(_) => {
            eprintln!("channel-sync: HubSpot answered; every configured property exists.");
            Ok(())
        }
        Err(PullError::Config(e)) => {
            eprintln!("channel-sync: {e}");
            Err(exit::CONFIG)
        }
        Err(e) => {
            eprintln!("channel-sync: HubSpot: {e}");
            Err(exit::PARTIAL)
        }
    }
}

fn detect(
    input: &std::path::Path,
    now: Option<DateTime<Utc>>,
    config: Option<&std::path::Path>,
    format: Format,
) -> u8 {
    let settings = match Settings::load(config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("channel-sync: {e}");
            return exit::CONFIG;
        }
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
    // The process ends right after the report: freeing millions of records
    // one by one would only delay the exit. The OS takes the memory back.
    std::mem::forget(loaded.dataset);
    let report = Report::new(now, evaluation, loaded.rejected);
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
    let written = match format {
        Format::Json => serde_json::to_writer_pretty(&mut out, &report)
            .map_err(std::io::Error::from)
            .and_then(|()| writeln!(out)),
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
    if rejected > 0 {
        eprintln!("channel-sync: {rejected} row(s) rejected; see \"rejected\" in the report");
        exit::PARTIAL
    } else {
        exit::OK
    }
}

fn generate(
    out: &std::path::Path,
    opportunities: usize,
    seed: u64,
    now: Option<DateTime<Utc>>,
    names: Names,
) -> u8 {
    let mut params =
        crate::synth::SynthParams::scaled(seed, opportunities, now.unwrap_or_else(Utc::now));
    params.names = match names {
        Names::Default => crate::synth::NameProfile::Default,
        Names::Skewed => crate::synth::NameProfile::Skewed,
    };
    match crate::synth::write_program(out, &params) {
        Ok(summary) => {
            eprintln!(
                "wrote {}: {} accounts, {} opportunities, {} registrations, {} reps, {} partners, {} users ({} bytes)",
                out.display(),
                summary.accounts,
                summary.opportunities,
                summary.registrations,
                summary.reps,
                summary.partners,
                summary.users,
                summary.bytes
            );
            exit::OK
        }
        Err(e) => {
            eprintln!("channel-sync: generate: {e:#}");
            exit::PARTIAL
        }
    }
}
