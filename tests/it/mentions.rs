//! Mentions on conflict alerts (issue 15), through the real binary on a copy
//! of the sample: the partner manager (owner of the partner's own account,
//! Ingrid, U-5) from the configured map, the direct owners from a fake Slack
//! `users.lookupByEmail` on port 0 (with a 429 on the way).

use serde_json::Value;
use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::decisions::config;
use crate::helpers::{NOW, copy_sample, fake_slack, run_async};

async fn fake_users_api() -> MockServer {
    let api = MockServer::start().await;
    let lookup = || {
        Mock::given(method("GET"))
            .and(path("/api/users.lookupByEmail"))
            .and(header("authorization", "Bearer xoxb-test-token"))
    };
    // Dana: rate limited once, then found.
    lookup()
        .and(query_param("email", "dana.whitfield@proseware.com"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("retry-after", "1")
                .set_body_string(""),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&api)
        .await;
    lookup()
        .and(query_param("email", "dana.whitfield@proseware.com"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            serde_json::json!({"ok": true, "user": {"id": "U0DANA", "name": "dana"}}),
        ))
        .with_priority(2)
        .mount(&api)
        .await;
    // Anyone else: not in this workspace.
    lookup()
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(serde_json::json!({"ok": false, "error": "users_not_found"})),
        )
        .with_priority(3)
        .mount(&api)
        .await;
    api
}

#[tokio::test(flavor = "multi_thread")]
async fn conflict_alerts_mention_the_direct_owner_and_the_partner_manager_and_nobody_else() {
    let slack = fake_slack().await;
    let api = fake_users_api().await;
    let dir = tempfile::tempdir().unwrap();
    copy_sample(dir.path());
    let cfg = config(
        dir.path(),
        &format!(
            "[alerts.slack]\nper_second = 1000\nmax_per_cycle = 100\napi_url = \"{}/api/\"\n[alerts.slack.mentions]\n\"Ingrid.Solberg@proseware.com\" = \"U0INGRID\"\n",
            api.uri()
        ),
    );
    let run = run_async(
        vec![
            "once".into(),
            "--config".into(),
            cfg.display().to_string(),
            "--now".into(),
            NOW.into(),
        ],
        vec![
            (
                "CHANNEL_SYNC__ALERTS__SLACK__WEBHOOK_URL".into(),
                format!("{}/hook", slack.uri()),
            ),
            (
                "CHANNEL_SYNC__ALERTS__SLACK__BOT_TOKEN".into(),
                "xoxb-test-token".into(),
            ),
        ],
    )
    .await;
    run.assert_ok();
    assert!(
        !run.stderr.contains("xoxb-test-token"),
        "the token is never logged"
    );

    let bodies: Vec<Value> = slack
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect();
    let conflicts: Vec<&Value> = bodies
        .iter()
        .filter(|b| {
            let t = b["text"].as_str().unwrap_or_default();
            t.contains("Direct deal") || t.contains("Two partners") || t.contains("Registered deal")
        })
        .collect();
    assert!(conflicts.len() >= 3, "{bodies:?}");
    for b in &bodies {
        let s = b.to_string();
        // Only the two known ids are ever mentioned.
        let mentioned: Vec<&str> = s.match_indices("<@").map(|(i, _)| &s[i..i + 10]).collect();
        for m in mentioned {
            assert!(m == "<@U0DANA> " || m == "<@U0INGRID", "{m}: {s}");
        }
    }
    // Every conflict names its partner manager; the direct deals whose
    // owner is Dana mention her too.
    for b in &conflicts {
        let s = b.to_string();
        assert!(s.contains("<@U0INGRID> (partner manager, "), "{s}");
    }
    assert!(
        conflicts
            .iter()
            .any(|b| b.to_string().contains("<@U0DANA> (direct owner)")),
        "{conflicts:?}"
    );
    // Not conflicts: nobody is mentioned.
    for b in &bodies {
        let t = b["text"].as_str().unwrap_or_default();
        if t.contains("Registration about to expire") || t.contains("expired without") {
            assert!(!b.to_string().contains("<@"), "{b}");
        }
    }

    // Each e-mail asked once (Dana twice: the 429, then the answer); the
    // mapped one never; a user not found is not asked again this cycle.
    let asked: Vec<String> = api
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter_map(|r| {
            r.url
                .query_pairs()
                .find(|(k, _)| k == "email")
                .map(|(_, v)| v.into_owned())
        })
        .collect();
    let count = |e: &str| asked.iter().filter(|a| *a == e).count();
    assert_eq!(count("dana.whitfield@proseware.com"), 2, "{asked:?}");
    assert_eq!(count("ingrid.solberg@proseware.com"), 0, "{asked:?}");
    for a in &asked {
        if a != "dana.whitfield@proseware.com" {
            assert_eq!(count(a), 1, "{asked:?}");
        }
    }
}
