//! A sharded stream on a real Redis Cluster (three masters on loopback,
//! started per test by [`testkit::cluster`]): exact totals through a killed
//! worker, poison in one shard, back-pressure on one shard, and a master
//! failing over under load without losing an event answered 202.

use std::{collections::HashMap, sync::atomic::Ordering, time::Duration};

use redis::AsyncCommands;
use serde_json::{Value, json};
use testkit::{TestEnv, cluster::Cluster};

use crate::support::{Books, Loader, Services, client};

/// A stack whose api and workers use `cluster` with `shards` shards.
pub(crate) struct ClusterStack {
    pub(crate) services: Services,
    env: TestEnv,
    shards: u16,
}

impl ClusterStack {
    pub(crate) fn new(env: TestEnv, cluster: &Cluster, shards: u16) -> Self {
        let services = Services {
            valkey_url: cluster.url(),
            ..crate::services(&env)
        };
        Self {
            services,
            env,
            shards,
        }
    }

    fn valkey_args(&self) -> stream::config::ValkeyArgs {
        stream::config::ValkeyArgs {
            valkey_cluster: true,
            stream_shards: self.shards,
            ..stream::config::ValkeyArgs::single(
                &self.services.valkey_url,
                &self.services.stream,
                &self.services.group,
            )
        }
    }

    /// Starts the api as a real process on the cluster, with `extra`
    /// settings.
    pub(crate) async fn spawn_api(
        &self,
        extra: &[(&str, &str)],
    ) -> (String, tokio::process::Child) {
        let shards = self.shards.to_string();
        let mut settings = vec![
            ("FLAGMETER_VALKEY_CLUSTER", "true"),
            ("FLAGMETER_STREAM_SHARDS", shards.as_str()),
        ];
        settings.extend_from_slice(extra);
        self.services.spawn_api_process(&settings).await
    }

    /// A pipeline replica as a real process (that the test may SIGKILL).
    pub(crate) fn spawn_worker(&self, consumer: &str) -> tokio::process::Child {
        let shards = self.shards.to_string();
        self.services.spawn_pipeline(
            consumer,
            &[
                ("FLAGMETER_VALKEY_CLUSTER", "true"),
                ("FLAGMETER_STREAM_SHARDS", &shards),
            ],
        )
    }

    /// A pipeline replica in this process.
    fn start_replica(&self, consumer: &str) -> testkit::env::Replica {
        testkit::env::Replica::start(pipeline::app::PipelineConfig {
            valkey: self.valkey_args(),
            ..self.env.pipeline_config(consumer)
        })
    }

    fn shards(&self) -> stream::Shards {
        self.valkey_args().shards()
    }

    /// Every shard drained, then per tenant (rollup tokens, ledger tokens,
    /// ledger rows) equal to what the client was told was accepted.
    pub(crate) async fn audit(
        &self,
        cluster: &Cluster,
        expected: HashMap<String, (i64, i64, i64)>,
    ) {
        assert!(
            cluster
                .drained(&self.shards(), Duration::from_secs(90))
                .await,
            "every shard drains"
        );
        assert!(!expected.is_empty(), "something was accepted");
        assert_eq!(
            self.services.counted().await,
            expected,
            "(rollup tokens, ledger tokens, ledger rows) per tenant"
        );
    }
}

