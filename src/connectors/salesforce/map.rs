//! What to read from the org, and how mirrored Salesforce records become the
//! domain model.
//!
//! - Account -> accounts; with `prm.kind = "salesforce"`, accounts with
//!   `IsPartner = true` are also the partners (tier from
//!   `prm.salesforce.tier_field`).
//! - Opportunity -> opportunities: won when `IsWon`, lost when `IsClosed` and
//!   not won, else open. The partner is the account in
//!   `crm.salesforce.fields.partner_account` (or the primary
//!   `OpportunityPartner`), mapped to the partner whose CRM account it is.
//!   The credited rep is `fields.partner_rep`, else the owner (by email, or
//!   Id when it has none) when the owner is a partner user.
//! - User -> internal users (`UserType = 'Standard'`); partner users
//!   (`PowerPartner`) are the partner reps when Salesforce is the PRM.
//! - The registration object (Lead by default) -> registrations, through the
//!   configured field and status maps.
//! - PartnerFundRequest and PartnerFundClaim -> the review's `mdf` rows,
//!   when the org has them (see [`mdf_request`]).
//!
//! A record that cannot be used is rejected with its object, Id and reason,
//! like a bad row in a file.

use std::collections::{BTreeMap, BTreeSet};

use super::sync::{Keep, ObjectSpec, SOURCE};
use crate::config::{Attribution, ConfigError, PrmKind, SalesforcePrmSettings, Settings};
use crate::connectors::files::{Loaded, link};
use crate::fast::FastMap;
use crate::model::{
    Account, Opportunity, OpportunityStatus, Partner, PartnerRep, Registration, Text, User,
};
use crate::store::{State, StateError};
use crate::sync::{self as mirror, Fields, Mapped, Record, flag, number, text, timestamp};
use crate::values::{date_of, parse_date};

/// The org's fields as `describe` reported them, per object.
#[derive(Debug, Clone, Default)]
pub(crate) struct OrgInfo {
    /// object -> lower-case field name -> (API name, type)
    objects: BTreeMap<String, BTreeMap<String, (String, String)>>,
}

impl OrgInfo {
    pub(crate) fn add(&mut self, object: &str, fields: Vec<(String, String)>) {
        self.objects.insert(
            object.to_string(),
            fields
                .into_iter()
                .map(|(name, kind)| (name.to_ascii_lowercase(), (name, kind)))
                .collect(),
        );
    }

    /// The field's API name as the org spells it, if the object has it.
    pub(crate) fn field(&self, object: &str, field: &str) -> Option<&str> {
        self.objects
            .get(object)?
            .get(&field.trim().to_ascii_lowercase())
            .map(|(name, _)| name.as_str())
    }

    fn kind(&self, object: &str, field: &str) -> Option<&str> {
        self.objects
            .get(object)?
            .get(&field.trim().to_ascii_lowercase())
            .map(|(_, kind)| kind.as_str())
    }

    /// Whether `describe` answered for the object.
    pub(crate) fn has(&self, object: &str) -> bool {
        self.objects.contains_key(object)
    }

    /// A multi-currency org has `CurrencyIsoCode` on Opportunity.
    pub(crate) fn multi_currency(&self) -> bool {
        self.field("Opportunity", "CurrencyIsoCode").is_some()
    }
}

/// The objects to describe before planning.
pub(crate) fn objects_to_describe(settings: &Settings) -> Vec<String> {
    let mut objects = vec!["Account".to_string(), "Opportunity".to_string()];
    if settings.crm.salesforce().partner_attribution == Attribution::OpportunityPartner {
        objects.push("OpportunityPartner".into());
    }
    if settings.prm.kind == Some(PrmKind::Salesforce) {
        objects.push(settings.prm.salesforce().registrations.object.clone());
    }
    objects
}

/// What to read and where each model field comes from, with every
/// configured field checked against the org.
#[derive(Debug, Clone)]
pub struct Plan {
    pub account: ObjectSpec,
    pub opportunity: ObjectSpec,
    pub user: ObjectSpec,
    pub opportunity_partner: Option<ObjectSpec>,
    pub registrations: Option<ObjectSpec>,
    partner_account: Option<String>,
    partner_rep: Option<String>,
    registration: Option<String>,
    currency: bool,
    /// `Opportunity.CampaignId` is read (the org has Campaigns).
    campaign: bool,
    prm: Option<PrmPlan>,
    /// The PRM's MDF objects, read when the org has them and a review value
    /// is written back.
    pub mdf: Option<MdfPlan>,
    /// Account fields of the percent type (write-back sends 25 for 0.25).
    pub percent_fields: BTreeSet<String>,
}

/// The PRM's market-development-fund objects (SPEC §6.1).
pub(crate) const MDF_REQUEST: &str = "PartnerFundRequest";
pub(crate) const MDF_CLAIM: &str = "PartnerFundClaim";

/// Reading the MDF objects: the fund requests and their claims.
#[derive(Debug, Clone)]
pub struct MdfPlan {
    pub request: ObjectSpec,
    pub claim: ObjectSpec,
    /// `PartnerFundRequest.CampaignId` exists (it is missing from some
    /// field references: only describe says).
    campaign: bool,
    currency: bool,
}

/// The MDF plan when the org has both objects (described into `org`).
pub(crate) fn mdf_plan(org: &OrgInfo) -> Option<MdfPlan> {
    if !(org.has(MDF_REQUEST) && org.has(MDF_CLAIM)) {
        return None;
    }
    let campaign = org.field(MDF_REQUEST, "CampaignId").is_some();
    let currency = org.field(MDF_REQUEST, "CurrencyIsoCode").is_some();
    let mut request: Vec<&str> = vec![
        "ChannelPartnerId",
        "Amount",
        "RequestedAmount",
        "Status",
        "CreatedDate",
    ];
    if campaign {
        request.push("CampaignId");
    }
    if currency {
        request.push("CurrencyIsoCode");
    }
    Some(MdfPlan {
        request: ObjectSpec::new(MDF_REQUEST, &request, true, Keep::All),
        claim: ObjectSpec::new(
            MDF_CLAIM,
            &["Amount", "RequestId", "Status"],
            true,
            Keep::All,
        ),
        campaign,
        currency,
    })
}

