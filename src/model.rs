//! The vendor-neutral domain model.
//!
//! Every source (CSV files today; Salesforce, HubSpot and PartnerStack later) maps
//! into these types, and the engine reads nothing else. Nothing here knows where a
//! record came from.

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;

/// A CRM account (a customer, a prospect, or a partner's own company).
#[derive(Debug, Clone, PartialEq)]
pub struct Account {
    pub id: String,
    pub name: String,
    pub domain: Option<String>,
    pub website: Option<String>,
    pub owner_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Partner {
    pub id: String,
    pub name: String,
    pub tier: Option<String>,
    /// The partner's own account in the CRM: never a match for a registration.
    pub crm_account_id: Option<String>,
    pub domain: Option<String>,
}

/// An individual seller at a partner.
#[derive(Debug, Clone, PartialEq)]
pub struct PartnerRep {
    pub id: String,
    pub partner_id: String,
    pub email: Option<String>,
    pub name: Option<String>,
    pub active: bool,
    pub joined_on: Option<NaiveDate>,
    pub left_on: Option<NaiveDate>,
}

/// Text held inline up to 24 bytes, on the heap beyond (`compact_str`); it
/// reads as a `&str`.
pub type Text = compact_str::CompactString;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OpportunityStatus {
    Open,
    Won,
    Lost,
}

/// An amount in its own currency, and converted to the base currency.
#[derive(Debug, Clone, PartialEq)]
pub struct Money {
    pub value: f64,
    /// ISO code as given; `None` means the base currency.
    pub currency: Option<String>,
    /// `value` in the base currency (`scorecard.currency`); `None` when
    /// `scorecard.fx` has no rate for `currency`.
    pub base: Option<f64>,
}

/// An opportunity's text values are mostly short ids (`O-0000001`, `A-155110`,
/// `PR-48939`) and stage names: [`Text`] keeps up to 24 bytes inline, so a
/// million opportunities are not ten million separate allocations.
///
/// The fields are laid out in the order written (`repr(C)`), those that the
/// passes over every opportunity read first: the id, the account, the
/// partner and the registration in the first 96 bytes, then the status,
/// dates and amount. A million opportunities (288 MB) do not fit the cache,
/// so a pass costs the cache lines it touches: with Rust's own order, the
/// account and the partner were 96 bytes apart and the id straddled two
/// lines (see `BENCHMARKS.md`, 2026-12-04 12:00-13:35).
#[derive(Debug, Clone, PartialEq)]
#[repr(C)]
pub struct Opportunity {
    pub id: Text,
    pub account_id: Text,
    /// `None` means a direct opportunity.
    pub partner_id: Option<Text>,
    pub registration_id: Option<Text>,
    pub status: OpportunityStatus,
    pub created_at: DateTime<Utc>,
    pub close_date: Option<NaiveDate>,
    pub amount: Option<Money>,
    /// A rep id or email.
    pub partner_rep: Option<Text>,
    pub name: Option<Text>,
    pub owner_id: Option<Text>,
    pub stage: Option<Text>,
    /// The marketing campaign that produced it (SPEC §6.1), for MDF attribution.
    pub campaign_id: Option<Text>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RegistrationStatus {
    Submitted,
    Approved,
    Rejected,
    Expired,
    Cancelled,
    Won,
    Lost,
}

/// A status name that is not one of SPEC §2's (the parse error of
/// [`RegistrationStatus`] and [`OpportunityStatus`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown status {0:?}")]
pub struct UnknownStatus(pub String);

impl std::str::FromStr for RegistrationStatus {
    type Err = UnknownStatus;

    /// SPEC §2's names, any case, surrounding blanks ignored; `canceled`
    /// (US spelling) is `cancelled`. The one parser for files, PRM stage
    /// maps and settings.
    fn from_str(s: &str) -> Result<Self, UnknownStatus> {
        use RegistrationStatus::*;
        Ok(match s.trim().to_ascii_lowercase().as_str() {
            "submitted" => Submitted,
            "approved" => Approved,
            "rejected" => Rejected,
            "expired" => Expired,
            "cancelled" | "canceled" => Cancelled,
            "won" => Won,
            "lost" => Lost,
            _ => return Err(UnknownStatus(s.to_string())),
        })
    }
}

impl std::str::FromStr for OpportunityStatus {
    type Err = UnknownStatus;

