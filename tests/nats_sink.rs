//! The NATS JetStream sink against a real server (`AUDIT_TEST_NATS_URL`, default the loopback
//! one): subjects, payloads and message ids, no secret, deduplicated retries, and a stream
//! that appears late.
//!
//! Each test uses a stream and subject prefix of its own and deletes the stream at the end.

mod common;

use std::time::Duration;

use async_nats::jetstream;
use audit_layer::sink::Sink;
use audit_layer::sink::nats::NatsSink;
use audit_layer::{Actor, AuditEvent, AuditTrail, Category, Outcome};
use axum::{Router, routing::get};
use tower::ServiceExt;

use common::services;

/// Every message of `stream`, in order: (subject, message id header, payload as JSON).
async fn messages(
    jetstream: &jetstream::Context,
    stream: &str,
) -> Vec<(String, String, serde_json::Value)> {
    let mut handle = jetstream.get_stream(stream).await.unwrap();
    let state = handle.info().await.unwrap().state.clone();
    let mut messages = Vec::new();
    for sequence in state.first_sequence..=state.last_sequence {
        if state.messages == 0 {
            break;
        }
        let message = handle.get_raw_message(sequence).await.unwrap();
        let id = message
            .headers
            .get("Nats-Msg-Id")
            .map(|value| value.to_string())
            .unwrap_or_default();
        messages.push((
            message.subject.to_string(),
            id,
            serde_json::from_slice(&message.payload).unwrap(),
        ));
    }
    assert_eq!(messages.len() as u64, state.messages);
    messages
}

#[tokio::test]
async fn each_request_becomes_one_message_on_its_subject_without_secrets() {
    let Some((url, jetstream)) = services::nats().await else {
        return;
    };
    let (builder, stream, prefix) = own_stream(&url);
    let audit = AuditTrail::builder()
        .sink(builder.build().unwrap())
        .build()
        .unwrap();
    let app = Router::new()
        .route("/hello", get(|| async { "hello" }))
        .layer(audit.layer());
    let request = common::request_from("203.0.113.9:4000", "GET", "/hello?api_key=k3y-secret")
        .header("authorization", "Basic YmFzaWMtc2VjcmV0")
        .header("x-request-id", "req-nats-1")
        .body(axum::body::Body::empty())
        .unwrap();
    app.clone().oneshot(request).await.unwrap();
    for _ in 0..4 {
        app.clone().oneshot(common::get("/hello")).await.unwrap();
    }
    audit.shutdown().await.unwrap();

    let messages = messages(&jetstream, &stream).await;
    // audit.start, five requests, audit.stop.
    assert_eq!(messages.len(), 7, "{messages:#?}");
    assert_eq!(messages[0].0, format!("{prefix}.system.audit.start"));
    assert_eq!(messages[6].0, format!("{prefix}.system.audit.stop"));
    let requests: Vec<_> = messages
        .iter()
        .filter(|(subject, _, _)| *subject == format!("{prefix}.request.http.request"))
        .collect();
    assert_eq!(requests.len(), 5);
    for (_, id, event) in &messages {
        assert_eq!(event["id"], id.as_str(), "Nats-Msg-Id is the event id");
        assert_eq!(event["schema"], "audit/1");
    }
    let first = &requests[0].2;
    assert_eq!(first["request"]["id"], "req-nats-1");
    assert_eq!(first["source"]["ip"], "203.0.113.9");
    let text = first.to_string();
    for secret in ["k3y-secret", "YmFzaWMtc2VjcmV0"] {
        assert!(!text.contains(secret), "{secret} was published: {text}");
    }
    jetstream.delete_stream(&stream).await.unwrap();
}

fn events(count: usize) -> Vec<AuditEvent> {
    services::sample_events(count, Category::Auth, "auth.login")
}

/// A sink on a stream and subject prefix of the test's own, and their names.
fn own_stream(url: &str) -> (audit_layer::sink::nats::NatsSinkBuilder, String, String) {
    let stream = services::unique_name("AUDIT_TEST");
    let prefix = services::unique_name("audit_test");
    let builder = NatsSink::builder(url)
        .stream(&stream)
        .subject_prefix(&prefix);
    (builder, stream, prefix)
}