#[derive(Debug, Clone)]
struct PrmPlan {
    settings: SalesforcePrmSettings,
    tier: Option<String>,
    /// SPEC §2 registration column -> field API name.
    columns: BTreeMap<&'static str, String>,
}

fn missing(key: String, object: &str, field: &str) -> ConfigError {
    ConfigError::new(
        key,
        format!("no field '{field}' on {object} in this org (checked with describe)"),
    )
}

/// Plans the sync for this org. A configured field the org lacks is a
/// configuration error naming the key and the field.
pub(crate) fn plan(settings: &Settings, org: &OrgInfo) -> Result<Plan, ConfigError> {
    let sf = settings.crm.salesforce();
    let prm_kind = settings.prm.kind;
    let optional = |key: &str, object: &str, name: &str| -> Result<Option<String>, ConfigError> {
        if name.trim().is_empty() {
            return Ok(None);
        }
        org.field(object, name)
            .map(|f| Some(f.to_string()))
            .ok_or_else(|| missing(key.to_string(), object, name.trim()))
    };

    let mut account_fields: Vec<String> = vec!["Name".into(), "Website".into(), "OwnerId".into()];
    let mut prm = None;
    if prm_kind == Some(PrmKind::Salesforce) {
        let p = settings.prm.salesforce();
        if org.field("Account", "IsPartner").is_none() {
            return Err(ConfigError::new(
                "prm.kind",
                "Account.IsPartner does not exist in this org: Salesforce as PRM needs partner accounts (PRM or partner community licences)",
            ));
        }
        account_fields.push("IsPartner".into());
        let tier = optional("prm.salesforce.tier_field", "Account", &p.tier_field)?;
        account_fields.extend(tier.clone());
        let object = p.registrations.object.trim().to_string();
        let mut columns = BTreeMap::new();
        for (column, field) in p.registrations.fields.mapped() {
            let name = optional(
                &format!("prm.salesforce.registrations.fields.{column}"),
                &object,
                field,
            )?
            .unwrap_or_default();
            columns.insert(column, name);
        }
        prm = Some(PrmPlan {
            settings: p.into_owned(),
            tier,
            columns,
        });
    }
    for (scorecard, field) in &settings.writeback.fields {
        optional(&format!("writeback.fields.{scorecard}"), "Account", field)?;
    }
    if let Some(field) = &settings.writeback.decision_field {
        optional("writeback.decision_field", "Opportunity", field)?;
    }
    let percent_fields = settings
        .writeback
        .fields
        .values()
        .filter(|f| org.kind("Account", f) == Some("percent"))
        .cloned()
        .collect();

    let partner_account = match sf.partner_attribution {
        Attribution::PartnerAccount => optional(
            "crm.salesforce.fields.partner_account",
            "Opportunity",
            &sf.fields.partner_account,
        )?,
        Attribution::OpportunityPartner => None,
    };
    let partner_rep = optional(
        "crm.salesforce.fields.partner_rep",
        "Opportunity",
        &sf.fields.partner_rep,
    )?;
    let registration = optional(
        "crm.salesforce.fields.registration",
        "Opportunity",
        &sf.fields.registration,
    )?;
    let currency = org.multi_currency();
    let mut opportunity_fields: Vec<&str> = vec![
        "AccountId",
        "OwnerId",
        "Name",
        "StageName",
        "IsClosed",
        "IsWon",
        "Amount",
        "CloseDate",
        "CreatedDate",
    ];
    if currency {
        opportunity_fields.push("CurrencyIsoCode");
    }
    // The primary campaign (the review's MDF attribution, SPEC §6.1): the
    // field exists only when the org has Campaigns enabled.
    let campaign = org.field("Opportunity", "CampaignId").is_some();
    if campaign {
        opportunity_fields.push("CampaignId");
    }
    for f in [&partner_account, &partner_rep, &registration]
        .into_iter()
        .flatten()
    {
        opportunity_fields.push(f);
    }
    let opportunity_partner =
        (sf.partner_attribution == Attribution::OpportunityPartner).then(|| {
            ObjectSpec::new(
                "OpportunityPartner",
                &["OpportunityId", "AccountToId", "IsPrimary"],
                true,
                Keep::IsTrue("IsPrimary".into()),
            )
        });
    let registrations = prm.as_ref().map(|p| {
        let fields: Vec<&str> = p.columns.values().map(String::as_str).collect();
        let partner = p.columns.get("partner").cloned().unwrap_or_default();
        ObjectSpec::new(
            p.settings.registrations.object.trim(),
            &fields,
            true,
            Keep::NotNull(partner),
        )
    });
    let account_fields: Vec<&str> = account_fields.iter().map(String::as_str).collect();
    Ok(Plan {
        account: ObjectSpec::new("Account", &account_fields, true, Keep::All),
        opportunity: ObjectSpec::new("Opportunity", &opportunity_fields, true, Keep::All),
        user: ObjectSpec::new(
            "User",
            &[
                "Name",
                "Email",
                "IsActive",
                "UserType",
                "AccountId",
                "CreatedDate",
                "LastModifiedDate",
            ],
            false,
            Keep::All,
        ),
        opportunity_partner,
        registrations,
        partner_account,
        partner_rep,
        registration,
        currency,
        campaign,
        prm,
        mdf: if !settings.reads_review_inputs() {
            None
        } else {
            mdf_plan(org)
        },
        percent_fields,
    })
}

impl Plan {
    /// Every object to sync, in order.
    pub fn objects(&self) -> Vec<&ObjectSpec> {
        let mut all = vec![&self.account, &self.user];
        all.extend(&self.opportunity_partner);
        all.push(&self.opportunity);
        all.extend(&self.registrations);
        if let Some(m) = &self.mdf {
            all.push(&m.request);
            all.push(&m.claim);
        }
        all
    }
}

/// The first 15 characters of a Salesforce id: the case-sensitive form
/// both the 15- and the 18-character ids start with.
fn id15(id: &str) -> &str {
    if id.len() == 18 && id.is_ascii() {
        &id[..15]
    } else {
        id
    }
}

