//! Connectors: where the data comes from (mapped into the domain model)
//! and where scorecards are written back. One folder per vendor; this file
//! holds what the cycle sees: [`Connectors`] built from the settings (the
//! CRM and the PRM), one [`Error`] type naming the vendor, the scorecard
//! [`Sink`], the record links, and `check()` for `check-config`.
//!
//! Adding a PRM is one folder plus one arm in [`Prm`] and its settings.

pub mod files;
pub(crate) mod hubspot;
pub(crate) mod partnerstack;
pub(crate) mod salesforce;
pub(crate) mod writeback;

use std::path::PathBuf;
use std::sync::Arc;

use crate::config::{ConfigError, CrmKind, PrmKind, Settings};
use crate::store::{State, StateError};
use crate::sync::ObjectReport;
use files::{InputError, Loaded, PrmTables};
use hubspot::HubSpotSource;
use hubspot::write::HubSpotSink;
use partnerstack::PartnerStackClient;
use salesforce::SalesforceSource;
use salesforce::write::SalesforceSink;
use writeback::{FilesSink, RecordOutcome, RecordUpdate, ScorecardSink};

/// A connector failed: which vendor, and why.
#[derive(Debug, thiserror::Error)]
#[error("{source}")]
pub struct Error {
    /// The vendor's display name (`Salesforce`, `HubSpot`, `PartnerStack`, `files`).
    pub vendor: &'static str,
    #[source]
    pub source: Failure,
}

/// Why a connector failed.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// The configuration does not fit the account (a missing field, ...).
    #[error(transparent)]
    Config(ConfigError),
    /// The input cannot be used at all.
    #[error(transparent)]
    Input(InputError),
    #[error(transparent)]
    State(StateError),
    /// The vendor's API failed (nothing was decided this cycle).
    #[error(transparent)]
    Upstream(Box<dyn std::error::Error + Send + Sync>),
    #[error(transparent)]
    Other(anyhow::Error),
}

impl Error {
    fn new(vendor: &'static str, source: Failure) -> Error {
        Error { vendor, source }
    }
}

impl From<salesforce::PullError> for Error {
    fn from(e: salesforce::PullError) -> Self {
        use salesforce::PullError as E;
        Error::new(
            "Salesforce",
            match e {
                E::Config(e) => Failure::Config(e),
                E::Input(e) => Failure::Input(e),
                E::State(e) => Failure::State(e),
                E::Salesforce(e) => Failure::Upstream(Box::new(e)),
            },
        )
    }
}

impl From<hubspot::PullError> for Error {
    fn from(e: hubspot::PullError) -> Self {
        use hubspot::PullError as E;
        Error::new(
            "HubSpot",
            match e {
                E::Config(e) => Failure::Config(e),
                E::Input(e) => Failure::Input(e),
                E::State(e) => Failure::State(e),
                E::HubSpot(e) => Failure::Upstream(Box::new(e)),
            },
        )
    }
}

impl From<partnerstack::PullError> for Error {
    fn from(e: partnerstack::PullError) -> Self {
        use partnerstack::PullError as E;
        Error::new(
            "PartnerStack",
            match e {
                E::State(e) => Failure::State(e),
                E::PartnerStack(e) => Failure::Upstream(Box::new(e)),
            },
        )
    }
}

impl From<InputError> for Error {
    fn from(e: InputError) -> Self {
        Error::new("files", Failure::Input(e))
    }
}

/// The CRM side, built from `crm.*`.
pub enum Crm {
    Files,
    Salesforce(Box<SalesforceSource>),
    Hubspot(HubSpotSource),
}

/// The PRM side beside an API CRM, built from `prm.*` (with a files CRM the
/// PRM tables are files too, read with it).
pub enum Prm {
    /// The same Salesforce org as the CRM.
    SameOrg,
    Files(PathBuf),
    PartnerStack(PartnerStackClient),
}

/// Where CRM records open: URL templates with `{id}`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordLinks {
    pub account: Option<String>,
    pub opportunity: Option<String>,
}

/// What one pull read.
pub struct Pulled {
    pub loaded: Loaded,
    /// What each API object's sync read (empty for files).
    pub synced: Vec<ObjectReport>,
}

