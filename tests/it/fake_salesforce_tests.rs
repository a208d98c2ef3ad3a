//! Tests of the fake Salesforce server itself (they protect the tests that use it).

use std::collections::HashSet;

use chrono::{TimeZone, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};

use channel_sync_fakes::salesforce::{FakeConfig, FakeSalesforce};

const PRIVATE_KEY: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/salesforce/test_jwt_key.pem"
));
const JWT_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

async fn fake() -> FakeSalesforce {
    FakeSalesforce::start(FakeConfig::default()).await
}

fn http() -> reqwest::Client {
    reqwest::Client::new()
}

async fn post_token(fake: &FakeSalesforce, form: &[(&str, &str)]) -> (StatusCode, Value) {
    let resp = http()
        .post(format!("{}/services/oauth2/token", fake.url()))
        .form(form)
        .send()
        .await
        .unwrap();
    assert!(resp.headers().get("sforce-limit-info").is_none());
    let status = resp.status();
    (status, resp.json().await.unwrap())
}

async fn token(fake: &FakeSalesforce) -> String {
    let (status, body) = post_token(
        fake,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", "fake-client-id"),
            ("client_secret", "fake-client-secret"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["access_token"].as_str().unwrap().to_string()
}

struct Got {
    status: StatusCode,
    limit: Option<String>,
    body: Value,
    text: String,
}

async fn get(fake: &FakeSalesforce, token: &str, path_and_query: &str) -> Got {
    send(
        http()
            .get(format!("{}{path_and_query}", fake.url()))
            .bearer_auth(token),
    )
    .await
}

async fn send(req: reqwest::RequestBuilder) -> Got {
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let limit = resp
        .headers()
        .get("sforce-limit-info")
        .map(|v| v.to_str().unwrap().to_string());
    let text = resp.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Got {
        status,
        limit,
        body,
        text,
    }
}

async fn query_with(
    fake: &FakeSalesforce,
    token: &str,
    resource: &str,
    soql: &str,
    batch: Option<&str>,
) -> Got {
    let mut req = http()
        .get(format!("{}/services/data/v62.0/{resource}", fake.url()))
        .query(&[("q", soql)])
        .bearer_auth(token);
    if let Some(b) = batch {
        req = req.header("Sforce-Query-Options", b);
    }
    send(req).await
}

async fn query(fake: &FakeSalesforce, token: &str, soql: &str) -> Got {
    query_with(fake, token, "query", soql, None).await
}

async fn patch(fake: &FakeSalesforce, token: &str, body: &Value) -> Got {
    send(
        http()
            .patch(format!(
                "{}/services/data/v62.0/composite/sobjects",
                fake.url()
            ))
            .bearer_auth(token)
            .json(body),
    )
    .await
}

fn ids(body: &Value) -> Vec<String> {
    body["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["Id"].as_str().unwrap().to_string())
        .collect()
}

fn error_code(got: &Got) -> &str {
    got.body[0]["errorCode"].as_str().unwrap_or("")
}

fn opp_id(i: usize) -> String {
    format!("006xx{i:013}")
}

fn insert_opps(fake: &FakeSalesforce, n: usize) {
    fake.insert_many(
        "Opportunity",
        (0..n).map(|i| {
            json!({
                "Id": opp_id(i),
                "Name": format!("Deal {i}"),
                "StageName": "Prospecting",
                "Amount": 1000.0 + i as f64,
                "CloseDate": "2026-12-31",
                "IsClosed": false,
                "IsWon": false,
            })
        }),
    );
}

fn jwt(claims: Value) -> String {
    use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
    encode(
        &Header::new(Algorithm::RS256),
        &claims,
        &EncodingKey::from_rsa_pem(PRIVATE_KEY).unwrap(),
    )
    .unwrap()
}

fn claims(aud: &str) -> Value {
    json!({
        "iss": "fake-client-id",
        "sub": "integration@example.com",
        "aud": aud,
        "exp": Utc::now().timestamp() + 180,
    })
}

// ---------------------------------------------------------------------------
// Tokens

#[tokio::test]
async fn client_credentials_in_body_or_basic_auth() {
    let fake = fake().await;
    let (status, body) = post_token(
        &fake,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", "fake-client-id"),
            ("client_secret", "fake-client-secret"),
        ],
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        body["access_token"]
            .as_str()
            .unwrap()
            .starts_with("00Dfake!")
    );
    assert_eq!(body["instance_url"], fake.url());
    assert_eq!(
        body["id"],
        format!("{}/id/00Dxx0000000001EAA/005xx000001SvZ2AAK", fake.url())
    );
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["scope"], "api");
    assert!(body["signature"].is_string());
    let issued: i64 = body["issued_at"].as_str().unwrap().parse().unwrap();
    assert!((issued - Utc::now().timestamp_millis()).abs() < 60_000);
    assert!(body.get("expires_in").is_none());
    assert!(body.get("refresh_token").is_none());

    // HTTP Basic, body carries only the grant type.
    let resp = http()
        .post(format!("{}/services/oauth2/token", fake.url()))
        .basic_auth("fake-client-id", Some("fake-client-secret"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let second: Value = resp.json().await.unwrap();
    assert_ne!(second["access_token"], body["access_token"]);

    // Both tokens work.
    for t in [&body["access_token"], &second["access_token"]] {
        let got = query(&fake, t.as_str().unwrap(), "SELECT Id FROM Account").await;
        assert_eq!(got.status, 200);
    }

    for (id, secret) in [
        ("wrong", "fake-client-secret"),
        ("fake-client-id", "wrong"),
        ("", ""),
    ] {
        let (status, body) = post_token(
            &fake,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", id),
                ("client_secret", secret),
            ],
        )
        .await;
        assert_eq!(status, 400);
        assert_eq!(
            body,
            json!({"error":"invalid_client","error_description":"invalid client credentials"})
        );
    }
    let (status, body) = post_token(&fake, &[("grant_type", "password")]).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "unsupported_grant_type");
    assert_eq!(
        fake.token_grants(),
        [
            "client_credentials",
            "client_credentials",
            "client_credentials",
            "client_credentials",
            "client_credentials",
            "password"
        ]
    );
    let calls = fake.calls();
    assert_eq!(calls.token, 6);
    assert_eq!(calls.total_data, 2);
    assert_eq!(fake.api_usage().0, 2, "token calls do not count");
}

#[tokio::test]
async fn jwt_bearer_flow() {
    let fake = fake().await;
    for aud in [
        "https://login.salesforce.com".to_string(),
        "https://test.salesforce.com".to_string(),
        fake.url(),
    ] {
        let assertion = jwt(claims(&aud));
        let (status, body) = post_token(
            &fake,
            &[("grant_type", JWT_GRANT), ("assertion", &assertion)],
        )
        .await;
        assert_eq!(status, 200, "aud {aud}: {body}");
        let t = body["access_token"].as_str().unwrap();
        assert_eq!(query(&fake, t, "SELECT Id FROM Account").await.status, 200);
    }

    let invalid = json!({"error":"invalid_grant","error_description":"invalid assertion"});
    let mut wrong_iss = claims("https://login.salesforce.com");
    wrong_iss["iss"] = json!("someone-else");
    let mut expired = claims("https://login.salesforce.com");
    expired["exp"] = json!(Utc::now().timestamp() - 10);
    let mut no_exp = claims("https://login.salesforce.com");
    no_exp.as_object_mut().unwrap().remove("exp");
    let good = jwt(claims("https://login.salesforce.com"));
    let mut other = claims("https://login.salesforce.com");
    other["sub"] = json!("other@example.com");
    let other = jwt(other);
    let tampered = format!(
        "{}.{}",
        good.rsplit_once('.').unwrap().0,
        other.rsplit_once('.').unwrap().1
    );
    let cases = [
        jwt(wrong_iss),
        jwt(expired),
        jwt(no_exp),
        jwt(claims("https://evil.example.com")),
        "not-a-jwt".to_string(),
        tampered,
    ];
    for assertion in &cases {
        let (status, body) = post_token(
            &fake,
            &[("grant_type", JWT_GRANT), ("assertion", assertion)],
        )
        .await;
        assert_eq!(status, 400);
        assert_eq!(body, invalid, "{assertion}");
    }
    let (status, body) = post_token(&fake, &[("grant_type", JWT_GRANT)]).await;
    assert_eq!((status.as_u16(), &body), (400, &invalid));

    let mut wrong_sub = claims("https://login.salesforce.com");
    wrong_sub["sub"] = json!("nobody@example.com");
    let (status, body) = post_token(
        &fake,
        &[("grant_type", JWT_GRANT), ("assertion", &jwt(wrong_sub))],
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        body,
        json!({"error":"invalid_grant","error_description":"user hasn't approved this consumer"})
    );

    // Without a configured key every assertion is refused.
    let keyless = FakeSalesforce::start(FakeConfig {
        jwt_public_key_pem: None,
        ..FakeConfig::default()
    })
    .await;
    let (status, body) =
        post_token(&keyless, &[("grant_type", JWT_GRANT), ("assertion", &good)]).await;
    assert_eq!((status.as_u16(), &body), (400, &invalid));
}

async fn refresh(fake: &FakeSalesforce, refresh_token: &str) -> (StatusCode, Value) {
    post_token(
        fake,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
            ("client_id", "fake-client-id"),
            ("client_secret", "fake-client-secret"),
        ],
    )
    .await
}

