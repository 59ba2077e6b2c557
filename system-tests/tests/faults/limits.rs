//! Limits that hold under concurrency (issue 28), with real processes:
//! two api processes deciding for the same tenants on a real Redis
//! Cluster, an api killed between a reservation and its event, PostgreSQL
//! down (decisions go on from the last counted usage, and say how old it
//! is), Valkey down (`503` with `Retry-After`), and settlement racing
//! expiry across the two apis. The single-node interleavings (settlement
//! racing expiry, counting racing settlement, a redelivered event) are in
//! the api's own tests (`limits`).

use std::{collections::HashMap, time::Duration};

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use testkit::{TestEnv, cluster::Cluster};

use crate::{
    cluster::ClusterStack,
    support::{PrivatePostgres, PrivateValkey, Services, client, expect_status},
};

/// `POST /api/reservations` at `base`: status, body and `Retry-After`.
async fn reserve(http: &reqwest::Client, base: &str, body: Value) -> (u16, Value, Option<u64>) {
    testkit::reservations::reserve(http, base, &body).await
}

/// A granted reservation's id.
async fn granted(http: &reqwest::Client, base: &str, body: Value) -> String {
    let (status, answer, _) = reserve(http, base, body).await;
    assert_eq!(status, 201, "{answer}");
    answer["reservationId"].as_str().unwrap().to_owned()
}

async fn put_tenant(http: &reqwest::Client, base: &str, tenant: &str, settings: Value) {
    let response = http
        .put(format!("{base}/api/tenants/{tenant}"))
        .json(&settings)
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{tenant}: {response:?}");
}

/// Posts an event (settling `reservation`, if any); asserts it is accepted.
async fn settle(
    http: &reqwest::Client,
    base: &str,
    (tenant, id, tokens): (&str, &str, i64),
    reservation: Option<&str>,
) {
    let event = json!({"tenant": tenant, "feature": "gpt-4o", "tokens": tokens, "id": id,
                       "reservationId": reservation});
    expect_status(http.post(format!("{base}/api/events")).json(&event), 202).await;
}

/// The entry of `kind` in an answer's `limits`.
fn limit<'a>(answer: &'a Value, kind: &str) -> &'a Value {
    answer["limits"]
        .as_array()
        .and_then(|limits| limits.iter().find(|l| l["kind"] == kind))
        .unwrap_or_else(|| panic!("no {kind} in {answer}"))
}

fn quota(answer: &Value) -> &Value {
    limit(answer, "quota")
}

/// The check at `base`: (quota used, quota reserved), and the answer.
async fn held(http: &reqwest::Client, base: &str, tenant: &str) -> ((i64, i64), Value) {
    let check = http.get(format!("{base}/api/usage/{tenant}/check?tokens=0"));
    let answer: Value = expect_status(check, 200).await.json().await.unwrap();
    let quota = quota(&answer);
    let figures = (
        quota["used"].as_i64().unwrap(),
        quota["reserved"].as_i64().unwrap(),
    );
    (figures, answer)
}

/// Waits until the check at `base` holds exactly `expected` (used,
/// reserved) for `tenant`.
async fn until_held(http: &reqwest::Client, base: &str, tenant: &str, expected: (i64, i64)) {
    testkit::eventually(
        &format!("{tenant} holds {expected:?}"),
        Duration::from_secs(30),
        || async {
            let (figures, answer) = held(http, base, tenant).await;
            if figures == expected {
                Ok(())
            } else {
                Err(answer)
            }
        },
    )
    .await;
}

/// The tenant's counted total, once it is `expected`.
async fn until_counted(http: &reqwest::Client, base: &str, tenant: &str, expected: i64) {
    testkit::eventually(
        &format!("{tenant} counted {expected}"),
        Duration::from_secs(60),
        || async {
            let usage: Value = expect_status(http.get(format!("{base}/api/usage/{tenant}")), 200)
                .await
                .json()
                .await
                .unwrap();
            if usage["totalTokens"] == expected {
                Ok(())
            } else {
                Err(usage)
            }
        },
    )
    .await;
}

