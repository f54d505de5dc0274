//! The webhook follower against a receiver in the test: every body's signature checked,
//! every event id counted, through a cut connection, a receiver answering 503, and a
//! receiver that stored a batch but whose answer was lost; in NDJSON, Splunk HEC and
//! Elastic `_bulk` shapes.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use audit_layer::file::JsonlFileSink;
use audit_layer::format::Format;
use audit_layer::siem::{
    BATCH_HEADER, SIGNATURE_HEADER, WebhookFollower, WebhookShape, verify_webhook,
};
use audit_layer::{Actor, AuditEvent, AuditTrail, Category, Outcome};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use common::proxy::Proxy;
use serde_json::{Value, json};

const SECRET: &[u8] = b"webhook secret";

/// What the receiver saw.
#[derive(Default)]
struct Receiver {
    /// Each stored event id, and how many times it was stored.
    stored: Mutex<BTreeMap<String, usize>>,
    /// `_bulk` documents by `_id`: a resent one is a 409, as Elasticsearch answers.
    documents: Mutex<BTreeMap<String, Value>>,
    requests: AtomicUsize,
    bad_signatures: AtomicUsize,
    missing_batch_header: AtomicUsize,
    /// Answer 503 without storing.
    unavailable: AtomicBool,
    /// Store the next this many bodies, then answer 500 (the answer lost).
    store_then_fail: AtomicUsize,
}

async fn receive(
    State(receiver): State<Arc<Receiver>>,
    Path(shape): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    receiver.requests.fetch_add(1, Ordering::SeqCst);
    let signature = headers
        .get(SIGNATURE_HEADER)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    if verify_webhook(SECRET, signature, &body, Duration::from_secs(300)).is_err() {
        receiver.bad_signatures.fetch_add(1, Ordering::SeqCst);
        return (StatusCode::UNAUTHORIZED, "bad signature".into());
    }
    if !headers.contains_key(BATCH_HEADER) {
        receiver.missing_batch_header.fetch_add(1, Ordering::SeqCst);
    }
    if receiver.unavailable.load(Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, "down".into());
    }
    let text = std::str::from_utf8(&body).expect("UTF-8");
    let mut answer = String::new();
    let mut ids = Vec::new();
    match shape.as_str() {
        "ndjson" => {
            for line in text.lines() {
                let event: Value = serde_json::from_str(line).expect("one JSON event per line");
                ids.push(event["metadata"]["uid"].as_str().unwrap().to_owned());
            }
        }
        "hec" => {
            for event in serde_json::Deserializer::from_str(text).into_iter::<Value>() {
                let event = event.expect("HEC events");
                let id = event["fields"]["event_id"].as_str().unwrap().to_owned();
                assert_eq!(event["event"]["event"]["id"], id.as_str(), "ECS inside HEC");
                assert_eq!(event["sourcetype"], "ecs");
                assert!(event["time"].as_str().unwrap().contains('.'));
                ids.push(id);
            }
        }
        "bulk" => {
            let mut items = Vec::new();
            let mut documents = receiver.documents.lock().unwrap();
            let mut lines = text.lines();
            while let Some(action) = lines.next() {
                let action: Value = serde_json::from_str(action).unwrap();
                let document: Value = serde_json::from_str(lines.next().unwrap()).unwrap();
                let id = action["create"]["_id"].as_str().unwrap().to_owned();
                assert_eq!(document["event"]["id"], id.as_str());
                let status = if documents.contains_key(&id) {
                    409
                } else {
                    documents.insert(id.clone(), document);
                    ids.push(id.clone());
                    201
                };
                items.push(json!({"create": {"_id": id, "status": status}}));
            }
            let errors = items.iter().any(|item| item["create"]["status"] != 201);
            answer = json!({"errors": errors, "items": items}).to_string();
        }
        other => panic!("no shape {other}"),
    }
    let mut stored = receiver.stored.lock().unwrap();
    for id in ids {
        *stored.entry(id).or_default() += 1;
    }
    let lost_answer = receiver
        .store_then_fail
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    if lost_answer {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            "stored, answer lost".into(),
        );
    }
    (StatusCode::OK, answer)
}