/// Reads every mirrored record of `spec` and hands each, parsed, to `each`.
fn scan(
    state: &State,
    spec: &ObjectSpec,
    each: impl FnMut(&str, Result<Record<'_>, String>),
) -> Result<(), StateError> {
    mirror::scan(state, SOURCE, &spec.object, each)
}

/// The PRM side when it comes from files rather than from the org.
pub(crate) type FilePrm = crate::connectors::files::PrmTables;

/// Builds the dataset from the mirror (and the PRM files, when the PRM is
/// kept in files), then checks ids and references as for files.
pub(crate) fn build(
    state: &State,
    settings: &Settings,
    plan: &Plan,
    file_prm: Option<FilePrm>,
) -> Result<Loaded, StateError> {
    // Accounts, and partner accounts when the org is the PRM.
    let mut accounts = Mapped::<Account>::new(SOURCE, "Account");
    let mut partners = Mapped::<Partner>::new(SOURCE, "Account");
    scan(state, &plan.account, |id, r| {
        let r = match r {
            Ok(r) => r,
            Err(e) => return accounts.reject(id, e),
        };
        let Some(name) = text(&r, "Name") else {
            return accounts.reject(id, "Name: empty".into());
        };
        if let Some(prm) = &plan.prm
            && flag(&r, "IsPartner") == Some(true)
        {
            partners.rows.push(Partner {
                id: id.to_string(),
                name: name.clone(),
                tier: prm.tier.as_deref().and_then(|f| text(&r, f)),
                crm_account_id: Some(id.to_string()),
                domain: None,
            });
        }
        accounts.rows.push(Account {
            id: id.to_string(),
            name,
            domain: None,
            website: text(&r, "Website"),
            owner_id: text(&r, "OwnerId"),
        });
    })?;

    // Users: internal ones, and partner users (the reps when the org is the PRM).
    let mut users = Mapped::<User>::new(SOURCE, "User");
    let mut reps = Mapped::<PartnerRep>::new(SOURCE, "User");
    // Partner user id -> how reps are named: the email when there is one
    // (it meets reps kept in files too), else the id.
    let mut partner_users: FastMap<String, String> = FastMap::default();
    scan(state, &plan.user, |id, r| {
        let r = match r {
            Ok(r) => r,
            Err(e) => return users.reject(id, e),
        };
        match text(&r, "UserType").as_deref() {
            Some("Standard") => users.rows.push(User {
                id: id.to_string(),
                name: text(&r, "Name"),
                email: text(&r, "Email"),
            }),
            Some("PowerPartner") => {
                partner_users.insert(
                    id.to_string(),
                    text(&r, "Email").unwrap_or_else(|| id.to_string()),
                );
                if plan.prm.is_none() {
                    return;
                }
                let Some(partner) = text(&r, "AccountId") else {
                    return reps.reject(id, "AccountId: empty on a partner user".into());
                };
                let active = flag(&r, "IsActive").unwrap_or(true);
                let left_on = if active {
                    None
                } else {
                    // Salesforce keeps no deactivation date: the last change
                    // to the user is the best one there is.
                    timestamp(&r, "LastModifiedDate")
                        .ok()
                        .flatten()
                        .map(|t| date_of(&t))
                };
                reps.rows.push(PartnerRep {
                    id: id.to_string(),
                    partner_id: partner,
                    email: text(&r, "Email"),
                    name: text(&r, "Name"),
                    active,
                    joined_on: timestamp(&r, "CreatedDate")
                        .ok()
                        .flatten()
                        .map(|t| date_of(&t)),
                    left_on,
                });
            }
            // Portal customers, guests, integration users: neither.
            _ => {}
        }
    })?;

    // The PRM tables: from the org, or from files.
    let (partners, reps, registrations) = match file_prm {
        Some(crate::dataset::PrmTables {
            partners: mut file_partners,
            reps: file_reps,
            registrations: file_registrations,
        }) => {
            // Files may name a partner's account by its 15-character id:
            // use the org's 18-character one so exclusion and write-back
            // meet the same record.
            let by15: FastMap<&str, &str> = accounts
                .rows
                .iter()
                .map(|a| (id15(&a.id), a.id.as_str()))
                .collect();
            for p in &mut file_partners.rows {
                if let Some(full) = p.crm_account_id.as_deref().and_then(|c| by15.get(id15(c))) {
                    p.crm_account_id = Some((*full).to_string());
                }
            }
            (file_partners, file_reps, file_registrations)
        }
        None => {
            let mut registrations = Mapped::<Registration>::new(
                SOURCE,
                plan.registrations
                    .as_ref()
                    .map_or("Lead", |s| s.object.as_str()),
            );
            if let (Some(prm), Some(spec)) = (&plan.prm, &plan.registrations) {
                scan(state, spec, |id, r| {
                    match r.and_then(|r| registration(id, &r, prm)) {
                        Ok(reg) => registrations.rows.push(reg),
                        Err(e) => registrations.reject(id, e),
                    }
                })?;
            }
            (partners.table(), reps.table(), registrations.table())
        }
    };

    // Opportunities, with their partner through the partner's account.
    let partner_of_account: FastMap<String, String> = partners
        .rows
        .iter()
        .filter_map(|p| {
            p.crm_account_id
                .as_deref()
                .map(|a| (id15(a).to_string(), p.id.clone()))
        })
        .collect();
    let mut primary_partner: FastMap<String, String> = FastMap::default();
    if let Some(spec) = &plan.opportunity_partner {
        scan(state, spec, |_, r| {
            if let Ok(r) = r
                && let (Some(opp), Some(account)) =
                    (text(&r, "OpportunityId"), text(&r, "AccountToId"))
            {
                primary_partner.insert(opp, account);
            }
        })?;
    }
    let money = &settings.scorecard;
    let mut opportunities = Mapped::<Opportunity>::new(SOURCE, "Opportunity");
    mirror::scan_into(
        state,
        SOURCE,
        &plan.opportunity.object,
        &mut opportunities,
        |id, r| -> Result<Opportunity, String> {
            let account_id = text(&r, "AccountId")
                .ok_or("AccountId: empty (an opportunity without an account cannot be matched)")?;
            let status = if flag(&r, "IsWon") == Some(true) {
                OpportunityStatus::Won
            } else if flag(&r, "IsClosed") == Some(true) {
                OpportunityStatus::Lost
            } else {
                OpportunityStatus::Open
            };
            let created_at = timestamp(&r, "CreatedDate")?.ok_or("CreatedDate: empty")?;
            let amount = number(&r, "Amount")?.map(|value| {
                crate::values::money(
                    value,
                    plan.currency.then(|| text(&r, "CurrencyIsoCode")).flatten(),
                    money,
                )
            });
            let close_date = match text(&r, "CloseDate") {
                None => None,
                Some(d) => {
                    Some(parse_date(&d).ok_or_else(|| format!("CloseDate: not a date: '{d}'"))?)
                }
            };
            let partner_account = match &plan.partner_account {
                Some(field) => text(&r, field),
                None => primary_partner.get(id).cloned(),
            };
            let partner_id = match partner_account {
                None => None,
                Some(account) => Some(partner_of_account.get(id15(&account)).cloned().ok_or_else(
                    || {
                        format!(
                            "{}: account {account} is not a known partner",
                            plan.partner_account
                                .as_deref()
                                .unwrap_or("OpportunityPartner")
                        )
                    },
                )?),
            };
            let owner_id = text(&r, "OwnerId");
            let partner_rep = plan
                .partner_rep
                .as_deref()
                .and_then(|f| text(&r, f))
                .or_else(|| {
                    owner_id
                        .as_deref()
                        .and_then(|o| partner_users.get(o))
                        .cloned()
                });
            Ok(Opportunity {
                id: id.into(),
                account_id: account_id.into(),
                status,
                created_at,
                name: text(&r, "Name").map(Text::from),
                owner_id: owner_id.map(Text::from),
                stage: text(&r, "StageName").map(Text::from),
                amount,
                close_date,
                partner_id: partner_id.map(Text::from),
                partner_rep: partner_rep.map(Text::from),
                registration_id: plan
                    .registration
                    .as_deref()
                    .and_then(|f| text(&r, f))
                    .map(Text::from),
                campaign_id: plan
                    .campaign
                    .then(|| text(&r, "CampaignId"))
                    .flatten()
                    .map(Text::from),
            })
        },
    )?;

    Ok(link(
        accounts.table(),
        partners,
        reps,
        opportunities.table(),
        registrations,
        users.table(),
    ))
}

/// What a fund request's claims add up to.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Claimed {
    /// The sum of the claims `Approved` or `Paid`.
    pub amount: f64,
    /// How many claims counted, and how many of them are `Paid`.
    pub counted: usize,
    pub paid: usize,
}

