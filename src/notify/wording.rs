//! What every channel says the same way: a finding's title and amounts as
//! text. Each channel escapes and lays them out in its own format.

use crate::engine::{Evidence, Finding, FindingKind, Record};

/// The title of a kind of finding.
pub(crate) fn title(kind: FindingKind) -> &'static str {
    match kind {
        FindingKind::DirectVsPartner => "Direct deal on a partner-registered account",
        FindingKind::PartnerBypassed => "Registered deal lost its partner",
        FindingKind::PartnerVsPartner => "Two partners claim one customer",
        FindingKind::RegistrationExpiring => "Registration about to expire",
        FindingKind::RegistrationExpired => "Registration expired without a win",
    }
}

/// The title of this finding: a registered deal that moved to another
/// partner is not one that lost its partner, and a won direct deal says so.
pub(crate) fn title_of(f: &Finding) -> &'static str {
    match f.kind {
        FindingKind::PartnerBypassed if moved_to(f).is_some() => {
            "Registered deal moved to another partner"
        }
        FindingKind::DirectVsPartner if won(f) => "Direct deal won on a partner-registered account",
        kind => title(kind),
    }
}

/// `210000` -> `210,000`; `1250.5` -> `1,250.50` (cents only when there are
/// any).
pub(crate) fn money(x: f64) -> String {
    crate::values::format_amount(x, crate::values::Cents::WhenAny)
}

pub(crate) fn won(f: &Finding) -> bool {
    f.evidence
        .iter()
        .any(|e| e.record == Record::Opportunity && e.status == "won")
}

/// The partner a bypassed registration's opportunity went to, if any.
pub(crate) fn moved_to(f: &Finding) -> Option<&Evidence> {
    f.evidence
        .iter()
        .find(|e| e.record == Record::Opportunity && e.partner_id.is_some())
}
