//! `channel-sync-synth generate`: writes a synthetic channel program (a
//! files-source folder) for demos and benchmarks. A separate binary so the
//! daemon carries no random generator.

use std::path::PathBuf;
use std::process::ExitCode;

use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand, ValueEnum};

use channel_sync_synth::{NameProfile, SynthParams, write_program_with};

#[derive(Debug, Parser)]
#[command(
    name = "channel-sync-synth",
    version,
    about = "Synthetic channel programs for channel-sync"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write a synthetic channel program (a files-source folder) for demos and benchmarks.
    Generate {
        /// The folder to write (created if missing).
        #[arg(long)]
        out: PathBuf,
        /// Number of opportunities; everything else scales with it
        /// (1,000,000 : 200,000 accounts : 100,000 registrations : 50,000 reps : 2,000 partners).
        #[arg(long, default_value_t = 10_000)]
        opportunities: usize,
        /// The same seed (with the same --now) gives the same bytes.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// The date the data is laid out around. Fixed by default, so a seed
        /// always gives the same bytes; run detect with the same --now.
        #[arg(long, value_parser = parse_now, default_value = GENERATE_NOW)]
        now: DateTime<Utc>,
        /// How account names are built: `default` (invented brand words),
        /// `skewed` (a small real vocabulary, Zipf-distributed, common first
        /// words, numbered branches: the hard case for fuzzy matching) or
        /// `real` (the words of 1,834 real listed companies' names, as often
        /// as those names hold them).
        #[arg(long, value_enum, default_value_t = Names::Default)]
        names: Names,
        /// Also write the channel review's inputs (SPEC §6.1): program_costs.csv, mdf.csv and
        /// an opportunities.campaign_id column. Off by default, so the default program keeps
        /// its bytes.
        #[arg(long)]
        review_inputs: bool,
    },
}

/// `generate`'s default clock: fixed, so output never depends on the day.
const GENERATE_NOW: &str = "2026-11-26T00:00:00Z";

/// `generate --names`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Names {
    Default,
    Skewed,
    Real,
}

fn parse_now(s: &str) -> Result<DateTime<Utc>, String> {
    channel_sync::values::parse_timestamp(s).ok_or_else(|| {
        format!("not a timestamp: '{s}' (use RFC 3339, e.g. 2026-11-26T00:00:00Z, or a date)")
    })
}

fn main() -> ExitCode {
    let Command::Generate {
        out,
        opportunities,
        seed,
        now,
        names,
        review_inputs,
    } = Cli::parse().command;
    let mut params = SynthParams::scaled(seed, opportunities, now);
    params.names = match names {
        Names::Default => NameProfile::Default,
        Names::Skewed => NameProfile::Skewed,
        Names::Real => NameProfile::Real,
    };
    match write_program_with(&out, &params, review_inputs) {
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
            if review_inputs {
                eprintln!(
                    "  review inputs: {} program costs, {} mdf requests",
                    summary.program_costs, summary.mdf
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("channel-sync-synth: generate: {e:#}");
            // channel-sync's exit code for "finished, but something failed".
            ExitCode::from(1)
        }
    }
}