#[tokio::test]
async fn refresh_token_flow_without_rotation() {
    let fake = fake().await;
    for _ in 0..2 {
        let (status, body) = refresh(&fake, "fake-refresh-1").await;
        assert_eq!(status, 200, "{body}");
        assert!(body.get("refresh_token").is_none());
        let t = body["access_token"].as_str().unwrap();
        assert_eq!(query(&fake, t, "SELECT Id FROM Account").await.status, 200);
    }
    let expired =
        json!({"error":"invalid_grant","error_description":"expired access/refresh token"});
    let (status, body) = refresh(&fake, "fake-refresh-0").await;
    assert_eq!((status.as_u16(), &body), (400, &expired));
    let (status, body) = post_token(
        &fake,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", "fake-refresh-1"),
            ("client_id", "fake-client-id"),
            ("client_secret", "wrong"),
        ],
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_client");
    assert_eq!(
        fake.token_grants(),
        [
            "refresh_token",
            "refresh_token",
            "refresh_token",
            "refresh_token"
        ]
    );
}

#[tokio::test]
async fn refresh_token_rotation() {
    let fake = FakeSalesforce::start(FakeConfig {
        rotate_refresh_tokens: true,
        ..FakeConfig::default()
    })
    .await;
    let (status, body) = refresh(&fake, "fake-refresh-1").await;
    assert_eq!(status, 200);
    assert_eq!(body["refresh_token"], "fake-refresh-2");
    assert_eq!(fake.current_refresh_token(), "fake-refresh-2");
    let (status, body) = refresh(&fake, "fake-refresh-1").await;
    assert_eq!(status, 400);
    assert_eq!(body["error_description"], "expired access/refresh token");
    let (status, body) = refresh(&fake, "fake-refresh-2").await;
    assert_eq!(status, 200);
    assert_eq!(body["refresh_token"], "fake-refresh-3");
    let t = body["access_token"].as_str().unwrap();
    assert_eq!(query(&fake, t, "SELECT Id FROM Account").await.status, 200);
}