#[tokio::test]
async fn a_batch_offered_again_is_stored_once() {
    let Some((url, jetstream)) = services::nats().await else {
        return;
    };
    let (builder, stream, prefix) = own_stream(&url);
    let mut sink = builder.build().unwrap();
    let batch = events(600);
    sink.write_batch(&batch).await.unwrap();
    // The writer offers a batch again when it could not tell whether it was stored.
    sink.write_batch(&batch).await.unwrap();
    sink.write_batch(&batch[50..70]).await.unwrap();
    sink.close().await.unwrap();

    let messages = messages(&jetstream, &stream).await;
    assert_eq!(messages.len(), 600);
    for ((subject, id, event), sent) in messages.iter().zip(&batch) {
        assert_eq!(*subject, format!("{prefix}.auth.auth.login"));
        assert_eq!(*id, sent.id.to_string(), "in the order written");
        assert_eq!(event["actor"]["id"], sent.actor.id.as_str());
    }
    jetstream.delete_stream(&stream).await.unwrap();
}

/// With `create_stream(false)` and no stream, publishing fails and the trail keeps the
/// events; once the stream exists every event arrives, once.
#[tokio::test]
async fn a_missing_stream_holds_events_back_until_it_exists() {
    let Some((url, jetstream)) = services::nats().await else {
        return;
    };
    let (builder, stream, prefix) = own_stream(&url);
    let audit = AuditTrail::builder()
        .sink(
            builder
                .create_stream(false)
                .timeout(Duration::from_secs(1))
                .build()
                .unwrap(),
        )
        .retry_backoff(Duration::from_millis(20), Duration::from_millis(100))
        .build()
        .unwrap();
    common::serve_hellos(&audit, 10).await;
    let reason = common::failing_reason(&audit).await;
    assert!(reason.contains("not acknowledged"), "{reason}");

    jetstream
        .create_stream(jetstream::stream::Config {
            name: stream.clone(),
            subjects: vec![format!("{prefix}.>")],
            ..Default::default()
        })
        .await
        .unwrap();
    common::flushed_once_healthy(&audit).await;
    audit.shutdown().await.unwrap();
    let messages = messages(&jetstream, &stream).await;
    let requests = messages
        .iter()
        .filter(|(subject, _, _)| subject.ends_with(".request.http.request"))
        .count();
    assert_eq!(requests, 10);
    assert_eq!(
        messages.len(),
        12,
        "audit.start, ten requests, audit.stop, each once"
    );
    jetstream.delete_stream(&stream).await.unwrap();
}

#[test]
fn a_bad_stream_name_is_refused_when_built() {
    let error = NatsSink::builder("nats://127.0.0.1:4222")
        .stream("AUDIT.EVENTS")
        .build()
        .unwrap_err();
    assert!(error.to_string().contains("not a stream name"), "{error}");
}

/// An event over the server's message limit (1 MiB by default) is published shortened and
/// labelled, not refused forever; the events after it follow.
#[tokio::test]
async fn an_event_over_the_message_limit_is_published_shortened() {
    let Some((url, jetstream)) = services::nats().await else {
        return;
    };
    let (builder, stream, prefix) = own_stream(&url);
    let mut sink = builder.build().unwrap();
    let mut big = AuditEvent::new(
        Category::Sensitive,
        "config.import",
        Outcome::Success,
        Actor::user("1"),
    )
    .with_target("config:all");
    for index in 0..400 {
        big = big.with_detail(format!("key-{index}"), "x".repeat(4000));
    }
    assert!(serde_json::to_vec(&big).unwrap().len() > 1024 * 1024);
    let after = events(1);
    let batch = [big.clone(), after[0].clone()];
    tokio::time::timeout(Duration::from_secs(10), sink.write_batch(&batch))
        .await
        .expect("answered")
        .expect("published");
    sink.close().await.unwrap();

    let messages = messages(&jetstream, &stream).await;
    assert_eq!(messages.len(), 2);
    let (subject, id, event) = &messages[0];
    assert_eq!(*subject, format!("{prefix}.sensitive.config.import"));
    assert_eq!(*id, big.id.to_string());
    assert_eq!(event["target"], "config:all");
    assert!(event.get("details").is_none(), "details left out");
    let why = event["labels"][audit_layer::sink::nats::TRUNCATED_LABEL]
        .as_str()
        .unwrap();
    assert!(why.contains("exceed the server's limit"), "{why}");
    assert_eq!(messages[1].1, after[0].id.to_string());
    jetstream.delete_stream(&stream).await.unwrap();
}

