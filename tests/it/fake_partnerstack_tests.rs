//! Tests of the fake PartnerStack server itself (they protect the tests that use it).

use std::collections::HashSet;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use channel_sync_fakes::partnerstack::{
    FakeConfig, FakePartnerStack, Resource, sample_deal, sample_group, sample_lead,
    sample_partnership,
};

const T0: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

async fn fake() -> FakePartnerStack {
    let fake = FakePartnerStack::start(FakeConfig::default()).await;
    fake.set_now(T0);
    fake
}

fn http() -> reqwest::Client {
    reqwest::Client::new()
}

struct Got {
    status: StatusCode,
    retry_after: Option<String>,
    body: Value,
    text: String,
}

async fn send(req: reqwest::RequestBuilder) -> Got {
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    let text = resp.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Got {
        status,
        retry_after,
        body,
        text,
    }
}

async fn get(fake: &FakePartnerStack, path_and_query: &str) -> Got {
    send(
        http()
            .get(format!("{}{path_and_query}", fake.url()))
            .basic_auth("pk_test_fake", Some("sk_test_fake")),
    )
    .await
}

fn keys(body: &Value) -> Vec<String> {
    body["data"]["items"]
        .as_array()
        .unwrap_or_else(|| panic!("no items in {body}"))
        .iter()
        .map(|it| it["key"].as_str().unwrap().to_string())
        .collect()
}

fn has_more(body: &Value) -> bool {
    body["data"]["has_more"].as_bool().unwrap()
}

fn assert_error(got: &Got, status: u16) {
    assert_eq!(got.status.as_u16(), status, "{}", got.text);
    assert_eq!(got.body["status"], status, "{}", got.text);
    assert!(got.body["message"].is_string(), "{}", got.text);
}

#[tokio::test]
async fn fake_partnerstack_auth_ok_and_failures() {
    let fake = fake().await;
    fake.insert_group(sample_group(1));
    assert!(fake.url().ends_with("/api/v2"));

    let ok = get(&fake, "/groups").await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    assert_eq!(ok.body["message"], "Page returned successfully");
    assert_eq!(ok.body["status"], 200);
    assert_eq!(keys(&ok.body), ["group_silver"]);

    let url = format!("{}/groups", fake.url());
    let none = send(http().get(&url)).await;
    assert_error(&none, 401);
    assert_eq!(none.body, json!({"message": "Unauthorized", "status": 401}));
    let wrong = send(http().get(&url).basic_auth("pk_test_fake", Some("nope"))).await;
    assert_error(&wrong, 401);
    let swapped = send(
        http()
            .get(&url)
            .basic_auth("sk_test_fake", Some("pk_test_fake")),
    )
    .await;
    assert_error(&swapped, 401);
    let bearer = send(http().get(&url).bearer_auth("sk_test_fake")).await;
    assert_error(&bearer, 401);
    let garbage = send(
        http()
            .get(&url)
            .header("authorization", "Basic !!!not-base64"),
    )
    .await;
    assert_error(&garbage, 401);

    let custom = FakePartnerStack::start(FakeConfig {
        public_key: "pub".into(),
        secret_key: "sec:ret".into(),
        ..FakeConfig::default()
    })
    .await;
    let got = send(
        http()
            .get(format!("{}/deals", custom.url()))
            .basic_auth("pub", Some("sec:ret")),
    )
    .await;
    assert_eq!(got.status, 200, "{}", got.text);
    assert_eq!(custom.calls().unauthorized, 0);
    assert_eq!(fake.calls().unauthorized, 5);
}