#[tokio::test]
async fn sessions_expire_on_command() {
    let fake = fake().await;
    let soql = "SELECT Id FROM Account";
    let session_expired =
        json!([{"message":"Session expired or invalid","errorCode":"INVALID_SESSION_ID"}]);

    let got = send(http().get(format!(
        "{}/services/data/v62.0/query?q=SELECT+Id+FROM+Account",
        fake.url()
    )))
    .await;
    assert_eq!(got.status, 401);
    assert_eq!(got.body, session_expired);
    assert_eq!(got.limit.as_deref(), Some("api-usage=1/100000"));
    assert_eq!(query(&fake, "00Dfake!bogus", soql).await.status, 401);

    let t = token(&fake).await;
    assert_eq!(query(&fake, &t, soql).await.status, 200);
    fake.expire_sessions();
    let got = query(&fake, &t, soql).await;
    assert_eq!(got.status, 401);
    assert_eq!(got.body, session_expired);

    let t = token(&fake).await;
    fake.expire_sessions_after(2);
    assert_eq!(query(&fake, &t, soql).await.status, 200);
    assert_eq!(query(&fake, &t, soql).await.status, 200);
    assert_eq!(query(&fake, &t, soql).await.status, 401);
    let t = token(&fake).await;
    assert_eq!(query(&fake, &t, soql).await.status, 200);

    let log = fake.requests();
    let statuses: Vec<(u16, bool)> = log
        .iter()
        .filter(|r| r.path.ends_with("/query"))
        .map(|r| (r.status, r.auth_valid))
        .collect();
    assert_eq!(
        statuses,
        [
            (401, false),
            (401, false),
            (200, true),
            (401, false),
            (200, true),
            (200, true),
            (401, false),
            (200, true)
        ]
    );
}

// ---------------------------------------------------------------------------
// Queries

#[tokio::test]
async fn pages_4500_records_in_three_pages() {
    let fake = fake().await;
    insert_opps(&fake, 4500);
    let t = token(&fake).await;
    let first = query_with(
        &fake,
        &t,
        "query",
        "SELECT Id, Name FROM Opportunity",
        Some("batchSize=2000"),
    )
    .await;
    assert_eq!(first.status, 200, "{}", first.text);
    assert_eq!(first.body["totalSize"], 4500);
    assert_eq!(first.body["done"], false);
    let next = first.body["nextRecordsUrl"].as_str().unwrap().to_string();
    let (prefix, offset) = next.rsplit_once('-').unwrap();
    assert!(
        prefix.starts_with("/services/data/v62.0/query/01g"),
        "{next}"
    );
    assert_eq!(offset, "2000");
    let mut seen = ids(&first.body);
    assert_eq!(seen.len(), 2000);
    assert_eq!(
        first.body["records"][0],
        json!({
            "attributes": {
                "type": "Opportunity",
                "url": format!("/services/data/v62.0/sobjects/Opportunity/{}", opp_id(0)),
            },
            "Id": opp_id(0),
            "Name": "Deal 0",
        })
    );
    // Fields come in SELECT order, after the attributes.
    let expected_first = format!(
        "\"records\":[{{\"attributes\":{{\"type\":\"Opportunity\",\"url\":\"/services/data/v62.0/sobjects/Opportunity/{0}\"}},\"Id\":\"{0}\",\"Name\":\"Deal 0\"}},",
        opp_id(0)
    );
    assert!(
        first.text.contains(&expected_first),
        "{}",
        &first.text[..300]
    );

    let second = get(&fake, &t, &next).await;
    assert_eq!(second.status, 200);
    assert_eq!(second.body["totalSize"], 4500);
    assert_eq!(second.body["done"], false);
    let next2 = second.body["nextRecordsUrl"].as_str().unwrap().to_string();
    assert_eq!(next2, format!("{prefix}-4000"));
    seen.extend(ids(&second.body));

    let third = get(&fake, &t, &next2).await;
    assert_eq!(third.body["done"], true);
    assert!(third.body.get("nextRecordsUrl").is_none());
    seen.extend(ids(&third.body));
    assert_eq!(ids(&third.body).len(), 500);

    assert_eq!(seen.len(), 4500);
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 4500);
    assert_eq!(seen, (0..4500).map(opp_id).collect::<Vec<_>>());

    // The queryAll spelling of the locator works too; a page can be re-read.
    let again = get(&fake, &t, &next2.replace("/query/", "/queryAll/")).await;
    assert_eq!(ids(&again.body), ids(&third.body));

    let calls = fake.calls();
    assert_eq!((calls.query, calls.query_more), (1, 3));

    for bad in [
        "/services/data/v62.0/query/01gFAKE999-2000",
        "/services/data/v62.0/query/garbage",
        &format!("{prefix}-99999"),
    ] {
        let got = get(&fake, &t, bad).await;
        assert_eq!(got.status, 400, "{bad}");
        assert_eq!(
            got.body,
            json!([{"message":"invalid query locator","errorCode":"INVALID_QUERY_LOCATOR"}])
        );
    }
}

#[tokio::test]
async fn batch_size_is_clamped() {
    let fake = fake().await;
    insert_opps(&fake, 2500);
    let t = token(&fake).await;
    for (header, expect) in [
        (None, 2000),
        (Some("batchSize=2000"), 2000),
        (Some("batchSize=5000"), 2000),
        (Some("batchSize=500"), 500),
        (Some("batchSize=50"), 200),
        (Some("batchSize=abc"), 2000),
    ] {
        let got = query_with(&fake, &t, "query", "SELECT Id FROM Opportunity", header).await;
        assert_eq!(ids(&got.body).len(), expect, "{header:?}");
        let next = got.body["nextRecordsUrl"].as_str().unwrap();
        assert!(next.ends_with(&format!("-{expect}")), "{next}");
        // Later pages keep the size of the first.
        let more = get(&fake, &t, next).await;
        assert_eq!(ids(&more.body).len(), expect.min(2500 - expect));
    }
    let log = fake.requests();
    assert!(
        log.iter()
            .any(|r| r.query_options.as_deref() == Some("batchSize=50"))
    );
}