async fn start_receiver() -> (Arc<Receiver>, SocketAddr) {
    start_receiver_taking(2 << 20).await
}

/// A receiver that answers 413 to a body over `limit` bytes.
async fn start_receiver_taking(limit: usize) -> (Arc<Receiver>, SocketAddr) {
    let receiver = Arc::new(Receiver::default());
    let app = Router::new()
        .route("/{shape}", post(receive))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(Arc::clone(&receiver));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (receiver, addr)
}

fn event(i: usize) -> AuditEvent {
    AuditEvent::new(
        Category::Request,
        "http.request",
        Outcome::Success,
        Actor::user(format!("user-{}", i % 17)),
    )
    .with_target(format!("invoice:{i}"))
}

fn trail(dir: &std::path::Path, follower: WebhookFollower) -> AuditTrail {
    AuditTrail::builder()
        .sink(JsonlFileSink::builder(dir).trail_id("shop-1").build())
        .follower(follower)
        .retry_backoff(Duration::from_millis(50), Duration::from_millis(500))
        .build()
        .expect("trail")
}

/// The event ids of every line of the trail in `dir`.
fn trail_ids(dir: &std::path::Path) -> Vec<String> {
    common::demo::read_trail(dir)
        .iter()
        .map(|event| event["id"].as_str().unwrap().to_owned())
        .collect()
}

async fn wait_until(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within 60 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Records `count` events from `from`, returning their ids.
async fn record(audit: &AuditTrail, from: usize, count: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in from..from + count {
        let event = event(i);
        ids.push(event.id.to_string());
        audit.record(event).await.unwrap();
    }
    audit.flush().await.unwrap();
    ids
}

#[tokio::test(flavor = "multi_thread")]
async fn every_event_is_delivered_once_through_cuts_and_refusals() {
    let (receiver, addr) = start_receiver().await;
    let proxy = Proxy::start(addr).await;
    let dir = tempfile::tempdir().unwrap();
    let follower = WebhookFollower::builder(format!("http://{}/ndjson", proxy.addr))
        .secret(SECRET)
        .max_body_bytes(64 * 1024)
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let audit = trail(dir.path(), follower);
    let mut ids = record(&audit, 0, 2_000).await;
    let stored = |receiver: &Receiver, ids: &[String]| {
        let stored = receiver.stored.lock().unwrap();
        ids.iter().all(|id| stored.contains_key(id))
    };
    wait_until("first events", || stored(&receiver, &ids)).await;

    // The receiver's network goes away; events wait in the trail.
    proxy.cut();
    ids.extend(record(&audit, 2_000, 2_000).await);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(audit.followers()[0].behind_events > 0);
    // It is back, but answers 503 for a while.
    receiver.unavailable.store(true, Ordering::SeqCst);
    proxy.restore();
    ids.extend(record(&audit, 4_000, 1_000).await);
    tokio::time::sleep(Duration::from_millis(500)).await;
    receiver.unavailable.store(false, Ordering::SeqCst);
    ids.extend(record(&audit, 5_000, 1_000).await);
    audit.shutdown().await.unwrap();
    wait_until("every event", || stored(&receiver, &ids)).await;

    let stored = receiver.stored.lock().unwrap();
    let twice: Vec<_> = stored.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "{} events stored twice", twice.len());
    assert_eq!(receiver.bad_signatures.load(Ordering::SeqCst), 0);
    assert_eq!(receiver.missing_batch_header.load(Ordering::SeqCst), 0);
    assert!(
        receiver.requests.load(Ordering::SeqCst) > 6_000 * 300 / (64 * 1024),
        "bodies split at 64 KiB"
    );
    // Every line of the trail (its own start and stop events too), each once.
    assert_eq!(stored.len(), trail_ids(dir.path()).len());
}

