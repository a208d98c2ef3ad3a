//! `channel-sync decide KEY --outcome … --by … [--note …] [--until DATE]
//! [--to PERSON]`: records a decision on a finding in the state (see
//! [`crate::decisions`]).

use std::io::Write;

use anyhow::Context as _;
use chrono::{DateTime, NaiveDate, Utc};

use crate::decisions::{self, Decision, DecisionError, Outcome};
use crate::store::State;

/// What `decide` was asked.
#[derive(Debug, Clone)]
pub(crate) struct Args {
    pub key: String,
    pub outcome: String,
    pub by: String,
    pub note: Option<String>,
    pub until: Option<NaiveDate>,
    pub to: Option<String>,
}

/// Why `decide` failed: the input (exit 65) or the state (exit 1).
#[derive(Debug, thiserror::Error)]
pub(crate) enum DecideError {
    #[error(transparent)]
    Decision(DecisionError),
    #[error("{0:#}")]
    Other(anyhow::Error),
}

impl DecideError {
    /// True when the decision itself was refused (bad key, outcome, date).
    pub(crate) fn is_input(&self) -> bool {
        matches!(self, DecideError::Decision(e) if !matches!(e, DecisionError::State(_)))
    }
}

/// Records the decision in the configured state, and says so on `out`.
pub(crate) fn run(
    state_settings: &crate::config::StateSettings,
    args: &Args,
    now: DateTime<Utc>,
    out: &mut impl Write,
) -> Result<(), DecideError> {
    let outcome = Outcome::parse(&args.outcome, args.until, args.to.as_deref())
        .map_err(DecideError::Decision)?;
    if state_settings.url.is_none() && !state_settings.path.is_file() {
        return Err(DecideError::Decision(DecisionError::UnknownFinding(
            args.key.clone(),
        )));
    }
    let state = State::connect(state_settings)
        .with_context(|| format!("opening the state {}", state_settings.path.display()))
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
