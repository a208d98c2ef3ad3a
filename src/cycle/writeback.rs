//! Writing scorecards back: what changed since the sink last confirmed.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;

use super::{CycleError, Options, Summary, dry_run};
use crate::connectors::DecisionSink;
use crate::connectors::writeback::{ScorecardSink, Target, decision_targets, diff, review_values};
use crate::crash::crash_point;
use crate::engine;
use crate::store::State;

/// What is written back: the scorecards of `evaluation` and, for the
/// `review_fields` mapped in `writeback.fields`, its review's values.
pub(super) struct Written<'a> {
    pub data: &'a crate::model::Dataset,
    pub evaluation: &'a engine::Evaluation,
    pub review_fields: &'a [&'static str],
}

/// What the decisions written back come from: the cycle's data, the
/// standing verdicts and this cycle's findings.
pub(super) struct Verdicts<'a> {
    pub data: &'a crate::model::Dataset,
    pub holds: &'a crate::decisions::Holds,
    pub findings: &'a [engine::Finding],
}

pub(super) async fn write_back(
    sink: &impl ScorecardSink,
    written: Written<'_>,
    state: Option<&State>,
    opts: &Options,
    out: &mut (dyn Write + Send),
    summary: &mut Summary,
) -> Result<(), CycleError> {
    let Written {
        data,
        evaluation,
        review_fields,
    } = written;
    let partners: BTreeMap<&str, &crate::model::Partner> =
        data.partners.iter().map(|p| (p.id.as_str(), p)).collect();
    // The review's values, of the scorecard's quarter, when configured.
    let review: BTreeMap<&str, Vec<(&'static str, String)>> = evaluation
        .review
        .iter()
        .flat_map(|r| &r.partners)
        .map(|p| {
            let mut values = review_values(p, &evaluation.period.label);
            values.retain(|(f, _)| review_fields.contains(f));
            (p.partner_id.as_str(), values)
        })
        .collect();
    let targets: Vec<Target> = evaluation
        .scorecards
        .iter()
        .filter_map(|card| {
            let partner = partners.get(card.partner_id.as_str())?;
            let extra = review
                .get(card.partner_id.as_str())
                .map_or(&[][..], Vec::as_slice);
            let (record_id, fields) = sink.target(card, partner, &evaluation.period, extra)?;
            Some(Target {
                partner_id: card.partner_id.clone(),
                record_id,
                fields,
            })
        })
        .collect();
    let lost = sink.lost_earlier_writes();
    let written = match state {
        Some(s) if !lost => s.written(sink.name())?,
        _ => Default::default(),
    };
    let updates = diff(&targets, &written);
    if opts.dry_run {
        summary.writes_would = updates.len();
        return dry_run::print_writes(out, sink.name(), &updates);
    }
    if updates.is_empty() {
        return Ok(());
    }
    let Some(state) = state else {
        return Ok(());
    };
    if lost {
        state.forget_written(sink.name())?;
    }
    let outcomes = sink.apply(&updates).await;
    crash_point("mid-writeback");
    settle(
        sink.name(),
        "write-back",
        &updates,
        outcomes,
        state,
        opts,
        summary,
    )
}

/// Remembers what the sink confirmed (so it is never written again while
/// unchanged); what failed stays unremembered and is retried next cycle.
fn settle(
    sink: &str,
    what: &str,
    updates: &[crate::connectors::writeback::RecordUpdate],
    outcomes: Vec<crate::connectors::writeback::RecordOutcome>,
    state: &State,
    opts: &Options,
    summary: &mut Summary,
) -> Result<(), CycleError> {
    let mut confirmed = Vec::new();
    for (u, outcome) in updates.iter().zip(outcomes) {
        match outcome {
            None => {
                summary.writes_done += 1;
                confirmed.extend(
                    u.fields
                        .iter()
                        .map(|(f, v)| (u.record_id.clone(), f.clone(), v.clone())),
                );
            }
            Some(e) => {
                tracing::warn!(sink = sink, record = %u.record_id, error = %e, "Write-back failed; retrying next cycle.");
                summary.writes_failed += 1;
                summary.errors.push(format!("{what} {}: {e}", u.record_id));
            }
        }
    }
    state.record_written(sink, &confirmed, opts.now)?;
    Ok(())
}

/// Writes decisions onto the CRM's opportunities (`writeback.decision_field`):
/// each verdict's value on the opportunities it was taken on, diffed against
/// what this sink last wrote (its own name in `written`, apart from the
/// scorecards'), batched by the sink, failures retried next cycle. Counted
/// with the scorecard writes.
pub(super) async fn write_decisions(
    sink: &DecisionSink,
    verdicts: Verdicts<'_>,
    state: Option<&State>,
    opts: &Options,
    out: &mut (dyn Write + Send),
    summary: &mut Summary,
) -> Result<(), CycleError> {
    let Verdicts {
        data,
        holds,
        findings,
    } = verdicts;
    let Some(state) = state else {
        return Ok(());
    };
    let written = state.written(sink.name())?;
    let current: HashMap<&str, &[String]> = findings
        .iter()
        .map(|f| (f.key.as_str(), f.opportunity_ids.as_slice()))
        .collect();
    // Only opportunities the CRM still shows: one deleted since (or out of
    // reach) would fail every cycle.
    let exists: std::collections::HashSet<&str> =
        data.opportunities.iter().map(|o| o.id.as_str()).collect();
    let mut targets = decision_targets(&holds.standings, &current, sink.field(), &written);
    targets.retain(|t| exists.contains(t.record_id.as_str()));
    let updates = diff(&targets, &written);
    if opts.dry_run {
        summary.writes_would += updates.len();
        if updates.is_empty() {
            return Ok(());
        }
        writeln!(
            out,
            "Would write {} decision(s) to {}:",
            updates.len(),
            sink.name()
        )
        .map_err(anyhow::Error::from)?;
        for u in &updates {
            let (field, value) = u.fields.first().cloned().unwrap_or_default();
            writeln!(out, "--- write {} {field}={value}", u.record_id)
                .map_err(anyhow::Error::from)?;
        }
        return Ok(());
    }
    if updates.is_empty() {
        return Ok(());
    }
    let outcomes = sink.apply(&updates).await;
    settle(
        sink.name(),
        "decision write-back",
        &updates,
        outcomes,
        state,
        opts,
        summary,
    )
}