#[tokio::test]
async fn where_filters_and_order() {
    let fake = fake().await;
    let t0 = Utc.with_ymd_and_hms(2026, 11, 1, 12, 0, 0).unwrap();
    fake.set_now(t0);
    fake.insert(
        "Account",
        json!({"Id": "001A", "Name": "Alpha", "IsPartner": true, "Website": "https://alpha.example"}),
    );
    fake.set_now(t0 + chrono::Duration::hours(1));
    fake.insert(
        "Account",
        json!({"Id": "001B", "Name": "Beta", "IsPartner": false, "Website": null}),
    );
    fake.insert(
        "Account",
        json!({"Id": "001C", "Name": "Gamma", "IsPartner": true, "SystemModstamp": "2026-10-01T00:00:00.000+0000"}),
    );
    let t = token(&fake).await;
    let q = |soql: &'static str| {
        let fake = fake.clone();
        let t = t.clone();
        async move {
            let got = query(&fake, &t, soql).await;
            assert_eq!(got.status, 200, "{soql}: {}", got.text);
            ids(&got.body)
        }
    };
    assert_eq!(
        q("SELECT Id FROM Account WHERE SystemModstamp >= 2026-11-01T12:00:00Z").await,
        ["001A", "001B"]
    );
    assert_eq!(
        q("SELECT Id FROM Account WHERE SystemModstamp > 2026-11-01T12:00:00.000+0000").await,
        ["001B"]
    );
    assert_eq!(
        q("select Id from Account where SystemModstamp < 2026-11-01T12:00:00Z").await,
        ["001C"]
    );
    assert_eq!(
        q("SELECT Id FROM Account WHERE SystemModstamp <= 2026-11-01T13:00:00+01:00").await,
        ["001A", "001C"]
    );
    assert_eq!(
        q("SELECT Id FROM Account WHERE Website != null").await,
        ["001A"]
    );
    assert_eq!(
        q("SELECT Id FROM Account WHERE Website = null").await,
        ["001B", "001C"]
    );
    assert_eq!(
        q("SELECT Id FROM Account WHERE IsPartner = true").await,
        ["001A", "001C"]
    );
    assert_eq!(
        q("SELECT Id FROM Account WHERE IsPartner = TRUE AND SystemModstamp > 2026-10-15T00:00:00Z").await,
        ["001A"]
    );
    assert_eq!(
        q("SELECT Id FROM Account WHERE Name = 'beta'").await,
        ["001B"]
    );
    assert_eq!(
        q("SELECT Id FROM Account WHERE Name IN ('Alpha', 'Gamma')").await,
        ["001A", "001C"]
    );
    assert_eq!(
        q("SELECT Id FROM Account ORDER BY SystemModstamp").await,
        ["001C", "001A", "001B"]
    );
    assert_eq!(
        q("SELECT Id FROM Account ORDER BY SystemModstamp ASC").await,
        ["001C", "001A", "001B"]
    );
    assert_eq!(
        q("SELECT Id FROM Account ORDER BY Name DESC LIMIT 2").await,
        ["001C", "001B"]
    );

    // Values render like Salesforce's.
    let got = query(
        &fake,
        &t,
        "SELECT Id, name, SystemModstamp, IsPartner, Website FROM account WHERE Id = '001A'",
    )
    .await;
    let rec = &got.body["records"][0];
    assert_eq!(rec["attributes"]["type"], "Account");
    assert_eq!(
        rec["Name"], "Alpha",
        "field names echo the schema's spelling"
    );
    assert_eq!(rec["SystemModstamp"], "2026-11-01T12:00:00.000+0000");
    assert_eq!(rec["IsPartner"], true);
    assert_eq!(rec["Website"], "https://alpha.example");
}

#[tokio::test]
async fn query_skips_deleted_rows_and_query_all_returns_them() {
    let fake = fake().await;
    insert_opps(&fake, 3);
    fake.set_now(Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap());
    fake.delete("Opportunity", &opp_id(1));
    fake.purge("Opportunity", &opp_id(2));
    let t = token(&fake).await;
    let soql = "SELECT Id, IsDeleted, SystemModstamp FROM Opportunity";
    let live = query(&fake, &t, soql).await;
    assert_eq!(ids(&live.body), [opp_id(0)]);
    assert_eq!(live.body["records"][0]["IsDeleted"], false);
    let all = query_with(&fake, &t, "queryAll", soql, None).await;
    assert_eq!(all.body["totalSize"], 2);
    assert_eq!(ids(&all.body), [opp_id(0), opp_id(1)]);
    assert_eq!(all.body["records"][1]["IsDeleted"], true);
    assert_eq!(
        all.body["records"][1]["SystemModstamp"],
        "2027-01-01T00:00:00.000+0000"
    );
    let deleted = query_with(
        &fake,
        &t,
        "queryAll",
        "SELECT Id FROM Opportunity WHERE IsDeleted = true",
        None,
    )
    .await;
    assert_eq!(ids(&deleted.body), [opp_id(1)]);
    assert_eq!(
        fake.record("Opportunity", &opp_id(1)).unwrap()["IsDeleted"],
        true
    );
    assert!(fake.record("Opportunity", &opp_id(2)).is_none());
    assert_eq!(fake.count("Opportunity"), 2);

    fake.undelete("Opportunity", &opp_id(1));
    assert_eq!(ids(&query(&fake, &t, soql).await.body).len(), 2);
}

