//! Delivery guarantees: durable sensitive events, group commit, failure policies, health.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use audit_layer::file::{JsonlFileSink, VerifyOptions, verify_trail};
use audit_layer::layer::AUDIT_ERROR_HEADER;
use audit_layer::sensitive::Snapshot;
use audit_layer::sink::MemorySink;
use audit_layer::testing::{Faults, FaultySink};
use audit_layer::{
    Actor, AuditContext, AuditEvent, AuditTrail, AuditTrailBuilder, BoxError, Category,
    FailurePolicy, Health, Outcome, Overflow, sensitive,
};
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use common::request_from;
use serde::Serialize;
use tower::ServiceExt;

#[derive(Clone, Serialize, audit_layer::Auditable)]
struct Flag {
    #[audit(id)]
    id: u64,
    on: bool,
}

#[derive(Clone, Default)]
struct AppState {
    ran: Arc<AtomicBool>,
}

impl Snapshot<AppState> for Flag {
    type Key = u64;

    async fn load(state: &AppState, id: &u64) -> Result<Option<Self>, BoxError> {
        Ok(Some(Flag {
            id: *id,
            on: state.ran.load(Ordering::SeqCst),
        }))
    }
}

#[sensitive(action = "flag.set", resource = Flag, key = id)]
async fn set_flag(State(state): State<AppState>, Path(id): Path<u64>) -> Json<Flag> {
    state.ran.store(true, Ordering::SeqCst);
    Json(Flag { id, on: true })
}

/// A plain handler that marks its event sensitive (the manual path).
async fn transfer(audit: AuditContext) -> &'static str {
    audit.set_action("money.transfer");
    audit.mark_sensitive();
    "sent"
}

fn app(audit: &AuditTrail, state: AppState) -> Router {
    Router::new()
        .route("/hello", get(|| async { "hello" }))
        .route("/transfer", post(transfer))
        .route("/flags/{id}", post(set_flag))
        .layer(audit.layer())
        .with_state(state)
}

fn faulty(
    builder: impl FnOnce(AuditTrailBuilder) -> AuditTrailBuilder,
) -> (AuditTrail, MemorySink, Faults) {
    let stored = MemorySink::new();
    let (sink, faults) = FaultySink::new(stored.clone());
    let audit = builder(
        AuditTrail::builder()
            .sink(sink)
            .retry_backoff(Duration::from_millis(5), Duration::from_millis(20))
            .failing_after(1),
    )
    .build()
    .unwrap();
    (audit, stored, faults)
}

async fn call(app: &Router, method: &str, path: &str) -> axum::response::Response {
    let request = request_from("192.0.2.1:1", method, path)
        .body(Body::empty())
        .unwrap();
    app.clone().oneshot(request).await.unwrap()
}

