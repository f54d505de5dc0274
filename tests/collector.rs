//! Three application instances, each with its own file trail followed into NATS JetStream,
//! behind two collectors that share one durable consumer and one PostgreSQL store: the
//! store holds every line of each instance exactly once and verifies against each
//! instance's files; an altered copy of a line, and lines of an instance that never
//! arrived, are named by alerts in the central trail.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use audit_layer::collect::{Collector, InstanceReport};
use audit_layer::file::{CheckpointKey, CopyCheck, FaultKind, JsonlFileSink, TrailReader};
use audit_layer::sink::nats::{HASH_HEADER, NatsSink, SEQ_HEADER};
use audit_layer::sink::postgres::PostgresSink;
use audit_layer::{AuditTrail, Durability};
use axum::Router;
use axum::body::Body;
use axum::routing::{get, post};
use tower::ServiceExt;

/// Where the test's instances publish: a stream and subject prefix of its own.
struct Stream {
    url: String,
    name: String,
    prefix: String,
}

impl Stream {
    fn sink(&self) -> NatsSink {
        NatsSink::builder(&self.url)
            .stream(&self.name)
            .subject_prefix(&self.prefix)
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap()
    }
}

/// An instance: an app whose trail is in `dir`, with id `trail`, signed with `key`,
/// followed into the stream.
fn instance(dir: &Path, trail: &str, key: &CheckpointKey, stream: &Stream) -> AuditTrail {
    let file = JsonlFileSink::builder(dir)
        .trail_id(trail)
        .signing_key(key.clone())
        .checkpoint_every(100, Duration::from_secs(1))
        .build();
    AuditTrail::builder()
        .sink(file)
        .route_durability("/admin/change", Durability::Synced)
        .follower(stream.sink())
        .build()
        .unwrap()
}

async fn serve(audit: &AuditTrail, count: usize) {
    let app = Router::new()
        .route("/hello", get(|| async { "hello" }))
        .route("/admin/change", post(|| async { "changed" }))
        .layer(audit.layer());
    for index in 0..count {
        let request = if index % 10 == 0 {
            http::Request::post("/admin/change").body(Body::from("{}"))
        } else {
            http::Request::get("/hello").body(Body::empty())
        };
        let response = app.clone().oneshot(request.unwrap()).await.unwrap();
        assert!(response.status().is_success());
    }
}

fn collector(
    stream: &Stream,
    store: &str,
    table: &str,
    keys: &[CheckpointKey],
    central: &AuditTrail,
) -> Collector {
    let store = PostgresSink::builder(store).table(table).build().unwrap();
    let mut builder = Collector::builder(stream.sink(), store)
        .alerts(central)
        .consumer(format!("{table}_collectors"))
        .checkpoint_table(format!("{table}_checkpoints"))
        .gap_grace(Duration::from_secs(2));
    for key in keys {
        builder = builder.public_key(key.public_key());
    }
    builder.build().unwrap()
}

async fn reports(store: &str, table: &str) -> Vec<InstanceReport> {
    let mut sink = PostgresSink::builder(store).table(table).build().unwrap();
    sink.instances().await.unwrap_or_default()
}

