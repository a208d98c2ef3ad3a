//! Tests of the fake HubSpot server itself (they protect the tests that use it).

use chrono::{TimeZone, Utc};
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

use channel_sync_fakes::hubspot::{FakeHubSpot, HubSpotConfig, Pipeline, RatePolicy, Stage};

async fn fake() -> FakeHubSpot {
    FakeHubSpot::start(HubSpotConfig::default()).await
}

fn http() -> reqwest::Client {
    reqwest::Client::new()
}

struct Got {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
    text: String,
}

impl Got {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

async fn send(req: reqwest::RequestBuilder) -> Got {
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Got {
        status,
        headers,
        body,
        text,
    }
}

async fn get(fake: &FakeHubSpot, token: &str, path_and_query: &str) -> Got {
    send(
        http()
            .get(format!("{}{path_and_query}", fake.url()))
            .bearer_auth(token),
    )
    .await
}

async fn post(fake: &FakeHubSpot, token: &str, path: &str, body: &Value) -> Got {
    send(
        http()
            .post(format!("{}{path}", fake.url()))
            .bearer_auth(token)
            .json(body),
    )
    .await
}

async fn refresh(fake: &FakeHubSpot, refresh_token: &str) -> Got {
    send(
        http()
            .post(format!("{}/oauth/v1/token", fake.url()))
            .form(&[
                ("grant_type", "refresh_token"),
                ("client_id", "fake-hubspot-client-id"),
                ("client_secret", "fake-hubspot-client-secret"),
                ("refresh_token", refresh_token),
            ]),
    )
    .await
}

fn deal_id(i: usize) -> String {
    format!("{}", 1_000_000 + i)
}

/// Deals modified one second apart from 2026-05-01, each tied to company `c{i % 3}`.
fn insert_deals(fake: &FakeHubSpot, n: usize) {
    let base = Utc.with_ymd_and_hms(2026, 5, 1, 0, 0, 0).unwrap();
    fake.insert_many(
        "deals",
        (0..n).map(|i| {
            let t = base + chrono::Duration::seconds(i as i64);
            json!({
                "id": deal_id(i),
                "properties": {
                    "dealname": format!("Deal {i}"),
                    "amount": format!("{}.50", 1000 + i),
                    "dealstage": if i % 2 == 0 { "closedwon" } else { "appointmentscheduled" },
                    "pipeline": "default",
                    "hubspot_owner_id": "501",
                    "channel_partner": "Acme Reseller",
                    "createdate": t.to_rfc3339(),
                    "hs_lastmodifieddate": t.to_rfc3339(),
                },
                "associations": {"companies": [format!("c{}", i % 3)]},
            })
        }),
    );
}

fn ids(body: &Value) -> Vec<String> {
    body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect()
}

// ---------------------------------------------------------------------------
// Auth

#[tokio::test]
async fn fake_hubspot_private_token_and_401() {
    let fake = fake().await;
    let pat = fake.private_token();
    let got = get(&fake, &pat, "/crm/v3/objects/deals").await;
    assert_eq!(got.status, 200, "{}", got.text);
    assert_eq!(got.body, json!({"results": []}));
    assert_eq!(got.header("x-hubspot-ratelimit-max"), Some("100"));
    assert_eq!(got.header("x-hubspot-ratelimit-remaining"), Some("99"));
    assert_eq!(
        got.header("x-hubspot-ratelimit-interval-milliseconds"),
        Some("10000")
    );
    assert_eq!(got.header("x-hubspot-ratelimit-daily"), Some("250000"));
    assert_eq!(
        got.header("x-hubspot-ratelimit-daily-remaining"),
        Some("249999")
    );

    for token in ["wrong", ""] {
        let got = get(&fake, token, "/crm/v3/objects/deals").await;
        assert_eq!(got.status, 401);
        assert_eq!(got.body["status"], "error");
        assert_eq!(got.body["category"], "INVALID_AUTHENTICATION");
        assert!(
            got.body["message"]
                .as_str()
                .unwrap()
                .starts_with("Authentication credentials not found.")
        );
        assert!(got.body["correlationId"].is_string());
    }
    let got = send(http().get(format!("{}/crm/v3/objects/deals", fake.url()))).await;
    assert_eq!(got.status, 401);

    fake.revoke_private_token(true);
    assert_eq!(get(&fake, &pat, "/crm/v3/owners").await.status, 401);
    fake.revoke_private_token(false);
    assert_eq!(get(&fake, &pat, "/crm/v3/owners").await.status, 200);
}

#[tokio::test]
async fn fake_hubspot_oauth_refresh_and_expiry() {
    let fake = fake().await;
    let t0 = Utc.with_ymd_and_hms(2026, 5, 20, 12, 0, 0).unwrap();
    fake.set_now(t0);
    let got = refresh(&fake, "fake-hubspot-refresh-1").await;
    assert_eq!(got.status, 200, "{}", got.text);
    assert_eq!(got.body["token_type"], "bearer");
    assert_eq!(got.body["expires_in"], 1800);
    assert_eq!(got.body["refresh_token"], "fake-hubspot-refresh-1");
    assert!(got.header("x-hubspot-ratelimit-max").is_none());
    let access = got.body["access_token"].as_str().unwrap().to_string();

    // OAuth calls carry the burst headers but not the daily ones.
    let ok = get(&fake, &access, "/crm/v3/objects/companies").await;
    assert_eq!(ok.status, 200);
    assert!(ok.header("x-hubspot-ratelimit-remaining").is_some());
    assert!(ok.header("x-hubspot-ratelimit-daily").is_none());

    // Expiry on the fake clock.
    fake.set_now(t0 + chrono::Duration::seconds(1799));
    assert_eq!(
        get(&fake, &access, "/crm/v3/objects/deals").await.status,
        200
    );
    fake.set_now(t0 + chrono::Duration::seconds(1800));
    let expired = get(&fake, &access, "/crm/v3/objects/deals").await;
    assert_eq!(expired.status, 401);
    assert_eq!(expired.body["category"], "INVALID_AUTHENTICATION");

    // Expiry on command, and after N calls.
    let access = refresh(&fake, "fake-hubspot-refresh-1").await.body["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(get(&fake, &access, "/crm/v3/owners").await.status, 200);
    fake.expire_tokens();
    assert_eq!(get(&fake, &access, "/crm/v3/owners").await.status, 401);
    let access = refresh(&fake, "fake-hubspot-refresh-1").await.body["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    fake.expire_tokens_after(2);
    assert_eq!(get(&fake, &access, "/crm/v3/owners").await.status, 200);
    assert_eq!(get(&fake, &access, "/crm/v3/owners").await.status, 200);
    assert_eq!(get(&fake, &access, "/crm/v3/owners").await.status, 401);
    // The private token is unaffected.
    assert_eq!(
        get(&fake, &fake.private_token(), "/crm/v3/owners")
            .await
            .status,
        200
    );

    // Bad refresh token, client, grant.
    let bad = refresh(&fake, "nope").await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.body["status"], "BAD_REFRESH_TOKEN");
    assert_eq!(bad.body["message"], "missing or unknown refresh token");
    assert!(bad.body["correlationId"].is_string());
    assert!(bad.body["requestId"].is_string());
    let bad = send(
        http()
            .post(format!("{}/oauth/v1/token", fake.url()))
            .form(&[
                ("grant_type", "refresh_token"),
                ("client_id", "other"),
                ("client_secret", "fake-hubspot-client-secret"),
                ("refresh_token", "fake-hubspot-refresh-1"),
            ]),
    )
    .await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.body["status"], "BAD_CLIENT_ID");
    let bad = send(
        http()
            .post(format!("{}/oauth/v1/token", fake.url()))
            .form(&[("grant_type", "password")]),
    )
    .await;
    assert_eq!(bad.body["status"], "BAD_GRANT_TYPE");

    // Revoked refresh token.
    fake.set_refresh_token("fake-hubspot-refresh-2");
    assert_eq!(refresh(&fake, "fake-hubspot-refresh-1").await.status, 400);
    assert_eq!(refresh(&fake, "fake-hubspot-refresh-2").await.status, 200);
}

#[tokio::test]
async fn fake_hubspot_refresh_rotation() {
    let fake = FakeHubSpot::start(HubSpotConfig {
        rotate_refresh_tokens: true,
        access_token_ttl_secs: 60,
        ..HubSpotConfig::default()
    })
    .await;
    let got = refresh(&fake, "fake-hubspot-refresh-1").await;
    assert_eq!(got.body["expires_in"], 60);
    let next = got.body["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(next, "fake-hubspot-refresh-1");
    assert_eq!(fake.current_refresh_token(), next);
    assert_eq!(refresh(&fake, "fake-hubspot-refresh-1").await.status, 400);
    assert_eq!(refresh(&fake, &next).await.status, 200);
}

#[tokio::test]
async fn fake_hubspot_missing_scopes() {
    let fake = fake().await;
    fake.set_scopes(Some(&["crm.objects.deals.read"]));
    let pat = fake.private_token();
    assert_eq!(get(&fake, &pat, "/crm/v3/objects/deals").await.status, 200);
    let got = get(&fake, &pat, "/crm/v3/objects/companies").await;
    assert_eq!(got.status, 403);
    assert_eq!(got.body["category"], "MISSING_SCOPES");
    assert_eq!(
        got.body["errors"][0]["context"]["requiredGranularScopes"],
        json!(["crm.objects.companies.read"])
    );
    fake.set_scopes(None);
    assert_eq!(
        get(&fake, &pat, "/crm/v3/objects/companies").await.status,
        200
    );
}

// ---------------------------------------------------------------------------
// Lists

#[tokio::test]
async fn fake_hubspot_list_paging_properties_and_associations() {
    let fake = fake().await;
    for c in 0..3 {
        fake.insert_company(
            &format!("c{c}"),
            json!({"name": format!("Company {c}"), "domain": format!("c{c}.example")}),
        );
    }
    insert_deals(&fake, 250);
    let pat = fake.private_token();

    // Default limit 10, default properties.
    let got = get(&fake, &pat, "/crm/v3/objects/deals").await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body["results"].as_array().unwrap().len(), 10);
    let first = &got.body["results"][0];
    assert_eq!(first["id"], deal_id(0));
    assert_eq!(first["archived"], false);
    assert_eq!(first["createdAt"], "2026-05-01T00:00:00.000Z");
    assert_eq!(first["updatedAt"], "2026-05-01T00:00:00.000Z");
    let props = first["properties"].as_object().unwrap();
    let mut keys: Vec<&str> = props.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "amount",
            "closedate",
            "createdate",
            "dealname",
            "dealstage",
            "hs_lastmodifieddate",
            "hs_object_id",
            "pipeline"
        ]
    );
    assert_eq!(props["amount"], "1000.50");
    assert_eq!(props["closedate"], Value::Null);
    assert_eq!(props["hs_object_id"], deal_id(0));
    assert!(first.get("associations").is_none());

    // 250 deals at limit 100: three pages, no paging on the last.
    let mut all = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut q = "/crm/v3/objects/deals?limit=100&properties=dealname,channel_partner,nope&associations=companies".to_string();
        if let Some(a) = &after {
            q.push_str(&format!("&after={a}"));
        }
        let got = get(&fake, &pat, &q).await;
        assert_eq!(got.status, 200, "{}", got.text);
        pages += 1;
        for r in got.body["results"].as_array().unwrap() {
            let p = r["properties"].as_object().unwrap();
            assert_eq!(p.len(), 5, "{p:?}");
            assert!(p["channel_partner"].is_string());
            assert!(p.get("amount").is_none());
            let i: usize = r["id"].as_str().unwrap().parse::<usize>().unwrap() - 1_000_000;
            assert_eq!(
                r["associations"]["companies"]["results"],
                json!([{"id": format!("c{}", i % 3), "type": "deal_to_company"}])
            );
            all.push(r["id"].as_str().unwrap().to_string());
        }
        match got.body.get("paging") {
            None => break,
            Some(p) => {
                let a = p["next"]["after"].as_str().unwrap().to_string();
                assert!(p["next"]["link"].as_str().unwrap().contains("after="));
                after = Some(a);
            }
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(all, (0..250).map(deal_id).collect::<Vec<_>>());

    // Companies see their deals.
    let got = get(
        &fake,
        &pat,
        "/crm/v3/objects/companies?limit=100&associations=deals",
    )
    .await;
    assert_eq!(got.body["results"].as_array().unwrap().len(), 3);
    assert!(got.body.get("paging").is_none());
    assert_eq!(
        got.body["results"][0]["associations"]["deals"]["results"]
            .as_array()
            .unwrap()
            .len(),
        84
    );
    assert_eq!(got.body["results"][0]["properties"]["domain"], "c0.example");

    // Bad limits and cursors.
    for q in ["limit=101", "limit=0", "limit=x", "after=garbage!"] {
        let got = get(&fake, &pat, &format!("/crm/v3/objects/deals?{q}")).await;
        assert_eq!(got.status, 400, "{q}");
        assert_eq!(got.body["category"], "VALIDATION_ERROR");
    }
    // Unknown object type.
    let got = get(&fake, &pat, "/crm/v3/objects/widgets").await;
    assert_eq!(got.status, 400);
    // Date-versioned path and object type ids.
    let got = get(&fake, &pat, "/crm/objects/2026-03/0-3?limit=2").await;
    assert_eq!(ids(&got.body), [deal_id(0), deal_id(1)]);
    // Single read.
    let got = get(
        &fake,
        &pat,
        &format!(
            "/crm/v3/objects/deals/{}?properties=amount&associations=companies",
            deal_id(4)
        ),
    )
    .await;
    assert_eq!(got.body["properties"]["amount"], "1004.50");
    assert_eq!(
        got.body["associations"]["companies"]["results"][0]["id"],
        "c1"
    );
    assert_eq!(
        get(&fake, &pat, "/crm/v3/objects/deals/999").await.status,
        404
    );
}