/// The configured connectors, with their clients (and rate limiters) kept
/// across cycles.
pub struct Connectors {
    origin: Origin,
    crm: Crm,
    prm: Option<Prm>,
}

impl Connectors {
    pub fn new(
        settings: &Settings,
        metrics: Option<Arc<crate::metrics::Metrics>>,
    ) -> Result<Connectors, ConfigError> {
        let origin = origin(settings)?;
        let prm_of = |prm: &PrmOrigin| -> Result<Prm, ConfigError> {
            Ok(match prm {
                PrmOrigin::SameOrg => Prm::SameOrg,
                PrmOrigin::Files(dir) => Prm::Files(dir.clone()),
                PrmOrigin::PartnerStack => Prm::PartnerStack(
                    PartnerStackClient::new(&settings.prm.partnerstack(), metrics.clone())
                        .map_err(|e| {
                            ConfigError::new(
                                "prm.partnerstack",
                                format!("cannot build the client: {e}"),
                            )
                        })?,
                ),
            })
        };
        let (crm, prm) = match &origin {
            Origin::Files { .. } => (Crm::Files, None),
            Origin::Salesforce { prm } => (
                Crm::Salesforce(Box::new(SalesforceSource::new(settings, metrics.clone())?)),
                Some(prm_of(prm)?),
            ),
            Origin::Hubspot { prm } => (
                Crm::Hubspot(HubSpotSource::new(settings, metrics.clone())?),
                Some(prm_of(prm)?),
            ),
        };
        Ok(Connectors { origin, crm, prm })
    }

    /// Whether a source keeps a mirror in the state (an API), so a dry run
    /// needs a scratch copy of the state to update.
    pub fn uses_mirror(&self) -> bool {
        !matches!(self.crm, Crm::Files)
    }

