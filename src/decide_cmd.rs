//! `channel-sync decide KEY --outcome … --by … [--note …] [--until DATE]
//! [--to PERSON]`: records a decision on a finding in the state (see
//! [`crate::decisions`]).

use std::io::Write;
use std::path::Path;

use anyhow::Context as _;
use chrono::{DateTime, NaiveDate, Utc};

use crate::decisions::{self, Decision, DecisionError, Outcome};
use crate::state::State;

/// What `decide` was asked.
#[derive(Debug, Clone)]
pub struct Args {
    pub key: String,
    pub outcome: String,
    pub by: String,
    pub note: Option<String>,
    pub until: Option<NaiveDate>,
    pub to: Option<String>,
}

/// Why `decide` failed: the input (exit 65) or the state (exit 1).
#[derive(Debug, thiserror::Error)]
pub enum DecideError {
    #[error(transparent)]
    Decision(DecisionError),
    #[error("{0:#}")]
    Other(anyhow::Error),
}

impl DecideError {
    /// True when the decision itself was refused (bad key, outcome, date).
    pub fn is_input(&self) -> bool {
        matches!(self, DecideError::Decision(e) if !matches!(e, DecisionError::State(_)))
    }
}

/// Records the decision in the state at `state_path`, and says so on `out`.
pub fn run(
    state_path: &Path,
    args: &Args,
    now: DateTime<Utc>,
    out: &mut impl Write,
) -> Result<(), DecideError> {
    let outcome = Outcome::parse(&args.outcome, args.until, args.to.as_deref())
        .map_err(DecideError::Decision)?;
    if !state_path.is_file() {
        return Err(DecideError::Decision(DecisionError::UnknownFinding(
            args.key.clone(),
        )));
    }
    let state = State::open(state_path)
        .with_context(|| format!("opening the state {}", state_path.display()))
        .map_err(DecideError::Other)?;
    let decision = Decision {
        key: args.key.clone(),
        outcome,
        by: args.by.clone(),
        note: args.note.clone(),
    };
    let recorded = decisions::record(&state, &decision, now).map_err(DecideError::Decision)?;
    writeln!(
        out,
        "Recorded: {} {} by {} (decision #{}); the finding is now {}.",
        recorded.key,
        decision.outcome.label(),
        recorded.by,
        recorded.id,
        recorded.status.as_str()
    )
    .map_err(|e| DecideError::Other(e.into()))?;
    Ok(())
}
