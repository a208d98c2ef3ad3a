//! Scorecard write-back onto the partner's Salesforce Account, through the
//! [`ScorecardSink`] trait (so diffing and retries are the cycle's).
//!
//! Only the fields mapped in `writeback.fields` are written. The rate is a
//! fraction (0.25), except into a Salesforce percent field, which holds
//! percentages (25): the caller names those fields (from the describe call).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde_json::Value;

use crate::connectors::salesforce::SalesforceClient;
use crate::connectors::writeback::{RecordOutcome, RecordUpdate, ScorecardSink, mapped_target};
use crate::engine::{Period, Scorecard};
use crate::model::Partner;

pub struct SalesforceSink {
    pub client: Arc<SalesforceClient>,
    /// Scorecard field -> Account field API name (`writeback.fields`).
    pub fields: BTreeMap<String, String>,
    /// Account fields of the percent type.
    pub percent_fields: BTreeSet<String>,
}

impl SalesforceSink {
    /// The JSON value a field is sent as: numbers as numbers, an undefined
    /// value as null (clearing the field), `true`/`false` as booleans, the
    /// period label as text.
    fn value(&self, field: &str, text: &str) -> Value {
        if text.is_empty() {
            return Value::Null;
        }
        // `dormant`, into a checkbox field.
        if let Ok(b) = text.parse::<bool>() {
            return Value::Bool(b);
        }
        match text.parse::<f64>() {
            Ok(x) if self.percent_fields.contains(field) => serde_json::json!(x * 100.0),
            Ok(x) => serde_json::json!(x),
            Err(_) => Value::String(text.to_string()),
        }
    }
}