#[tokio::test]
async fn fake_hubspot_archived_deals_and_updates() {
    let fake = fake().await;
    insert_deals(&fake, 5);
    fake.set_now(Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).unwrap());
    fake.archive_deal(&deal_id(1));
    fake.update_deal(&deal_id(3), json!({"dealstage": "closedlost", "amount": 7}));
    let pat = fake.private_token();
    let live = get(&fake, &pat, "/crm/v3/objects/deals").await;
    assert_eq!(
        ids(&live.body),
        [deal_id(0), deal_id(2), deal_id(3), deal_id(4)]
    );
    let arch = get(&fake, &pat, "/crm/v3/objects/deals?archived=true").await;
    assert_eq!(ids(&arch.body), [deal_id(1)]);
    assert_eq!(arch.body["results"][0]["archived"], true);
    assert_eq!(
        arch.body["results"][0]["archivedAt"],
        "2026-06-01T00:00:00.000Z"
    );
    let d = fake.deal(&deal_id(3)).unwrap();
    assert_eq!(d["properties"]["dealstage"], "closedlost");
    assert_eq!(d["properties"]["amount"], "7");
    assert_eq!(
        d["properties"]["hs_lastmodifieddate"],
        "2026-06-01T00:00:00.000Z"
    );
    assert_eq!(d["updatedAt"], "2026-06-01T00:00:00.000Z");
    // DELETE archives too.
    let got = send(
        http()
            .delete(format!(
                "{}/crm/v3/objects/deals/{}",
                fake.url(),
                deal_id(0)
            ))
            .bearer_auth(&pat),
    )
    .await;
    assert_eq!(got.status, 204);
    assert_eq!(fake.deal(&deal_id(0)).unwrap()["archived"], true);
    fake.restore("deals", &deal_id(0));
    assert_eq!(fake.deal(&deal_id(0)).unwrap()["archived"], false);
}