impl Claimed {
    /// Adds one claim; drafts and rejected claims are not money spent.
    pub(crate) fn add(&mut self, status: Option<&str>, amount: f64) {
        match status.map(str::trim) {
            Some(s) if s.eq_ignore_ascii_case("Approved") => {}
            Some(s) if s.eq_ignore_ascii_case("Paid") => self.paid += 1,
            _ => return,
        }
        self.counted += 1;
        self.amount += amount;
    }
}

/// One `PartnerFundRequest` as the `mdf` row of SPEC §6.1:
/// - `Amount` is the approved amount (`RequestedAmount` what was asked);
/// - status `Approved` is approved, or `claimed` once claims are approved,
///   `paid` when every counted claim is paid; `Rejected` is rejected; any
///   other value (`Draft`, `Submitted`, ...) is still a request;
/// - `claimed_amount` is the sum of the claims `Approved` or `Paid`, none
///   when there is no such claim;
/// - the request has no activity dates: `start_date` is the day it was
///   created, with no end (attribution runs `mdf_attribution_days` from it).
pub(crate) fn mdf_request<R: Fields + ?Sized>(
    id: &str,
    r: &R,
    claims: Option<&Claimed>,
    plan: &MdfPlan,
    partner_of_account: &FastMap<String, String>,
    money: &crate::config::ScorecardSettings,
) -> Result<crate::model::MdfRequest, String> {
    use crate::model::MdfStatus;
    let account = text(r, "ChannelPartnerId").ok_or("ChannelPartnerId: empty (no partner)")?;
    let partner_id = partner_of_account
        .get(id15(&account))
        .cloned()
        .ok_or_else(|| format!("ChannelPartnerId: account {account} is not a known partner"))?;
    let status_value = text(r, "Status");
    let claims = claims.copied().unwrap_or_default();
    let status = match status_value.as_deref() {
        Some(s) if s.eq_ignore_ascii_case("Approved") => {
            if claims.counted == 0 {
                MdfStatus::Approved
            } else if claims.paid == claims.counted {
                MdfStatus::Paid
            } else {
                MdfStatus::Claimed
            }
        }
        Some(s) if s.eq_ignore_ascii_case("Rejected") => MdfStatus::Rejected,
        _ => MdfStatus::Requested,
    };
    let amount = match (number(r, "Amount")?, status.is_spent()) {
        (Some(a), _) => a,
        // Approved without an approved amount: what was asked for.
        (None, true) => number(r, "RequestedAmount")?
            .ok_or("Amount: empty on an approved request (and no RequestedAmount)")?,
        (None, false) => 0.0,
    };
    let currency = plan.currency.then(|| text(r, "CurrencyIsoCode")).flatten();
    let created = timestamp(r, "CreatedDate")?.ok_or("CreatedDate: empty")?;
    Ok(crate::model::MdfRequest {
        id: id.to_string(),
        partner_id,
        status,
        amount: crate::values::money(amount, currency.clone(), money),
        claimed_amount: (claims.counted > 0)
            .then(|| crate::values::money(claims.amount, currency, money)),
        campaign_id: plan.campaign.then(|| text(r, "CampaignId")).flatten(),
        start_date: date_of(&created),
        end_date: None,
    })
}

/// The `mdf` rows, and the records rejected on the way.
pub(crate) type MdfRows = (Vec<crate::model::MdfRequest>, Vec<crate::model::Rejected>);

