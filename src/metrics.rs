//! Prometheus metrics for `run` (served on `/metrics`). Labels are always
//! low-cardinality: outcomes, kinds, upstream names, status classes.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// What a finished cycle reports to the metrics (metrics is a leaf: the
/// cycle's summary implements [`CycleReport`]).
#[derive(Debug, Clone, Default)]
pub struct CycleCounts {
    /// True when the cycle finished with nothing failed.
    pub ok: bool,
    /// (source, object, records) per pulled table.
    pub pulled: Vec<(String, String, usize)>,
    /// Open findings per kind, every kind (zeros too).
    pub open_by_kind: Vec<(String, usize)>,
    pub alerts_sent: usize,
    pub alerts_failed: usize,
    pub alerts_parked: usize,
    pub writes_done: usize,
    pub writes_failed: usize,
}

/// Something that can say what a cycle did, in the metrics' terms.
pub trait CycleReport {
    fn counts(&self) -> CycleCounts;
}

impl CycleReport for CycleCounts {
    fn counts(&self) -> CycleCounts {
        self.clone()
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Outcome {
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceObject {
    pub source: String,
    pub object: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Kind {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamLabel {
    pub upstream: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamStatus {
    pub upstream: String,
    pub status_class: String,
}

pub struct Metrics {
    registry: Registry,
    pub cycles: Family<Outcome, Counter>,
    pub cycles_skipped: Counter,
    pub cycle_duration: Histogram,
    pub records_pulled: Family<SourceObject, Gauge>,
    pub open_findings: Family<Kind, Gauge>,
    pub alerts: Family<Outcome, Counter>,
    pub writebacks: Family<Outcome, Counter>,
    pub upstream_requests: Family<UpstreamStatus, Counter>,
    pub rate_limiter_waits: Family<UpstreamLabel, Counter>,
    pub api_remaining: Family<UpstreamLabel, Gauge>,
    pub last_success: Gauge<f64, AtomicU64>,
    /// 1 while this replica leads (runs cycles), 0 on a standby.
    pub leader: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("channel_sync");
        let cycles = Family::<Outcome, Counter>::default();
        registry.register(
            "cycles",
            "Cycles run, by outcome (ok, partial: some calls or records failed, error)",
            cycles.clone(),
        );
        let cycles_skipped = Counter::default();
        registry.register(
            "cycles_skipped",
            "Scheduled cycles skipped because the previous one was still running",
            cycles_skipped.clone(),
        );
        let cycle_duration = Histogram::new(exponential_buckets(0.05, 2.0, 14));
        registry.register(
            "cycle_duration_seconds",
            "Wall time of a cycle",
            cycle_duration.clone(),
        );
        let records_pulled = Family::<SourceObject, Gauge>::default();
        registry.register(
            "records_pulled",
            "Records pulled in the last cycle, by source and object",
            records_pulled.clone(),
        );
        let open_findings = Family::<Kind, Gauge>::default();
        registry.register(
            "open_findings",
            "Open findings after the last cycle, by kind",
            open_findings.clone(),
        );
        let alerts = Family::<Outcome, Counter>::default();
        registry.register(
            "alerts",
            "Alert deliveries, by outcome (sent, failed, parked)",
            alerts.clone(),
        );
        let writebacks = Family::<Outcome, Counter>::default();
        registry.register(
            "writebacks",
            "Scorecard records written back, by outcome (done, failed)",
            writebacks.clone(),
        );
        let upstream_requests = Family::<UpstreamStatus, Counter>::default();
        registry.register(
            "upstream_requests",
            "HTTP requests to upstreams, by upstream and status class (2xx, 4xx, 5xx, error)",
            upstream_requests.clone(),
        );
        let rate_limiter_waits = Family::<UpstreamLabel, Counter>::default();
        registry.register(
            "rate_limiter_waits",
            "Requests that waited for an upstream's rate limiter",
            rate_limiter_waits.clone(),
        );
        let api_remaining = Family::<UpstreamLabel, Gauge>::default();
        registry.register(
            "api_remaining",
            "Remaining API allowance, where the upstream reports it",
            api_remaining.clone(),
        );
        let last_success = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "last_success_timestamp_seconds",
            "Unix time of the last cycle that completed",
            last_success.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 when this replica runs the cycles (holds the PostgreSQL leader lock; always with a SQLite state), 0 on a standby",
            leader.clone(),
        );
        Metrics {
            registry,
            cycles,
            cycles_skipped,
            cycle_duration,
            records_pulled,
            open_findings,
            alerts,
            writebacks,
            upstream_requests,
            rate_limiter_waits,
            api_remaining,
            last_success,
            leader,
        }
    }

    /// The Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Encoding into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    fn count(family: &Family<Outcome, Counter>, outcome: &str, n: usize) {
        family
            .get_or_create(&Outcome {
                outcome: outcome.into(),
            })
            .inc_by(n as u64);
    }

    /// Records a finished cycle.
    pub fn cycle_done(&self, summary: &impl CycleReport, seconds: f64, finished_unix: f64) {
        let c = summary.counts();
        let outcome = if c.ok { "ok" } else { "partial" };
        Self::count(&self.cycles, outcome, 1);
        self.cycle_duration.observe(seconds);
        self.last_success.set(finished_unix);
        for (source, object, n) in &c.pulled {
            self.records_pulled
                .get_or_create(&SourceObject {
                    source: source.clone(),
                    object: object.clone(),
                })
                .set(*n as i64);
        }
        for (kind, n) in &c.open_by_kind {
            self.open_findings
                .get_or_create(&Kind { kind: kind.clone() })
                .set(*n as i64);
        }
        Self::count(&self.alerts, "sent", c.alerts_sent);
        Self::count(&self.alerts, "failed", c.alerts_failed);
        Self::count(&self.alerts, "parked", c.alerts_parked);
        Self::count(&self.writebacks, "done", c.writes_done);
        Self::count(&self.writebacks, "failed", c.writes_failed);
    }

    /// Records a cycle that could not complete.
    pub fn cycle_failed(&self, seconds: f64) {
        Self::count(&self.cycles, "error", 1);
        self.cycle_duration.observe(seconds);
    }

    /// Records one HTTP request to an upstream.
    pub fn request(&self, upstream: &str, status: Option<u16>) {
        let class = match status {
            Some(s) => format!("{}xx", s / 100),
            None => "error".into(),
        };
        self.upstream_requests
            .get_or_create(&UpstreamStatus {
                upstream: upstream.into(),
                status_class: class,
            })
            .inc();
    }

    pub fn rate_limited(&self, upstream: &str) {
        self.rate_limiter_waits
            .get_or_create(&UpstreamLabel {
                upstream: upstream.into(),
            })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cycle_shows_up_in_the_text_format() {
        let m = Metrics::new();
        let s = CycleCounts {
            ok: true,
            alerts_sent: 3,
            writes_done: 2,
            pulled: vec![
                ("salesforce".into(), "accounts".into(), 42),
                ("partnerstack".into(), "partners".into(), 5),
            ],
            open_by_kind: vec![
                ("direct_vs_partner".into(), 3),
                ("partner_bypassed".into(), 0),
            ],
            ..CycleCounts::default()
        };
        m.cycle_done(&s, 0.2, 1_764_115_200.0);
        m.request("slack", Some(200));
        m.request("slack", Some(429));
        m.request("slack", None);
        let text = m.render();
        for line in [
            "channel_sync_cycles_total{outcome=\"ok\"} 1",
            "channel_sync_alerts_total{outcome=\"sent\"} 3",
            "channel_sync_writebacks_total{outcome=\"done\"} 2",
            "channel_sync_records_pulled{source=\"salesforce\",object=\"accounts\"} 42",
            "channel_sync_records_pulled{source=\"partnerstack\",object=\"partners\"} 5",
            "channel_sync_open_findings{kind=\"direct_vs_partner\"} 3",
            "channel_sync_open_findings{kind=\"partner_bypassed\"} 0",
            "channel_sync_upstream_requests_total{upstream=\"slack\",status_class=\"4xx\"} 1",
            "channel_sync_upstream_requests_total{upstream=\"slack\",status_class=\"error\"} 1",
            "channel_sync_last_success_timestamp_seconds 1764115200",
            "channel_sync_cycle_duration_seconds_count 1",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
    }

    #[test]
    fn a_cycle_with_failures_is_partial_and_one_that_could_not_finish_an_error() {
        let m = Metrics::new();
        let partial = CycleCounts::default();
        m.cycle_done(&partial, 0.1, 1_764_115_200.0);
        m.cycle_done(
            &CycleCounts {
                writes_failed: 2,
                ..CycleCounts::default()
            },
            0.1,
            1_764_115_260.0,
        );
        m.cycle_failed(0.3);
        m.rate_limited("salesforce");
        m.rate_limited("salesforce");
        m.api_remaining
            .get_or_create(&UpstreamLabel {
                upstream: "salesforce".into(),
            })
            .set(98_765);
        let text = m.render();
        for line in [
            "channel_sync_cycles_total{outcome=\"partial\"} 2",
            "channel_sync_cycles_total{outcome=\"error\"} 1",
            "channel_sync_rate_limiter_waits_total{upstream=\"salesforce\"} 2",
            "channel_sync_api_remaining{upstream=\"salesforce\"} 98765",
            "channel_sync_cycle_duration_seconds_count 3",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
        assert!(!text.contains("outcome=\"ok\""), "{text}");
    }
}