/// Posts `body` to `path` until it is answered 202.
async fn post_until_accepted(http: &reqwest::Client, url: String, body: Value) {
    loop {
        let sent = http.post(&url).json(&body).send().await;
        if sent.is_ok_and(|r| r.status().as_u16() == 202) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn event(i: usize) -> Value {
    let tenants = ["acme-corp", "globex-inc", "initech-llc", "umbrella-co"];
    json!({
        "tenant": tenants[i % tenants.len()],
        "feature": "gpt-4o",
        "tokens": 1 + i % 997,
        "id": format!("cluster-{i}"),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn six_shards_on_three_masters_count_12000_events_exactly_once_through_a_killed_worker() {
    let cluster = Cluster::start(3, 0).await;
    let stack = ClusterStack::new(TestEnv::new().await, &cluster, 6);
    let (base, _api) = stack.spawn_api(&[]).await;
    let mut doomed = stack.spawn_worker("cluster-doomed");
    let _survivor = stack.spawn_worker("cluster-survivor");

    // Half the events one a request, half in batches of 100; then 10 % of
    // them sent again with the same ids, as clients retrying do.
    const EVENTS: usize = 12_000;
    let singles: Vec<usize> = (0..EVENTS / 2).collect();
    let batches: Vec<Vec<usize>> = (EVENTS / 2..EVENTS)
        .collect::<Vec<_>>()
        .chunks(100)
        .map(<[usize]>::to_vec)
        .collect();
    let retried: Vec<usize> = (0..EVENTS).step_by(10).collect();
    let http = client();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let send_all = |singles: Vec<usize>, batches: Vec<Vec<usize>>| {
        let (http, base, accepted) = (http.clone(), base.clone(), accepted.clone());
        async move {
            let lanes: Vec<_> = (0..8)
                .map(|lane| {
                    let (http, base, accepted) = (http.clone(), base.clone(), accepted.clone());
                    let singles: Vec<usize> =
                        singles.iter().copied().skip(lane).step_by(8).collect();
                    let batches: Vec<Vec<usize>> =
                        batches.iter().skip(lane).step_by(8).cloned().collect();
                    tokio::spawn(async move {
                        for i in singles {
                            post_until_accepted(&http, format!("{base}/api/events"), event(i))
                                .await;
                        }
                        for batch in batches {
                            let len = batch.len();
                            let events: Vec<Value> = batch.into_iter().map(event).collect();
                            post_until_accepted(
                                &http,
                                format!("{base}/api/events/batch"),
                                json!({ "events": events }),
                            )
                            .await;
                            accepted.fetch_add(len, Ordering::Relaxed);
                        }
                    })
                })
                .collect();
            for lane in lanes {
                lane.await.unwrap();
            }
        }
    };
    let first_half = tokio::spawn(send_all(singles, batches));
    // Midway: SIGKILL one worker; the survivor takes its pending entries over.
    while accepted.load(Ordering::Relaxed) < EVENTS / 3 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    doomed.kill().await.unwrap();
    assert!(
        accepted.load(Ordering::Relaxed) < EVENTS,
        "the worker was killed while events were still coming"
    );
    first_half.await.unwrap();
    let (retried_singles, retried_batched): (Vec<usize>, Vec<usize>) =
        retried.into_iter().partition(|&i| i < EVENTS / 2);
    send_all(
        retried_singles,
        retried_batched.chunks(50).map(<[usize]>::to_vec).collect(),
    )
    .await;

    let mut expected: HashMap<String, (i64, i64, i64)> = HashMap::new();
    for i in 0..EVENTS {
        let e = event(i);
        let tokens = e["tokens"].as_i64().unwrap();
        let entry = expected
            .entry(e["tenant"].as_str().unwrap().to_owned())
            .or_default();
        entry.0 += tokens;
        entry.1 += tokens;
        entry.2 += 1;
    }
    stack.audit(&cluster, expected).await;

    let mut masters = std::collections::BTreeSet::new();
    for keys in stack.shards().all() {
        masters.insert(
            cluster
                .master_of(&keys.stream)
                .await
                .expect("the shard exists"),
        );
    }
    assert!(masters.len() >= 2, "six shards sit on {masters:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_in_one_shard_is_set_aside_and_every_shard_still_counts() {
    let cluster = Cluster::start(3, 0).await;
    let stack = ClusterStack::new(TestEnv::new().await, &cluster, 3);
    let (base, _api) = stack.spawn_api(&[]).await;
    let shards = stack.shards();
    let poisoned = &shards.all()[1].stream;
    let mut conn = cluster.connect().await;
    let _: String = conn
        .xadd(poisoned, "*", &[("e", &b"\xc1poison"[..])])
        .await
        .unwrap();
    let replica = stack.start_replica("cluster-poison");

    let http = client();
    let mut books = HashMap::new();
    for i in 0..30 {
        let e = event(i);
        post_until_accepted(&http, format!("{base}/api/events"), e.clone()).await;
        let tokens = e["tokens"].as_i64().unwrap();
        let entry: &mut (i64, i64, i64) = books
            .entry(e["tenant"].as_str().unwrap().to_owned())
            .or_default();
        *entry = (entry.0 + tokens, entry.1 + tokens, entry.2 + 1);
    }
    stack.audit(&cluster, books).await;
    let letters = store::dead_letter::list(&stack.env.db, poisoned, 10, None)
        .await
        .unwrap();
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0].kind, "undecodable");
    for keys in shards.all().iter().filter(|k| &k.stream != poisoned) {
        let other = store::dead_letter::list(&stack.env.db, &keys.stream, 10, None)
            .await
            .unwrap();
        assert!(other.is_empty(), "{}: {other:?}", keys.stream);
    }
    replica.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_shard_takes_no_more_events_and_the_others_take_them_until_all_are_full() {
    let cluster = Cluster::start(3, 0).await;
    let stack = ClusterStack::new(TestEnv::new().await, &cluster, 3);
    let (base, _api) = stack
        .spawn_api(&[("FLAGMETER_STREAM_HIGH_WATER", "5")])
        .await;
    let shards = stack.shards();
    let full = &shards.all()[0].stream;
    let mut conn = cluster.connect().await;
    for i in 0..5 {
        let payload = stream::EventRecord::new(
            format!("prefill-{i}"),
            "acme-corp".into(),
            "gpt-4o".into(),
            1,
            chrono::Utc::now().timestamp_millis(),
            chrono::Utc::now().timestamp_millis(),
        )
        .encode();
        stream::append(&mut conn, full, &[payload]).await.unwrap();
    }
    // Until the api has sampled the full shard.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let http = client();
    let mut accepted = 0;
    let refused = loop {
        let response = http
            .post(format!("{base}/api/events"))
            .json(&event(accepted))
            .send()
            .await
            .unwrap();
        if response.status().as_u16() != 202 {
            break response;
        }
        accepted += 1;
        assert!(accepted < 100, "ingest is refused once every shard is full");
        // Let the sampler see each shard's growth.
        tokio::time::sleep(Duration::from_millis(150)).await;
    };
    assert_eq!(refused.status().as_u16(), 503);
    assert_eq!(refused.headers()["retry-after"], "1");
    let len: u64 = conn.xlen(full).await.unwrap();
    assert_eq!(len, 5, "the full shard took nothing more");
    assert!(
        accepted >= 10,
        "the other two shards took {accepted} events"
    );

    // Once the pipeline has drained the shards, ingest is accepted again.
    let replica = stack.start_replica("cluster-drainer");
    assert!(cluster.drained(&shards, Duration::from_secs(60)).await);
    testkit::eventually(
        "ingest is accepted again",
        Duration::from_secs(30),
        || async {
            let status = http
                .post(format!("{base}/api/events"))
                .json(&event(1000))
                .send()
                .await
                .map(|r| r.status().as_u16());
            if status.as_ref().is_ok_and(|s| *s == 202) {
                Ok(())
            } else {
                Err(status.ok())
            }
        },
    )
    .await;
    replica.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_killed_under_load_with_min_replicas_1_loses_no_accepted_event() {
    let mut cluster = Cluster::start(3, 1).await;
    let stack = ClusterStack::new(TestEnv::new().await, &cluster, 3);
    let (base, _api) = stack
        .spawn_api(&[
            ("FLAGMETER_VALKEY_MIN_REPLICAS", "1"),
            ("FLAGMETER_VALKEY_WAIT_MS", "1000"),
        ])
        .await;
    let _worker = stack.spawn_worker("cluster-failover");
    let books = Books::default();
    let loaders: Vec<_> = (0..3)
        .map(|n| Loader::start(&base, client(), &format!("failover{n}"), 20, &books))
        .collect();

    tokio::time::sleep(Duration::from_secs(2)).await;
    let victim = stack.shards().all()[0].stream.clone();
    let killed = cluster.kill_master_of(&victim).await;
    // Its replica takes over after the node timeout (2 s); meanwhile, and
    // after (the new master has no replica to WAIT for), its shard answers
    // 503 and the loaders retry, landing on the other shards.
    testkit::eventually("a replica took over", Duration::from_secs(30), || async {
        match cluster.master_of(&victim).await {
            Some(port) if port != killed => Ok(port),
            other => Err(other),
        }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut batches = 0;
    for loader in loaders {
        batches += loader.stop().await.batches;
    }
    assert!(batches > 10, "{batches} batches accepted");
    stack.audit(&cluster, books.expected()).await;
}

#[tokio::test]
async fn a_malformed_seed_list_stops_both_binaries_naming_the_entry_but_not_the_password() {
    for binary in ["flagmeter-api", "flagmeter-pipeline"] {
        let output = tokio::process::Command::new(crate::support::bin(binary))
            .env("VALKEY_URL", "redis://:hunter2@127.0.0.1:1, redis//oops:2")
            .env("FLAGMETER_VALKEY_CLUSTER", "true")
            .env("DATABASE_URL", "postgres://postgres@127.0.0.1:1/none")
            .env("FLAGMETER_METRICS_ADDR", "127.0.0.1:0")
            .env("FLAGMETER_API_ADDR", "127.0.0.1:0")
            .output()
            .await
            .unwrap();
        assert!(!output.status.success(), "{binary} refuses to start");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("VALKEY_URL") && stderr.contains("redis//oops:2"),
            "{binary}: {stderr}"
        );
        assert!(!stderr.contains("hunter2"), "{binary}: {stderr}");
    }
}