// ---------------------------------------------------------------------------
// Search

#[tokio::test]
async fn fake_hubspot_search_filter_sort_paging() {
    let fake = fake().await;
    fake.set_search_per_second(0);
    insert_deals(&fake, 500);
    fake.archive_deal(&deal_id(450));
    let pat = fake.private_token();
    // 2026-05-01T00:01:40Z = deal 100's hs_lastmodifieddate, as epoch ms.
    let since = Utc
        .with_ymd_and_hms(2026, 5, 1, 0, 1, 40)
        .unwrap()
        .timestamp_millis()
        .to_string();
    let body = |after: Option<&str>| {
        let mut b = json!({
            "filterGroups": [{"filters": [
                {"propertyName": "hs_lastmodifieddate", "operator": "GTE", "value": since}
            ]}],
            "sorts": [{"propertyName": "hs_lastmodifieddate", "direction": "DESCENDING"}],
            "properties": ["dealname", "hs_lastmodifieddate"],
            "limit": 200,
        });
        if let Some(a) = after {
            b["after"] = json!(a);
        }
        b
    };
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let got = post(
            &fake,
            &pat,
            "/crm/v3/objects/deals/search",
            &body(after.as_deref()),
        )
        .await;
        assert_eq!(got.status, 200, "{}", got.text);
        assert_eq!(got.body["total"], 399);
        for r in got.body["results"].as_array().unwrap() {
            assert!(r.get("associations").is_none());
            let p = r["properties"].as_object().unwrap();
            assert_eq!(p.len(), 4);
            seen.push(r["id"].as_str().unwrap().to_string());
        }
        match got.body.get("paging") {
            Some(p) => {
                assert!(p["next"].get("link").is_none());
                after = Some(p["next"]["after"].as_str().unwrap().to_string());
            }
            None => break,
        }
    }
    let expected: Vec<String> = (100..500)
        .rev()
        .filter(|&i| i != 450)
        .map(deal_id)
        .collect();
    assert_eq!(seen, expected);

    // ISO values, GT/LT/BETWEEN, OR of groups, EQ on a string property.
    let got = post(
        &fake,
        &pat,
        "/crm/v3/objects/deals/search",
        &json!({
            "filterGroups": [
                {"filters": [{"propertyName": "hs_lastmodifieddate", "operator": "BETWEEN",
                    "value": "2026-05-01T00:00:10Z", "highValue": "2026-05-01T00:00:12.000Z"}]},
                {"filters": [{"propertyName": "dealname", "operator": "EQ", "value": "deal 42"}]},
            ],
            "sorts": ["hs_lastmodifieddate"],
            "limit": 10,
        }),
    )
    .await;
    assert_eq!(
        ids(&got.body),
        [deal_id(10), deal_id(11), deal_id(12), deal_id(42)]
    );
    // Default properties.
    assert!(got.body["results"][0]["properties"]["dealstage"].is_string());

    // Validation.
    for bad in [
        json!({"limit": 201}),
        json!({"after": "x"}),
        json!({"filterGroups": [{"filters": [{"propertyName": "nope", "operator": "EQ", "value": "1"}]}]}),
        json!({"filterGroups": [{"filters": [{"propertyName": "amount", "operator": "WAT", "value": "1"}]}]}),
        json!({"filterGroups": vec![json!({"filters": []}); 6]}),
        json!({"filterGroups": [{"filters": vec![json!({"propertyName": "amount", "operator": "HAS_PROPERTY"}); 7]}]}),
    ] {
        let got = post(&fake, &pat, "/crm/v3/objects/deals/search", &bad).await;
        assert_eq!(got.status, 400, "{bad}");
        assert_eq!(got.body["category"], "VALIDATION_ERROR");
    }
    let got = send(
        http()
            .post(format!("{}/crm/v3/objects/deals/search", fake.url()))
            .bearer_auth(&pat)
            .body("{not json"),
    )
    .await;
    assert_eq!(got.status, 400);
    assert_eq!(fake.search_bodies().len(), 2 + 1 + 6);
}