#[tokio::test]
async fn query_errors() {
    let fake = fake().await;
    let t = token(&fake).await;
    let got = query(&fake, &t, "SELECT Id FROM Widget__c").await;
    assert_eq!(got.status, 400);
    assert_eq!(error_code(&got), "INVALID_TYPE");
    assert!(
        got.body[0]["message"]
            .as_str()
            .unwrap()
            .starts_with("sObject type 'Widget__c' is not supported.")
    );

    let got = query(&fake, &t, "SELECT Id, Bogus__c FROM Account").await;
    assert_eq!(got.status, 400);
    assert_eq!(error_code(&got), "INVALID_FIELD");
    assert!(
        got.body[0]["message"]
            .as_str()
            .unwrap()
            .starts_with("No such column 'Bogus__c' on entity 'Account'")
    );
    for soql in [
        "SELECT Id, IsDeleted FROM User",
        "SELECT Id FROM User WHERE IsDeleted = false",
        "SELECT Id, CurrencyIsoCode FROM Opportunity",
        "SELECT Id FROM Account ORDER BY Nope",
        "SELECT Id FROM Account WHERE IsPartner = 'yes'",
        "SELECT Id FROM Account WHERE SystemModstamp > '2026-01-01T00:00:00Z'",
    ] {
        let got = query(&fake, &t, soql).await;
        assert_eq!(
            (got.status.as_u16(), error_code(&got)),
            (400, "INVALID_FIELD"),
            "{soql}"
        );
    }
    for soql in [
        "",
        "SELEC Id FROM Account",
        "SELECT FROM Account",
        "SELECT Id FROM",
        "SELECT Id FROM Account WHERE",
        "SELECT Id FROM Account WHERE Name = 'unterminated",
        "SELECT Id FROM Account WHERE Name = 'a' OR Name = 'b'",
        "SELECT Id FROM Account extra",
        "SELECT Id, Id FROM Account",
        "SELECT COUNT() FROM Account",
        "SELECT Id FROM Account WHERE SystemModstamp > 2026-11-01T12:00:00.000 0000",
    ] {
        let got = query(&fake, &t, soql).await;
        assert_eq!(
            (got.status.as_u16(), error_code(&got)),
            (400, "MALFORMED_QUERY"),
            "{soql}"
        );
    }
    let got = get(&fake, &t, "/services/data/v62.0/query").await;
    assert_eq!(error_code(&got), "MALFORMED_QUERY");

    // A multi-currency org: the field exists once added, and goes away again.
    fake.add_field("Opportunity", "CurrencyIsoCode", "picklist");
    fake.insert(
        "Opportunity",
        json!({"Id": "006EUR", "CurrencyIsoCode": "EUR", "Amount": 10}),
    );
    let got = query(
        &fake,
        &t,
        "SELECT Id, CurrencyIsoCode, Amount FROM Opportunity",
    )
    .await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body["records"][0]["CurrencyIsoCode"], "EUR");
    assert_eq!(got.body["records"][0]["Amount"], 10.0);
    fake.remove_field("Opportunity", "CurrencyIsoCode");
    let got = query(&fake, &t, "SELECT Id, CurrencyIsoCode FROM Opportunity").await;
    assert_eq!(error_code(&got), "INVALID_FIELD");
}

#[tokio::test]
async fn odd_requests_get_errors_not_panics() {
    let fake = fake().await;
    let t = token(&fake).await;
    for soql in [
        "SELECT Id FROM Account WHERE Name = '\\",
        "SELECT Id FROM Account WHERE Name IN (",
        "SELECT Id FROM Account WHERE Name IN ('a'",
        "SELECT Id FROM Account LIMIT -1",
        "SELECT Id FROM Account ORDER BY Name NULLS",
        "SELECT \u{1F600} FROM Account",
        "SELECT Id FROM Account WHERE Amount >= -",
        ")(",
    ] {
        let got = query(&fake, &t, soql).await;
        assert_eq!(got.status, 400, "{soql}");
    }
    let got = get(&fake, &t, "/services/data/v62.0/query?q=%ZZ%").await;
    assert_eq!(got.status, 400);
    let got = get(&fake, &t, "/services/data/v62.0/query/-").await;
    assert_eq!(got.status, 400);
    let got = send(
        http()
            .patch(format!(
                "{}/services/data/v62.0/composite/sobjects",
                fake.url()
            ))
            .bearer_auth(&t)
            .body("{not json"),
    )
    .await;
    assert_eq!(
        (got.status.as_u16(), error_code(&got)),
        (400, "JSON_PARSER_ERROR")
    );
    let got = patch(&fake, &t, &json!({"records": "nope"})).await;
    assert_eq!(got.status, 400);
    let got = patch(&fake, &t, &json!({"records": [1, null, {"id": "x"}]})).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body[0]["errors"][0]["statusCode"], "MISSING_ARGUMENT");
    let resp = http()
        .post(format!("{}/services/oauth2/token", fake.url()))
        .body("%%%&&&=")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    // Still serving.
    assert_eq!(query(&fake, &t, "SELECT Id FROM Account").await.status, 200);
}