/// The `mdf` rows from the mirrored MDF objects; `None` when the plan does
/// not read them (the org has none, or no review value is written back).
pub(crate) fn mdf(
    state: &State,
    settings: &Settings,
    plan: &Plan,
    partners: &[Partner],
) -> Result<Option<MdfRows>, StateError> {
    let Some(m) = &plan.mdf else {
        return Ok(None);
    };
    let mut claimed: FastMap<String, Claimed> = FastMap::default();
    let mut claims = Mapped::<()>::new(SOURCE, MDF_CLAIM);
    scan(state, &m.claim, |id, r| {
        let r = match r {
            Ok(r) => r,
            Err(e) => return claims.reject(id, e),
        };
        let Some(request) = text(&r, "RequestId") else {
            return claims.reject(id, "RequestId: empty".into());
        };
        match number(&r, "Amount") {
            Ok(amount) => claimed
                .entry(id15(&request).to_string())
                .or_default()
                .add(text(&r, "Status").as_deref(), amount.unwrap_or(0.0)),
            Err(e) => claims.reject(id, e),
        }
    })?;
    let partner_of_account: FastMap<String, String> = partners
        .iter()
        .filter_map(|p| {
            p.crm_account_id
                .as_deref()
                .map(|a| (id15(a).to_string(), p.id.clone()))
        })
        .collect();
    let mut requests = Mapped::<crate::model::MdfRequest>::new(SOURCE, MDF_REQUEST);
    scan(state, &m.request, |id, r| {
        match r.and_then(|r| {
            mdf_request(
                id,
                &r,
                claimed.get(id15(id)),
                m,
                &partner_of_account,
                &settings.scorecard,
            )
        }) {
            Ok(row) => requests.rows.push(row),
            Err(e) => requests.reject(id, e),
        }
    })?;
    let mut rejected = claims.rejected;
    rejected.append(&mut requests.rejected);
    Ok(Some((requests.rows, rejected)))
}

