//! Sources: where the data comes from, mapped into the domain model.

pub mod files;
pub mod salesforce;

use std::path::PathBuf;

use crate::config::{ConfigError, CrmKind, PrmKind, Settings};

/// Where a cycle reads its tables from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSources {
    pub crm_dir: PathBuf,
    pub prm_dir: PathBuf,
}

/// Resolves `crm.*` and `prm.*` into the folders to read. With
/// `crm.kind = "files"` the PRM tables come from the same folder unless
/// `prm.kind` says otherwise.
pub fn file_sources(settings: &Settings) -> Result<FileSources, ConfigError> {
    let not_yet = |key: &str, kind: &str| {
        ConfigError::new(
            key,
            format!("'{kind}' is not available in this version yet; use \"files\""),
        )
    };
    let crm_dir = match settings.crm.kind {
        None => {
            return Err(ConfigError::new(
                "crm.kind",
                "required for once and run: \"files\" (salesforce and hubspot are coming)",
            ));
        }
        Some(CrmKind::Files) => settings.crm.files.dir.clone().ok_or_else(|| {
            ConfigError::new("crm.files.dir", "required when crm.kind = \"files\"")
        })?,
        Some(CrmKind::Salesforce) => return Err(not_yet("crm.kind", "salesforce")),
        Some(CrmKind::Hubspot) => return Err(not_yet("crm.kind", "hubspot")),
    };
    let prm_dir = match settings.prm.kind {
        None => crm_dir.clone(),
        Some(PrmKind::Files) => settings.prm.files.dir.clone().ok_or_else(|| {
            ConfigError::new("prm.files.dir", "required when prm.kind = \"files\"")
        })?,
        Some(PrmKind::Salesforce) => return Err(not_yet("prm.kind", "salesforce")),
        Some(PrmKind::Partnerstack) => return Err(not_yet("prm.kind", "partnerstack")),
    };
    Ok(FileSources { crm_dir, prm_dir })
}