#[tokio::test]
async fn describe_lists_fields() {
    let fake = fake().await;
    let t = token(&fake).await;
    let got = get(
        &fake,
        &t,
        "/services/data/v62.0/sobjects/Opportunity/describe",
    )
    .await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body["name"], "Opportunity");
    let fields = got.body["fields"].as_array().unwrap();
    assert_eq!(
        fields[0],
        json!({"name":"Id","type":"id","label":"Id","custom":false,"nillable":false})
    );
    let names: Vec<&str> = fields.iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "Id",
            "AccountId",
            "OwnerId",
            "Name",
            "StageName",
            "IsClosed",
            "IsWon",
            "Amount",
            "CloseDate",
            "CreatedDate",
            "LastModifiedDate",
            "SystemModstamp",
            "IsDeleted",
            "PartnerAccountId",
            "Partner_Rep__c",
            "Deal_Registration__c"
        ]
    );
    let kind = |name: &str| {
        fields
            .iter()
            .find(|f| f["name"] == name)
            .map(|f| f["type"].as_str().unwrap().to_string())
    };
    assert_eq!(kind("Amount").as_deref(), Some("currency"));
    assert_eq!(kind("CloseDate").as_deref(), Some("date"));
    assert_eq!(kind("PartnerAccountId").as_deref(), Some("reference"));

    let user = get(&fake, &t, "/services/data/v62.0/sobjects/User/describe").await;
    assert!(
        !user.body["fields"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["name"] == "IsDeleted")
    );
    fake.add_field("Account", "Partner_Score__c", "double");
    let acct = get(&fake, &t, "/services/data/v62.0/sobjects/account/describe").await;
    assert_eq!(acct.body["name"], "Account");
    assert!(
        acct.body["fields"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["name"] == "Partner_Score__c"
                && f["type"] == "double"
                && f["custom"] == true)
    );

    let got = get(&fake, &t, "/services/data/v62.0/sobjects/Nope/describe").await;
    assert_eq!(got.status, 404);
    assert_eq!(
        got.body,
        json!([{"errorCode":"NOT_FOUND","message":"The requested resource does not exist"}])
    );
    let got = get(&fake, &t, "/services/data/v62.0/limits").await;
    assert_eq!(got.status, 404);
    assert_eq!(error_code(&got), "NOT_FOUND");
    assert_eq!(fake.calls().describe, 4);
    assert_eq!(fake.calls().other, 1);
}

// ---------------------------------------------------------------------------
// Writes

fn account_update(id: &str, score: Value) -> Value {
    json!({"attributes": {"type": "Account"}, "id": id, "Active_Seller_Rate__c": score})
}

#[tokio::test]
async fn composite_update_succeeds_and_bumps_modstamp() {
    let fake = fake().await;
    fake.set_now(Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap());
    fake.insert("Account", json!({"Id": "001A", "Name": "Alpha"}));
    fake.insert("Account", json!({"Id": "001B", "Name": "Beta"}));
    fake.set_now(Utc.with_ymd_and_hms(2026, 2, 1, 0, 0, 0).unwrap());
    let t = token(&fake).await;
    let body = json!({
        "allOrNone": false,
        "records": [
            account_update("001A", json!(82.5)),
            {"attributes": {"type": "Account"}, "id": "001B", "Partner_Tier__c": "Gold", "Partner_Reps__c": 3},
        ],
    });
    let got = patch(&fake, &t, &body).await;
    assert_eq!(got.status, 200, "{}", got.text);
    assert_eq!(
        got.body,
        json!([
            {"id": "001A", "success": true, "errors": []},
            {"id": "001B", "success": true, "errors": []},
        ])
    );
    let a = fake.record("Account", "001A").unwrap();
    assert_eq!(a["Active_Seller_Rate__c"], 82.5);
    assert_eq!(a["SystemModstamp"], "2026-02-01T00:00:00.000+0000");
    assert_eq!(a["LastModifiedDate"], "2026-02-01T00:00:00.000+0000");
    assert_eq!(a["CreatedDate"], "2026-01-01T00:00:00.000+0000");
    let b = fake.record("Account", "001B").unwrap();
    assert_eq!(b["Partner_Tier__c"], "Gold");
    assert_eq!(b["Partner_Reps__c"], 3.0);
    assert_eq!(fake.composite_bodies(), [body]);
    assert_eq!(fake.calls().composite, 1);
    let log = fake.requests();
    let last = log.last().unwrap();
    assert_eq!(last.method, "PATCH");
    assert!(last.body.as_deref().unwrap().contains("82.5"));
}