#[tokio::test]
async fn fake_partnerstack_pages_600_deals_at_limit_250() {
    let fake = fake().await;
    let inserted: Vec<String> = (0..600)
        .map(|i| {
            let mut deal = sample_deal(i, "partner-0001");
            deal["created_at"] = json!(T0 - 600_000 + i as i64 * 1000);
            fake.insert_deal(deal)
        })
        .collect();
    assert_eq!(fake.count(Resource::Deals), 600);

    let mut seen = Vec::new();
    let mut pages = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let q = match &after {
            Some(k) => format!("/deals?limit=250&starting_after={k}"),
            None => "/deals?limit=250".to_string(),
        };
        let got = get(&fake, &q).await;
        assert_eq!(got.status, 200, "{}", got.text);
        let page = keys(&got.body);
        pages.push((page.len(), has_more(&got.body)));
        after = page.last().cloned();
        seen.extend(page);
        if !has_more(&got.body) {
            break;
        }
        assert!(pages.len() < 10, "paging does not end");
    }
    assert_eq!(pages, [(250, true), (250, true), (100, false)]);
    assert_eq!(seen, inserted, "ordered by created_at, every deal once");
    assert_eq!(fake.calls().deals, 3);
    let log = fake.requests();
    assert_eq!(
        log[1].query.as_deref(),
        Some(format!("limit=250&starting_after={}", inserted[249]).as_str())
    );

    // Deal bodies carry the documented fields, timestamps as integers.
    let got = get(&fake, "/deals?limit=1").await;
    let deal = &got.body["data"]["items"][0];
    for field in [
        "key",
        "partner_key",
        "account_name",
        "amount",
        "close_date",
        "stage",
        "lost_reason",
        "external_key",
        "group_key",
        "team",
        "team_member",
        "fields",
        "meta",
        "source",
        "created_at",
        "updated_at",
    ] {
        assert!(deal.get(field).is_some(), "{field} missing from {deal}");
    }
    assert!(deal["amount"].is_i64());
    assert!(deal["created_at"].is_i64());
    assert!(deal["updated_at"].is_i64());
    assert!(deal["team_member"]["email"].is_string());
    assert!(deal["fields"]["expires_at"].is_i64());
}

#[tokio::test]
async fn fake_partnerstack_default_limit_ending_before_and_bad_params() {
    let fake = fake().await;
    let keys_in: Vec<String> = (0..25)
        .map(|i| {
            fake.set_now(T0 + i);
            fake.insert_lead(sample_lead(i as usize, "partner-0002"))
        })
        .collect();

    let first = get(&fake, "/leads").await;
    assert_eq!(keys(&first.body), keys_in[..10]);
    assert!(has_more(&first.body));

    let before = get(
        &fake,
        &format!("/leads?ending_before={}&limit=5", keys_in[12]),
    )
    .await;
    assert_eq!(keys(&before.body), keys_in[7..12]);
    assert!(has_more(&before.body));
    let before = get(
        &fake,
        &format!("/leads?ending_before={}&limit=5", keys_in[3]),
    )
    .await;
    assert_eq!(keys(&before.body), keys_in[..3]);
    assert!(!has_more(&before.body));
    let tail = get(&fake, &format!("/leads?starting_after={}", keys_in[20])).await;
    assert_eq!(keys(&tail.body), keys_in[21..]);
    assert!(!has_more(&tail.body));
    let end = get(&fake, &format!("/leads?starting_after={}", keys_in[24])).await;
    assert!(keys(&end.body).is_empty());
    assert!(!has_more(&end.body));
    let exact = get(&fake, "/leads?limit=25").await;
    assert_eq!(keys(&exact.body).len(), 25);
    assert!(!has_more(&exact.body));
    let max = get(&fake, "/leads?limit=250").await;
    assert_eq!(max.status, 200);

    for q in [
        "/leads?limit=251",
        "/leads?limit=1000",
        "/leads?limit=0",
        "/leads?limit=-1",
        "/leads?limit=ten",
        "/leads?limit=2.5",
        "/leads?min_updated=yesterday",
        "/leads?max_created=1e12",
        "/leads?starting_after=lead_unknown",
        "/leads?ending_before=lead_unknown",
        "/partnerships?include_archived=maybe",
        "/partnerships?order_by=name",
    ] {
        assert_error(&get(&fake, q).await, 400);
    }
    let both = get(
        &fake,
        &format!(
            "/leads?starting_after={}&ending_before={}",
            keys_in[1], keys_in[5]
        ),
    )
    .await;
    assert_error(&both, 400);
    // Empty values count as absent.
    let empty = get(&fake, "/leads?limit=&starting_after=&min_updated=").await;
    assert_eq!(keys(&empty.body), keys_in[..10]);
}