impl ScorecardSink for SalesforceSink {
    fn name(&self) -> &'static str {
        "salesforce"
    }

    fn target(
        &self,
        card: &Scorecard,
        partner: &Partner,
        period: &Period,
        review: &[(&'static str, String)],
    ) -> Option<(String, Vec<(String, String)>)> {
        mapped_target(&self.fields, card, partner, period, review)
    }

    async fn apply(&self, updates: &[RecordUpdate]) -> Vec<RecordOutcome> {
        let records: Vec<(String, Vec<(String, Value)>)> = updates
            .iter()
            .map(|u| {
                let fields = u
                    .fields
                    .iter()
                    .map(|(f, v)| (f.clone(), self.value(f, v)))
                    .collect();
                (u.record_id.clone(), fields)
            })
            .collect();
        self.client.update_records("Account", &records).await
    }
}

/// Decisions onto an Opportunity field (`writeback.decision_field`), through
/// sObject Collections (200 records a call). An empty value clears the
/// field (a reopened decision).
pub struct SalesforceDecisionSink {
    pub client: Arc<SalesforceClient>,
}

impl SalesforceDecisionSink {
    pub async fn apply(&self, updates: &[RecordUpdate]) -> Vec<RecordOutcome> {
        let records: Vec<(String, Vec<(String, Value)>)> = updates
            .iter()
            .map(|u| {
                let fields = u
                    .fields
                    .iter()
                    .map(|(f, v)| {
                        let v = match v.is_empty() {
                            true => Value::Null,
                            false => Value::String(v.clone()),
                        };
                        (f.clone(), v)
                    })
                    .collect();
                (u.record_id.clone(), fields)
            })
            .collect();
        self.client.update_records("Opportunity", &records).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;
    use crate::connectors::salesforce::{AuthFlow, ClientConfig};
    use std::time::Duration;
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    async fn client(server: &MockServer) -> Arc<SalesforceClient> {
        Mock::given(method("POST"))
            .and(path("/services/oauth2/token"))
            .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
                "access_token": "t", "instance_url": server.uri(),
            })))
            .mount(server)
            .await;
        Arc::new(
            SalesforceClient::new(ClientConfig {
                login_url: server.uri(),
                api_version: "v62.0".into(),
                flow: AuthFlow::ClientCredentials,
                client_id: "id".into(),
                client_secret: Some(Secret::new("s")),
                refresh_token: None,
                per_second: 1000,
                max_daily_share: 1.0,
                timeout: Duration::from_secs(5),
            })
            .unwrap(),
        )
    }

    fn card(id: &str) -> Scorecard {
        Scorecard {
            partner_id: id.into(),
            reps: 4,
            active_sellers: 1,
            active_seller_rate: Some(0.25),
            sourced_pipeline: 1000.0,
            sourced_revenue: 0.0,
            open_registrations: 2,
            expiring_registrations: 0,
            open_conflicts: 1,
            partner_name: "P".into(),
            tier: None,
        }
    }

    fn partner(id: &str, account: Option<&str>) -> Partner {
        Partner {
            id: id.into(),
            name: "P".into(),
            tier: None,
            crm_account_id: account.map(Into::into),
            domain: None,
        }
    }

    fn period() -> Period {
        Period {
            start: chrono::NaiveDate::from_ymd_opt(2026, 7, 1).unwrap(),
            end: chrono::NaiveDate::from_ymd_opt(2026, 9, 30).unwrap(),
            label: "2026-Q3".into(),
        }
    }

    #[tokio::test]
    async fn dormant_is_a_boolean_and_a_null_review_value_clears_the_field() {
        let server = MockServer::start().await;
        let sink = SalesforceSink {
            client: client(&server).await,
            fields: BTreeMap::new(),
            percent_fields: ["Mdf_Effectiveness__c".to_string()].into(),
        };
        assert_eq!(sink.value("Dormant__c", "true"), Value::Bool(true));
        assert_eq!(sink.value("Dormant__c", "false"), Value::Bool(false));
        assert_eq!(sink.value("Roi__c", ""), Value::Null);
        assert_eq!(sink.value("Roi__c", "-0.250000"), serde_json::json!(-0.25));
        assert_eq!(
            sink.value("Mdf_Effectiveness__c", "0.500000"),
            serde_json::json!(50.0)
        );
    }

    #[tokio::test]
    async fn mapped_fields_go_onto_the_partner_account_with_per_record_results() {
        let server = MockServer::start().await;
        Mock::given(method("PATCH"))
            .and(path("/services/data/v62.0/composite/sobjects"))
            .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!([
                {"id": "001A", "success": true, "errors": []},
                {"success": false, "errors": [{"statusCode": "FIELD_CUSTOM_VALIDATION_EXCEPTION",
                  "message": "Score must be <= 100", "fields": ["Active_Seller_Rate__c"]}]},
            ])))
            .expect(1)
            .mount(&server)
            .await;
        let sink = SalesforceSink {
            client: client(&server).await,
            fields: [
                (
                    "active_seller_rate".to_string(),
                    "Active_Seller_Rate__c".to_string(),
                ),
                ("reps".to_string(), "Partner_Reps__c".to_string()),
                ("period".to_string(), "Scorecard_Period__c".to_string()),
            ]
            .into(),
            percent_fields: ["Active_Seller_Rate__c".to_string()].into(),
        };
        let (record, fields) = sink
            .target(&card("P-1"), &partner("P-1", Some("001A")), &period(), &[])
            .unwrap();
        assert_eq!(record, "001A");
        assert_eq!(
            fields,
            [
                ("Scorecard_Period__c".to_string(), "2026-Q3".to_string()),
                ("Partner_Reps__c".to_string(), "4".to_string()),
                ("Active_Seller_Rate__c".to_string(), "0.250000".to_string()),
            ]
        );
        assert!(
            sink.target(&card("P-2"), &partner("P-2", None), &period(), &[])
                .is_none(),
            "no account, no write"
        );
        let updates = vec![
            RecordUpdate {
                record_id: "001A".into(),
                partner_id: "P-1".into(),
                fields: fields.clone(),
            },
            RecordUpdate {
                record_id: "001B".into(),
                partner_id: "P-2".into(),
                fields,
            },
        ];
        let outcomes = sink.apply(&updates).await;
        assert_eq!(outcomes[0], None);
        assert_eq!(
            outcomes[1].as_deref(),
            Some("FIELD_CUSTOM_VALIDATION_EXCEPTION: Score must be <= 100 (Active_Seller_Rate__c)")
        );
        let sent: Value = serde_json::from_slice(
            &server
                .received_requests()
                .await
                .unwrap()
                .iter()
                .find(|r| r.method.as_str() == "PATCH")
                .unwrap()
                .body,
        )
        .unwrap();
        assert_eq!(sent["allOrNone"], false);
        assert_eq!(sent["records"][0]["attributes"]["type"], "Account");
        assert_eq!(sent["records"][0]["id"], "001A");
        assert_eq!(
            sent["records"][0]["Active_Seller_Rate__c"], 25.0,
            "a percent field holds 25"
        );
        assert_eq!(sent["records"][0]["Partner_Reps__c"], 4.0);
        assert_eq!(sent["records"][0]["Scorecard_Period__c"], "2026-Q3");
    }

    #[tokio::test]
    async fn records_go_in_batches_of_200_and_a_failed_batch_fails_its_records() {
        let server = MockServer::start().await;
        // The second request fails as a whole (after its retries).
        Mock::given(method("PATCH"))
            .respond_with(|req: &wiremock::Request| {
                let body: Value = serde_json::from_slice(&req.body).unwrap();
                let n = body["records"].as_array().unwrap().len();
                let first = body["records"][0]["id"].as_str().unwrap().to_string();
                if first == "R-200" {
                    ResponseTemplate::new(400)
                        .set_body_string(r#"[{"message":"bad","errorCode":"INVALID_FIELD"}]"#)
                } else {
                    ResponseTemplate::new(200).set_body_json(
                        (0..n)
                            .map(|_| serde_json::json!({"success": true, "errors": []}))
                            .collect::<Vec<_>>(),
                    )
                }
            })
            .mount(&server)
            .await;
        let sink = SalesforceSink {
            client: client(&server).await,
            fields: [("reps".to_string(), "Partner_Reps__c".to_string())].into(),
            percent_fields: BTreeSet::new(),
        };
        let updates: Vec<RecordUpdate> = (0..450)
            .map(|i| RecordUpdate {
                record_id: format!("R-{i}"),
                partner_id: format!("P-{i}"),
                fields: vec![("Partner_Reps__c".into(), "1".into())],
            })
            .collect();
        let outcomes = sink.apply(&updates).await;
        assert_eq!(outcomes.len(), 450);
        let patches: Vec<usize> = server
            .received_requests()
            .await
            .unwrap()
            .iter()
            .filter(|r| r.method.as_str() == "PATCH")
            .map(|r| {
                serde_json::from_slice::<Value>(&r.body).unwrap()["records"]
                    .as_array()
                    .unwrap()
                    .len()
            })
            .collect();
        assert_eq!(patches, [200, 200, 50]);
        assert!(outcomes[..200].iter().all(Option::is_none));
        assert!(
            outcomes[200..400]
                .iter()
                .all(|o| o.as_deref().is_some_and(|e| e.contains("INVALID_FIELD")))
        );
        assert!(outcomes[400..].iter().all(Option::is_none));
    }
}