    /// The source a table comes from (the metrics' `source` label).
    pub fn source_of(&self, table: &str) -> &'static str {
        self.origin.source_of(table)
    }

    /// Reads the CRM and PRM. Files are read off the async workers (CPU
    /// bound); APIs sync into the mirror in `state` first. A `dry_run`
    /// changes nothing in the vendor's account.
    pub async fn pull(
        &self,
        settings: &Settings,
        state: Option<&State>,
        full: bool,
        dry_run: bool,
    ) -> Result<Pulled, Error> {
        let mut synced = Vec::new();
        let loaded = match (&self.origin, &self.crm, state) {
            (Origin::Files { crm_dir, prm_dir }, _, _) => {
                let money = settings.scorecard.clone();
                let (crm, prm) = (crm_dir.clone(), prm_dir.clone());
                tokio::task::spawn_blocking(move || files::load_split(&crm, &prm, &money))
                    .await
                    .map_err(|e| Error::new("files", Failure::Other(e.into())))??
            }
            (_, Crm::Salesforce(sf), Some(state)) => {
                let prm = match &self.prm {
                    Some(Prm::SameOrg) | None => None,
                    Some(other) => Some(
                        self.prm_tables(other, state, settings, full, &mut synced)
                            .await?,
                    ),
                };
                let (loaded, reports) = sf.pull(state, settings, full, prm).await?;
                synced.splice(0..0, reports);
                loaded
            }
            (_, Crm::Hubspot(hs), Some(state)) => {
                let prm = match &self.prm {
                    Some(p) => {
                        self.prm_tables(p, state, settings, full, &mut synced)
                            .await?
                    }
                    None => return Err(no_source("HubSpot")),
                };
                let (loaded, reports) = hs.pull(state, settings, full, dry_run, prm).await?;
                synced.splice(0..0, reports);
                loaded
            }
            _ => return Err(no_source("the CRM")),
        };
        Ok(Pulled { loaded, synced })
    }

    /// The PRM tables beside a CRM connector.
    async fn prm_tables(
        &self,
        prm: &Prm,
        state: &State,
        settings: &Settings,
        full: bool,
        synced: &mut Vec<ObjectReport>,
    ) -> Result<PrmTables, Error> {
        match prm {
            Prm::Files(dir) => Ok(files::load_prm(dir)?),
            Prm::PartnerStack(client) => {
                let (tables, reports) = partnerstack::pull(client, state, settings, full).await?;
                synced.extend(reports);
                Ok(tables)
            }
            Prm::SameOrg => Err(no_source("the PRM")),
        }
    }

    /// The review's optional tables (SPEC §6.1), for writing its values
    /// back: `program_costs` and `mdf` from the files source (the CRM and
    /// PRM folders), or from the PRM folder beside an API CRM. With a
    /// Salesforce CRM and no `mdf` file, `mdf` comes from the org's MDF
    /// objects (`PartnerFundRequest`, `PartnerFundClaim`) when it has them,
    /// as mirrored by the pull. PartnerStack has no MDF: without a file the
    /// table is absent and the MDF values are `null`.
    pub async fn review_inputs(
        &self,
        partners: &[crate::model::Partner],
        settings: &Settings,
        state: Option<&State>,
    ) -> Result<(crate::model::ReviewInputs, Vec<crate::model::Rejected>), Error> {
        let dirs = match &self.origin {
            Origin::Files { crm_dir, prm_dir } => Some((crm_dir.clone(), prm_dir.clone())),
            Origin::Salesforce {
                prm: PrmOrigin::Files(dir),
            }
            | Origin::Hubspot {
                prm: PrmOrigin::Files(dir),
            } => Some((dir.clone(), dir.clone())),
            _ => None,
        };
        let (mut inputs, mut rejected) = match dirs {
            None => Default::default(),
            Some((crm, prm)) => {
                let money = settings.scorecard.clone();
                let partners = partners.to_vec();
                tokio::task::spawn_blocking(move || {
                    files::load_review_inputs(&crm, &prm, &partners, &money)
                })
                .await
                .map_err(|e| Error::new("files", Failure::Other(e.into())))??
            }
        };
        if inputs.mdf.is_none()
            && let (Crm::Salesforce(sf), Some(state)) = (&self.crm, state)
            && let Some((rows, more)) = sf.mdf(state, settings, partners).await?
        {
            inputs.mdf = Some(rows);
            rejected.extend(more);
        }
        Ok((inputs, rejected))
    }

    /// Where scorecards are written back.
    pub async fn sink(&self, settings: &Settings) -> Result<Sink, Error> {
        Ok(match (&self.crm, &self.origin) {
            (Crm::Salesforce(sf), _) => Sink::Salesforce(SalesforceSink {
                client: sf.client.clone(),
                fields: settings.writeback.fields.clone(),
                percent_fields: sf.plan(settings).await?.percent_fields,
            }),
            (Crm::Hubspot(hs), _) => Sink::Hubspot(HubSpotSink {
                client: hs.client.clone(),
                fields: settings.writeback.fields.clone(),
            }),
            (Crm::Files, Origin::Files { crm_dir, .. }) => Sink::Files(FilesSink::new(
                settings
                    .crm
                    .files
                    .out_dir
                    .clone()
                    .unwrap_or_else(|| crm_dir.clone()),
            )),
            (Crm::Files, _) => return Err(no_source("the write-back")),
        })
    }

    /// Where decisions are written back (`writeback.decision_field`): the
    /// CRM's opportunities; `None` when unset or the CRM is files.
    pub fn decision_sink(&self, settings: &Settings) -> Option<DecisionSink> {
        let field = settings
            .writeback
            .decision_field
            .as_deref()?
            .trim()
            .to_string();
        match &self.crm {
            Crm::Salesforce(sf) => Some(DecisionSink::Salesforce(
                salesforce::write::SalesforceDecisionSink {
                    client: sf.client.clone(),
                },
                field,
            )),
            Crm::Hubspot(hs) => Some(DecisionSink::Hubspot(
                hubspot::write::HubSpotDecisionSink {
                    client: hs.client.clone(),
                },
                field,
            )),
            Crm::Files => None,
        }
    }

    /// Where the CRM's records open (none for files).
    pub async fn links(&self, settings: &Settings) -> RecordLinks {
        match &self.crm {
            Crm::Salesforce(sf) => sf.record_links().await,
            Crm::Hubspot(_) => hubspot::record_links(&settings.crm.hubspot()),
            Crm::Files => RecordLinks::default(),
        }
    }

    /// After a cycle: keeps credentials a vendor rotated.
    pub async fn after_cycle(&self, state: &crate::config::StateSettings) {
        if let Crm::Salesforce(sf) = &self.crm {
            sf.keep_rotated_credentials(state).await;
        }
    }
}