#[tokio::test]
async fn a_sensitive_response_waits_until_its_event_is_synced() {
    let (audit, stored, faults) = faulty(|b| b);
    let app = app(&audit, AppState::default());
    audit.flush().await.unwrap();
    faults.stall();
    let pending = tokio::spawn({
        let app = app.clone();
        async move { call(&app, "POST", "/transfer").await.status() }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !pending.is_finished(),
        "answered before its event was on disk"
    );
    // Ordinary requests do not wait for a sync: one that did would wait for `resume`,
    // which comes after it.
    let ordinary = tokio::time::timeout(Duration::from_secs(10), call(&app, "GET", "/hello"))
        .await
        .expect("an ordinary request waited for the stalled sync");
    assert_eq!(ordinary.status(), StatusCode::OK);
    faults.resume();
    assert_eq!(pending.await.unwrap(), StatusCode::OK);
    assert!(stored.events_of("money.transfer").len() == 1);
    // Waiting for a sync is not waiting for room: the queue never filled.
    assert_eq!(audit.stats().queue_full, 0);
    audit.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_write_delay_never_holds_back_a_durable_event_or_a_flush() {
    // An hour of write delay: only the urgent wake-ups can get these through in time.
    let (audit, stored, _faults) = faulty(|b| b.write_delay(Duration::from_secs(3600)));
    let app = app(&audit, AppState::default());
    let limit = Duration::from_secs(30);
    assert_eq!(call(&app, "GET", "/hello").await.status(), StatusCode::OK);
    let durable = tokio::time::timeout(limit, call(&app, "POST", "/transfer"))
        .await
        .expect("a durable event waited out the write delay");
    assert_eq!(durable.status(), StatusCode::OK);
    assert_eq!(stored.events_of("money.transfer").len(), 1);

    for _ in 0..10 {
        assert_eq!(call(&app, "GET", "/hello").await.status(), StatusCode::OK);
    }
    tokio::time::timeout(limit, audit.flush())
        .await
        .expect("a flush waited out the write delay")
        .unwrap();
    assert_eq!(stored.events_of("http.request").len(), 11);
    audit.shutdown().await.unwrap();
}

#[tokio::test]
async fn ordinary_events_are_written_after_the_write_delay_without_a_flush() {
    let (audit, stored, _faults) = faulty(|b| b.write_delay(Duration::from_millis(20)));
    let app = app(&audit, AppState::default());
    for _ in 0..5 {
        assert_eq!(call(&app, "GET", "/hello").await.status(), StatusCode::OK);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while stored.events_of("http.request").len() < 5 {
        assert!(Instant::now() < deadline, "events never written");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    audit.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_trickle_of_ordinary_events_is_written_in_few_batches() {
    // 30 requests about 5 ms apart, with a 20 ms write delay: gathering for the delay alone
    // would write a batch every 20 ms, eight or nine in all. At this rate 64 events take
    // longer than five delays, so the writer gathers for 100 ms: three or four batches.
    let (audit, stored, faults) = faulty(|b| b.write_delay(Duration::from_millis(20)));
    let app = app(&audit, AppState::default());
    let writes_before = faults.writes();
    for _ in 0..30 {
        assert_eq!(call(&app, "GET", "/hello").await.status(), StatusCode::OK);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    audit.flush().await.unwrap();
    assert_eq!(stored.events_of("http.request").len(), 30);
    let batches = faults.writes() - writes_before;
    assert!(batches <= 5, "30 events 5 ms apart took {batches} batches");
    audit.shutdown().await.unwrap();
}

#[tokio::test]
async fn concurrent_sensitive_requests_share_syncs() {
    let (audit, stored, faults) = faulty(|b| b);
    let app = app(&audit, AppState::default());
    audit.flush().await.unwrap();
    let syncs_before = faults.syncs();
    // While the writer is busy, requests pile up; then they share a sync or two.
    faults.stall();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..64 {
        let app = app.clone();
        tasks.spawn(async move { call(&app, "POST", "/transfer").await.status() });
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    faults.resume();
    while let Some(status) = tasks.join_next().await {
        assert_eq!(status.unwrap(), StatusCode::OK);
    }
    let syncs = faults.syncs() - syncs_before;
    assert!(syncs <= 4, "64 durable events took {syncs} syncs");
    assert_eq!(stored.events_of("money.transfer").len(), 64);
    audit.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_sensitive_event_that_cannot_be_synced_is_never_answered_2xx() {
    let (audit, stored, faults) = faulty(|b| {
        b.failure_policy(FailurePolicy::fail_closed())
            .durable_timeout(Duration::from_millis(200))
    });
    let app = app(&audit, AppState::default());
    audit.flush().await.unwrap();
    faults.fail_syncs(u64::MAX);
    let response = call(&app, "POST", "/transfer").await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()[AUDIT_ERROR_HEADER], "event-not-durable");
    assert!(response.headers().contains_key("x-request-id"));
    // The event is kept, and durable once the disk is back.
    faults.heal();
    audit.shutdown().await.unwrap();
    assert_eq!(stored.events_of("money.transfer").len(), 1);
}

#[tokio::test]
async fn fail_closed_refuses_sensitive_handlers_and_records_the_refusal() {
    let (audit, stored, faults) = faulty(|b| b.failure_policy(FailurePolicy::fail_closed()));
    let state = AppState::default();
    let app = app(&audit, state.clone());
    audit.flush().await.unwrap();
    faults.fail_writes(u64::MAX);
    assert_eq!(call(&app, "GET", "/hello").await.status(), StatusCode::OK);
    common::eventually(|| audit.health().is_failing()).await;

    let response = call(&app, "POST", "/flags/1").await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body = axum::body::to_bytes(response.into_body(), 1024)
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&body).contains("cannot be audited"));
    assert!(!state.ran.load(Ordering::SeqCst), "the handler did not run");
    // Ordinary requests go on.
    assert_eq!(call(&app, "GET", "/hello").await.status(), StatusCode::OK);

    faults.heal();
    audit.shutdown().await.unwrap();
    let refusal = stored.events_of("flag.set");
    assert_eq!(
        refusal.len(),
        1,
        "the refusal is recorded once the trail recovers"
    );
    assert_eq!(refusal[0].status(), Some(503));
    assert!(refusal[0].reason.as_deref().unwrap().starts_with("refused"));
    assert_eq!(stored.events_of("http.request").len(), 2);
}

#[tokio::test]
async fn drop_with_gap_drops_ordinary_events_and_records_the_gap() {
    let (audit, stored, faults) = faulty(|b| {
        b.queue_capacity(4)
            .batch_size(1)
            .failure_policy(FailurePolicy::drop_with_gap())
    });
    let state = AppState::default();
    let app = app(&audit, state.clone());
    audit.flush().await.unwrap();
    faults.stall();
    // The writer is held with the first event before the rest fill the queue: were it
    // still on its way to take that event, it would free a slot after the queue filled,
    // and the sensitive request below could take it.
    assert_eq!(call(&app, "GET", "/hello").await.status(), StatusCode::OK);
    common::eventually(|| faults.held() == 1).await;
    // Nobody waits for room: a request that did would wait for `resume`, which comes later.
    let served = async {
        for _ in 1..30 {
            assert_eq!(call(&app, "GET", "/hello").await.status(), StatusCode::OK);
        }
    };
    tokio::time::timeout(Duration::from_secs(10), served)
        .await
        .expect("a request waited for room under drop_with_gap");
    // A sensitive handler is never dropped: it is refused while the queue is full.
    assert_eq!(
        call(&app, "POST", "/flags/1").await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert!(!state.ran.load(Ordering::SeqCst));
    let stats = audit.stats();
    assert!(stats.dropped >= 20, "{stats:?}");
    assert_eq!(stats.refused, 1);
    // Every loss the policy allowed met a full queue first, and says so.
    assert!(
        stats.queue_full >= stats.dropped + stats.refused,
        "{stats:?}"
    );

    faults.resume();
    audit.shutdown().await.unwrap();
    // One gap event, or more when the writer took a gap while requests were still being
    // dropped (it looks for gaps before each write): together they count every loss.
    let gaps = stored.events_of("audit.gap");
    assert!(!gaps.is_empty());
    let total = |field: &str| -> u64 {
        gaps.iter()
            .map(|gap| gap.details.as_ref().unwrap()[field].as_u64().unwrap())
            .sum()
    };
    assert_eq!(total("dropped"), stats.dropped);
    assert_eq!(total("refused"), 1);
    let refused_gap = gaps
        .iter()
        .find(|gap| gap.details.as_ref().unwrap()["refused"] == 1)
        .unwrap();
    let details = refused_gap.details.as_ref().unwrap();
    assert_eq!(details["refused_actions"]["flag.set"], 1);
    for gap in &gaps {
        let details = gap.details.as_ref().unwrap();
        assert!(details["from"].is_string() && details["to"].is_string());
    }
    let recorded = stored.events_of("http.request").len() as u64;
    assert_eq!(
        recorded + stats.dropped,
        30,
        "every request is recorded or counted"
    );
}

#[tokio::test]
async fn block_for_waits_then_applies_its_overflow() {
    let (audit, _stored, faults) = faulty(|b| {
        b.queue_capacity(1)
            .batch_size(1)
            .failure_policy(FailurePolicy::block_for(
                Duration::from_millis(150),
                Overflow::DropWithGap,
            ))
    });
    let app = app(&audit, AppState::default());
    audit.flush().await.unwrap();
    faults.stall();
    // Fill the writer and the queue.
    for _ in 0..3 {
        call(&app, "GET", "/hello").await;
    }
    let started = Instant::now();
    assert_eq!(call(&app, "GET", "/hello").await.status(), StatusCode::OK);
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(140), "{waited:?}");
    assert!(audit.stats().dropped >= 1);
    faults.resume();
    audit.shutdown().await.unwrap();
}

#[tokio::test]
async fn block_waits_for_room_without_losing_anything() {
    let (audit, stored, faults) = faulty(|b| b.queue_capacity(1).batch_size(1));
    let app = app(&audit, AppState::default());
    audit.flush().await.unwrap();
    faults.stall();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..5 {
        let app = app.clone();
        tasks.spawn(async move { call(&app, "GET", "/hello").await.status() });
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !tasks.is_empty() && audit.health().is_failing(),
        "{:?}",
        audit.health()
    );
    faults.resume();
    while let Some(status) = tasks.join_next().await {
        assert_eq!(status.unwrap(), StatusCode::OK);
    }
    audit.shutdown().await.unwrap();
    assert_eq!(stored.events_of("http.request").len(), 5);
    let stats = audit.stats();
    assert_eq!(stats.dropped, 0);
    assert!(stats.queue_full >= 3, "requests waited for room: {stats:?}");
}

#[test]
fn an_event_left_waiting_for_room_when_its_runtime_stops_is_counted_lost_never_silently() {
    let (audit, stored, faults) = faulty(|b| b.queue_capacity(1).batch_size(1));
    let requests = 5;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let app = app(&audit, AppState::default());
        audit.flush().await.unwrap();
        faults.stall();
        // The client gives up on each: a request waiting for room leaves its event to a
        // task that waits on.
        for _ in 0..requests {
            let _gave_up =
                tokio::time::timeout(Duration::from_millis(100), call(&app, "GET", "/hello")).await;
        }
    });
    // The application's runtime stops while those tasks still wait.
    drop(runtime);
    faults.resume();
    let stats = tokio::runtime::Runtime::new().unwrap().block_on(async {
        audit.shutdown().await.unwrap();
        audit.stats()
    });
    let written = stored.events_of("http.request").len() as u64;
    assert!(stats.lost >= 1, "no event waited for room: {stats:?}");
    assert_eq!(written + stats.lost, requests, "{stats:?}");
}

#[tokio::test]
async fn a_recorded_event_that_waits_for_room_is_counted() {
    let (audit, stored, faults) = faulty(|b| b.queue_capacity(1).batch_size(1));
    audit.flush().await.unwrap();
    faults.stall();
    let event = || {
        AuditEvent::new(
            Category::System,
            "job.run",
            Outcome::Success,
            Actor::service("job"),
        )
    };
    // The first is taken by the stalled writer, the second fills the queue.
    audit.record(event()).await.unwrap();
    audit.record(event()).await.unwrap();
    let third = audit.record(event());
    tokio::pin!(third);
    tokio::select! {
        _ = &mut third => panic!("recorded into a full queue without waiting"),
        () = tokio::time::sleep(Duration::from_millis(300)) => {}
    }
    assert!(audit.stats().queue_full >= 1, "{:?}", audit.stats());
    faults.resume();
    third.await.unwrap();
    audit.shutdown().await.unwrap();
    assert_eq!(stored.events_of("job.run").len(), 3);
}

#[tokio::test]
async fn health_goes_degraded_failing_and_back() {
    let (audit, _stored, faults) = faulty(|b| b.failing_after(3));
    let app = app(&audit, AppState::default());
    audit.flush().await.unwrap();
    assert_eq!(audit.health(), Health::Healthy);
    faults.fail_writes(u64::MAX);
    call(&app, "GET", "/hello").await;
    common::eventually(|| matches!(audit.health(), Health::Degraded { .. })).await;
    common::eventually(|| audit.health().is_failing()).await;
    faults.heal();
    common::eventually(|| audit.health() == Health::Healthy).await;
    audit.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_sink_whose_syncs_fail_stays_failing_while_its_writes_succeed() {
    // No periodic syncs: only the retries of a failed sink sync.
    let (audit, _stored, faults) = faulty(|b| b.sync_interval(Duration::from_secs(3600)));
    let app = app(&audit, AppState::default());
    audit.flush().await.unwrap();
    faults.fail_writes(u64::MAX);
    call(&app, "GET", "/hello").await;
    common::eventually(|| audit.health().is_failing()).await;
    // The disk takes writes again but cannot sync them: a successful write must not make
    // the sink look healthy.
    faults.fail_syncs(u64::MAX);
    faults.fail_writes(0);
    for _ in 0..10 {
        call(&app, "GET", "/hello").await;
        tokio::time::sleep(Duration::from_millis(15)).await;
        assert!(audit.health().is_failing(), "{:?}", audit.health());
    }
    faults.heal();
    common::eventually(|| audit.health() == Health::Healthy).await;
    audit.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_full_disk_under_the_file_sink_loses_nothing_and_the_trail_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let (sink, faults) = FaultySink::new(JsonlFileSink::new(dir.path()));
    let audit = AuditTrail::builder()
        .sink(sink)
        .retry_backoff(Duration::from_millis(5), Duration::from_millis(20))
        .failing_after(1)
        .build()
        .unwrap();
    let app = app(&audit, AppState::default());
    audit.flush().await.unwrap();
    faults.fail_writes(u64::MAX);
    for _ in 0..10 {
        call(&app, "GET", "/hello").await;
    }
    let error = audit.flush().await.unwrap_err();
    assert!(
        error.to_string().contains("injected write failure"),
        "{error}"
    );
    // Told that the flush failed, a caller reads a failing trail, never a healthy one.
    assert!(audit.health().is_failing(), "{:?}", audit.health());
    faults.heal();
    common::eventually(|| audit.health() == Health::Healthy).await;
    audit.flush().await.unwrap();
    audit.shutdown().await.unwrap();
    let report = verify_trail(dir.path(), &VerifyOptions::default()).unwrap();
    assert_eq!(
        report.events, 12,
        "audit.start, ten requests, audit.stop: once each"
    );
}

/// Waits, on each write, for the other sink to have been given the same batch.
struct WaitsForTheOther {
    given: Arc<tokio::sync::Notify>,
    inner: MemorySink,
}

impl audit_layer::sink::Sink for WaitsForTheOther {
    fn name(&self) -> &str {
        "waits-for-the-other"
    }

    fn write_batch<'a>(
        &'a mut self,
        events: &'a [audit_layer::AuditEvent],
    ) -> audit_layer::sink::BoxFuture<'a, Result<(), audit_layer::sink::SinkError>> {
        Box::pin(async move {
            self.given.notified().await;
            self.inner.write_batch(events).await
        })
    }
}

/// Signals each write to [`WaitsForTheOther`].
struct SignalsEachWrite {
    given: Arc<tokio::sync::Notify>,
    inner: MemorySink,
}

impl audit_layer::sink::Sink for SignalsEachWrite {
    fn name(&self) -> &str {
        "signals-each-write"
    }

    fn write_batch<'a>(
        &'a mut self,
        events: &'a [audit_layer::AuditEvent],
    ) -> audit_layer::sink::BoxFuture<'a, Result<(), audit_layer::sink::SinkError>> {
        // `notify_one` keeps a permit when nobody waits yet: the order does not matter.
        self.given.notify_one();
        self.inner.write_batch(events)
    }
}

/// Sinks are served at the same time: one waiting on its server (a PostgreSQL commit, a
/// JetStream acknowledgement) does not hold back the others. Here the first sink's write
/// cannot finish before the second sink has been given the batch; served one after the
/// other, the trail would never flush.
#[tokio::test]
async fn a_sink_waiting_on_its_server_does_not_hold_back_the_others() {
    let given = Arc::new(tokio::sync::Notify::new());
    let (first, second) = (MemorySink::new(), MemorySink::new());
    let audit = AuditTrail::builder()
        .sink(WaitsForTheOther {
            given: Arc::clone(&given),
            inner: first.clone(),
        })
        .sink(SignalsEachWrite {
            given,
            inner: second.clone(),
        })
        .build()
        .unwrap();
    let app = Router::new()
        .route("/hello", get(|| async { "hello" }))
        .layer(audit.layer());
    for _ in 0..3 {
        app.clone().oneshot(common::get("/hello")).await.unwrap();
        tokio::time::timeout(Duration::from_secs(10), audit.flush())
            .await
            .expect("both sinks were served together")
            .unwrap();
    }
    assert_eq!(first.request_events().len(), 3);
    assert_eq!(second.request_events().len(), 3);
    audit.shutdown().await.unwrap();
}