/// One registration record through the configured field and status maps.
fn registration<R: Fields + ?Sized>(
    id: &str,
    r: &R,
    prm: &PrmPlan,
) -> Result<Registration, String> {
    let field = |column: &str| prm.columns.get(column).map(String::as_str);
    let get = |column: &str| field(column).and_then(|f| text(r, f));
    let when = |column: &str| match field(column) {
        None => Ok(None),
        Some(f) => timestamp(r, f),
    };
    let partner_id = get("partner").ok_or_else(|| {
        format!(
            "{}: empty (no partner)",
            field("partner").unwrap_or("partner")
        )
    })?;
    let customer_name = get("customer_name").ok_or_else(|| {
        format!(
            "{}: empty (no customer name)",
            field("customer_name").unwrap_or("customer_name")
        )
    })?;
    let status_field = field("status").unwrap_or("status");
    let value = get("status").ok_or_else(|| format!("{status_field}: empty"))?;
    let status = prm.settings.status_of(&value).ok_or_else(|| {
        format!("{status_field}: '{value}' is not in prm.salesforce.registrations.status_map")
    })?;
    let submitted_at = when("submitted_at")?
        .ok_or_else(|| format!("{}: empty", field("submitted_at").unwrap_or("submitted_at")))?;
    Ok(Registration {
        id: id.to_string(),
        partner_id,
        customer_name,
        status,
        submitted_at,
        rep: get("rep"),
        customer_domain: get("customer_domain"),
        account_id: get("account_id"),
        opportunity_id: get("opportunity_id"),
        approved_at: when("approved_at")?,
        expires_at: when("expires_at")?,
        amount: match field("amount") {
            None => None,
            Some(f) => number(r, f)?,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::RegistrationStatus;
    use serde_json::{Map, Value, json};

    fn org(multi_currency: bool) -> OrgInfo {
        let mut org = OrgInfo::default();
        let fields = |names: &[(&str, &str)]| {
            names
                .iter()
                .map(|(n, t)| (n.to_string(), t.to_string()))
                .collect::<Vec<_>>()
        };
        org.add(
            "Account",
            fields(&[
                ("Id", "id"),
                ("Name", "string"),
                ("Website", "url"),
                ("OwnerId", "reference"),
                ("IsPartner", "boolean"),
                ("Partner_Tier__c", "picklist"),
                ("Active_Seller_Rate__c", "percent"),
                ("Partner_Reps__c", "double"),
            ]),
        );
        let mut opp = fields(&[
            ("Id", "id"),
            ("AccountId", "reference"),
            ("PartnerAccountId", "reference"),
            ("Partner_Rep__c", "string"),
            ("Deal_Registration__c", "string"),
        ]);
        if multi_currency {
            opp.push(("CurrencyIsoCode".into(), "picklist".into()));
            // The multi-currency test org has Campaigns enabled too.
            opp.push(("CampaignId".into(), "reference".into()));
        }
        org.add("Opportunity", opp);
        org.add(
            "Lead",
            fields(&[
                ("Id", "id"),
                ("Company", "string"),
                ("Status", "picklist"),
                ("PartnerAccountId", "reference"),
                ("CreatedById", "reference"),
                ("CreatedDate", "datetime"),
                ("Website", "url"),
                ("ConvertedAccountId", "reference"),
                ("ConvertedOpportunityId", "reference"),
                ("ConvertedDate", "date"),
            ]),
        );
        org
    }

    fn settings(extra: &str) -> Settings {
        Settings::from_toml(&format!(
            "[crm]\nkind = \"salesforce\"\n[prm]\nkind = \"salesforce\"\n[prm.salesforce]\ntier_field = \"Partner_Tier__c\"\n[scorecard.fx]\nEUR = 1.1\n{extra}"
        ))
        .unwrap()
    }

    #[test]
    fn a_configured_field_the_org_lacks_is_named() {
        let mut s = settings("");
        s.crm.salesforce = Some(crate::config::SalesforceSettings {
            fields: crate::config::SalesforceFields {
                partner_rep: "Credited_Rep__c".into(),
                ..Default::default()
            },
            ..Default::default()
        });
        let e = plan(&s, &org(false)).unwrap_err();
        assert_eq!(e.key, "crm.salesforce.fields.partner_rep");
        assert!(e.message.contains("Credited_Rep__c"), "{e}");

        let s = settings("[writeback.fields]\nreps = \"Reps_Count__c\"\n");
        let e = plan(&s, &org(false)).unwrap_err();
        assert_eq!(e.key, "writeback.fields.reps");

        let s = settings("[writeback]\ndecision_field = \"Channel_Decision__c\"\n");
        let e = plan(&s, &org(false)).unwrap_err();
        assert_eq!(e.key, "writeback.decision_field");
        assert!(e.message.contains("Opportunity"), "{e}");

        let s = settings("[prm.salesforce.registrations.fields]\namount = \"Deal_Size__c\"\n");
        let e = plan(&s, &org(false)).unwrap_err();
        assert_eq!(e.key, "prm.salesforce.registrations.fields.amount");

        let mut no_prm = org(false);
        no_prm.add(
            "Account",
            vec![("Id".into(), "id".into()), ("Name".into(), "string".into())],
        );
        let e = plan(&settings(""), &no_prm).unwrap_err();
        assert_eq!(e.key, "prm.kind");
    }

    #[test]
    fn the_plan_reads_only_what_is_configured_and_knows_percent_fields() {
        let s = settings(
            "[writeback.fields]\nactive_seller_rate = \"active_seller_rate__c\"\nreps = \"Partner_Reps__c\"\n",
        );
        let p = plan(&s, &org(true)).unwrap();
        assert!(
            p.opportunity
                .fields
                .contains(&"CurrencyIsoCode".to_string())
        );
        assert!(p.account.fields.contains(&"Partner_Tier__c".to_string()));
        assert_eq!(
            p.percent_fields,
            BTreeSet::from(["active_seller_rate__c".to_string()])
        );
        assert!(p.opportunity.fields.contains(&"CampaignId".to_string()));
        let p = plan(&s, &org(false)).unwrap();
        assert!(
            !p.opportunity
                .fields
                .contains(&"CurrencyIsoCode".to_string())
        );
        assert!(
            !p.opportunity.fields.contains(&"CampaignId".to_string()),
            "an org without Campaigns has no CampaignId to read"
        );
        let objects: Vec<&str> = p.objects().iter().map(|o| o.object.as_str()).collect();
        assert_eq!(objects, ["Account", "User", "Opportunity", "Lead"]);
    }

    fn put(state: &State, object: &str, records: &[Value]) {
        let rows: Vec<(String, Map<String, Value>)> = records
            .iter()
            .map(|r| {
                let mut r = r.as_object().unwrap().clone();
                let id = r.remove("Id").unwrap().as_str().unwrap().to_string();
                (id, r)
            })
            .collect();
        mirror::put_objects(state, SOURCE, object, 1, &rows).unwrap();
    }

    fn program(state: &State) {
        put(
            state,
            "Account",
            &[
                json!({"Id": "001000000000001AAA", "Name": "Acme", "Website": "acme.com", "IsPartner": false}),
                json!({"Id": "001000000000002AAA", "Name": "Northwind", "IsPartner": true, "Partner_Tier__c": "Gold"}),
                json!({"Id": "001000000000003AAA", "Name": null}),
            ],
        );
        put(
            state,
            "User",
            &[
                json!({"Id": "005A", "Name": "Dana Direct", "Email": "dana@vendor.example", "UserType": "Standard", "IsActive": true}),
                json!({"Id": "005P", "Name": "Pat Partner", "Email": "pat@northwind.example", "UserType": "PowerPartner", "IsActive": false, "AccountId": "001000000000002AAA", "CreatedDate": "2026-01-05T00:00:00.000+0000", "LastModifiedDate": "2026-10-01T09:00:00.000+0000"}),
            ],
        );
        put(
            state,
            "Opportunity",
            &[
                json!({"Id": "006D", "AccountId": "001000000000001AAA", "OwnerId": "005A", "IsClosed": false, "IsWon": false, "CreatedDate": "2026-10-01T00:00:00.000+0000", "Amount": 100.0, "CurrencyIsoCode": "EUR"}),
                json!({"Id": "006P", "AccountId": "001000000000001AAA", "OwnerId": "005P", "IsClosed": true, "IsWon": true, "CreatedDate": "2026-09-01T00:00:00.000+0000", "CloseDate": "2026-09-30", "PartnerAccountId": "001000000000002AAA", "CampaignId": "701000000000001AAA"}),
                json!({"Id": "006L", "AccountId": "001000000000001AAA", "IsClosed": true, "IsWon": false, "CreatedDate": "2026-09-01T00:00:00.000+0000", "Partner_Rep__c": "x@y.example", "PartnerAccountId": "001000000000001AAA"}),
                json!({"Id": "006X", "AccountId": null, "CreatedDate": "2026-09-01T00:00:00.000+0000"}),
            ],
        );
        put(
            state,
            "Lead",
            &[
                json!({"Id": "00QA", "Company": "Acme", "Status": "Closed - Converted", "PartnerAccountId": "001000000000002AAA", "CreatedById": "005P", "CreatedDate": "2026-08-01T00:00:00.000+0000", "ConvertedDate": "2026-08-03", "ConvertedOpportunityId": "006P"}),
                json!({"Id": "00QB", "Company": "Beta", "Status": "Nurturing", "PartnerAccountId": "001000000000002AAA", "CreatedDate": "2026-08-01T00:00:00.000+0000"}),
            ],
        );
    }

    #[test]
    fn the_org_as_crm_and_prm_maps_onto_the_model() {
        let dir = tempfile::tempdir().unwrap();
        let state = State::open(&dir.path().join("s.db")).unwrap();
        program(&state);
        let s = settings("");
        let p = plan(&s, &org(true)).unwrap();
        let loaded = build(&state, &s, &p, None).unwrap();
        let d = &loaded.dataset;

        assert_eq!(d.accounts.len(), 2);
        assert_eq!(d.partners.len(), 1);
        let partner = &d.partners[0];
        assert_eq!(partner.id, "001000000000002AAA");
        assert_eq!(partner.tier.as_deref(), Some("Gold"));
        assert_eq!(
            partner.crm_account_id.as_deref(),
            Some("001000000000002AAA")
        );

        assert_eq!(d.users.len(), 1, "partner users are not internal users");
        assert_eq!(d.reps.len(), 1);
        let rep = &d.reps[0];
        assert!(!rep.active);
        assert_eq!(rep.left_on.unwrap().to_string(), "2026-10-01");
        assert_eq!(rep.joined_on.unwrap().to_string(), "2026-01-05");

        let opp = |id: &str| d.opportunities.iter().find(|o| o.id == id).unwrap();
        let direct = opp("006D");
        assert_eq!(direct.status, OpportunityStatus::Open);
        assert_eq!(direct.partner_id, None);
        let money = direct.amount.as_ref().unwrap();
        assert_eq!(money.currency.as_deref(), Some("EUR"));
        assert!((money.base.unwrap() - 110.0).abs() < 1e-9);
        let won = opp("006P");
        assert_eq!(won.status, OpportunityStatus::Won);
        assert_eq!(won.partner_id.as_deref(), Some("001000000000002AAA"));
        assert_eq!(
            won.partner_rep.as_deref(),
            Some("pat@northwind.example"),
            "the partner-user owner"
        );
        assert_eq!(won.close_date.unwrap().to_string(), "2026-09-30");
        assert_eq!(won.campaign_id.as_deref(), Some("701000000000001AAA"));
        assert_eq!(direct.campaign_id, None);

        assert_eq!(d.registrations.len(), 1);
        let reg = &d.registrations[0];
        assert_eq!(reg.status, RegistrationStatus::Approved);
        assert_eq!(reg.rep.as_deref(), Some("005P"));
        assert_eq!(reg.opportunity_id.as_deref(), Some("006P"));
        assert_eq!(
            reg.approved_at.map(|t| t.to_rfc3339()).as_deref(),
            Some("2026-08-03T00:00:00+00:00")
        );

        let reasons: Vec<(String, String)> = loaded
            .rejected
            .iter()
            .map(|r| (r.file.clone(), r.reason.clone()))
            .collect();
        let has = |file: &str, why: &str| reasons.iter().any(|(f, r)| f == file && r.contains(why));
        assert!(
            has("salesforce Account 001000000000003AAA", "Name: empty"),
            "{reasons:?}"
        );
        assert!(
            has("salesforce Opportunity 006X", "AccountId: empty"),
            "{reasons:?}"
        );
        assert!(
            has("salesforce Opportunity 006L", "is not a known partner"),
            "{reasons:?}"
        );
        assert!(
            has(
                "salesforce Lead 00QB",
                "'Nurturing' is not in prm.salesforce.registrations.status_map"
            ),
            "{reasons:?}"
        );
        assert!(loaded.rejected.iter().all(|r| r.line == 0));
    }

    #[test]
    fn the_primary_opportunity_partner_can_be_the_attribution() {
        let dir = tempfile::tempdir().unwrap();
        let state = State::open(&dir.path().join("s.db")).unwrap();
        program(&state);
        // 006D has no PartnerAccountId, but a primary OpportunityPartner.
        put(
            &state,
            "OpportunityPartner",
            &[
                json!({"Id": "00ZA", "OpportunityId": "006D", "AccountToId": "001000000000002AAA", "IsPrimary": true}),
            ],
        );
        let s = settings("[crm.salesforce]\npartner_attribution = \"opportunity_partner\"\n");
        let mut o = org(false);
        o.add(
            "OpportunityPartner",
            vec![
                ("Id".into(), "id".into()),
                ("AccountToId".into(), "reference".into()),
            ],
        );
        let p = plan(&s, &o).unwrap();
        assert!(
            !p.opportunity
                .fields
                .contains(&"PartnerAccountId".to_string())
        );
        let spec = p.opportunity_partner.as_ref().unwrap();
        assert_eq!(spec.keep, Keep::IsTrue("IsPrimary".into()));
        let loaded = build(&state, &s, &p, None).unwrap();
        let d = &loaded.dataset;
        let opp = |id: &str| d.opportunities.iter().find(|o| o.id == id).unwrap();
        assert_eq!(
            opp("006D").partner_id.as_deref(),
            Some("001000000000002AAA")
        );
        assert_eq!(opp("006P").partner_id, None, "PartnerAccountId is not read");
        assert!(
            d.opportunities.iter().any(|o| o.id == "006L"),
            "no longer rejected: its PartnerAccountId is not read"
        );
    }

    #[test]
    fn prm_files_meet_the_org_through_15_or_18_character_ids() {
        let dir = tempfile::tempdir().unwrap();
        let state = State::open(&dir.path().join("s.db")).unwrap();
        program(&state);
        let prm = dir.path().join("prm");
        std::fs::create_dir(&prm).unwrap();
        std::fs::write(
            prm.join("partners.csv"),
            "id,name,crm_account_id\nP-1,Northwind,001000000000002\n",
        )
        .unwrap();
        std::fs::write(prm.join("partner_reps.csv"), "id,partner_id\nR-1,P-1\n").unwrap();
        std::fs::write(
            prm.join("registrations.csv"),
            "id,partner_id,customer_name,status,submitted_at\nG-1,P-1,Acme,approved,2026-08-01\n",
        )
        .unwrap();
        let s = Settings::from_toml(&format!(
            "[crm]\nkind = \"salesforce\"\n[prm]\nkind = \"files\"\n[prm.files]\ndir = \"{}\"\n[scorecard.fx]\nEUR = 1.1\n",
            prm.display()
        ))
        .unwrap();
        let p = plan(&s, &org(false)).unwrap();
        assert!(p.registrations.is_none());
        assert!(!p.account.fields.contains(&"IsPartner".to_string()));
        let loaded = build(
            &state,
            &s,
            &p,
            Some(crate::connectors::files::load_prm(&prm).unwrap()),
        )
        .unwrap();
        let d = &loaded.dataset;
        assert_eq!(
            d.partners[0].crm_account_id.as_deref(),
            Some("001000000000002AAA")
        );
        let won = d.opportunities.iter().find(|o| o.id == "006P").unwrap();
        assert_eq!(won.partner_id.as_deref(), Some("P-1"));
        assert_eq!(d.registrations.len(), 1);
        assert_eq!(d.reps.len(), 1);
    }

    fn mdf_org(campaign: bool) -> OrgInfo {
        let mut org = OrgInfo::default();
        let mut request = vec![
            ("Id".to_string(), "id".to_string()),
            ("ChannelPartnerId".into(), "reference".into()),
            ("Amount".into(), "currency".into()),
            ("RequestedAmount".into(), "currency".into()),
            ("Status".into(), "picklist".into()),
        ];
        if campaign {
            request.push(("CampaignId".into(), "reference".into()));
        }
        org.add(MDF_REQUEST, request);
        org.add(MDF_CLAIM, vec![("Amount".into(), "currency".into())]);
        org
    }

    fn partners_by_account() -> FastMap<String, String> {
        [("001000000000P01".to_string(), "P-1".to_string())]
            .into_iter()
            .collect()
    }

    fn request(extra: Value) -> Map<String, Value> {
        let mut r = json!({"ChannelPartnerId": "001000000000P01AAA", "Status": "Approved", "Amount": 8000, "RequestedAmount": 10000, "CampaignId": "701C01", "CreatedDate": "2026-07-15T10:00:00.000+0000"});
        for (k, v) in extra.as_object().unwrap() {
            r[k] = v.clone();
        }
        r.as_object().unwrap().clone()
    }

    #[test]
    fn mdf_is_read_only_when_the_org_has_both_objects_and_the_review_is_written() {
        assert!(mdf_plan(&OrgInfo::default()).is_none());
        let mut half = OrgInfo::default();
        half.add(MDF_REQUEST, vec![("Id".into(), "id".into())]);
        assert!(mdf_plan(&half).is_none(), "a request object without claims");
        let m = mdf_plan(&mdf_org(false)).unwrap();
        assert!(!m.request.fields.contains(&"CampaignId".to_string()));
        let m = mdf_plan(&mdf_org(true)).unwrap();
        assert!(m.request.fields.contains(&"CampaignId".to_string()));

        let mut org = org(false);
        for (o, f) in mdf_org(true).objects {
            org.objects.insert(o, f);
        }
        let p = plan(&settings(""), &org).unwrap();
        assert!(p.mdf.is_none(), "no review value written back: not read");
        let p = plan(
            &settings("[writeback.fields]\nmdf_spend = \"Partner_Reps__c\"\n"),
            &org,
        )
        .unwrap();
        let objects: Vec<&str> = p.objects().iter().map(|o| o.object.as_str()).collect();
        assert!(objects.ends_with(&[MDF_REQUEST, MDF_CLAIM]), "{objects:?}");
    }

    #[test]
    fn claims_count_when_approved_or_paid() {
        let mut c = Claimed::default();
        for (status, amount) in [
            (Some("Approved"), 3000.0),
            (Some("Paid"), 2000.0),
            (Some("Draft"), 9999.0),
            (Some("Rejected"), 500.0),
            (None, 700.0),
        ] {
            c.add(status, amount);
        }
        assert_eq!(
            c,
            Claimed {
                amount: 5000.0,
                counted: 2,
                paid: 1
            }
        );
        let s = settings("");
        let m = mdf_plan(&mdf_org(true)).unwrap();
        let r = mdf_request(
            "F1",
            &request(json!({})),
            Some(&c),
            &m,
            &partners_by_account(),
            &s.scorecard,
        )
        .unwrap();
        assert_eq!(r.partner_id, "P-1");
        assert_eq!(r.status, crate::model::MdfStatus::Claimed);
        assert_eq!(r.amount.base, Some(8000.0), "Amount is the approved amount");
        assert_eq!(r.claimed_amount.unwrap().base, Some(5000.0));
        assert_eq!(r.campaign_id.as_deref(), Some("701C01"));
        assert_eq!(r.start_date.to_string(), "2026-07-15");
        assert_eq!(r.end_date, None);

        let mut paid = Claimed::default();
        paid.add(Some("Paid"), 2000.0);
        let r = mdf_request(
            "F1",
            &request(json!({})),
            Some(&paid),
            &m,
            &partners_by_account(),
            &s.scorecard,
        )
        .unwrap();
        assert_eq!(r.status, crate::model::MdfStatus::Paid);

        // Only drafts: nothing claimed, the approved amount is the spend.
        let mut drafts = Claimed::default();
        drafts.add(Some("Draft"), 100.0);
        let r = mdf_request(
            "F1",
            &request(json!({})),
            Some(&drafts),
            &m,
            &partners_by_account(),
            &s.scorecard,
        )
        .unwrap();
        assert_eq!(r.status, crate::model::MdfStatus::Approved);
        assert_eq!(r.claimed_amount, None);
    }

    #[test]
    fn a_request_maps_without_campaign_and_by_its_status() {
        let s = settings("");
        let by = partners_by_account();
        // The org has no CampaignId on requests: none, even if a value came.
        let m = mdf_plan(&mdf_org(false)).unwrap();
        let r = mdf_request("F2", &request(json!({})), None, &m, &by, &s.scorecard).unwrap();
        assert_eq!(r.campaign_id, None);
        assert_eq!(r.status, crate::model::MdfStatus::Approved);
        let m = mdf_plan(&mdf_org(true)).unwrap();
        let r = mdf_request(
            "F2",
            &request(json!({"CampaignId": null})),
            None,
            &m,
            &by,
            &s.scorecard,
        )
        .unwrap();
        assert_eq!(r.campaign_id, None);

        for (status, want) in [
            ("Rejected", crate::model::MdfStatus::Rejected),
            ("Draft", crate::model::MdfStatus::Requested),
            ("Submitted", crate::model::MdfStatus::Requested),
        ] {
            let r = mdf_request(
                "F3",
                &request(json!({"Status": status, "Amount": null})),
                None,
                &m,
                &by,
                &s.scorecard,
            )
            .unwrap();
            assert_eq!(r.status, want, "{status}");
            assert!(!r.status.is_spent());
        }
        // Approved without an approved amount: what was asked for.
        let r = mdf_request(
            "F4",
            &request(json!({"Amount": null})),
            None,
            &m,
            &by,
            &s.scorecard,
        )
        .unwrap();
        assert_eq!(r.amount.base, Some(10000.0));

        let e = mdf_request(
            "F5",
            &request(json!({"ChannelPartnerId": "001000000000X99AAA"})),
            None,
            &m,
            &by,
            &s.scorecard,
        )
        .unwrap_err();
        assert!(
            e.contains("ChannelPartnerId") && e.contains("not a known partner"),
            "{e}"
        );
        let e = mdf_request(
            "F6",
            &request(json!({"ChannelPartnerId": null})),
            None,
            &m,
            &by,
            &s.scorecard,
        )
        .unwrap_err();
        assert!(e.contains("ChannelPartnerId: empty"), "{e}");
        let e = mdf_request(
            "F7",
            &request(json!({"Amount": null, "RequestedAmount": null})),
            None,
            &m,
            &by,
            &s.scorecard,
        )
        .unwrap_err();
        assert!(e.contains("Amount: empty"), "{e}");
    }
}
