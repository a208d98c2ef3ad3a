//! What every channel's rendering needs beyond a finding: people's names
//! for the ids it carries, and where CRM records open.

use crate::fast::FastMap;

/// Where a CRM record opens: URL templates with `{id}` (none for files).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Links {
    pub account: Option<String>,
    pub opportunity: Option<String>,
}

impl Links {
    /// The record's URL from a template with `{id}` (the id percent-encoded).
    pub fn url(template: Option<&String>, id: &str) -> Option<String> {
        let id: String = id
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c.to_string()
                } else {
                    format!("%{:02X}", c as u32 & 0xff)
                }
            })
            .collect();
        template.map(|t| t.replace("{id}", &id))
    }
}

/// Names for the ids a finding carries, and where records open.
#[derive(Debug, Default)]
pub(crate) struct Names {
    /// Internal user id -> name (opportunity owners).
    pub users: FastMap<String, String>,
    /// Rep id and lower-cased e-mail -> name.
    pub reps: FastMap<String, String>,
    pub links: Links,
    /// Internal user id -> lower-cased e-mail (owners, for mentions).
    pub user_emails: FastMap<String, String>,
    /// Partner id -> its partner manager's user id: the owner of the
    /// partner's own CRM account (`partners.crm_account_id`).
    pub partner_managers: FastMap<String, String>,
    /// Lower-cased e-mail -> Slack user id, only from
    /// `alerts.slack.mentions` or Slack's `users.lookupByEmail` answer.
    pub mentions: FastMap<String, String>,
}

/// Why a person is mentioned on a conflict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Role {
    /// Owner of a direct opportunity.
    DirectOwner,
    /// Manager of this partner (its id).
    PartnerManager(String),
}

impl Names {
    /// The people to mention on a conflict, each with their e-mail: the
    /// owner of each direct opportunity in the evidence, and each partner's
    /// manager; people without an e-mail are left out.
    pub(crate) fn people(&self, f: &crate::engine::Finding) -> Vec<(Role, String)> {
        use crate::engine::Record;
        let mut out: Vec<(Role, String)> = Vec::new();
        if !f.kind.is_conflict() {
            return out;
        }
        let mut push = |role: Role, user: &str| {
            if let Some(email) = self.user_emails.get(user)
                && !out.iter().any(|(_, e)| e == email)
            {
                out.push((role, email.clone()));
            }
        };
        for e in &f.evidence {
            if e.record == Record::Opportunity
                && e.partner_id.is_none()
                && let Some(owner) = &e.owner_id
            {
                push(Role::DirectOwner, owner);
            }
        }
        for p in &f.partner_ids {
            if let Some(manager) = self.partner_managers.get(p) {
                push(Role::PartnerManager(p.clone()), manager);
            }
        }
        out
    }
}

impl Names {
    pub(crate) fn from_dataset(d: &crate::model::Dataset) -> Names {
        let users = d
            .users
            .iter()
            .filter_map(|u| u.name.clone().map(|n| (u.id.clone(), n)))
            .collect();
        let mut reps = FastMap::default();
        for r in &d.reps {
            if let Some(n) = &r.name {
                reps.insert(r.id.clone(), n.clone());
                if let Some(e) = &r.email {
                    reps.insert(e.to_lowercase(), n.clone());
                }
            }
        }
        let user_emails = d
            .users
            .iter()
            .filter_map(|u| {
                u.email
                    .as_deref()
                    .map(str::trim)
                    .filter(|e| e.contains('@'))
                    .map(|e| (u.id.clone(), e.to_lowercase()))
            })
            .collect();
        let partner_accounts: FastMap<&str, &str> = d
            .partners
            .iter()
            .filter_map(|p| p.crm_account_id.as_deref().map(|a| (a, p.id.as_str())))
            .collect();
        let mut partner_managers = FastMap::default();
        if !partner_accounts.is_empty() {
            for a in &d.accounts {
                if let (Some(partner), Some(owner)) =
                    (partner_accounts.get(a.id.as_str()), &a.owner_id)
                {
                    partner_managers.insert(partner.to_string(), owner.clone());
                }
            }
        }
        Names {
            users,
            reps,
            links: Links::default(),
            user_emails,
            partner_managers,
            mentions: FastMap::default(),
        }
    }

    pub(crate) fn with_links(mut self, links: Links) -> Names {
        self.links = links;
        self
    }

    pub(crate) fn user(&self, id: &str) -> String {
        match self.users.get(id) {
            Some(n) => format!("{n} ({id})"),
            None => id.to_string(),
        }
    }

    pub(crate) fn rep(&self, reference: &str) -> String {
        match self
            .reps
            .get(reference)
            .or_else(|| self.reps.get(&reference.to_lowercase()))
        {
            Some(n) => format!("{n} ({reference})"),
            None => reference.to_string(),
        }
    }
}