    /// `open`, `won` or `lost`, any case, surrounding blanks ignored.
    fn from_str(s: &str) -> Result<Self, UnknownStatus> {
        Ok(match s.trim().to_ascii_lowercase().as_str() {
            "open" => OpportunityStatus::Open,
            "won" => OpportunityStatus::Won,
            "lost" => OpportunityStatus::Lost,
            _ => return Err(UnknownStatus(s.to_string())),
        })
    }
}

/// A deal registration: a partner's claim on a customer.
#[derive(Debug, Clone, PartialEq)]
pub struct Registration {
    pub id: String,
    pub partner_id: String,
    pub customer_name: String,
    pub status: RegistrationStatus,
    pub submitted_at: DateTime<Utc>,
    /// A rep id or email.
    pub rep: Option<String>,
    pub customer_domain: Option<String>,
    pub account_id: Option<String>,
    pub opportunity_id: Option<String>,
    pub approved_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
    pub amount: Option<f64>,
}

/// An internal (vendor) user: opportunity and account owners.
#[derive(Debug, Clone, PartialEq)]
pub struct User {
    pub id: String,
    pub name: Option<String>,
    pub email: Option<String>,
}

/// A row or record that was skipped, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rejected {
    pub file: String,
    pub line: u64,
    pub reason: String,
}

/// Everything the engine needs, already validated: ids are unique and every
/// reference between records resolves.
#[derive(Debug, Clone, Default)]
pub struct Dataset {
    pub accounts: Vec<Account>,
    pub partners: Vec<Partner>,
    pub reps: Vec<PartnerRep>,
    pub opportunities: Vec<Opportunity>,
    pub registrations: Vec<Registration>,
    pub users: Vec<User>,
}

/// A cost of the partner program in one review quarter (SPEC §6.1).
#[derive(Debug, Clone, PartialEq)]
pub struct ProgramCost {
    pub id: String,
    /// The review's own label, e.g. `2026-Q3`.
    pub quarter: String,
    pub amount: Money,
    /// `None`: program-wide (platform, people, ...).
    pub partner_id: Option<String>,
    pub category: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MdfStatus {
    Requested,
    Approved,
    Rejected,
    Claimed,
    Paid,
}

impl MdfStatus {
    /// Approved, claimed or paid: the money is (being) spent.
    pub fn is_spent(self) -> bool {
        matches!(
            self,
            MdfStatus::Approved | MdfStatus::Claimed | MdfStatus::Paid
        )
    }
}

/// A market-development-fund request (SPEC §6.1).
#[derive(Debug, Clone, PartialEq)]
pub struct MdfRequest {
    pub id: String,
    pub partner_id: String,
    pub status: MdfStatus,
    /// The approved amount.
    pub amount: Money,
    pub claimed_amount: Option<Money>,
    pub campaign_id: Option<String>,
    pub start_date: NaiveDate,
    pub end_date: Option<NaiveDate>,
}

/// The review's optional inputs: `None` when the table is absent, so a
/// metric that needs it is unknown rather than zero.
#[derive(Debug, Clone, Default)]
pub struct ReviewInputs {
    pub program_costs: Option<Vec<ProgramCost>>,
    pub mdf: Option<Vec<MdfRequest>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fields_every_pass_reads_come_first_in_an_opportunity() {
        use std::mem::{offset_of, size_of};
        // id, account, partner, registration: the first 96 bytes.
        assert_eq!(offset_of!(Opportunity, id), 0);
        assert_eq!(offset_of!(Opportunity, account_id), size_of::<Text>());
        let registration = offset_of!(Opportunity, registration_id);
        assert!(offset_of!(Opportunity, partner_id) < registration);
        assert!(registration + size_of::<Option<Text>>() <= 96);
        // Then the status and dates, before the amount and the rest.
        let status = offset_of!(Opportunity, status);
        assert!(status < offset_of!(Opportunity, amount));
        assert!(offset_of!(Opportunity, close_date) < offset_of!(Opportunity, amount));
        assert!(offset_of!(Opportunity, name) > offset_of!(Opportunity, amount));
        // And no padding bought with it: Rust's own order was 288 bytes too.
        assert_eq!(size_of::<Opportunity>(), 288);
    }

    #[test]
    fn a_status_parses_from_its_own_name_in_any_case_and_nothing_else() {
        use RegistrationStatus::*;
        for s in [Submitted, Approved, Rejected, Expired, Cancelled, Won, Lost] {
            let name = serde_json::to_value(s).unwrap();
            let name = name.as_str().unwrap();
            assert_eq!(name.parse::<RegistrationStatus>(), Ok(s));
            assert_eq!(format!(" {} ", name.to_uppercase()).parse(), Ok(s));
        }
        assert_eq!("canceled".parse(), Ok(Cancelled));
        assert_eq!(
            "closed".parse::<RegistrationStatus>(),
            Err(UnknownStatus("closed".into()))
        );
        assert!("".parse::<RegistrationStatus>().is_err());
        for s in [
            OpportunityStatus::Open,
            OpportunityStatus::Won,
            OpportunityStatus::Lost,
        ] {
            let name = serde_json::to_value(s).unwrap();
            assert_eq!(name.as_str().unwrap().parse(), Ok(s));
        }
        assert!("approved".parse::<OpportunityStatus>().is_err());
    }
}