#[tokio::test]
async fn composite_update_reports_per_record_failures() {
    let fake = fake().await;
    for id in ["001A", "001B", "001C", "001D"] {
        fake.insert("Account", json!({"Id": id}));
    }
    fake.delete("Account", "001C");
    fake.fail_writes_for(&["001B"]);
    let t = token(&fake).await;
    let got = patch(
        &fake,
        &t,
        &json!({"allOrNone": false, "records": [
            account_update("001A", json!(1)),
            account_update("001B", json!(2)),
            account_update("001C", json!(3)),
            account_update("001Z", json!(4)),
            {"id": "001D", "Active_Seller_Rate__c": 5},
            {"attributes": {"type": "Account"}, "Active_Seller_Rate__c": 6},
            {"attributes": {"type": "Account"}, "id": "001D", "SystemModstamp": "2020-01-01T00:00:00Z"},
        ]}),
    )
    .await;
    assert_eq!(got.status, 200, "{}", got.text);
    let results = got.body.as_array().unwrap();
    assert_eq!(results.len(), 7);
    let codes: Vec<&str> = results
        .iter()
        .map(|r| r["errors"][0]["statusCode"].as_str().unwrap_or("ok"))
        .collect();
    assert_eq!(
        codes,
        [
            "ok",
            "FIELD_CUSTOM_VALIDATION_EXCEPTION",
            "ENTITY_IS_DELETED",
            "INVALID_CROSS_REFERENCE_KEY",
            "MISSING_ARGUMENT",
            "MISSING_ARGUMENT",
            "INVALID_FIELD_FOR_INSERT_UPDATE"
        ]
    );
    assert_eq!(
        results[1],
        json!({"success": false, "errors": [{
            "statusCode": "FIELD_CUSTOM_VALIDATION_EXCEPTION",
            "message": "rejected by the fake",
            "fields": ["Active_Seller_Rate__c"],
        }]})
    );
    assert_eq!(
        fake.record("Account", "001A").unwrap()["Active_Seller_Rate__c"],
        1.0
    );
    assert_eq!(
        fake.record("Account", "001B").unwrap()["Active_Seller_Rate__c"],
        Value::Null
    );

    fake.clear_write_failures();
    let got = patch(
        &fake,
        &t,
        &json!({"records": [account_update("001B", json!(2))]}),
    )
    .await;
    assert_eq!(got.body[0]["success"], true);

    // allOrNone rolls everything back.
    fake.fail_writes_for(&["001B"]);
    let got = patch(
        &fake,
        &t,
        &json!({"allOrNone": true, "records": [
            account_update("001A", json!(50)),
            account_update("001B", json!(51)),
        ]}),
    )
    .await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body[0]["success"], false);
    assert_eq!(
        got.body[0]["errors"][0]["statusCode"],
        "ALL_OR_NONE_OPERATION_ROLLED_BACK"
    );
    assert_eq!(
        got.body[1]["errors"][0]["statusCode"],
        "FIELD_CUSTOM_VALIDATION_EXCEPTION"
    );
    assert_eq!(
        fake.record("Account", "001A").unwrap()["Active_Seller_Rate__c"],
        1.0
    );
}

#[tokio::test]
async fn composite_update_rejects_bad_requests() {
    let fake = fake().await;
    fake.insert("Account", json!({"Id": "001A"}));
    let t = token(&fake).await;
    let too_many: Vec<Value> = (0..201)
        .map(|i| account_update(&format!("001{i}"), json!(1)))
        .collect();
    let got = patch(&fake, &t, &json!({"allOrNone": false, "records": too_many})).await;
    assert_eq!(got.status, 400);
    assert_eq!(error_code(&got), "EXCEEDED_ID_LIMIT");
    let exactly: Vec<Value> = (0..200).map(|_| account_update("001A", json!(1))).collect();
    let got = patch(&fake, &t, &json!({"records": exactly})).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body.as_array().unwrap().len(), 200);

    let got = patch(
        &fake,
        &t,
        &json!({"records": [
            account_update("001A", json!(7)),
            {"attributes": {"type": "Account"}, "id": "001A", "Partner_Score__c": 1},
        ]}),
    )
    .await;
    assert_eq!(got.status, 400);
    assert_eq!(
        got.body,
        json!([{"message":"No such column 'Partner_Score__c' on sobject of type Account","errorCode":"INVALID_FIELD"}])
    );
    assert_eq!(
        fake.record("Account", "001A").unwrap()["Active_Seller_Rate__c"],
        1.0,
        "a rejected request changes nothing"
    );
    let got = patch(
        &fake,
        &t,
        &json!({"records": [{"attributes": {"type": "Account"}, "id": "001A", "IsPartner": "maybe"}]}),
    )
    .await;
    assert_eq!(
        (got.status.as_u16(), error_code(&got)),
        (400, "JSON_PARSER_ERROR")
    );
    let got = patch(
        &fake,
        &t,
        &json!({"records": [{"attributes": {"type": "Widget"}, "id": "a00"}]}),
    )
    .await;
    assert_eq!(
        (got.status.as_u16(), error_code(&got)),
        (400, "INVALID_TYPE")
    );
    let got = send(
        http()
            .post(format!(
                "{}/services/data/v62.0/composite/sobjects",
                fake.url()
            ))
            .bearer_auth(&t)
            .json(&json!({"records": []})),
    )
    .await;
    assert_eq!(got.status, 405);
}

// ---------------------------------------------------------------------------
// Limits, faults, counts

#[tokio::test]
async fn limit_info_counts_every_data_call() {
    let fake = FakeSalesforce::start(FakeConfig {
        api_used: 10,
        api_max: 13,
        ..FakeConfig::default()
    })
    .await;
    let t = token(&fake).await;
    let soql = "SELECT Id FROM Account";
    assert_eq!(
        query(&fake, &t, soql).await.limit.as_deref(),
        Some("api-usage=11/13")
    );
    let got = get(&fake, &t, "/services/data/v62.0/sobjects/Account/describe").await;
    assert_eq!(got.limit.as_deref(), Some("api-usage=12/13"));
    let got = query(&fake, &t, soql).await;
    assert_eq!(
        (got.status.as_u16(), got.limit.as_deref()),
        (200, Some("api-usage=13/13"))
    );
    let got = query(&fake, &t, soql).await;
    assert_eq!(got.status, 403);
    assert_eq!(got.limit.as_deref(), Some("api-usage=13/13"));
    assert_eq!(
        got.body,
        json!([{"message":"TotalRequests Limit exceeded.","errorCode":"REQUEST_LIMIT_EXCEEDED"}])
    );
    // Token calls still work and do not count.
    let t = token(&fake).await;
    assert_eq!(query(&fake, &t, soql).await.status, 403);
    fake.set_api_usage(0, 5);
    let got = query(&fake, &t, soql).await;
    assert_eq!(
        (got.status.as_u16(), got.limit.as_deref()),
        (200, Some("api-usage=1/5"))
    );
    let got = get(&fake, &t, "/nothing/here").await;
    assert_eq!(got.status, 404);
    assert_eq!(got.limit.as_deref(), Some("api-usage=2/5"));
}