/// The bound, through two api processes on a cluster: 200 reservations
/// of 1,000 at once against 100,000 of room, for each of two tenants,
/// give exactly 100 grants each. One tenant settles every call at most
/// at its size and stays within its quota; the other settles ten calls
/// above it and ends above its quota by exactly the sum of their excess.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_apis_on_a_cluster_grant_exactly_the_room_and_overshoot_only_by_the_excess() {
    let cluster = Cluster::start(3, 0).await;
    let stack = ClusterStack::new(TestEnv::new().await, &cluster, 3);
    let (a, _a) = stack.spawn_api(&[]).await;
    let (b, _b) = stack.spawn_api(&[]).await;
    let apis = [a.as_str(), b.as_str()];
    let http = client();
    let tenants = ["within", "beyond"];
    for tenant in tenants {
        put_tenant(&http, &a, tenant, json!({"monthlyQuota": 100_000})).await;
    }

    let asks = tenants.iter().flat_map(|tenant| {
        let http = &http;
        (0..200).map(move |i| async move {
            let answer = reserve(
                http,
                apis[i % 2],
                json!({"tenant": tenant, "tokens": 1_000}),
            )
            .await;
            (*tenant, answer)
        })
    });
    let answers = futures::future::join_all(asks).await;

    let mut grants: HashMap<&str, Vec<String>> = HashMap::new();
    for (tenant, (status, answer, retry_after)) in &answers {
        match status {
            201 => grants
                .entry(tenant)
                .or_default()
                .push(answer["reservationId"].as_str().unwrap().to_owned()),
            429 => {
                assert_eq!(answer["blockedBy"], "quota", "{answer}");
                assert!(retry_after.is_some_and(|s| s > 0), "{answer}");
            }
            other => panic!("{tenant}: {other} {answer}"),
        }
    }
    for tenant in tenants {
        assert_eq!(grants[tenant].len(), 100, "{tenant}: exactly the room");
    }

    let _worker = stack.spawn_worker("limits-counter");
    // `within`: every call at most its 1,000; `beyond`: every tenth one
    // above it by 10, 20, ... 100.
    let size = |tenant: &str, i: usize| -> i64 {
        match (tenant, i % 10) {
            ("within", _) => 1_000 - 50 * (i % 10) as i64,
            (_, 0) => 1_000 + 10 * (i / 10 + 1) as i64,
            _ => 1_000,
        }
    };
    let settles = tenants.iter().flat_map(|tenant| {
        let (http, grants) = (&http, &grants);
        (0..100).map(move |i| async move {
            let id = format!("call-{i}");
            let reservation = grants[tenant][i].as_str();
            settle(
                http,
                apis[i % 2],
                (tenant, &id, size(tenant, i)),
                Some(reservation),
            )
            .await;
        })
    });
    futures::future::join_all(settles).await;

    let total = |tenant: &str| (0..100).map(|i| size(tenant, i)).sum::<i64>();
    assert!(total("within") <= 100_000);
    assert_eq!(
        total("beyond") - 100_000,
        (1..=10).map(|k| 10 * k).sum::<i64>()
    );
    let expected = tenants
        .iter()
        .map(|t| ((*t).to_owned(), (total(t), total(t), 100)))
        .collect();
    stack.audit(&cluster, expected).await;
    for tenant in tenants {
        until_counted(&http, &b, tenant, total(tenant)).await;
        for api in apis {
            until_held(&http, api, tenant, (total(tenant), 0)).await;
        }
    }
    let (status, refused, _) = reserve(&http, &b, json!({"tenant": "beyond", "tokens": 1})).await;
    assert_eq!((status, &refused["blockedBy"]), (429, &json!("quota")));
}

/// The api that granted two reservations is killed before their events:
/// the other api settles one of them; the other expires, and its event,
/// arriving late, counts as an event of its own. Sent twice, an event
/// counts once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_killed_between_reserve_and_settle_leaves_reservations_that_settle_or_expire() {
    let cluster = Cluster::start(3, 0).await;
    let stack = ClusterStack::new(TestEnv::new().await, &cluster, 3);
    let (a, mut doomed) = stack.spawn_api(&[]).await;
    let (b, _b) = stack.spawn_api(&[]).await;
    let http = client();
    put_tenant(&http, &b, "acme", json!({"monthlyQuota": 10_000})).await;
    let _worker = stack.spawn_worker("limits-killed-api");

    let kept = granted(&http, &a, json!({"tenant": "acme", "tokens": 3_000})).await;
    let brief = granted(
        &http,
        &a,
        json!({"tenant": "acme", "tokens": 4_000, "ttlSeconds": 2}),
    )
    .await;
    doomed.kill().await.unwrap();

    until_held(&http, &b, "acme", (0, 7_000)).await;
    let (status, refused, _) = reserve(&http, &b, json!({"tenant": "acme", "tokens": 3_001})).await;
    assert_eq!((status, &refused["blockedBy"]), (429, &json!("quota")));
    settle(&http, &b, ("acme", "kept-call", 2_500), Some(&kept)).await;
    // The brief one expires: only the settled event holds room.
    until_held(&http, &b, "acme", (2_500, 0)).await;
    settle(&http, &b, ("acme", "late-call", 1_000), Some(&brief)).await;
    settle(&http, &b, ("acme", "kept-call", 2_500), Some(&kept)).await;

    until_counted(&http, &b, "acme", 3_500).await;
    until_held(&http, &b, "acme", (3_500, 0)).await;
    stack
        .audit(
            &cluster,
            HashMap::from([("acme".to_owned(), (3_500, 3_500, 2))]),
        )
        .await;
}

