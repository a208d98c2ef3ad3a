//! Reading HubSpot into the mirror: companies and deals through the list
//! (full) and search (incremental) endpoints, deals' company associations,
//! archived deals, and owners (see the module's documentation for costs).

use super::*;

/// One object type read through the list and search endpoints.
pub(super) struct ObjectReader<'a> {
    pub(super) client: &'a HubSpotClient,
    pub(super) object: &'static str,
    pub(super) properties: Vec<String>,
}

/// The field of a stored deal that holds its companies' ids, the primary
/// one first (not a property name: those are lowercase words).
pub(super) const COMPANIES: &str = "@companies";

/// The owner fields kept.
const OWNER_FIELDS: &[&str] = &["firstName", "lastName", "email"];

impl ObjectReader<'_> {
    fn is_deals(&self) -> bool {
        self.object == "deals"
    }

    /// What a stored row holds: the properties read, and a deal's companies.
    fn stored(&self) -> Vec<String> {
        let mut fields = self.properties.clone();
        if self.is_deals() {
            fields.push(COMPANIES.to_string());
        }
        fields
    }

    /// Turns records (with associations inline or given) into a batch.
    fn batch(
        &self,
        records: Vec<Value>,
        companies: Option<&FastMap<String, Vec<String>>>,
    ) -> Batch {
        let mut batch = Batch {
            read: records.len() as u64,
            ..Batch::default()
        };
        let fields = self.stored();
        for r in records {
            let Some(id) = r.get("id").and_then(id_text) else {
                continue;
            };
            let mut properties = match r.get("properties") {
                Some(Value::Object(p)) => p.clone(),
                _ => Map::new(),
            };
            if let Some(t) = properties
                .get("hs_lastmodifieddate")
                .and_then(Value::as_str)
                .or_else(|| r.get("updatedAt").and_then(Value::as_str))
                .and_then(parse_timestamp)
                && batch.newest.is_none_or(|n| t > n)
            {
                batch.newest = Some(t);
            }
            if r.get("archived").and_then(Value::as_bool) == Some(true) {
                batch.gone.push(id);
                continue;
            }
            if self.is_deals() {
                let linked: Vec<String> = match companies {
                    Some(map) => map.get(&id).cloned().unwrap_or_default(),
                    None => r
                        .get("associations")
                        .and_then(|a| a.get("companies"))
                        .and_then(|c| c.get("results"))
                        .and_then(Value::as_array)
                        .map(|list| {
                            // The primary association first.
                            let mut ids: Vec<(bool, String)> = list
                                .iter()
                                .filter_map(|a| {
                                    let id = a.get("id").and_then(id_text)?;
                                    let kind = a.get("type").and_then(Value::as_str).unwrap_or("");
                                    Some((kind != "deal_to_company", id))
                                })
                                .collect();
                            ids.sort();
                            ids.into_iter().map(|(_, id)| id).collect()
                        })
                        .unwrap_or_default(),
                };
                properties.insert(COMPANIES.to_string(), json!(linked));
            }
            batch.rows.push(MirrorRow {
                id,
                data: mirror::row(&fields, properties),
            });
        }
        batch
    }
}

fn stopped() -> HubSpotError {
    HubSpotError::Decode("stopped: the state could not store a page".into())
}

