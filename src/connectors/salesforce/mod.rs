//! Salesforce: the typed REST client, the incremental mirror of the org's
//! records in the state, and their mapping onto the domain model.

pub(crate) mod client;
pub(crate) mod map;
pub(crate) mod sync;
pub(crate) mod write;

pub(crate) use client::{AuthFlow, ClientConfig, SalesforceClient, SalesforceError, SigningKey};

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;

use crate::config::{ConfigError, SalesforceAuth, Secret, Settings};
use crate::connectors::files::{InputError, Loaded};
use crate::metrics::Metrics;
use crate::store::crypto::CredentialKey;
use crate::store::{CredentialError, State, StateError};
use crate::sync::{MirrorError, ObjectReport};
use map::{FilePrm, OrgInfo, Plan};

/// Why a pull failed.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Input(#[from] InputError),
    #[error(transparent)]
    Salesforce(#[from] SalesforceError),
    #[error(transparent)]
    State(#[from] StateError),
}

impl From<MirrorError<SalesforceError>> for PullError {
    fn from(e: MirrorError<SalesforceError>) -> Self {
        match e {
            MirrorError::Upstream(e) => PullError::Salesforce(e),
            MirrorError::State(e) => PullError::State(e),
        }
    }
}

/// The state's name for a refresh token Salesforce rotated.
const ROTATED: &str = "salesforce.refresh_token";

/// A stable fingerprint of the configured refresh token (FNV-1a, 64 bits):
/// it only tells whether the operator configured a new one since the stored
/// rotation, so it need not be cryptographic, but it must never change
/// between versions.
fn fingerprint(secret: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in secret.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// Salesforce as a source: the client, and the plan made from the org's
/// describe results (made once, kept for the daemon's later cycles).
pub struct SalesforceSource {
    pub client: Arc<SalesforceClient>,
    plan: tokio::sync::Mutex<Option<Plan>>,
    configured_refresh: Option<String>,
    /// What rotated credentials are sealed with (refresh-token flow only).
    credential_key: Option<Arc<CredentialKey>>,
    restored: std::sync::atomic::AtomicBool,
}

/// The key rotated credentials are sealed with: the configured one, else
/// one derived from the client secret. Without either, a rotated token
/// could only be stored in clear: refused.
fn credential_key(settings: &Settings) -> Result<CredentialKey, ConfigError> {
    if let Some(key) = &settings.state.encryption_key {
        return CredentialKey::from_hex(key.expose())
            .map_err(|m| ConfigError::new("state.encryption_key", m));
    }
    match &settings.crm.salesforce().client_secret {
        Some(secret) => CredentialKey::derive(secret.expose())
            .map_err(|m| ConfigError::new("state.encryption_key", m)),
        None => Err(ConfigError::new(
            "state.encryption_key",
            "missing: a rotated refresh token is stored encrypted; set CHANNEL_SYNC__STATE__ENCRYPTION_KEY (64 hex characters) or crm.salesforce.client_secret",
        )),
    }
}

impl SalesforceSource {
    /// Builds the client from `crm.salesforce.*`; a missing credential or an
    /// unreadable key is a configuration error naming its key.
    pub fn new(
        settings: &Settings,
        metrics: Option<Arc<Metrics>>,
    ) -> Result<SalesforceSource, ConfigError> {
        let sf = settings.crm.salesforce();
        sf.check_credentials()?;
        let flow = match sf.auth {
            SalesforceAuth::ClientCredentials => AuthFlow::ClientCredentials,
            SalesforceAuth::RefreshToken => AuthFlow::RefreshToken,
            SalesforceAuth::JwtBearer => {
                let path = sf.private_key_path.clone().unwrap_or_default();
                let pem = std::fs::read(&path).map_err(|e| {
                    ConfigError::new(
                        "crm.salesforce.private_key_path",
                        format!("cannot read {}: {e}", path.display()),
                    )
                })?;
                AuthFlow::JwtBearer {
                    username: sf.username.clone().unwrap_or_default(),
                    audience: sf.audience(),
                    key: SigningKey::from_pem(&pem).map_err(|m| {
                        ConfigError::new(
                            "crm.salesforce.private_key_path",
                            format!("{}: {m}", path.display()),
                        )
                    })?,
                }
            }
        };
        let config = ClientConfig {
            login_url: sf.login_url.clone(),
            api_version: sf.api_version.clone(),
            flow,
            client_id: sf.client_id.clone().unwrap_or_default(),
            client_secret: sf.client_secret.clone(),
            refresh_token: sf.refresh_token.clone(),
            per_second: sf.max_requests_per_second,
            max_daily_share: sf.max_daily_share,
            timeout: Duration::from_secs(sf.timeout_secs),
        };
        let mut client = SalesforceClient::new(config).map_err(|e| {
            ConfigError::new("crm.salesforce", format!("cannot build the client: {e}"))
        })?;
        if let Some(m) = metrics {
            client = client.with_metrics(m);
        }
        let configured_refresh = (sf.auth == SalesforceAuth::RefreshToken)
            .then(|| sf.refresh_token.as_ref().map(|t| fingerprint(t.expose())))
            .flatten();
        let credential_key = match &configured_refresh {
            Some(_) => Some(Arc::new(credential_key(settings)?)),
            None => None,
        };
        if let (Some(configured), Some(key)) = (&configured_refresh, &credential_key) {
            // A rotated token is committed to the state file the moment it
            // arrives (the file's own transaction), before it is used.
            let (path, configured, key) = (settings.state.clone(), configured.clone(), key.clone());
            client = client.with_rotation_keeper(Box::new(move |token| {
                State::connect(&path)
                    .map_err(CredentialError::from)
                    .and_then(|s| {
                        s.set_credential(ROTATED, &configured, token.expose(), &key, Utc::now())
                    })
                    .map_err(|e| e.to_string())
            }));
        }
        Ok(SalesforceSource {
            client: Arc::new(client),
            plan: tokio::sync::Mutex::new(None),
            configured_refresh,
            credential_key,
            restored: Default::default(),
        })
    }

    /// Describes the objects the configuration reads and plans the sync,
    /// checking every configured field exists (once per process).
    pub async fn plan(&self, settings: &Settings) -> Result<Plan, PullError> {
        let mut held = self.plan.lock().await;
        if let Some(p) = held.as_ref() {
            return Ok(p.clone());
        }
        let mut org = OrgInfo::default();
        for object in map::objects_to_describe(settings) {
            match self.client.describe(&object).await {
                Ok(fields) => org.add(&object, fields),
                Err(SalesforceError::Api { status: 404, .. }) => {
                    let key = if object == settings.prm.salesforce().registrations.object {
                        "prm.salesforce.registrations.object"
                    } else {
                        "crm.kind"
                    };
                    return Err(ConfigError::new(
                        key,
                        format!("no object '{object}' in this org (checked with describe)"),
                    )
                    .into());
                }
                Err(e) => return Err(e.into()),
            }
        }
        if settings.reads_review_inputs() {
            self.describe_mdf(&mut org).await?;
        }
        let plan = map::plan(settings, &org)?;
        *held = Some(plan.clone());
        Ok(plan)
    }

    /// Describes the PRM's MDF objects into `org` when the org has them. An
    /// org without them (no PRM / Channel licence) answers describe with 404
    /// `NOT_FOUND` (or `INVALID_TYPE`): they are then simply absent.
    async fn describe_mdf(&self, org: &mut OrgInfo) -> Result<(), SalesforceError> {
        for object in [map::MDF_REQUEST, map::MDF_CLAIM] {
            match self.client.describe(object).await {
                Ok(fields) => org.add(object, fields),
                Err(e) if no_such_object(&e) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// The review's `mdf` rows from the mirrored MDF objects (synced by
    /// `pull` when the org has them and a review value is written back);
    /// `None` when they are not read.
    pub async fn mdf(
        &self,
        state: &State,
        settings: &Settings,
        partners: &[crate::model::Partner],
    ) -> Result<Option<map::MdfRows>, PullError> {
        let plan = self.plan(settings).await?;
        Ok(map::mdf(state, settings, &plan, partners)?)
    }

    /// Before the first call: a refresh token rotated in an earlier run
    /// replaces the configured one it came from. One that cannot be
    /// decrypted (the key changed) is skipped with a warning: the
    /// configured token is used, and if Salesforce refuses it, a new one
    /// must be issued.
    pub async fn restore_credentials(&self, state: &State) -> Result<(), StateError> {
        if self
            .restored
            .swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            return Ok(());
        }
        let (Some(configured), Some(key)) = (&self.configured_refresh, &self.credential_key) else {
            return Ok(());
        };
        match state.credential(ROTATED, configured, key) {
            Ok(Some(token)) => self.client.use_refresh_token(Secret::new(token)).await,
            Ok(None) => {}
            Err(CredentialError::State(e)) => return Err(e),
            Err(CredentialError::Crypto(e)) => tracing::warn!(
                error = %e,
                "The rotated Salesforce refresh token in the state file cannot be read; falling back to the configured crm.salesforce.refresh_token. If Salesforce answers invalid_grant, issue a new refresh token and set CHANNEL_SYNC__CRM__SALESFORCE__REFRESH_TOKEN (or restore the old encryption key)."
            ),
        }
        Ok(())
    }

    /// Where records open in Lightning (once signed in: the instance URL).
    pub async fn record_links(&self) -> super::RecordLinks {
        match self.client.instance_url().await {
            Some(base) => super::RecordLinks {
                account: Some(format!("{base}/lightning/r/Account/{{id}}/view")),
                opportunity: Some(format!("{base}/lightning/r/Opportunity/{{id}}/view")),
            },
            None => super::RecordLinks::default(),
        }
    }

    /// After calls: keeps a refresh token Salesforce rotated that could not
    /// be stored when it arrived (the old one no longer works), sealed, in
    /// the state file, which only its owner can read.
    pub async fn keep_rotated_credentials(&self, state_path: &crate::config::StateSettings) {
        let (Some(configured), Some(key), Some(token)) = (
            &self.configured_refresh,
            &self.credential_key,
            self.client.rotated_refresh_token().await,
        ) else {
            return;
        };
        let saved = State::connect(state_path)
            .map_err(CredentialError::from)
            .and_then(|s| s.set_credential(ROTATED, configured, token.expose(), key, Utc::now()));
        match saved {
            Ok(()) => tracing::info!(
                "Salesforce rotated the refresh token; the new one is kept in the state file."
            ),
            Err(e) => {
                tracing::error!(error = %e, "Salesforce rotated the refresh token and it could not be saved: the next start needs a new one.")
            }
        }
    }

    /// Syncs every object into the mirror, then builds the dataset from it
    /// (with the PRM tables from files when `file_prm` is given).
    pub async fn pull(
        &self,
        state: &State,
        settings: &Settings,
        full: bool,
        file_prm: Option<FilePrm>,
    ) -> Result<(Loaded, Vec<ObjectReport>), PullError> {
        self.restore_credentials(state).await?;
        let plan = self.plan(settings).await?;
        let mut reports = Vec::new();
        for spec in plan.objects() {
            reports.push(sync::sync_object(&self.client, state, spec, full, Utc::now()).await?);
        }
        let started = std::time::Instant::now();
        let loaded = map::build(state, settings, &plan, file_prm)?;
        tracing::debug!(
            ms = started.elapsed().as_millis() as u64,
            "Dataset built from the mirror."
        );
        Ok((loaded, reports))
    }
}

/// Whether an error says the object does not exist in this org.
fn no_such_object(e: &SalesforceError) -> bool {
    matches!(e, SalesforceError::Api { status: 404, .. })
        || matches!(e, SalesforceError::Api { code, .. } if code == "NOT_FOUND" || code == "INVALID_TYPE")
}

/// `check-config`: signs in and checks the configured fields with describe.
pub(crate) async fn check(settings: &Settings) -> Result<String, super::Error> {
    let source = SalesforceSource::new(settings, None).map_err(PullError::Config)?;
    let plan = source.plan(settings).await?;
    let objects: Vec<String> = plan
        .objects()
        .iter()
        .map(|o| format!("{} ({} fields)", o.object, o.fields.len()))
        .collect();
    let mut org = OrgInfo::default();
    source
        .describe_mdf(&mut org)
        .await
        .map_err(PullError::from)?;
    let mdf = match map::mdf_plan(&org) {
        Some(_) => {
            let requests = source
                .client
                .query(&format!("SELECT Id FROM {}", map::MDF_REQUEST), false)
                .await
                .map_err(PullError::from)?
                .len();
            format!(
                "MDF: {} and {} found ({requests} requests)",
                map::MDF_REQUEST,
                map::MDF_CLAIM
            )
        }
        None => "MDF: not in this org (the review's MDF metrics stay 'no MDF data')".to_string(),
    };
    Ok(format!(
        "Salesforce answered; every configured field exists. Reads: {}. {mdf}",
        objects.join(", ")
    ))
}