fn no_source(what: &'static str) -> Error {
    Error::new(
        "connectors",
        Failure::Other(anyhow::anyhow!(
            "no source for {what} in this configuration"
        )),
    )
}

/// `check-config`'s live check: signs in to the CRM and checks every
/// configured field exists (writes nothing). `None` for files; else what the
/// vendor answered.
pub async fn check(settings: &Settings) -> Result<Option<String>, Error> {
    match settings.crm.kind {
        Some(CrmKind::Salesforce) => salesforce::check(settings).await.map(Some),
        Some(CrmKind::Hubspot) => hubspot::check(settings).await.map(Some),
        _ => Ok(None),
    }
}

/// Where scorecards go: one of the sinks, dispatched by hand (the trait's
/// async method keeps it from being a trait object).
pub enum Sink {
    Files(FilesSink),
    Salesforce(SalesforceSink),
    Hubspot(HubSpotSink),
}

impl ScorecardSink for Sink {
    fn name(&self) -> &'static str {
        match self {
            Sink::Files(s) => s.name(),
            Sink::Salesforce(s) => s.name(),
            Sink::Hubspot(s) => s.name(),
        }
    }

    fn target(
        &self,
        card: &crate::engine::Scorecard,
        partner: &crate::model::Partner,
        period: &crate::engine::Period,
        review: &[(&'static str, String)],
    ) -> Option<(String, Vec<(String, String)>)> {
        match self {
            Sink::Files(s) => s.target(card, partner, period, review),
            Sink::Salesforce(s) => s.target(card, partner, period, review),
            Sink::Hubspot(s) => s.target(card, partner, period, review),
        }
    }

    fn lost_earlier_writes(&self) -> bool {
        match self {
            Sink::Files(s) => s.lost_earlier_writes(),
            Sink::Salesforce(s) => s.lost_earlier_writes(),
            Sink::Hubspot(s) => s.lost_earlier_writes(),
        }
    }

    async fn apply(&self, updates: &[RecordUpdate]) -> Vec<RecordOutcome> {
        match self {
            Sink::Files(s) => s.apply(updates).await,
            Sink::Salesforce(s) => s.apply(updates).await,
            Sink::Hubspot(s) => s.apply(updates).await,
        }
    }
}

/// Where decisions are written: one field on the CRM's opportunities.
pub enum DecisionSink {
    Salesforce(salesforce::write::SalesforceDecisionSink, String),
    Hubspot(hubspot::write::HubSpotDecisionSink, String),
}

impl DecisionSink {
    /// The name the state remembers its writes under: apart from the
    /// scorecards', so neither diff sees the other's values.
    pub fn name(&self) -> &'static str {
        match self {
            DecisionSink::Salesforce(..) => "salesforce-decisions",
            DecisionSink::Hubspot(..) => "hubspot-decisions",
        }
    }

    /// The opportunity field (deal property) written.
    pub fn field(&self) -> &str {
        match self {
            DecisionSink::Salesforce(_, f) | DecisionSink::Hubspot(_, f) => f,
        }
    }

    /// Writes the updates, batched to the API's maximum; one outcome each.
    pub async fn apply(&self, updates: &[RecordUpdate]) -> Vec<RecordOutcome> {
        match self {
            DecisionSink::Salesforce(s, _) => s.apply(updates).await,
            DecisionSink::Hubspot(s, _) => s.apply(updates).await,
        }
    }
}

/// Where a cycle reads its data from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Every table from files: the CRM tables from `crm_dir`, the PRM ones
    /// from `prm_dir`.
    Files { crm_dir: PathBuf, prm_dir: PathBuf },
    /// The CRM from Salesforce; the PRM from the same org, files or
    /// PartnerStack.
    Salesforce { prm: PrmOrigin },
    /// The CRM from HubSpot; the PRM from files or PartnerStack.
    Hubspot { prm: PrmOrigin },
}

