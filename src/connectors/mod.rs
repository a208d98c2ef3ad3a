//! Sources: where the data comes from, mapped into the domain model.

pub mod files;
pub mod hubspot;
pub mod partnerstack;
pub mod salesforce;
pub mod writeback;

use std::path::PathBuf;

use crate::config::{ConfigError, CrmKind, PrmKind, Settings};

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
