//! Configuration (SPEC §5): a TOML file, then `CHANNEL_SYNC__<SECTION>__<KEY>`
//! environment overrides, deserialised into typed settings and validated at load.
//! Every failure names the key it is about.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// The path used when `--config` is not given. A missing default file means
/// "all defaults"; a missing file named with `--config` is an error.
pub const DEFAULT_PATH: &str = "config/channel-sync.toml";
const ENV_PREFIX: &str = "CHANNEL_SYNC";

/// A configuration problem: exit code 78, with the offending key.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("configuration: {key}: {message}")]
pub struct ConfigError {
    pub key: String,
    pub message: String,
}

impl ConfigError {
    fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            key: key.into(),
            message: message.into(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    pub rules: Rules,
    pub scorecard: ScorecardSettings,
    // Sections of SPEC §5 that belong to the cycle and the connectors. They are
    // accepted here so one file serves every command; each is validated by the
    // part of the program that uses it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schedule: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crm: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prm: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alerts: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub writeback: Option<serde_json::Value>,
}

/// `rules.*` (SPEC §3).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Rules {
    /// Protection window when the partner's tier sets none.
    pub protection_days: u32,
    pub expiring_within_days: u32,
    pub expired_lookback_days: u32,
    pub fuzzy_threshold: f64,
    /// Per-tier windows; tier names compare case-insensitively.
    pub tiers: BTreeMap<String, TierRules>,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            protection_days: 90,
            expiring_within_days: 14,
            expired_lookback_days: 30,
            fuzzy_threshold: 0.92,
            tiers: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TierRules {
    pub protection_days: u32,
}

impl Rules {
    /// The protection days for a partner tier (case-insensitive), else the default.
    pub fn protection_days_for(&self, tier: Option<&str>) -> u32 {
        tier.and_then(|t| {
            self.tiers
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(t.trim()))
                .map(|(_, r)| r.protection_days)
        })
        .unwrap_or(self.protection_days)
    }
}

/// `scorecard.*` (SPEC §3.4, §2.1).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScorecardSettings {
    /// 1 = quarters start in January, April, July, October.
    pub fiscal_year_start_month: u32,
    /// The base currency: empty currency cells mean this one.
    pub currency: String,
    /// Units of the base currency for one unit of each currency.
    pub fx: BTreeMap<String, f64>,
}

impl Default for ScorecardSettings {
    fn default() -> Self {
        ScorecardSettings {
            fiscal_year_start_month: 1,
            currency: "USD".into(),
            fx: BTreeMap::new(),
        }
    }
}

impl ScorecardSettings {
    /// The rate that converts `currency` into the base currency, if known.
    pub fn rate(&self, currency: &str) -> Option<f64> {
        if currency.eq_ignore_ascii_case(&self.currency) {
            return Some(1.0);
        }
        self.fx
            .iter()
            .find(|(code, _)| code.eq_ignore_ascii_case(currency))
            .map(|(_, r)| *r)
    }
}

impl Settings {
    /// Loads `path` (or the default path, which may be absent), applies the
    /// environment overrides from the process environment, and validates.
    pub fn load(path: Option<&Path>) -> Result<Settings, ConfigError> {
        Self::load_with_env(path, std::env::vars())
    }

    /// As [`Settings::load`], with the environment given explicitly (for tests).
    pub fn load_with_env(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Settings, ConfigError> {
        let (file, required) = match path {
            Some(p) => (p.to_path_buf(), true),
            None => (Path::new(DEFAULT_PATH).to_path_buf(), false),
        };
        if required && !file.is_file() {
            return Err(ConfigError::new(
                "--config",
                format!("no such file: {}", file.display()),
            ));
        }
        let env: config::Map<String, String> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with(&format!("{ENV_PREFIX}__")))
            .collect();
        let built = config::Config::builder()
            .add_source(
                config::File::from(file.as_path())
                    .format(config::FileFormat::Toml)
                    .required(required),
            )
            .add_source(
                config::Environment::with_prefix(ENV_PREFIX)
                    .prefix_separator("__")
                    .separator("__")
                    .try_parsing(true)
                    .source(Some(env)),
            )
            .build()
            .map_err(|e| from_config_error(e, &file))?;
        let settings: Settings = built
            .try_deserialize()
            .map_err(|e| from_config_error(e, &file))?;
        settings.validate()?;
        Ok(settings)
    }

    /// Parses a TOML string with no environment (tests and embedded defaults).
    pub fn from_toml(text: &str) -> Result<Settings, ConfigError> {
        let built = config::Config::builder()
            .add_source(config::File::from_str(text, config::FileFormat::Toml))
            .build()
            .map_err(|e| from_config_error(e, Path::new("<string>")))?;
        let settings: Settings = built
            .try_deserialize()
            .map_err(|e| from_config_error(e, Path::new("<string>")))?;
        settings.validate()?;
        Ok(settings)
    }

    /// Checks every value the types alone cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let r = &self.rules;
        check_days("rules.protection_days", r.protection_days, 1)?;
        check_days("rules.expiring_within_days", r.expiring_within_days, 0)?;
        check_days("rules.expired_lookback_days", r.expired_lookback_days, 0)?;
        if !(r.fuzzy_threshold > 0.0 && r.fuzzy_threshold <= 1.0) {
            return Err(ConfigError::new(
                "rules.fuzzy_threshold",
                format!("must be above 0 and at most 1, got {}", r.fuzzy_threshold),
            ));
        }
        for (tier, t) in &r.tiers {
            check_days(
                &format!("rules.tiers.{tier}.protection_days"),
                t.protection_days,
                1,
            )?;
        }
        let s = &self.scorecard;
        if !(1..=12).contains(&s.fiscal_year_start_month) {
            return Err(ConfigError::new(
                "scorecard.fiscal_year_start_month",
                format!("must be 1 to 12, got {}", s.fiscal_year_start_month),
            ));
        }
        if crate::values::parse_currency(&s.currency).is_none() {
            return Err(ConfigError::new(
                "scorecard.currency",
                format!("must be a 3-letter ISO code, got '{}'", s.currency),
            ));
        }
        for (code, rate) in &s.fx {
            let key = format!("scorecard.fx.{code}");
            if crate::values::parse_currency(code).is_none() {
                return Err(ConfigError::new(key, "not a 3-letter ISO currency code"));
            }
            if !(rate.is_finite() && *rate > 0.0) {
                return Err(ConfigError::new(
                    key,
                    format!("must be a positive number, got {rate}"),
                ));
            }
        }
        Ok(())
    }
}