#[tokio::test]
async fn fake_hubspot_search_cap_at_10000() {
    let fake = fake().await;
    fake.set_search_per_second(0);
    insert_deals(&fake, 10_050);
    let pat = fake.private_token();
    let q = |after: &str| {
        json!({
            "filterGroups": [{"filters": [
                {"propertyName": "hs_lastmodifieddate", "operator": "GTE", "value": "0"}
            ]}],
            "sorts": [{"propertyName": "hs_lastmodifieddate", "direction": "ASCENDING"}],
            "limit": 200,
            "after": after,
        })
    };
    let got = post(&fake, &pat, "/crm/v3/objects/deals/search", &q("9800")).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body["total"], 10_050);
    assert_eq!(got.body["results"][0]["id"], deal_id(9800));
    assert_eq!(got.body["results"].as_array().unwrap().len(), 200);
    assert_eq!(got.body["paging"]["next"]["after"], "10000");
    let got = post(&fake, &pat, "/crm/v3/objects/deals/search", &q("10000")).await;
    assert_eq!(got.status, 400, "{}", got.text);
    assert_eq!(got.body["status"], "error");
    assert_eq!(got.body["category"], "VALIDATION_ERROR");
}

#[tokio::test]
async fn fake_hubspot_search_per_second_limit() {
    let fake = fake().await;
    fake.set_search_per_second(2);
    let pat = fake.private_token();
    let mut statuses = Vec::new();
    let mut last = None;
    for _ in 0..3 {
        let got = post(&fake, &pat, "/crm/v3/objects/deals/search", &json!({})).await;
        statuses.push(got.status.as_u16());
        last = Some(got);
    }
    assert_eq!(statuses, [200, 200, 429]);
    let last = last.unwrap();
    assert_eq!(last.body["errorType"], "RATE_LIMIT");
    // Other endpoints are not affected.
    assert_eq!(get(&fake, &pat, "/crm/v3/objects/deals").await.status, 200);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let got = post(&fake, &pat, "/crm/v3/objects/deals/search", &json!({})).await;
    assert_eq!(got.status, 200);
}