#[tokio::test]
async fn fake_partnerstack_min_updated_and_other_filters() {
    let fake = fake().await;
    let a = fake.insert_deal(sample_deal(1, "partner-0001"));
    fake.set_now(T0 + 1000);
    let b = fake.insert_deal(sample_deal(2, "partner-0002"));
    fake.set_now(T0 + 2000);
    let mut other_group = sample_deal(3, "partner-0001");
    other_group["group_key"] = json!("group_silver");
    let c = fake.insert_deal(other_group);

    fake.set_now(T0 + 10_000);
    assert!(fake.update_deal(
        &a,
        json!({"stage": "closed-won", "fields": {"expires_at": 5}})
    ));
    assert!(!fake.update_deal("deal_missing", json!({"stage": "x"})));
    let updated = fake.get(Resource::Deals, &a).unwrap();
    assert_eq!(updated["updated_at"], T0 + 10_000);
    assert_eq!(updated["created_at"], T0, "created_at kept");
    assert_eq!(updated["stage"], "closed-won");
    assert_eq!(updated["fields"]["expires_at"], 5);
    assert!(updated["fields"]["approved_at"].is_i64(), "objects merge");
    assert_eq!(updated["key"], a.as_str());

    let got = get(&fake, &format!("/deals?min_updated={}", T0 + 5000)).await;
    assert_eq!(keys(&got.body), [a.as_str()]);
    let got = get(&fake, &format!("/deals?min_updated={}", T0 + 1000)).await;
    assert_eq!(keys(&got.body), [a.clone(), b.clone(), c.clone()]);
    let got = get(&fake, &format!("/deals?min_updated={}", T0 + 1001)).await;
    assert_eq!(keys(&got.body), [a.clone(), c.clone()], "inclusive bound");
    let got = get(&fake, &format!("/deals?max_updated={}", T0 + 2000)).await;
    assert_eq!(keys(&got.body), [b.clone(), c.clone()]);
    let got = get(
        &fake,
        &format!("/deals?min_created={}&max_created={}", T0 + 1, T0 + 1000),
    )
    .await;
    assert_eq!(keys(&got.body), [b.as_str()]);
    let got = get(&fake, "/deals?partner_key=partner-0001").await;
    assert_eq!(keys(&got.body), [a.clone(), c.clone()]);
    let got = get(&fake, "/deals?partner_key=partner-0001&group=group_gold").await;
    assert_eq!(keys(&got.body), [a.as_str()]);

    // A cursor still works when its item no longer matches the filter.
    let got = get(
        &fake,
        &format!("/deals?min_updated={}&starting_after={b}", T0 + 5000),
    )
    .await;
    assert_eq!(keys(&got.body), Vec::<String>::new());
    let got = get(
        &fake,
        &format!("/deals?partner_key=partner-0001&starting_after={b}"),
    )
    .await;
    assert_eq!(keys(&got.body), [c.as_str()]);

    // Single records, also by external_key.
    let one = get(&fake, &format!("/deals/{b}")).await;
    assert_eq!(one.status, 200, "{}", one.text);
    assert_eq!(one.body["data"]["key"], b.as_str());
    let ext = get(&fake, "/deals/006xx0000000000002").await;
    assert_eq!(ext.body["data"]["key"], b.as_str());
    assert_error(&get(&fake, "/deals/deal_missing").await, 404);

    // Records without timestamps get the fake clock; given ones are kept.
    fake.set_now(T0 + 99);
    let k = fake.insert_deal(json!({"key": "deal_given", "created_at": 7}));
    assert_eq!(k, "deal_given");
    let rec = fake.get(Resource::Deals, &k).unwrap();
    assert_eq!(
        (rec["created_at"].clone(), rec["updated_at"].clone()),
        (json!(7), json!(T0 + 99))
    );
    assert!(fake.remove(Resource::Deals, &k));
    assert_eq!(fake.count(Resource::Deals), 3);
}