fn check_days(key: &str, days: u32, min: u32) -> Result<(), ConfigError> {
    const MAX: u32 = 3650;
    if days < min || days > MAX {
        return Err(ConfigError::new(
            key,
            format!("must be {min} to {MAX} days, got {days}"),
        ));
    }
    Ok(())
}

/// Turns the `config` crate's error into one that names the key.
fn from_config_error(e: config::ConfigError, file: &Path) -> ConfigError {
    match e {
        config::ConfigError::Type { ref key, .. } | config::ConfigError::At { ref key, .. } => {
            let message = e.to_string();
            // "unknown field `x` ... for key `rules`": name the full key.
            let key = match (key.clone(), unknown_field_key(&message)) {
                (Some(parent), Some(field)) => format!("{parent}.{field}"),
                (Some(k), None) => k,
                (None, field) => field.unwrap_or_else(|| "<root>".into()),
            };
            ConfigError::new(key, message)
        }
        config::ConfigError::Message(m) => {
            // serde's "unknown field `x`, expected ..." carries no path: find the key.
            let key = unknown_field_key(&m).unwrap_or_else(|| "<root>".into());
            ConfigError::new(key, m)
        }
        config::ConfigError::FileParse { .. } => {
            ConfigError::new(format!("{}", file.display()), e.to_string())
        }
        other => ConfigError::new("<root>", other.to_string()),
    }
}

fn unknown_field_key(message: &str) -> Option<String> {
    let rest = message.split("unknown field `").nth(1)?;
    Some(rest.split('`').next()?.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_file_gives_the_spec_defaults() {
        let s = Settings::from_toml("").unwrap();
        assert_eq!(s.rules.protection_days, 90);
        assert_eq!(s.rules.expiring_within_days, 14);
        assert_eq!(s.rules.expired_lookback_days, 30);
        assert_eq!(s.rules.fuzzy_threshold, 0.92);
        assert_eq!(s.scorecard.fiscal_year_start_month, 1);
        assert_eq!(s.scorecard.currency, "USD");
    }

    #[test]
    fn the_bundled_config_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(DEFAULT_PATH);
        let s = Settings::load_with_env(Some(&path), []).unwrap();
        assert_eq!(s.rules.protection_days_for(Some("Gold")), 180);
        assert_eq!(s.rules.protection_days_for(Some("unknown")), 90);
        assert_eq!(s.rules.protection_days_for(None), 90);
        assert_eq!(s.scorecard.rate("eur"), Some(1.08));
        assert_eq!(s.scorecard.rate("usd"), Some(1.0));
        assert_eq!(s.scorecard.rate("JPY"), None);
    }

    #[test]
    fn a_file_holding_only_rules_is_valid() {
        let s = Settings::from_toml("[rules]\nprotection_days = 60\n").unwrap();
        assert_eq!(s.rules.protection_days, 60);
    }

    #[test]
    fn an_unknown_key_is_named() {
        let e = Settings::from_toml("[rules]\nprotection_dayz = 60\n").unwrap_err();
        assert_eq!(e.key, "rules.protection_dayz", "{e}");
        let e = Settings::from_toml("[rulez]\n").unwrap_err();
        assert_eq!(e.key, "rulez", "{e}");
    }

    #[test]
    fn a_value_of_the_wrong_type_is_named() {
        let e = Settings::from_toml("[rules]\nprotection_days = \"ninety\"\n").unwrap_err();
        assert!(e.key.contains("protection_days"), "{e}");
    }

    #[test]
    fn out_of_range_values_are_named() {
        for (toml, key) in [
            ("[rules]\nfuzzy_threshold = 1.5", "rules.fuzzy_threshold"),
            ("[rules]\nprotection_days = 0", "rules.protection_days"),
            (
                "[rules.tiers.gold]\nprotection_days = 0",
                "rules.tiers.gold.protection_days",
            ),
            (
                "[scorecard]\nfiscal_year_start_month = 13",
                "scorecard.fiscal_year_start_month",
            ),
            ("[scorecard]\ncurrency = \"dollars\"", "scorecard.currency"),
            ("[scorecard.fx]\nEUR = -1.0", "scorecard.fx.EUR"),
        ] {
            let e = Settings::from_toml(toml).unwrap_err();
            assert!(e.key.eq_ignore_ascii_case(key), "{toml}: {e}");
        }
    }

    #[test]
    fn environment_overrides_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[rules]\nprotection_days = 60\n").unwrap();
        let env = [(
            "CHANNEL_SYNC__RULES__PROTECTION_DAYS".to_string(),
            "45".to_string(),
        )];
        let s = Settings::load_with_env(Some(&path), env).unwrap();
        assert_eq!(s.rules.protection_days, 45);
    }

    #[test]
    fn a_missing_named_file_is_a_config_error() {
        let e = Settings::load_with_env(Some(Path::new("/nonexistent/c.toml")), []).unwrap_err();
        assert_eq!(e.key, "--config");
    }
}