// ---------------------------------------------------------------------------
// Pipelines, owners, properties

#[tokio::test]
async fn fake_hubspot_pipelines() {
    let fake = fake().await;
    let pat = fake.private_token();
    let got = get(&fake, &pat, "/crm/v3/pipelines/deals").await;
    assert_eq!(got.status, 200);
    let p = &got.body["results"][0];
    assert_eq!(p["id"], "default");
    assert_eq!(p["label"], "Sales Pipeline");
    let stages = p["stages"].as_array().unwrap();
    assert_eq!(stages.len(), 7);
    let won = stages.iter().find(|s| s["id"] == "closedwon").unwrap();
    assert_eq!(won["label"], "Closed Won");
    assert_eq!(
        won["metadata"],
        json!({"isClosed": "true", "probability": "1.0"})
    );
    let lost = stages.iter().find(|s| s["id"] == "closedlost").unwrap();
    assert_eq!(
        lost["metadata"],
        json!({"isClosed": "true", "probability": "0.0"})
    );
    let open = stages
        .iter()
        .find(|s| s["id"] == "appointmentscheduled")
        .unwrap();
    assert_eq!(open["metadata"]["isClosed"], "false");

    fake.set_pipelines(vec![
        Pipeline::default_sales(),
        Pipeline {
            id: "partner".into(),
            label: "Partner deals".into(),
            stages: vec![Stage {
                id: "p-won".into(),
                label: "Won".into(),
                is_closed: true,
                probability: 1.0,
            }],
        },
    ]);
    let got = get(&fake, &pat, "/crm/v3/pipelines/deals").await;
    assert_eq!(got.body["results"].as_array().unwrap().len(), 2);
    let got = get(&fake, &pat, "/crm/v3/pipelines/deals/partner").await;
    assert_eq!(got.body["stages"][0]["id"], "p-won");
    assert_eq!(
        get(&fake, &pat, "/crm/v3/pipelines/deals/nope")
            .await
            .status,
        404
    );
    assert_eq!(fake.calls().pipelines, 4);
}

#[tokio::test]
async fn fake_hubspot_owners() {
    let fake = fake().await;
    for i in 0..150 {
        fake.insert_owner(json!({
            "id": format!("{}", 500 + i),
            "email": format!("rep{i}@example.com"),
            "firstName": "Rep",
            "lastName": format!("{i}"),
            "userId": 9000 + i,
            "archived": i % 10 == 9,
        }));
    }
    let pat = fake.private_token();
    let got = get(&fake, &pat, "/crm/v3/owners").await;
    assert_eq!(got.body["results"].as_array().unwrap().len(), 100);
    let o = &got.body["results"][0];
    assert_eq!(o["id"], "500");
    assert_eq!(o["userId"], 9000);
    assert_eq!(o["archived"], false);
    assert!(o["createdAt"].is_string() && o["updatedAt"].is_string());
    let after = got.body["paging"]["next"]["after"].as_str().unwrap();
    let got = get(
        &fake,
        &pat,
        &format!("/crm/v3/owners?limit=100&after={after}"),
    )
    .await;
    assert_eq!(got.body["results"].as_array().unwrap().len(), 35);
    assert!(got.body.get("paging").is_none());
    let got = get(&fake, &pat, "/crm/v3/owners?archived=true").await;
    assert_eq!(got.body["results"].as_array().unwrap().len(), 15);
    assert_eq!(got.body["results"][0]["id"], "509");
    let got = get(&fake, &pat, "/crm/v3/owners?email=rep3@example.com").await;
    assert_eq!(ids(&got.body), ["503"]);
    assert_eq!(
        get(&fake, &pat, "/crm/v3/owners/503").await.body["lastName"],
        "3"
    );
}