impl Reader for ObjectReader<'_> {
    type Error = HubSpotError;

    fn object(&self) -> &str {
        self.object
    }

    fn signature(&self) -> String {
        format!("{}|{}", self.object, self.properties.join(","))
    }

    fn fields(&self) -> Vec<String> {
        self.stored()
    }

    async fn read_all(&self, store: &mut Store<'_>) -> Result<Read, HubSpotError> {
        let mut query = vec![
            ("properties", self.properties.join(",")),
            ("archived", "false".to_string()),
        ];
        if self.is_deals() {
            query.push(("associations", "companies".into()));
        }
        self.client.begin_mark();
        let paged = self
            .client
            .list(
                &format!("/crm/v3/objects/{}", self.object),
                &query,
                |page| store.put(self.batch(page, None)),
            )
            .await?;
        Ok(Read {
            calls: paged.calls,
            started: self.client.mark(),
        })
    }

    async fn read_since(
        &self,
        since: DateTime<Utc>,
        store: &mut Store<'_>,
    ) -> Result<Read, HubSpotError> {
        let mut calls = 0u64;
        self.client.begin_mark();
        let mut from = since;
        let mut after = 0u64;
        loop {
            let body = json!({
                "filterGroups": [{"filters": [{
                    "propertyName": "hs_lastmodifieddate",
                    "operator": "GTE",
                    "value": from.timestamp_millis().to_string(),
                }]}],
                "sorts": [{"propertyName": "hs_lastmodifieddate", "direction": "ASCENDING"}],
                "properties": self.properties,
                "limit": 200,
                "after": after.to_string(),
            });
            let (results, next) = self.client.search_page(self.object, &body).await?;
            calls += 1;
            let companies = if self.is_deals() && !results.is_empty() {
                let ids: Vec<String> = results
                    .iter()
                    .filter_map(|r| r.get("id").and_then(id_text))
                    .collect();
                let mut map: FastMap<String, Vec<String>> = FastMap::default();
                for chunk in ids.chunks(100) {
                    map.extend(self.client.deal_companies(chunk).await?);
                    calls += 1;
                }
                Some(map)
            } else {
                None
            };
            let batch = self.batch(results, companies.as_ref());
            let last = batch.newest;
            if !store.put(batch) {
                return Err(stopped());
            }
            match next {
                None => break,
                Some(n) if n >= SEARCH_CAP => {
                    // The next page would pass the cap: a new window from
                    // the last modification time read.
                    match last {
                        Some(t) if t > from => {
                            from = t;
                            after = 0;
                        }
                        _ => {
                            return Err(HubSpotError::Decode(format!(
                                "more than {SEARCH_CAP} {} share one modification time; run once --full",
                                self.object
                            )));
                        }
                    }
                }
                Some(n) => after = n,
            }
        }
        if self.is_deals() {
            // Archived deals leave the mirror.
            let query = vec![
                ("properties", "hs_lastmodifieddate".to_string()),
                ("archived", "true".to_string()),
            ];
            let paged = self
                .client
                .list("/crm/v3/objects/deals", &query, |page| {
                    let gone: Vec<String> = page
                        .iter()
                        .filter_map(|r| r.get("id").and_then(id_text))
                        .collect();
                    store.put(Batch {
                        gone,
                        ..Batch::default()
                    })
                })
                .await?;
            calls += paged.calls;
        }
        Ok(Read {
            calls,
            started: self.client.mark(),
        })
    }
}

/// Owners, active and archived, read whole every cycle.
pub(super) struct OwnerReader<'a> {
    pub(super) client: &'a HubSpotClient,
}

impl OwnerReader<'_> {
    async fn read(&self, store: &mut Store<'_>) -> Result<Read, HubSpotError> {
        let mut calls = 0;
        self.client.begin_mark();
        for archived in ["false", "true"] {
            let paged = self
                .client
                .list(
                    "/crm/v3/owners",
                    &[("archived", archived.to_string())],
                    |page| {
                        let mut batch = Batch {
                            read: page.len() as u64,
                            ..Batch::default()
                        };
                        let fields = self.fields();
                        for o in page {
                            if let Some(id) = o.get("id").and_then(id_text) {
                                let Value::Object(o) = o else { continue };
                                batch.rows.push(MirrorRow {
                                    id,
                                    data: mirror::row(&fields, o),
                                });
                            }
                        }
                        store.put(batch)
                    },
                )
                .await?;
            calls += paged.calls;
        }
        Ok(Read {
            calls,
            started: self.client.mark(),
        })
    }
}

impl Reader for OwnerReader<'_> {
    type Error = HubSpotError;

    fn object(&self) -> &str {
        "owners"
    }

    fn signature(&self) -> String {
        "owners".into()
    }

    fn fields(&self) -> Vec<String> {
        OWNER_FIELDS.iter().map(|f| f.to_string()).collect()
    }

    async fn read_all(&self, store: &mut Store<'_>) -> Result<Read, HubSpotError> {
        self.read(store).await
    }

    async fn read_since(
        &self,
        _: DateTime<Utc>,
        store: &mut Store<'_>,
    ) -> Result<Read, HubSpotError> {
        self.read(store).await
    }
}
