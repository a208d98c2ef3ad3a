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
pub struct Names {
    /// Internal user id -> name (opportunity owners).
    pub users: FastMap<String, String>,
    /// Rep id and lower-cased e-mail -> name.
    pub reps: FastMap<String, String>,
    pub links: Links,
}

impl Names {
    pub fn from_dataset(d: &crate::model::Dataset) -> Names {
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
        Names {
            users,
            reps,
            links: Links::default(),
        }
    }

    pub fn with_links(mut self, links: Links) -> Names {
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