#[tokio::test]
async fn fail_next_serves_canned_answers() {
    let fake = fake().await;
    let t = token(&fake).await;
    let soql = "SELECT Id FROM Account";
    let unavailable = r#"[{"message":"Server unavailable","errorCode":"SERVER_UNAVAILABLE"}]"#;
    fake.fail_next(2, 503, unavailable);
    fake.fail_next(1, 200, "{\"totalSize\": 1, \"records\": [");
    for _ in 0..2 {
        let got = query(&fake, &t, soql).await;
        assert_eq!(got.status, 503);
        assert_eq!(got.text, unavailable);
        assert!(got.limit.is_some());
    }
    let got = query(&fake, &t, soql).await;
    assert_eq!(got.status, 200);
    assert!(serde_json::from_str::<Value>(&got.text).is_err());
    let got = query(&fake, &t, soql).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body["totalSize"], 0);
    assert_eq!(got.body["done"], true);
    // Canned answers wait for an authenticated call.
    fake.fail_next(1, 500, "[]");
    assert_eq!(query(&fake, "bogus", soql).await.status, 401);
    assert_eq!(query(&fake, &t, soql).await.status, 500);
    // Token calls are never canned.
    fake.fail_next(1, 503, unavailable);
    token(&fake).await;
    assert_eq!(query(&fake, &t, soql).await.status, 503);
}

#[tokio::test]
async fn call_counts_and_reset() {
    let fake = fake().await;
    insert_opps(&fake, 450);
    let t = token(&fake).await;
    let first = query_with(
        &fake,
        &t,
        "query",
        "SELECT Id FROM Opportunity",
        Some("batchSize=200"),
    )
    .await;
    let next = first.body["nextRecordsUrl"].as_str().unwrap().to_string();
    let second = get(&fake, &t, &next).await;
    get(&fake, &t, second.body["nextRecordsUrl"].as_str().unwrap()).await;
    query_with(&fake, &t, "queryAll", "SELECT Id FROM Opportunity", None).await;
    get(
        &fake,
        &t,
        "/services/data/v62.0/sobjects/Opportunity/describe",
    )
    .await;
    patch(&fake, &t, &json!({"records": []})).await;
    get(&fake, &t, "/services/data/v62.0/sobjects/Opportunity/006xx").await;
    assert_eq!(
        fake.calls(),
        channel_sync_fakes::salesforce::Calls {
            token: 1,
            query: 2,
            query_more: 2,
            describe: 1,
            composite: 1,
            other: 1,
            total_data: 7,
        }
    );
    let log = fake.requests();
    assert_eq!(log.len(), 8);
    assert_eq!(log[1].soql.as_deref(), Some("SELECT Id FROM Opportunity"));
    assert_eq!(log[1].path, "/services/data/v62.0/query");
    assert!(log[1].query.as_deref().unwrap().starts_with("q=SELECT"));
    assert!(log[1].auth_valid);
    assert_eq!(log[1].status, 200);
    fake.reset_counts();
    assert_eq!(fake.calls(), Default::default());
    assert!(fake.requests().is_empty());
    assert!(fake.composite_bodies().is_empty());
    assert!(fake.token_grants().is_empty());
}

#[tokio::test]
async fn records_store_and_render_values() {
    let fake = fake().await;
    fake.set_now(Utc.with_ymd_and_hms(2026, 5, 20, 20, 49, 32).unwrap());
    fake.insert(
        "Opportunity",
        json!({
            "Id": "006A",
            "AccountId": "001A",
            "Amount": 125000,
            "CloseDate": "2024-12-31",
            "StageName": "Closed Won",
            "IsWon": true,
            "Name": "Quote \"q\" and \\ back\nslash",
            "Unknown__c": "dropped",
        }),
    );
    fake.insert("Opportunity", json!({"Name": "no id"}));
    let rec = fake.record("Opportunity", "006A").unwrap();
    assert_eq!(rec["SystemModstamp"], "2026-05-20T20:49:32.000+0000");
    assert_eq!(rec["CreatedDate"], "2026-05-20T20:49:32.000+0000");
    assert_eq!(rec["IsDeleted"], false);
    assert_eq!(rec["PartnerAccountId"], Value::Null);
    assert!(rec.get("Unknown__c").is_none());
    let t = token(&fake).await;
    let got = query(
        &fake,
        &t,
        "SELECT Id, Amount, CloseDate, StageName, IsWon, Name, PartnerAccountId FROM Opportunity ORDER BY CloseDate",
    )
    .await;
    assert_eq!(got.status, 200, "{}", got.text);
    assert!(got.text.contains("\"Amount\":125000.0"), "{}", got.text);
    let records = got.body["records"].as_array().unwrap();
    assert_eq!(records.len(), 2);
    // Nulls sort first in ascending order.
    assert_eq!(records[0]["Name"], "no id");
    let id = records[0]["Id"].as_str().unwrap();
    assert!(id.starts_with("006") && id.len() == 18, "{id}");
    assert_eq!(records[1]["CloseDate"], "2024-12-31");
    assert_eq!(records[1]["Name"], "Quote \"q\" and \\ back\nslash");
    assert_eq!(records[1]["IsWon"], true);

    fake.set_now(Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).unwrap());
    fake.update(
        "Opportunity",
        "006A",
        json!({"StageName": "Closed Lost", "IsWon": false}),
    );
    let rec = fake.record("Opportunity", "006A").unwrap();
    assert_eq!(rec["StageName"], "Closed Lost");
    assert_eq!(rec["SystemModstamp"], "2026-06-01T00:00:00.000+0000");
    assert_eq!(rec["LastModifiedDate"], "2026-06-01T00:00:00.000+0000");
    assert_eq!(rec["CreatedDate"], "2026-05-20T20:49:32.000+0000");
}