#[tokio::test]
async fn fake_partnerstack_partnerships_archive_and_order() {
    let fake = fake().await;
    let keys_in: Vec<String> = (0..4)
        .map(|i| {
            fake.set_now(T0 + i as i64 * 1000);
            fake.insert_partnership(sample_partnership(i))
        })
        .collect();
    fake.set_now(T0 + 50_000);
    assert!(fake.archive_partnership(&keys_in[1]));
    assert!(!fake.archive_partnership("part_missing"));
    fake.set_now(T0 + 60_000);
    assert!(fake.update(
        Resource::Partnerships,
        &keys_in[0],
        json!({"tags": ["gold"]})
    ));

    let got = get(&fake, "/partnerships").await;
    assert_eq!(
        keys(&got.body),
        [keys_in[0].clone(), keys_in[2].clone(), keys_in[3].clone()]
    );
    let got = get(&fake, "/partnerships?include_archived=true").await;
    assert_eq!(keys(&got.body), keys_in);
    let archived = &got.body["data"]["items"][1];
    assert_eq!(archived["archived"], true);
    assert_eq!(archived["updated_at"], T0 + 50_000);

    let p = &got.body["data"]["items"][0];
    for field in [
        "key",
        "partner_key",
        "email",
        "first_name",
        "last_name",
        "group",
        "joined_at",
        "manager",
        "team",
        "tags",
        "m_data",
        "created_at",
        "updated_at",
        "archived",
    ] {
        assert!(p.get(field).is_some(), "{field} missing from {p}");
    }
    assert!(p["group"]["slug"].is_string());
    assert!(p["m_data"]["salesforce_account_id"].is_string());
    assert!(p["joined_at"].is_i64());

    let got = get(
        &fake,
        "/partnerships?include_archived=1&order_by=-updated_at&limit=2",
    )
    .await;
    assert_eq!(keys(&got.body), [keys_in[0].clone(), keys_in[1].clone()]);
    assert!(has_more(&got.body));
    let got = get(
        &fake,
        &format!(
            "/partnerships?include_archived=1&order_by=-updated_at&starting_after={}",
            keys_in[1]
        ),
    )
    .await;
    assert_eq!(keys(&got.body), [keys_in[3].clone(), keys_in[2].clone()]);
    let got = get(&fake, "/partnerships?order_by=-created_at").await;
    assert_eq!(
        keys(&got.body),
        [keys_in[3].clone(), keys_in[2].clone(), keys_in[0].clone()]
    );
    let got = get(&fake, &format!("/partnerships?min_updated={}", T0 + 55_000)).await;
    assert_eq!(keys(&got.body), [keys_in[0].as_str()]);
}

