//! Delivery: the queue, the writer, the file sink, failures and shutdown. Nothing is lost.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use audit_layer::{AuditContext, AuditError, AuditEvent, AuditTrail};

use audit_layer::sink::{BoxFuture, MemorySink, Sink, SinkError};

use audit_layer::file::JsonlFileSink;
use axum::body::Body;
use axum::{Router, routing::get};
use common::{get as get_request, request_from};
use tower::ServiceExt;

/// The lines of a trail file that are events of requests.
fn request_lines(file: &std::path::PathBuf) -> usize {
    std::fs::read_to_string(file)
        .unwrap()
        .lines()
        .filter(|l| l.contains(r#""request":{"#))
        .count()
}

fn hello(audit: &AuditTrail) -> Router {
    Router::new()
        .route("/hello", get(|| async { "hello" }))
        .layer(audit.layer())
}

/// Fails its first `failures` batches, then stores into `inner`.
struct FlakySink {
    inner: MemorySink,
    failures: Arc<AtomicUsize>,
}

impl Sink for FlakySink {
    fn name(&self) -> &str {
        "flaky"
    }

    fn write_batch<'a>(
        &'a mut self,
        events: &'a [AuditEvent],
    ) -> BoxFuture<'a, Result<(), SinkError>> {
        let fail = self
            .failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if fail {
            return Box::pin(async { Err(SinkError::new("disk on fire")) });
        }
        self.inner.write_batch(events)
    }
}

/// Panics while `panics` is above zero (in the call itself, then in the future it returns,
/// by turns), then stores into `inner`.
struct PanickySink {
    inner: MemorySink,
    panics: Arc<AtomicUsize>,
    calls: usize,
}

impl Sink for PanickySink {
    fn name(&self) -> &str {
        "panicky"
    }

    fn write_batch<'a>(
        &'a mut self,
        events: &'a [AuditEvent],
    ) -> BoxFuture<'a, Result<(), SinkError>> {
        self.calls += 1;
        if self.panics.load(Ordering::SeqCst) > 0 {
            if self.calls.is_multiple_of(2) {
                panic!("disk on fire");
            }
            return Box::pin(async { panic!("disk on fire") });
        }
        self.inner.write_batch(events)
    }
}

/// Stores into `inner`, slowly (the writer thread may block).
struct SlowSink {
    inner: MemorySink,
    delay: Duration,
}

impl Sink for SlowSink {
    fn name(&self) -> &str {
        "slow"
    }

    fn write_batch<'a>(
        &'a mut self,
        events: &'a [AuditEvent],
    ) -> BoxFuture<'a, Result<(), SinkError>> {
        std::thread::sleep(self.delay);
        self.inner.write_batch(events)
    }
}