#[tokio::test(flavor = "multi_thread")]
async fn elastic_bulk_drops_a_batch_resent_after_a_lost_answer() {
    let (receiver, addr) = start_receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let follower = WebhookFollower::builder(format!("http://{addr}/bulk"))
        .shape(WebhookShape::ElasticBulk)
        .format(Format::Ecs)
        .secret(SECRET)
        .build()
        .unwrap();
    // The first body is stored, and its answer lost: the follower sends it again.
    receiver.store_then_fail.store(1, Ordering::SeqCst);
    let audit = trail(dir.path(), follower);
    let ids = record(&audit, 0, 500).await;
    audit.shutdown().await.unwrap();
    wait_until("every event", || {
        let documents = receiver.documents.lock().unwrap();
        ids.iter().all(|id| documents.contains_key(id))
    })
    .await;
    assert!(receiver.requests.load(Ordering::SeqCst) >= 2, "a resend");
    let stored = receiver.stored.lock().unwrap();
    assert!(
        stored.values().all(|n| *n == 1),
        "Elasticsearch's 409 kept one copy of each"
    );
    assert_eq!(
        receiver.documents.lock().unwrap().len(),
        trail_ids(dir.path()).len()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn splunk_hec_gets_each_event_with_its_id_as_an_indexed_field() {
    let (receiver, addr) = start_receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let follower = WebhookFollower::builder(format!("http://{addr}/hec"))
        .shape(WebhookShape::SplunkHec)
        .format(Format::Ecs)
        .secret(SECRET)
        .header(
            "authorization",
            "Splunk 00000000-0000-0000-0000-000000000000",
        )
        .build()
        .unwrap();
    assert!(
        !format!("{follower:?}").contains("Splunk 0000"),
        "no credential in Debug"
    );
    let audit = trail(dir.path(), follower);
    let ids = record(&audit, 0, 300).await;
    audit.shutdown().await.unwrap();
    wait_until("every event", || {
        let stored = receiver.stored.lock().unwrap();
        ids.iter().all(|id| stored.get(id) == Some(&1))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restart_goes_on_from_the_cursor_without_resending() {
    let (receiver, addr) = start_receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let build = || {
        WebhookFollower::builder(format!("http://{addr}/ndjson"))
            .secret(SECRET)
            .build()
            .unwrap()
    };
    let audit = trail(dir.path(), build());
    let mut ids = record(&audit, 0, 200).await;
    audit.shutdown().await.unwrap();
    let audit = trail(dir.path(), build());
    ids.extend(record(&audit, 200, 200).await);
    audit.shutdown().await.unwrap();
    wait_until("every event", || {
        let stored = receiver.stored.lock().unwrap();
        ids.iter().all(|id| stored.contains_key(id))
    })
    .await;
    let stored = receiver.stored.lock().unwrap();
    assert!(
        stored.values().all(|n| *n == 1),
        "nothing sent twice across the restart"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_receiver_that_takes_less_gets_smaller_bodies() {
    let (receiver, addr) = start_receiver_taking(16 * 1024).await;
    let dir = tempfile::tempdir().unwrap();
    let follower = WebhookFollower::builder(format!("http://{addr}/ndjson"))
        .secret(SECRET)
        .build()
        .unwrap();
    let audit = trail(dir.path(), follower);
    let ids = record(&audit, 0, 1_000).await;
    audit.flush().await.unwrap();
    wait_until("every event", || {
        let stored = receiver.stored.lock().unwrap();
        ids.iter().all(|id| stored.contains_key(id))
    })
    .await;
    audit.shutdown().await.unwrap();
    let stored = receiver.stored.lock().unwrap();
    assert!(stored.values().all(|n| *n == 1));
}

#[test]
fn bad_webhook_settings_are_clear_errors() {
    let err = WebhookFollower::builder("ftp://host/x")
        .build()
        .unwrap_err();
    assert!(
        err.to_string().contains("expected http(s)://host/path"),
        "{err}"
    );
    let err = WebhookFollower::builder("not a url").build().unwrap_err();
    assert!(err.to_string().contains("is not a URL"), "{err}");
    let err = WebhookFollower::builder("https://h/_bulk")
        .shape(WebhookShape::ElasticBulk)
        .format(Format::Cef)
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("JSON documents, not cef"), "{err}");
    let err = WebhookFollower::builder("https://h/x")
        .header("bad header", "x")
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("is not a header name"), "{err}");
}