#[tokio::test]
async fn fake_partnerstack_leads_groups_and_ordering() {
    let fake = fake().await;
    for i in 0..4 {
        fake.insert_group(sample_group(i));
    }
    fake.insert_group(json!({"key": "group_old", "name": "Old", "slug": "old", "archived": true}));
    let got = get(&fake, "/groups?limit=250").await;
    let items = got.body["data"]["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 5, "groups list archived ones too");
    assert_eq!(items.iter().filter(|g| g["default"] == true).count(), 1);
    for g in &items {
        for field in ["key", "name", "slug", "default", "archived"] {
            assert!(g.get(field).is_some(), "{field} missing from {g}");
        }
    }
    // Same created_at: ordered by key.
    let ks = keys(&got.body);
    let mut sorted = ks.clone();
    sorted.sort();
    assert_eq!(ks, sorted);

    let lead = fake.insert_lead(sample_lead(1, "partner-0009"));
    let got = get(&fake, &format!("/leads/{lead}")).await;
    let l = &got.body["data"];
    for field in [
        "key",
        "partner_key",
        "amount",
        "approved",
        "status",
        "external_key",
        "fields",
        "created_at",
        "updated_at",
    ] {
        assert!(l.get(field).is_some(), "{field} missing from {l}");
    }

    let newest = FakePartnerStack::start(FakeConfig {
        newest_first: true,
        ..FakeConfig::default()
    })
    .await;
    let ks: Vec<String> = (0..5)
        .map(|i| {
            newest.set_now(T0 + i);
            newest.insert_deal(sample_deal(i as usize, "p"))
        })
        .collect();
    let got = send(
        http()
            .get(format!(
                "{}/deals?limit=2&starting_after={}",
                newest.url(),
                ks[3]
            ))
            .basic_auth("pk_test_fake", Some("sk_test_fake")),
    )
    .await;
    assert_eq!(keys(&got.body), [ks[2].clone(), ks[1].clone()]);
    assert!(has_more(&got.body));
}

#[tokio::test]
async fn fake_partnerstack_rate_limit_429() {
    let fake = FakePartnerStack::start(FakeConfig {
        rate_limit_per_sec: Some(3),
        retry_after_secs: Some(2),
        ..FakeConfig::default()
    })
    .await;
    let mut statuses = Vec::new();
    let mut retry = None;
    for _ in 0..6 {
        let got = get(&fake, "/deals").await;
        if got.status == 429 {
            assert_error(&got, 429);
            retry = got.retry_after.clone();
        }
        statuses.push(got.status.as_u16());
    }
    assert_eq!(statuses, [200, 200, 200, 429, 429, 429]);
    assert_eq!(retry.as_deref(), Some("2"));
    assert_eq!(fake.calls().rate_limited, 3);
    assert_eq!(fake.calls().deals, 6);

    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(get(&fake, "/deals").await.status, 200);

    fake.set_retry_after(None);
    fake.set_rate_limit(Some(0));
    let got = get(&fake, "/deals").await;
    assert_eq!(got.status, 429);
    assert_eq!(got.retry_after, None);
    fake.set_rate_limit(None);
    assert_eq!(get(&fake, "/deals").await.status, 200);
}

#[tokio::test]
async fn fake_partnerstack_fail_next_and_malformed_json() {
    let fake = fake().await;
    fake.insert_deal(sample_deal(1, "p"));
    fake.fail_next(2, 503, r#"{"message":"Service Unavailable","status":503}"#);
    fake.fail_next(1, 200, r#"{"data": {"items": [{"key": "deal_tr"#);
    fake.fail_next(1, 429, r#"{"message":"Too many requests","status":429}"#);

    // Unauthenticated requests do not consume injected faults.
    let unauth = send(http().get(format!("{}/deals", fake.url()))).await;
    assert_eq!(unauth.status, 401);

    let a = get(&fake, "/deals").await;
    let b = get(&fake, "/deals").await;
    assert_error(&a, 503);
    assert_error(&b, 503);
    let bad = get(&fake, "/deals").await;
    assert_eq!(bad.status, 200);
    assert!(
        serde_json::from_str::<Value>(&bad.text).is_err(),
        "{}",
        bad.text
    );
    let limited = get(&fake, "/deals").await;
    assert_error(&limited, 429);
    assert_eq!(limited.retry_after.as_deref(), Some("1"));
    let ok = get(&fake, "/deals").await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    assert_eq!(keys(&ok.body).len(), 1);
    assert_eq!(fake.calls().injected, 4);
    fake.fail_next(0, 500, "ignored");
    assert_eq!(get(&fake, "/deals").await.status, 200);
}

#[tokio::test]
async fn fake_partnerstack_calls_requests_and_reset() {
    let fake = fake().await;
    get(&fake, "/deals").await;
    get(&fake, "/deals?limit=5").await;
    get(&fake, "/leads").await;
    get(&fake, "/partnerships").await;
    get(&fake, "/groups").await;
    get(&fake, "/groups/group_missing").await;
    get(&fake, "/customers").await;
    let calls = fake.calls();
    assert_eq!(
        (
            calls.deals,
            calls.leads,
            calls.partnerships,
            calls.groups,
            calls.other,
            calls.total
        ),
        (2, 1, 1, 2, 1, 7)
    );
    assert_eq!(calls.of(Resource::Deals), 2);
    let log = fake.requests();
    assert_eq!(log.len(), 7);
    assert_eq!(log[1].method, "GET");
    assert_eq!(log[1].path, "/api/v2/deals");
    assert_eq!(log[1].query.as_deref(), Some("limit=5"));
    assert_eq!(log[1].status, 200);
    assert_eq!(log[5].status, 404);
    assert_eq!(log[6].status, 404);
    assert_eq!(log[0].query, None);

    fake.reset_counts();
    assert_eq!(fake.calls(), Default::default());
    assert!(fake.requests().is_empty());
    get(&fake, "/deals").await;
    assert_eq!(fake.calls().deals, 1);
}

#[tokio::test]
async fn fake_partnerstack_odd_input() {
    let fake = fake().await;
    fake.insert_deal(json!("not an object"));
    fake.insert_deal(json!({"key": 42, "created_at": "yesterday", "updated_at": null}));
    fake.insert_deal(json!({"key": ""}));
    let all = fake.all(Resource::Deals);
    assert_eq!(all.len(), 3);
    let distinct: HashSet<&str> = all.iter().map(|d| d["key"].as_str().unwrap()).collect();
    assert_eq!(distinct.len(), 3);
    assert!(
        all.iter()
            .all(|d| d["created_at"] == T0 && d["updated_at"] == T0)
    );
    let k = all[0]["key"].as_str().unwrap().to_string();
    assert!(fake.update_deal(&k, json!(["not", "an", "object"])));
    assert!(fake.update_deal(&k, json!({"created_at": "bad", "updated_at": T0 + 5})));
    let rec = fake.get(Resource::Deals, &k).unwrap();
    assert_eq!(rec["updated_at"], T0 + 5);
    assert!(rec["created_at"].is_i64());

    for q in [
        "/deals?%ZZ=%G&limit=%",
        "/deals?&&=&limit",
        "/deals?min_updated=99999999999999999999999",
        "/deals?starting_after=%00%FF",
        "/deals?limit=%32%35%31",
        "/deals/",
        "/deals//",
        "/deals/a/b",
        "/deals/%FF%FE",
        "/deals/..%2F..%2Fetc",
        "/",
        "",
    ] {
        let got = get(&fake, q).await;
        assert!(
            [200, 400, 404].contains(&got.status.as_u16()),
            "{q}: {} {}",
            got.status,
            got.text
        );
        assert!(got.body.is_object(), "{q}: {}", got.text);
    }
    assert_error(&get(&fake, "/deals?limit=%32%35%31").await, 400);
    assert_eq!(get(&fake, "/deals/").await.status, 200);
    let outside = send(
        http()
            .get(format!("{}/api/v1/deals", fake.origin()))
            .basic_auth("pk_test_fake", Some("sk_test_fake")),
    )
    .await;
    assert_error(&outside, 404);
    let post = send(
        http()
            .post(format!("{}/deals", fake.url()))
            .basic_auth("pk_test_fake", Some("sk_test_fake"))
            .body("{}"),
    )
    .await;
    assert_error(&post, 405);
    let long = format!("/deals?starting_after={}", "x".repeat(20_000));
    assert_error(&get(&fake, &long).await, 400);
}