#[tokio::test]
async fn fake_hubspot_properties_create_and_conflict() {
    let fake = fake().await;
    let pat = fake.private_token();
    let got = get(&fake, &pat, "/crm/v3/properties/companies").await;
    assert_eq!(got.status, 200);
    let name = got.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "name")
        .unwrap();
    assert_eq!(name["type"], "string");
    assert_eq!(name["fieldType"], "text");
    assert_eq!(name["groupName"], "companyinformation");

    let prop = json!({
        "name": "partner_scorecard_score",
        "label": "Partner scorecard score",
        "type": "number",
        "fieldType": "number",
        "groupName": "companyinformation",
        "description": "Computed by the scorecard daemon",
    });
    let got = post(&fake, &pat, "/crm/v3/properties/companies", &prop).await;
    assert_eq!(got.status, 201, "{}", got.text);
    assert_eq!(got.body["name"], "partner_scorecard_score");
    assert_eq!(got.body["label"], "Partner scorecard score");
    assert_eq!(got.body["type"], "number");
    let got = post(&fake, &pat, "/crm/v3/properties/companies", &prop).await;
    assert_eq!(got.status, 409);
    assert_eq!(got.body["category"], "OBJECT_ALREADY_EXISTS");
    let got = get(
        &fake,
        &pat,
        "/crm/v3/properties/companies/partner_scorecard_score",
    )
    .await;
    assert_eq!(got.status, 200);
    assert_eq!(
        get(&fake, &pat, "/crm/v3/properties/companies/nope")
            .await
            .status,
        404
    );
    let got = post(
        &fake,
        &pat,
        "/crm/v3/properties/companies",
        &json!({"name": "x_only"}),
    )
    .await;
    assert_eq!(got.status, 400);
    assert!(
        fake.property_names("companies")
            .contains(&"partner_scorecard_score".to_string())
    );
    assert_eq!(fake.calls().properties, 6);
}

// ---------------------------------------------------------------------------
// Batch update

fn update_body(ids: &[&str], props: Value) -> Value {
    json!({"inputs": ids.iter().map(|id| json!({"id": id, "properties": props})).collect::<Vec<_>>()})
}