/// PostgreSQL crashes: reservations are still decided, on the last
/// counted usage plus what Valkey holds, and their `asOf` says from
/// when; once it is back, counting and `asOf` move on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_postgresql_down_decisions_use_the_last_counted_usage_and_say_how_old_it_is() {
    let postgres = PrivatePostgres::start().await;
    let stack = Services::on_private_postgres(&postgres).await;
    let (base, _api) = stack.spawn_api_process(&[]).await;
    let http = client();
    put_tenant(&http, &base, "acme", json!({"monthlyQuota": 10_000})).await;
    let _worker = stack.spawn_pipeline("limits-pg", &[]);
    let first = granted(&http, &base, json!({"tenant": "acme", "tokens": 3_000})).await;
    settle(&http, &base, ("acme", "e1", 3_000), Some(&first)).await;
    until_counted(&http, &base, "acme", 3_000).await;
    until_held(&http, &base, "acme", (3_000, 0)).await;

    postgres.crash().await;
    let crashed_at = Utc::now();
    tokio::time::sleep(Duration::from_millis(1_500)).await;

    let (status, answer, _) =
        reserve(&http, &base, json!({"tenant": "acme", "tokens": 5_000})).await;
    assert_eq!(status, 201, "{answer}");
    let as_of: DateTime<Utc> = answer["asOf"].as_str().unwrap().parse().unwrap();
    assert!(as_of <= crashed_at, "{as_of} is from before the crash");
    assert_eq!(quota(&answer)["used"], 3_000);
    // 3,000 counted + 5,000 reserved: 2,000 left.
    let (status, refused, retry_after) =
        reserve(&http, &base, json!({"tenant": "acme", "tokens": 2_001})).await;
    assert_eq!((status, &refused["blockedBy"]), (429, &json!("quota")));
    assert!(retry_after.is_some());
    // An event accepted meanwhile is held, in flight, until counted.
    settle(&http, &base, ("acme", "e2", 1_500), None).await;
    let (status, refused, _) =
        reserve(&http, &base, json!({"tenant": "acme", "tokens": 501})).await;
    assert_eq!(
        (status, &refused["blockedBy"]),
        (429, &json!("quota")),
        "{refused}"
    );

    postgres.up().await;
    until_counted(&http, &base, "acme", 4_500).await;
    until_held(&http, &base, "acme", (4_500, 5_000)).await;
    testkit::eventually("asOf moves on", Duration::from_secs(30), || async {
        let (_, answer) = held(&http, &base, "acme").await;
        let as_of: DateTime<Utc> = answer["asOf"].as_str().unwrap().parse().unwrap();
        if as_of > crashed_at {
            Ok(())
        } else {
            Err(as_of)
        }
    })
    .await;
}

/// Valkey killed: nothing can be decided, so a reservation and a check
/// are `503` with `Retry-After`; once it is back, they are decided again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_valkey_down_a_reservation_is_503_with_retry_after_until_it_is_back() {
    let env = TestEnv::new().await;
    let mut valkey = PrivateValkey::start("always").await;
    let stack = Services {
        valkey_url: valkey.url(),
        ..crate::services(&env)
    };
    let (base, _api) = stack.spawn_api_process(&[]).await;
    let http = client();
    put_tenant(&http, &base, "acme", json!({"monthlyQuota": 10_000})).await;
    granted(&http, &base, json!({"tenant": "acme", "tokens": 1_000})).await;

    valkey.kill().await;
    let (status, _, retry_after) =
        reserve(&http, &base, json!({"tenant": "acme", "tokens": 1})).await;
    assert_eq!((status, retry_after), (503, Some(1)));
    let check = http
        .get(format!("{base}/api/usage/acme/check"))
        .send()
        .await
        .unwrap();
    assert_eq!(check.status().as_u16(), 503);
    assert_eq!(check.headers()["retry-after"], "1");

    valkey.up().await;
    testkit::eventually(
        "reservations are decided again",
        Duration::from_secs(30),
        || async {
            match reserve(&http, &base, json!({"tenant": "acme", "tokens": 1_000})).await {
                (201, answer, _) => Ok(answer),
                other => Err(other),
            }
        },
    )
    .await;
    // The first reservation survived in the append-only file.
    until_held(&http, &base, "acme", (0, 2_000)).await;
}

/// Reservations of one second granted by one api and settled through the
/// other around the moment they expire, on a cluster: each is settled or
/// expired, never both, and each call counts once in the quota and in
/// the per-minute window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settlement_racing_expiry_across_two_apis_counts_each_call_once() {
    let cluster = Cluster::start(3, 0).await;
    let stack = ClusterStack::new(TestEnv::new().await, &cluster, 3);
    let (a, _a) = stack.spawn_api(&[]).await;
    let (b, _b) = stack.spawn_api(&[]).await;
    let http = client();
    put_tenant(
        &http,
        &a,
        "acme",
        json!({"monthlyQuota": 1_000_000, "requestsPerMinute": 1_000}),
    )
    .await;

    let calls = (0..8_u64).map(|i| {
        let (http, a, b) = (&http, &a, &b);
        async move {
            let body = json!({"tenant": "acme", "tokens": 1_000, "ttlSeconds": 1});
            let id = granted(http, a, body).await;
            tokio::time::sleep(Duration::from_millis(900 + 30 * i)).await;
            settle(http, b, ("acme", &format!("e{i}"), 600), Some(&id)).await;
        }
    });
    futures::future::join_all(calls).await;

    until_held(&http, &a, "acme", (8 * 600, 0)).await;
    let (_, answer) = held(&http, &b, "acme").await;
    let requests = limit(&answer, "requestsPerMinute");
    assert_eq!(requests["used"], 8, "each call once: {answer}");
}