async fn send_hellos(app: &Router, count: usize) {
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..count {
        let app = app.clone();
        tasks.spawn(async move {
            let request = request_from("192.0.2.1:1", "GET", "/hello")
                .header("x-request-id", format!("r{i}"))
                .body(Body::empty())
                .unwrap();
            app.oneshot(request).await.unwrap();
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
}

#[tokio::test]
async fn a_sink_that_fails_then_recovers_loses_nothing() {
    let stored = MemorySink::new();
    // Fails until told otherwise.
    let failures = Arc::new(AtomicUsize::new(usize::MAX));
    let audit = AuditTrail::builder()
        .sink(FlakySink {
            inner: stored.clone(),
            failures: failures.clone(),
        })
        .retry_backoff(Duration::from_millis(5), Duration::from_millis(20))
        .failing_after(1)
        .build()
        .unwrap();
    let app = hello(&audit);
    send_hellos(&app, 50).await;

    // While the sink fails, flush reports it instead of hanging.
    let error = audit.flush().await.unwrap_err();
    assert!(
        matches!(&error, AuditError::SinkFailing { sink, error, .. } if sink == "flaky" && error == "disk on fire"),
        "{error}"
    );
    assert!(audit.stats().write_errors >= 1);
    assert!(stored.request_events().is_empty());

    // The disk is back: the kept events are written, once each, in order.
    failures.store(0, Ordering::SeqCst);
    common::eventually(|| stored.request_events().len() == 50).await;
    audit.flush().await.unwrap();
    let ids: std::collections::HashSet<_> = stored
        .request_events()
        .iter()
        .map(|e| e.request_id().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 50, "each event exactly once");
    assert_eq!(audit.stats().written, 51, "the requests and `audit.start`");
    audit.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_sink_that_panics_is_a_failing_sink_and_loses_nothing() {
    let stored = MemorySink::new();
    let panics = Arc::new(AtomicUsize::new(1));
    let audit = AuditTrail::builder()
        .sink(PanickySink {
            inner: stored.clone(),
            panics: panics.clone(),
            calls: 0,
        })
        .retry_backoff(Duration::from_millis(5), Duration::from_millis(20))
        .failing_after(1)
        .build()
        .unwrap();
    let app = hello(&audit);
    send_hellos(&app, 30).await;

    // The writer thread survives the panics, and health says what happened.
    let reason = common::failing_reason(&audit).await;
    assert!(
        reason.contains("the sink panicked: disk on fire"),
        "{reason}"
    );
    common::eventually(|| audit.stats().write_errors >= 2).await;
    assert!(stored.request_events().is_empty());
    send_hellos(&app, 10).await;

    // Once it stops panicking, every kept event is stored, once.
    panics.store(0, Ordering::SeqCst);
    common::flushed_once_healthy(&audit).await;
    let ids: std::collections::HashSet<_> = stored.request_events().iter().map(|e| e.id).collect();
    assert_eq!(ids.len(), 40, "each event exactly once");
    assert_eq!(stored.request_events().len(), 40);
    assert_eq!(audit.stats().written, 41, "the requests and `audit.start`");
    assert_eq!(audit.stats().lost, 0);
    audit.shutdown().await.unwrap();
}

#[tokio::test]
async fn flush_reports_a_failing_sink() {
    let failures = Arc::new(AtomicUsize::new(usize::MAX));
    let audit = AuditTrail::builder()
        .sink(FlakySink {
            inner: MemorySink::new(),
            failures: failures.clone(),
        })
        .retry_backoff(Duration::from_millis(1), Duration::from_millis(5))
        .failing_after(2)
        .shutdown_timeout(Duration::from_millis(50))
        .build()
        .unwrap();
    hello(&audit).oneshot(get_request("/hello")).await.unwrap();
    let error = tokio::time::timeout(Duration::from_secs(5), audit.flush())
        .await
        .expect("flush answers while the sink fails")
        .unwrap_err();
    assert!(error.to_string().contains("flaky"), "{error}");
    // Shutdown gives up after its timeout and says how many events never reached the sink.
    let error = audit.shutdown().await.unwrap_err();
    assert!(
        // `audit.start`, the request's event and `audit.stop`.
        matches!(error, AuditError::Undelivered { count: 3, .. }),
        "{error}"
    );
}

#[tokio::test]
async fn other_sinks_keep_going_while_one_fails() {
    let healthy = MemorySink::new();
    let stored = MemorySink::new();
    let failures = Arc::new(AtomicUsize::new(2));
    let audit = AuditTrail::builder()
        .sink(healthy.clone())
        .sink(FlakySink {
            inner: stored.clone(),
            failures: failures.clone(),
        })
        .retry_backoff(Duration::from_millis(20), Duration::from_millis(20))
        .build()
        .unwrap();
    send_hellos(&hello(&audit), 10).await;
    common::eventually(|| healthy.request_events().len() == 10).await;
    audit.shutdown().await.unwrap();
    assert_eq!(stored.request_events().len(), 10);
    assert_eq!(
        healthy.request_events(),
        stored.request_events(),
        "same events, same order"
    );
}

#[tokio::test]
async fn shutdown_drains_a_full_queue() {
    let stored = MemorySink::new();
    let audit = AuditTrail::builder()
        .sink(SlowSink {
            inner: stored.clone(),
            delay: Duration::from_millis(2),
        })
        .queue_capacity(8)
        .batch_size(4)
        .build()
        .unwrap();
    let app = hello(&audit);
    // 300 concurrent requests against a queue of 8 and a slow sink: requests wait for room.
    let sending = tokio::spawn({
        let app = app.clone();
        async move { send_hellos(&app, 300).await }
    });
    common::eventually(|| audit.stats().queued >= 4).await;
    sending.await.unwrap();
    let accepted = audit.stats().accepted;
    assert_eq!(accepted, 301, "the requests' events and `audit.start`");
    audit.shutdown().await.unwrap();
    assert_eq!(stored.request_events().len(), 300);
}

#[tokio::test]
async fn dropping_the_handle_without_shutdown_still_writes_everything() {
    let stored = MemorySink::new();
    let audit = AuditTrail::builder().sink(stored.clone()).build().unwrap();
    send_hellos(&hello(&audit), 20).await;
    drop(audit);
    assert_eq!(stored.request_events().len(), 20);
}

#[tokio::test]
async fn events_after_shutdown_are_counted_and_logged_not_silently_dropped() {
    let stored = MemorySink::new();
    let audit = AuditTrail::builder().sink(stored.clone()).build().unwrap();
    let app = hello(&audit);
    audit.shutdown().await.unwrap();
    assert!(matches!(audit.shutdown().await, Err(AuditError::Closed)));
    assert!(matches!(audit.flush().await, Err(AuditError::Closed)));

    let response = app.oneshot(get_request("/hello")).await.unwrap();
    assert_eq!(response.status(), 200, "serving continues");
    assert!(stored.request_events().is_empty());
    assert_eq!(audit.stats().lost, 1);
}

#[tokio::test]
async fn recording_a_non_request_event() {
    let stored = MemorySink::new();
    let audit = AuditTrail::builder().sink(stored.clone()).build().unwrap();
    let event = AuditEvent::new(
        audit_layer::Category::System,
        "job.nightly.purge",
        audit_layer::Outcome::Success,
        audit_layer::Actor::service("scheduler"),
    )
    .with_detail("deleted", 12);
    audit.record(event.clone()).await.unwrap();
    audit.shutdown().await.unwrap();
    assert_eq!(stored.events_of("job.nightly.purge"), [event]);
}

#[tokio::test]
async fn file_sink_writes_one_parseable_line_per_event_with_private_modes() {
    let dir = tempfile::tempdir().unwrap();
    let trail_dir = dir.path().join("nested/audit-log");
    let audit = AuditTrail::builder()
        .sink(JsonlFileSink::new(&trail_dir))
        .build()
        .unwrap();
    let app = Router::new()
        .route(
            "/note",
            get(|audit: AuditContext| async move {
                // Control characters in values must not break the one-line-per-event rule.
                audit.set_reason("line one\nline two\r\n\u{0}\u{1b}[31m");
                audit.label("tab", "a\tb");
                audit.detail("multi", "x\ny");
                "noted"
            }),
        )
        .route("/hello", get(|| async { "hello" }))
        .layer(audit.layer());
    for i in 0..100 {
        let path = if i % 2 == 0 {
            "/note"
        } else {
            "/hello?x=%0A%0D"
        };
        app.clone().oneshot(get_request(path)).await.unwrap();
    }
    audit.shutdown().await.unwrap();

    let files = common::trail_files(&trail_dir);
    assert_eq!(files.len(), 1);
    let name = files[0].file_name().unwrap().to_str().unwrap().to_owned();
    assert!(
        name.starts_with("audit-") && name.ends_with(".jsonl"),
        "{name}"
    );
    let text = std::fs::read_to_string(&files[0]).unwrap();
    assert!(text.ends_with('\n'));
    let lines: Vec<_> = text.lines().collect();
    assert_eq!(
        lines.len(),
        102,
        "100 requests, `audit.start` and `audit.stop`"
    );
    for line in &lines {
        let event: AuditEvent = serde_json::from_str(line).unwrap();
        assert_eq!(event.schema, "audit/1");
    }
    let noted: AuditEvent = serde_json::from_str(lines[1]).unwrap();
    assert_eq!(
        noted.reason.as_deref(),
        Some("line one\nline two\r\n\u{0}\u{1b}[31m")
    );

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&trail_dir), 0o700);
        assert_eq!(mode(&files[0]), 0o600);
    }
}

#[tokio::test]
async fn file_sink_appends_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    for _ in 0..2 {
        let audit = AuditTrail::builder()
            .sink(JsonlFileSink::new(dir.path()))
            .build()
            .unwrap();
        send_hellos(&hello(&audit), 5).await;
        audit.shutdown().await.unwrap();
    }
    let files = common::trail_files(dir.path());
    assert_eq!(files.len(), 1);
    assert_eq!(request_lines(&files[0]), 10);
}