impl Origin {
    /// The source a table of the dataset comes from (`files`, `salesforce`,
    /// `hubspot`, `partnerstack`): the metrics' `source` label.
    pub fn source_of(&self, table: &str) -> &'static str {
        let prm_table = matches!(table, "partners" | "partner_reps" | "registrations");
        match self {
            Origin::Files { .. } => "files",
            Origin::Salesforce { prm } | Origin::Hubspot { prm } if prm_table => match prm {
                PrmOrigin::SameOrg => "salesforce",
                PrmOrigin::Files(_) => "files",
                PrmOrigin::PartnerStack => "partnerstack",
            },
            Origin::Salesforce { .. } => "salesforce",
            Origin::Hubspot { .. } => "hubspot",
        }
    }
}

/// Where the PRM tables come from beside a CRM connector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrmOrigin {
    /// The same Salesforce org as the CRM.
    SameOrg,
    Files(PathBuf),
    PartnerStack,
}

/// Resolves `crm.*` and `prm.*`. With `crm.kind = "files"` the PRM tables
/// come from the same folder unless `prm.kind` says otherwise.
pub fn origin(settings: &Settings) -> Result<Origin, ConfigError> {
    let prm_files =
        || {
            settings.prm.files.dir.clone().ok_or_else(|| {
                ConfigError::new("prm.files.dir", "required when prm.kind = \"files\"")
            })
        };
    match settings.crm.kind {
        None => Err(ConfigError::new(
            "crm.kind",
            "required for once and run: \"salesforce\", \"hubspot\" or \"files\"",
        )),
        Some(CrmKind::Files) => {
            let crm_dir = settings.crm.files.dir.clone().ok_or_else(|| {
                ConfigError::new("crm.files.dir", "required when crm.kind = \"files\"")
            })?;
            let prm_dir = match settings.prm.kind {
                None => crm_dir.clone(),
                Some(PrmKind::Files) => prm_files()?,
                Some(PrmKind::Salesforce) => {
                    return Err(ConfigError::new(
                        "prm.kind",
                        "\"salesforce\" means the same org as the CRM: it needs crm.kind = \"salesforce\"",
                    ));
                }
                Some(PrmKind::Partnerstack) => {
                    return Err(ConfigError::new(
                        "prm.kind",
                        "\"partnerstack\" needs a CRM connector (crm.kind = \"salesforce\" or \"hubspot\"); with files, export PartnerStack to files too",
                    ));
                }
            };
            Ok(Origin::Files { crm_dir, prm_dir })
        }
        Some(CrmKind::Hubspot) => {
            let prm = match settings.prm.kind {
                None => {
                    return Err(ConfigError::new(
                        "prm.kind",
                        "required with crm.kind = \"hubspot\": \"files\" or \"partnerstack\"",
                    ));
                }
                Some(PrmKind::Files) => PrmOrigin::Files(prm_files()?),
                Some(PrmKind::Salesforce) => {
                    return Err(ConfigError::new(
                        "prm.kind",
                        "\"salesforce\" means the same org as the CRM: it needs crm.kind = \"salesforce\"",
                    ));
                }
                Some(PrmKind::Partnerstack) => {
                    settings.prm.partnerstack().check_credentials()?;
                    PrmOrigin::PartnerStack
                }
            };
            settings.crm.hubspot().check_credentials()?;
            Ok(Origin::Hubspot { prm })
        }
        Some(CrmKind::Salesforce) => {
            let prm = match settings.prm.kind {
                None => {
                    return Err(ConfigError::new(
                        "prm.kind",
                        "required with crm.kind = \"salesforce\": \"salesforce\" (the same org), \"files\" or \"partnerstack\"",
                    ));
                }
                Some(PrmKind::Salesforce) => PrmOrigin::SameOrg,
                Some(PrmKind::Files) => PrmOrigin::Files(prm_files()?),
                Some(PrmKind::Partnerstack) => {
                    settings.prm.partnerstack().check_credentials()?;
                    PrmOrigin::PartnerStack
                }
            };
            settings.crm.salesforce().check_credentials()?;
            Ok(Origin::Salesforce { prm })
        }
    }
}
