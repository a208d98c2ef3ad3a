//! Mapping HubSpot's mirrored records onto the model: companies to
//! accounts, owners to users, deals to opportunities (won and lost from the
//! pipelines' stages, the partner from the configured deal property).

use super::read::COMPANIES;
use super::*;
use crate::model::Text;

/// Builds the dataset from the mirror and the PRM tables.
pub(crate) fn build(
    state: &State,
    settings: &Settings,
    plan: &Plan,
    stages: &[Stage],
    prm: PrmTables,
) -> Result<Loaded, StateError> {
    let PrmTables {
        partners,
        reps,
        registrations,
    } = prm;
    let mut accounts = Mapped::<Account>::new(SOURCE, "company");
    mirror::scan(state, SOURCE, "companies", |id, r| {
        let p = match r {
            Ok(r) => r,
            Err(e) => return accounts.reject(id, e),
        };
        let Some(name) = text(&p, "name") else {
            return accounts.reject(id, "name: empty".into());
        };
        accounts.rows.push(Account {
            id: id.to_string(),
            name,
            domain: text(&p, "domain"),
            website: text(&p, "website"),
            owner_id: text(&p, "hubspot_owner_id"),
        });
    })?;

    let mut users = Mapped::<User>::new(SOURCE, "owner");
    mirror::scan(state, SOURCE, "owners", |id, r| {
        let Ok(o) = r else { return };
        let name = [text(&o, "firstName"), text(&o, "lastName")]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" ");
        users.rows.push(User {
            id: id.to_string(),
            name: (!name.is_empty()).then_some(name),
            email: text(&o, "email"),
        });
    })?;

    // A deal's partner property holds the partner's id or its company's id.
    let mut partner_of: FastMap<String, String> = FastMap::default();
    for p in &partners.rows {
        if let Some(c) = &p.crm_account_id {
            partner_of.insert(c.clone(), p.id.clone());
        }
        partner_of.insert(p.id.clone(), p.id.clone());
    }
    let stage_of: BTreeMap<(&str, &str), &Stage> = stages
        .iter()
        .map(|s| ((s.pipeline.as_str(), s.id.as_str()), s))
        .collect();
    let money = &settings.scorecard;
    let mut opportunities = Mapped::<Opportunity>::new(SOURCE, "deal");
    mirror::scan_into(
        state,
        SOURCE,
        "deals",
        &mut opportunities,
        |id, r| -> Result<Opportunity, String> {
            let account_id = r
                .get(COMPANIES)
                .and_then(Value::as_array)
                .and_then(|c| c.first())
                .and_then(id_text)
                .ok_or("no associated company (a deal without a company cannot be matched)")?;
            let pipeline = text(&r, "pipeline").unwrap_or_else(|| "default".into());
            let stage_id = text(&r, "dealstage").ok_or("dealstage: empty")?;
            let stage = stage_of
                .get(&(pipeline.as_str(), stage_id.as_str()))
                .ok_or_else(|| {
                    format!("dealstage: '{stage_id}' is not a stage of pipeline '{pipeline}'")
                })?;
            let status = match (stage.closed, stage.won) {
                (true, true) => OpportunityStatus::Won,
                (true, false) => OpportunityStatus::Lost,
                _ => OpportunityStatus::Open,
            };
            let created_at = timestamp(&r, "createdate")?.ok_or("createdate: empty")?;
            let amount = number(&r, "amount")?
                .map(|value| crate::values::money(value, text(&r, "deal_currency_code"), money));
            let partner_id = match plan.partner.as_deref().and_then(|f| text(&r, f)) {
                None => None,
                Some(v) => Some(partner_of.get(&v).cloned().ok_or_else(|| {
                    format!(
                        "{}: '{v}' is neither a partner's id nor a partner company's id",
                        plan.partner.as_deref().unwrap_or("partner")
                    )
                })?),
            };
            Ok(Opportunity {
                id: id.into(),
                account_id: account_id.into(),
                status,
                created_at,
                name: text(&r, "dealname").map(Text::from),
                owner_id: text(&r, "hubspot_owner_id").map(Text::from),
                stage: Some(stage.label.as_deref().unwrap_or(&stage_id).into()),
                amount,
                close_date: timestamp(&r, "closedate")?.map(|t| date_of(&t)),
                partner_id: partner_id.map(Text::from),
                partner_rep: plan
                    .partner_rep
                    .as_deref()
                    .and_then(|f| text(&r, f))
                    .map(Text::from),
                registration_id: plan
                    .registration
                    .as_deref()
                    .and_then(|f| text(&r, f))
                    .map(Text::from),
                campaign_id: plan
                    .campaign
                    .as_deref()
                    .and_then(|f| text(&r, f))
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