/// The client lends 5,000 acknowledgement slots; a batch larger than that (a trail built
/// with a large `batch_size`) must not wait for a slot forever.
#[tokio::test]
async fn a_batch_larger_than_the_clients_acknowledgement_slots_is_published() {
    let Some((url, jetstream)) = services::nats().await else {
        return;
    };
    let (builder, stream, _) = own_stream(&url);
    let mut sink = builder.build().unwrap();
    let batch = events(6000);
    sink.write_batch(&batch).await.unwrap();
    sink.close().await.unwrap();
    let state = jetstream
        .get_stream(&stream)
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .state
        .clone();
    assert_eq!(state.messages, 6000);
    jetstream.delete_stream(&stream).await.unwrap();
}

/// Without a prefix, the subjects follow the stream's name: a second trail with a stream of
/// its own never collides with the first's subjects. A prefix another stream holds fails
/// the write with an error that names the setting to change.
#[tokio::test]
async fn default_subjects_follow_the_stream_and_an_overlap_names_the_fix() {
    let Some((url, jetstream)) = services::nats().await else {
        return;
    };
    let first = services::unique_name("AUDIT_TEST");
    let second = services::unique_name("AUDIT_TEST");
    let mut sink = NatsSink::builder(&url).stream(&first).build().unwrap();
    let mut other = NatsSink::builder(&url).stream(&second).build().unwrap();
    let batch = events(3);
    sink.write_batch(&batch).await.unwrap();
    other.write_batch(&batch).await.unwrap();
    for stream in [&first, &second] {
        let messages = messages(&jetstream, stream).await;
        assert_eq!(messages.len(), 3, "{stream}: {messages:#?}");
        let expected = format!("{}.auth.auth.login", stream.to_ascii_lowercase());
        assert!(messages.iter().all(|(subject, ..)| *subject == expected));
    }

    // A third stream asked to take the first one's subjects.
    let third = services::unique_name("AUDIT_TEST");
    let mut clashing = NatsSink::builder(&url)
        .stream(&third)
        .subject_prefix(first.to_ascii_lowercase())
        .build()
        .unwrap();
    let error = clashing.write_batch(&batch).await.unwrap_err().to_string();
    assert!(
        error.contains(&format!("cannot create stream `{third}`")),
        "{error}"
    );
    assert!(error.contains("NatsSinkBuilder::subject_prefix"), "{error}");
    for mut sink in [sink, other, clashing] {
        let _ = sink.close().await;
    }
    for stream in [first, second] {
        jetstream.delete_stream(&stream).await.unwrap();
    }
}

/// The file trail's checkpoints, also messages of a JetStream stream: `audit verify
/// --against-checkpoint nats://...` passes on the trail as written, and calls a tail cut
/// together with its checkpoints `rolled back`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_checkpoint_mirror_makes_a_rolled_back_tail_a_fault() {
    use audit_layer::sink::nats::NatsCheckpointMirror;
    use common::trail::MirroredTrail;
    let Some((url, jetstream)) = services::nats().await else {
        return;
    };
    let trail_name = services::unique_name("trail");
    let trail = tokio::task::block_in_place(|| {
        MirroredTrail::write(|| NatsCheckpointMirror::new(&url, &trail_name).unwrap())
    });
    let stream = jetstream.get_stream("AUDIT_CHECKPOINTS").await.unwrap();
    let newest = stream
        .get_last_raw_message_by_subject(&format!("audit-checkpoints.{trail_name}"))
        .await
        .unwrap();
    let newest: serde_json::Value = serde_json::from_slice(&newest.payload).unwrap();
    assert_eq!(newest["type"], "checkpoint");

    let against = ["--against-checkpoint", &url, "--mirror-trail", &trail_name];
    let verify = || trail.verify(&against);
    let (code, out, err) = tokio::task::block_in_place(verify);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("against the NATS mirror's audit-checkpoints."),
        "{out}"
    );

    trail.roll_back();
    let (code, _, err) = tokio::task::block_in_place(verify);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.starts_with("FAULT: rolled back: "), "{err}");
}