#[tokio::test]
async fn fake_hubspot_batch_update_200_207_400() {
    let fake = fake().await;
    fake.set_now(Utc.with_ymd_and_hms(2026, 5, 20, 20, 49, 32).unwrap());
    for c in ["11", "12", "13"] {
        fake.insert_company(c, json!({"name": format!("Co {c}")}));
    }
    fake.add_property("companies", "partner_score", "number");
    let pat = fake.private_token();
    let path = "/crm/v3/objects/companies/batch/update";

    // All good: 200.
    let got = post(
        &fake,
        &pat,
        path,
        &update_body(&["11", "12"], json!({"partner_score": 82.5})),
    )
    .await;
    assert_eq!(got.status, 200, "{}", got.text);
    assert_eq!(got.body["status"], "COMPLETE");
    assert!(got.body["startedAt"].is_string() && got.body["completedAt"].is_string());
    assert_eq!(got.body["results"].as_array().unwrap().len(), 2);
    assert_eq!(
        got.body["results"][0]["properties"]["partner_score"],
        "82.5"
    );
    let co = fake.company("11").unwrap();
    assert_eq!(co["properties"]["partner_score"], "82.5");
    assert_eq!(co["properties"]["name"], "Co 11");
    assert_eq!(co["updatedAt"], "2026-05-20T20:49:32.000Z");

    // Injected failure and a missing id: 207 with results.
    fake.fail_updates_for(&["12"]);
    let got = post(
        &fake,
        &pat,
        path,
        &update_body(&["11", "12", "999"], json!({"partner_score": "90"})),
    )
    .await;
    assert_eq!(got.status, 207, "{}", got.text);
    assert_eq!(got.body["status"], "COMPLETE");
    assert_eq!(got.body["numErrors"], 2);
    assert_eq!(ids(&got.body), ["11"]);
    let errors = got.body["errors"].as_array().unwrap();
    assert_eq!(errors[0]["category"], "OBJECT_NOT_FOUND");
    assert_eq!(errors[0]["context"]["ids"], json!(["999"]));
    assert_eq!(errors[1]["status"], "error");
    assert_eq!(errors[1]["context"]["ids"], json!(["12"]));
    assert_eq!(
        fake.company("11").unwrap()["properties"]["partner_score"],
        "90"
    );
    assert_eq!(
        fake.company("12").unwrap()["properties"]["partner_score"],
        "82.5"
    );

    // 207 without results.
    fake.omit_results_in_207(true);
    let got = post(
        &fake,
        &pat,
        path,
        &update_body(&["12"], json!({"partner_score": "1"})),
    )
    .await;
    assert_eq!(got.status, 207);
    assert!(got.body.get("results").is_none(), "{}", got.text);
    assert_eq!(got.body["numErrors"], 1);
    fake.omit_results_in_207(false);
    fake.clear_update_failures();

    // More than 100 inputs: 400, nothing written.
    let many: Vec<String> = (0..101).map(|i| format!("{i}")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let got = post(
        &fake,
        &pat,
        path,
        &update_body(&many, json!({"partner_score": "1"})),
    )
    .await;
    assert_eq!(got.status, 400);
    assert_eq!(got.body["category"], "VALIDATION_ERROR");

    // Unknown property, bad number, read-only: 400 for the whole batch.
    for props in [
        json!({"nope": "1"}),
        json!({"partner_score": "abc"}),
        json!({"hs_object_id": "5"}),
    ] {
        let got = post(&fake, &pat, path, &update_body(&["13"], props.clone())).await;
        assert_eq!(got.status, 400, "{props}");
        assert_eq!(got.body["category"], "VALIDATION_ERROR");
        assert!(
            got.body["message"]
                .as_str()
                .unwrap()
                .starts_with("Property values were not valid")
        );
    }
    let got = post(
        &fake,
        &pat,
        path,
        &update_body(&["13"], json!({"nope": "1"})),
    )
    .await;
    assert!(got.text.contains("PROPERTY_DOESNT_EXIST"));
    // Duplicate ids, malformed body.
    let got = post(
        &fake,
        &pat,
        path,
        &update_body(&["13", "13"], json!({"name": "x"})),
    )
    .await;
    assert_eq!(got.status, 400);
    let got = send(
        http()
            .post(format!("{}{path}", fake.url()))
            .bearer_auth(&pat)
            .body("[1,2"),
    )
    .await;
    assert_eq!(got.status, 400);
    assert_eq!(fake.company("13").unwrap()["properties"]["name"], "Co 13");
    assert_eq!(fake.batch_bodies().len(), 9);
    assert_eq!(fake.calls().batch_update, 10);
}

// ---------------------------------------------------------------------------
// Rate limits and faults

#[tokio::test]
async fn fake_hubspot_ten_secondly_and_daily_429() {
    let fake = fake().await;
    fake.set_rate_limits(3, 1000);
    let pat = fake.private_token();
    let mut last = None;
    for i in 0..3 {
        let got = get(&fake, &pat, "/crm/v3/objects/deals").await;
        assert_eq!(got.status, 200);
        assert_eq!(
            got.header("x-hubspot-ratelimit-remaining"),
            Some(format!("{}", 2 - i).as_str())
        );
        last = Some(got);
    }
    assert_eq!(
        last.unwrap().header("x-hubspot-ratelimit-daily-remaining"),
        Some("997")
    );
    let got = get(&fake, &pat, "/crm/v3/objects/deals").await;
    assert_eq!(got.status, 429);
    assert_eq!(got.body["status"], "error");
    assert_eq!(got.body["errorType"], "RATE_LIMIT");
    assert_eq!(got.body["policyName"], "TEN_SECONDLY_ROLLING");
    assert_eq!(
        got.body["message"],
        "You have reached your ten_secondly_rolling limit."
    );
    assert!(got.body["correlationId"].is_string());
    assert!(got.body["groupName"].is_string());
    assert_eq!(got.header("x-hubspot-ratelimit-max"), Some("3"));
    assert_eq!(got.header("x-hubspot-ratelimit-remaining"), Some("0"));
    assert_eq!(
        got.header("x-hubspot-ratelimit-interval-milliseconds"),
        Some("10000")
    );
    assert!(got.header("retry-after").is_none());
    // The 429 was not counted against the daily budget.
    assert_eq!(fake.daily_used(), 3);

    fake.reset_rate_window();
    fake.set_rate_limits(100, 1000);
    fake.set_daily_remaining(1);
    fake.set_retry_after(Some(7));
    let got = get(&fake, &pat, "/crm/v3/objects/deals").await;
    assert_eq!(got.status, 200);
    assert_eq!(got.header("x-hubspot-ratelimit-daily-remaining"), Some("0"));
    let got = get(&fake, &pat, "/crm/v3/objects/deals").await;
    assert_eq!(got.status, 429);
    assert_eq!(got.body["policyName"], "DAILY");
    assert_eq!(got.body["message"], "You have reached your daily limit.");
    assert_eq!(got.header("x-hubspot-ratelimit-daily"), Some("1000"));
    assert_eq!(got.header("x-hubspot-ratelimit-daily-remaining"), Some("0"));
    assert_eq!(got.header("retry-after"), Some("7"));
}

#[tokio::test]
async fn fake_hubspot_forced_429_and_fail_next() {
    let fake = fake().await;
    let pat = fake.private_token();
    fake.force_429(RatePolicy::TenSecondlyRolling, 2);
    fake.force_429(RatePolicy::Daily, 1);
    let mut policies = Vec::new();
    for _ in 0..3 {
        let got = get(&fake, &pat, "/crm/v3/objects/deals").await;
        assert_eq!(got.status, 429);
        policies.push(got.body["policyName"].as_str().unwrap().to_string());
        if got.body["policyName"] == "DAILY" {
            assert_eq!(got.header("x-hubspot-ratelimit-daily-remaining"), Some("0"));
        } else {
            assert_eq!(got.header("x-hubspot-ratelimit-remaining"), Some("0"));
        }
    }
    assert_eq!(
        policies,
        ["TEN_SECONDLY_ROLLING", "TEN_SECONDLY_ROLLING", "DAILY"]
    );
    assert_eq!(get(&fake, &pat, "/crm/v3/objects/deals").await.status, 200);

    fake.fail_next(
        2,
        503,
        r#"{"status":"error","message":"Service Unavailable"}"#,
    );
    fake.fail_next(1, 200, "{\"results\": [");
    for _ in 0..2 {
        let got = get(&fake, &pat, "/crm/v3/objects/deals").await;
        assert_eq!(got.status, 503);
        assert!(got.header("x-hubspot-ratelimit-max").is_some());
    }
    let got = get(&fake, &pat, "/crm/v3/objects/deals").await;
    assert_eq!(got.status, 200);
    assert_eq!(got.text, "{\"results\": [");
    assert!(serde_json::from_str::<Value>(&got.text).is_err());
    assert_eq!(get(&fake, &pat, "/crm/v3/objects/deals").await.status, 200);
    // Unauthenticated calls do not consume canned failures.
    fake.fail_next(1, 500, "{}");
    assert_eq!(get(&fake, "bad", "/crm/v3/objects/deals").await.status, 401);
    assert_eq!(get(&fake, &pat, "/crm/v3/objects/deals").await.status, 500);
}

#[tokio::test]
async fn fake_hubspot_call_counts_and_log() {
    let fake = fake().await;
    let pat = fake.private_token();
    let access = refresh(&fake, "fake-hubspot-refresh-1").await.body["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    get(&fake, &pat, "/crm/v3/objects/deals?limit=5").await;
    get(&fake, &access, "/crm/v3/objects/companies").await;
    post(&fake, &pat, "/crm/v3/objects/deals/search", &json!({})).await;
    get(&fake, &pat, "/crm/v3/owners").await;
    get(&fake, &pat, "/crm/v3/pipelines/deals").await;
    get(&fake, &pat, "/crm/v3/properties/deals").await;
    post(
        &fake,
        &pat,
        "/crm/v3/objects/companies/batch/update",
        &json!({"inputs": []}),
    )
    .await;
    get(&fake, &pat, "/nowhere").await;
    let c = fake.calls();
    assert_eq!(c.token, 1);
    assert_eq!(c.list_deals, 1);
    assert_eq!(c.list_companies, 1);
    assert_eq!(c.search, 1);
    assert_eq!(c.owners, 1);
    assert_eq!(c.pipelines, 1);
    assert_eq!(c.properties, 1);
    assert_eq!(c.batch_update, 1);
    assert_eq!(c.other, 1);
    assert_eq!(c.total, 8);
    let log = fake.requests();
    assert_eq!(log.len(), 9);
    assert_eq!(log[0].path, "/oauth/v1/token");
    assert!(
        log[0]
            .body
            .as_deref()
            .unwrap()
            .contains("grant_type=refresh_token")
    );
    assert_eq!(log[1].query.as_deref(), Some("limit=5"));
    assert_eq!(
        log[1].auth,
        Some(channel_sync_fakes::hubspot::TokenKind::PrivateApp)
    );
    assert_eq!(
        log[2].auth,
        Some(channel_sync_fakes::hubspot::TokenKind::OAuth)
    );
    assert_eq!(log[3].method, "POST");
    assert_eq!(log[7].status, 400);
    assert_eq!(log[8].status, 404);
    fake.reset_counts();
    assert_eq!(fake.calls(), Default::default());
    assert!(fake.requests().is_empty());
    assert!(fake.batch_bodies().is_empty());
}

#[tokio::test]
async fn fake_hubspot_odd_input_does_not_panic() {
    let fake = fake().await;
    insert_deals(&fake, 3);
    let pat = fake.private_token();
    for path in [
        "/crm/v3/objects/deals?limit=99999999999999999999999",
        "/crm/v3/objects/deals?after=%ZZ&properties=,,,",
        "/crm/v3/objects/deals?after=ZmFrZTo5OTk5OTk5OQ==",
        "/crm/v3/objects/%E2%82%AC/x/y/z",
        "/crm/v3/owners?limit=-1",
        "/crm/v3/properties/deals/%00",
        "/crm/v3/pipelines/companies",
        "/crm//v3",
        "/",
    ] {
        let got = get(&fake, &pat, path).await;
        assert!(got.status.as_u16() < 500, "{path}: {}", got.status);
    }
    for body in [
        json!(null),
        json!([]),
        json!({"filterGroups": [{"filters": [{"propertyName": 5}]}]}),
        json!({"sorts": [7]}),
        json!({"limit": -3}),
        json!({"filterGroups": [{"filters": [{"propertyName": "amount", "operator": "IN"}]}]}),
        json!({"filterGroups": [{"filters": [{"propertyName": "createdate", "operator": "GT", "value": "not a date"}]}]}),
    ] {
        let got = post(&fake, &pat, "/crm/v3/objects/deals/search", &body).await;
        assert_eq!(got.status, 400, "{body}");
        fake.reset_rate_window();
    }
    for body in [
        json!({"inputs": [{"id": "1000000"}]}),
        json!({"inputs": [{"properties": {}}]}),
        json!({"inputs": "x"}),
        json!({"inputs": [{"id": "1000000", "properties": {"dealname": {"a": 1}}}]}),
    ] {
        let got = post(&fake, &pat, "/crm/v3/objects/deals/batch/update", &body).await;
        assert_eq!(got.status, 400, "{body}");
    }
    let got = post(
        &fake,
        &pat,
        "/crm/v3/properties/deals",
        &json!({"name": "Bad Name", "label": "x", "type": "string", "fieldType": "text", "groupName": "g"}),
    )
    .await;
    assert_eq!(got.status, 400);
}