/// A file sink that cannot open its next file fails, is retried, and recovers when the
/// directory is back.
#[tokio::test]
async fn file_sink_errors_are_retried_and_surface_in_flush() {
    let dir = tempfile::tempdir().unwrap();
    let trail_dir = dir.path().join("trail");
    let moved = dir.path().join("moved");
    let audit = AuditTrail::builder()
        // Every batch starts a new file, so every batch needs the directory.
        .sink(JsonlFileSink::builder(&trail_dir).rotate_bytes(1).build())
        .retry_backoff(Duration::from_millis(5), Duration::from_millis(20))
        .failing_after(1)
        .build()
        .unwrap();
    hello(&audit).oneshot(get_request("/hello")).await.unwrap();
    audit.flush().await.unwrap();
    std::fs::rename(&trail_dir, &moved).unwrap();
    std::fs::write(&trail_dir, b"in the way").unwrap();
    hello(&audit).oneshot(get_request("/hello")).await.unwrap();
    let error = audit.flush().await.unwrap_err();
    assert!(matches!(error, AuditError::SinkFailing { .. }), "{error}");
    assert!(audit.stats().write_errors >= 1);

    std::fs::remove_file(&trail_dir).unwrap();
    std::fs::rename(&moved, &trail_dir).unwrap();
    common::eventually(|| audit.stats().written == 3).await;
    audit.flush().await.unwrap();
    audit.shutdown().await.unwrap();
    let lines: usize = common::trail_files(&trail_dir)
        .iter()
        .map(request_lines)
        .sum();
    assert_eq!(lines, 2);
    audit_layer::file::verify_trail(&trail_dir, &Default::default()).unwrap();
}