async fn within(limit: Duration, what: &str, mut done: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    while !done().await {
        assert!(start.elapsed() < limit, "timed out waiting: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The central store's copy of `trail`, checked line by line against the instance's files.
async fn check_copy(
    store: &str,
    table: &str,
    trail: &str,
    dir: &Path,
) -> Result<audit_layer::file::CopyReport, audit_layer::file::Fault> {
    let mut sink = PostgresSink::builder(store).table(table).build().unwrap();
    let mut check = CopyCheck::new(dir, None);
    let mut from = 0;
    loop {
        let lines = sink.read_copy(trail, from, 1000).await.unwrap();
        let Some(last) = lines.last() else {
            break;
        };
        from = last.seq + 1;
        for line in lines {
            check.check(line)?;
        }
    }
    check.finish()
}

/// The alerts in the central trail: (action, trail, seq).
fn alerts(dir: &Path) -> Vec<(String, String, Option<u64>)> {
    TrailReader::new(dir, 0, None)
        .read(usize::MAX)
        .unwrap()
        .iter()
        .map(|line| line.event().unwrap())
        .filter(|event| event.category == audit_layer::Category::Alert)
        .map(|event| {
            let details = event.details.unwrap_or_default();
            (
                event.action.to_string(),
                details["trail"].as_str().unwrap_or_default().to_owned(),
                details.get("seq").and_then(serde_json::Value::as_u64),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_behind_two_collectors_are_stored_once_each_and_verify() {
    let Some((store, client)) = common::services::postgres().await else {
        return;
    };
    let Some((nats_url, jetstream)) = common::services::nats().await else {
        return;
    };
    let name = common::services::unique_name("collect");
    let stream = Stream {
        url: nats_url,
        name: name.to_uppercase(),
        prefix: name.clone(),
    };
    let table = name.clone();
    let keys: Vec<CheckpointKey> = (0..3).map(|_| CheckpointKey::generate().unwrap()).collect();
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let central_dir = tempfile::tempdir().unwrap();
    let central = AuditTrail::builder()
        .sink(JsonlFileSink::new(central_dir.path()))
        .build()
        .unwrap();

    // The instances publish first (creating the stream); the collectors then start from
    // the stream's beginning, and keep up as the instances go on.
    let instances: Vec<AuditTrail> = (0..3)
        .map(|i| instance(dirs[i].path(), &format!("web-{i}"), &keys[i], &stream))
        .collect();
    for audit in &instances {
        serve(audit, 200).await;
    }
    let (stop, _) = tokio::sync::broadcast::channel::<()>(1);
    let mut collectors = Vec::new();
    for _ in 0..2 {
        let collector = collector(&stream, &store, &table, &keys, &central);
        let mut stopped = stop.subscribe();
        collectors.push(tokio::spawn(collector.run(async move {
            let _ = stopped.recv().await;
        })));
    }
    for audit in &instances {
        serve(audit, 300).await;
    }
    for audit in instances {
        audit.shutdown().await.unwrap();
    }
    let lengths: Vec<u64> = dirs
        .iter()
        .map(|dir| {
            TrailReader::new(dir.path(), 0, None)
                .read(usize::MAX)
                .unwrap()
                .len() as u64
        })
        .collect();
    within(
        Duration::from_secs(60),
        "every line collected",
        async || {
            let reports = reports(&store, &table).await;
            reports.len() == 3
                && reports
                    .iter()
                    .zip(&lengths)
                    .all(|(report, length)| report.lines == *length)
        },
    )
    .await;

    // Every line once, each instance's copy whole and unaltered, and sealed by its own
    // signed checkpoints.
    for (i, dir) in dirs.iter().enumerate() {
        let trail = format!("web-{i}");
        let report = check_copy(&store, &table, &trail, dir.path())
            .await
            .unwrap();
        assert_eq!((report.lines, report.behind), (lengths[i], 0), "{trail}");
    }
    let row = client
        .query_one(
            &format!("SELECT count(*), count(DISTINCT (trail, seq)) FROM {table}"),
            &[],
        )
        .await
        .unwrap();
    let total: u64 = lengths.iter().sum();
    assert_eq!(
        (row.get::<_, i64>(0) as u64, row.get::<_, i64>(1) as u64),
        (total, total)
    );
    for report in reports(&store, &table).await {
        assert_eq!((report.missing, report.faults), (0, 0), "{report}");
        assert_eq!(report.sealed_to, report.last_seq, "{report}");
        assert!(report.checkpoints >= 1, "{report}");
    }

    // An altered copy of a line of web-1, published as if by the instance: refused,
    // named, and the store keeps the original.
    let original = TrailReader::new(dirs[1].path(), 42, None)
        .read(1)
        .unwrap()
        .remove(0);
    let altered = original
        .json
        .replace("\"outcome\":\"success\"", "\"outcome\":\"failure\"");
    assert_ne!(altered, original.json);
    publish_line(
        &jetstream,
        &stream,
        "web-1",
        42,
        &original.hash,
        &altered,
        "forged-1",
    )
    .await;
    // Lines of a fourth instance, with seq 3 never arriving.
    let fourth = tempfile::tempdir().unwrap();
    let lines = {
        let mut sink = JsonlFileSink::builder(fourth.path())
            .trail_id("web-3")
            .build();
        let events = common::services::sample_events(6, audit_layer::Category::System, "job.run");
        audit_layer::sink::Sink::write_batch(&mut sink, &events)
            .await
            .unwrap();
        audit_layer::sink::Sink::close(&mut sink).await.unwrap();
        TrailReader::new(fourth.path(), 0, None)
            .read(usize::MAX)
            .unwrap()
    };
    for line in lines.iter().filter(|line| line.seq != 3) {
        let id = format!("web-3-{}", line.seq);
        publish_line(
            &jetstream, &stream, "web-3", line.seq, &line.hash, &line.json, &id,
        )
        .await;
    }
    within(Duration::from_secs(30), "the gap given up on", async || {
        reports(&store, &table)
            .await
            .iter()
            .any(|report| report.trail == "web-3" && report.lines == 5)
    })
    .await;
    let _ = stop.send(());
    for collector in collectors {
        collector.await.unwrap().unwrap();
    }
    central.shutdown().await.unwrap();

    let reports = reports(&store, &table).await;
    let web1 = reports.iter().find(|r| r.trail == "web-1").unwrap();
    assert_eq!((web1.lines, web1.faults), (lengths[1], 1), "{web1}");
    let web3 = reports.iter().find(|r| r.trail == "web-3").unwrap();
    assert_eq!(
        (web3.lines, web3.missing, web3.last_seq),
        (5, 1, Some(5)),
        "{web3}"
    );
    assert_eq!(
        alerts(central_dir.path()),
        [
            (
                "audit.collect.tampered".to_owned(),
                "web-1".to_owned(),
                Some(42)
            ),
            ("audit.collect.gap".to_owned(), "web-3".to_owned(), Some(3)),
        ]
    );
    let stored = check_copy(&store, &table, "web-1", dirs[1].path())
        .await
        .unwrap();
    assert_eq!(stored.lines, lengths[1], "the original kept");
    let hole = check_copy(&store, &table, "web-3", fourth.path())
        .await
        .unwrap_err();
    assert_eq!(
        (hole.kind, hole.seq),
        (FaultKind::Deleted, Some(4)),
        "{hole}"
    );
}

/// Publishes a line as a follower would, with message id `id`.
async fn publish_line(
    jetstream: &async_nats::jetstream::Context,
    stream: &Stream,
    trail: &str,
    seq: u64,
    hash: &str,
    json: &str,
    id: &str,
) {
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(SEQ_HEADER, seq.to_string().as_str());
    headers.insert(HASH_HEADER, hash);
    headers.insert("Nats-Msg-Id", id);
    jetstream
        .publish_with_headers(
            format!("{}.{trail}.system.job", stream.prefix),
            headers,
            json.to_owned().into(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
}

/// An instance whose trail also keeps a Merkle tree: its signed heads go to the stream
/// with its checkpoints, and the collector takes each only if it holds the one before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_collector_checks_each_tree_head_and_refuses_a_rewritten_tree() {
    use audit_layer::merkle::{MerkleTree, TreeFollower, TreeHead, signed_heads};
    use audit_layer::sink::nats::TREE_SIZE_HEADER;
    use base64::Engine as _;
    let Some((store, _client)) = common::services::postgres().await else {
        return;
    };
    let Some((nats_url, jetstream)) = common::services::nats().await else {
        return;
    };
    let name = common::services::unique_name("collect_tree");
    let stream = Stream {
        url: nats_url,
        name: name.to_uppercase(),
        prefix: name.clone(),
    };
    let table = name.clone();
    let key = CheckpointKey::generate().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let central_dir = tempfile::tempdir().unwrap();
    let central = AuditTrail::builder()
        .sink(JsonlFileSink::new(central_dir.path()))
        .build()
        .unwrap();
    const ORIGIN: &str = "audit.example.com/web-t";
    let audit = AuditTrail::builder()
        .sink(
            JsonlFileSink::builder(dir.path())
                .trail_id("web-t")
                .signing_key(key.clone())
                .checkpoint_every(50, Duration::from_secs(1))
                .build(),
        )
        .follower(TreeFollower::new(ORIGIN, key.clone()).unwrap())
        .follower(stream.sink())
        .build()
        .unwrap();
    let (stop, _) = tokio::sync::broadcast::channel::<()>(1);
    let collector = collector(
        &stream,
        &store,
        &table,
        std::slice::from_ref(&key),
        &central,
    );
    let mut stopped = stop.subscribe();
    let running = tokio::spawn(collector.run(async move {
        let _ = stopped.recv().await;
    }));

    // Heads are signed at checkpoints and go out with the next ones.
    for _ in 0..4 {
        serve(&audit, 60).await;
        let signed = signed_heads(dir.path()).unwrap().len();
        within(Duration::from_secs(20), "a head signed", async || {
            signed_heads(dir.path()).unwrap().len() > signed
        })
        .await;
    }
    serve(&audit, 60).await;
    audit.shutdown().await.unwrap();
    let lines = TrailReader::new(dir.path(), 0, None)
        .read(usize::MAX)
        .unwrap();
    within(
        Duration::from_secs(60),
        "every line stored, tree heads checked and held",
        async || {
            reports(&store, &table)
                .await
                .first()
                .is_some_and(|report| report.lines == lines.len() as u64 && report.tree_heads >= 3)
        },
    )
    .await;
    // A head waiting for its line is offered again within half a second.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let report = reports(&store, &table).await.remove(0);
    assert_eq!(report.faults, 0, "{report}");
    let held = report.tree_size.unwrap();
    let heads = signed_heads(dir.path()).unwrap();
    assert!(heads.iter().any(|head| head.size == held), "{report}");

    // The key holder rewrites line 1 and signs a head of the size held: refused, alerted,
    // and the held head stays.
    let mut forged = MerkleTree::new();
    for line in &lines[..held as usize] {
        let leaf = if line.seq == 1 {
            line.json.replace("\"audit/1\"", "\"audit/1\" ")
        } else {
            line.json.clone()
        };
        forged.push(leaf.as_bytes());
    }
    let b64 = |hashes: Vec<audit_layer::merkle::Hash>| {
        hashes
            .iter()
            .map(|h| base64::engine::general_purpose::STANDARD.encode(h))
            .collect::<Vec<_>>()
    };
    let (_, real) =
        audit_layer::merkle::root_of(lines[..held as usize].iter().map(|l| l.json.as_bytes()));
    assert_ne!(forged.root(), real, "line 1 was rewritten");
    let note = TreeHead::of(ORIGIN, &forged).sign(&key).unwrap();
    let message = serde_json::json!({
        "seq_to": held - 1,
        "note": note,
        "last_line": lines[held as usize - 1].json,
        "last_leaf": b64(forged.inclusion_proof(held - 1, held).unwrap()),
        "old_size": 0,
        "consistency": [],
    });
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(TREE_SIZE_HEADER, held.to_string().as_str());
    headers.insert("Nats-Msg-Id", "forged-tree-head");
    jetstream
        .publish_with_headers(
            format!("{}.web-t:tree", stream.prefix),
            headers,
            serde_json::to_vec(&message).unwrap().into(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    within(
        Duration::from_secs(30),
        "the forged head refused",
        async || {
            reports(&store, &table)
                .await
                .first()
                .is_some_and(|report| report.faults == 1)
        },
    )
    .await;
    let report = reports(&store, &table).await.remove(0);
    assert_eq!(report.tree_size, Some(held), "{report}");
    assert!(
        report
            .last_fault
            .as_deref()
            .unwrap_or_default()
            .contains("rewritten"),
        "{report}"
    );

    let _ = stop.send(());
    running.await.unwrap().unwrap();
    central.shutdown().await.unwrap();
    assert!(
        alerts(central_dir.path()).contains(&(
            "audit.collect.tampered".to_owned(),
            "web-t".to_owned(),
            Some(held - 1)
        )),
        "{:?}",
        alerts(central_dir.path())
    );
}
