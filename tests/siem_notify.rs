//! Alert notifications: each burst of a rule notified once, re-armed after quiet, retried
//! when the notifier fails, never holding back the trail; a signed webhook notifier; the
//! detectors' own alerts end to end.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use audit_layer::detect::BruteForce;
use audit_layer::event::Timestamp;
use audit_layer::file::JsonlFileSink;
use audit_layer::siem::{
    AlertNotifier, Notification, SIGNATURE_HEADER, WebhookNotifier, notify_fn, verify_webhook,
};
use audit_layer::{Actor, AuditEvent, AuditTrail, Category, Outcome};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::Value;

type Received = Arc<Mutex<Vec<Notification>>>;

/// A notifier that keeps what it is given, failing the first `failures` calls.
fn collecting(failures: usize) -> (Received, AlertNotifier<impl audit_layer::siem::Notifier>) {
    let received: Received = Arc::default();
    let calls = Arc::new(AtomicUsize::new(0));
    let kept = Arc::clone(&received);
    let notifier = notify_fn("test", move |notification| {
        let kept = Arc::clone(&kept);
        let call = calls.fetch_add(1, Ordering::SeqCst);
        async move {
            if call < failures {
                return Err(std::io::Error::other("pager down"));
            }
            kept.lock().unwrap().push(notification);
            Ok(())
        }
    });
    (received, AlertNotifier::new(notifier))
}

fn alert_at(seconds: u64, rule: &'static str) -> AuditEvent {
    let time = Timestamp::from_unix_micros(1_800_000_000_000_000 + seconds * 1_000_000);
    AuditEvent::at(
        time,
        Category::Alert,
        rule,
        Outcome::Success,
        Actor::service("detector"),
    )
    .with_detail("detector", rule)
}

fn trail(dir: &std::path::Path, follower: impl audit_layer::follow::Follower) -> AuditTrail {
    AuditTrail::builder()
        .sink(JsonlFileSink::new(dir))
        .follower(follower)
        .retry_backoff(Duration::from_millis(20), Duration::from_millis(200))
        .build()
        .unwrap()
}

async fn wait_until(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within 30 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn one_notification_per_burst_and_rule_re_armed_after_quiet() {
    let dir = tempfile::tempdir().unwrap();
    let (received, notifier) = collecting(0);
    let audit = trail(dir.path(), notifier.quiet(Duration::from_secs(300)));
    // A burst of ten brute-force alerts a minute apart, with a privilege alert among them,
    // then quiet for ten minutes, then one more: three notifications.
    for minute in 0..10 {
        audit
            .record(alert_at(minute * 60, "auth.bruteforce"))
            .await
            .unwrap();
        if minute == 4 {
            audit
                .record(alert_at(minute * 60, "security.privilege_grant"))
                .await
                .unwrap();
        }
    }
    // Ordinary events are not notified.
    for _ in 0..100 {
        audit
            .record(AuditEvent::new(
                Category::Request,
                "http.request",
                Outcome::Success,
                Actor::anonymous(),
            ))
            .await
            .unwrap();
    }
    audit
        .record(alert_at(9 * 60 + 601, "auth.bruteforce"))
        .await
        .unwrap();
    audit.shutdown().await.unwrap();
    let received = received.lock().unwrap();
    let rules: Vec<_> = received
        .iter()
        .map(|n| (n.rule.as_str(), n.suppressed))
        .collect();
    assert_eq!(
        rules,
        [
            ("auth.bruteforce", 0),
            ("security.privilege_grant", 0),
            ("auth.bruteforce", 9)
        ],
        "the re-armed rule's notification counts the nine alerts its first burst suppressed"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_notifier_is_retried_and_notifies_each_alert_once() {
    let dir = tempfile::tempdir().unwrap();
    let (received, notifier) = collecting(3);
    let audit = trail(dir.path(), notifier.quiet(Duration::ZERO));
    for i in 0..5 {
        audit.record(alert_at(i, "auth.bruteforce")).await.unwrap();
    }
    audit.flush().await.unwrap();
    wait_until("five notifications", || received.lock().unwrap().len() == 5).await;
    audit.shutdown().await.unwrap();
    let times: Vec<_> = received
        .lock()
        .unwrap()
        .iter()
        .map(|n| n.alert.time)
        .collect();
    assert!(
        times.windows(2).all(|w| w[0] < w[1]),
        "in order, each once: {times:?}"
    );

    // After a restart the notifier goes on from its cursor: nothing is notified again.
    let (again, notifier) = collecting(0);
    let audit = trail(dir.path(), notifier.quiet(Duration::ZERO));
    audit
        .record(alert_at(100, "auth.bruteforce"))
        .await
        .unwrap();
    audit.shutdown().await.unwrap();
    assert_eq!(again.lock().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_notifier_never_holds_back_the_trail() {
    let dir = tempfile::tempdir().unwrap();
    let slow = notify_fn("slow", |_notification| async {
        tokio::time::sleep(Duration::from_secs(60)).await;
        Ok::<_, std::io::Error>(())
    });
    let audit = AuditTrail::builder()
        .sink(JsonlFileSink::new(dir.path()))
        .follower(AlertNotifier::new(slow).quiet(Duration::ZERO))
        .follower_drain(Duration::from_millis(100))
        .build()
        .unwrap();
    let started = Instant::now();
    for i in 0..200 {
        audit.record(alert_at(i, "auth.bruteforce")).await.unwrap();
    }
    audit.flush().await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "recorded while the notifier sleeps"
    );
    // The trail's synced seq reaches the status a moment after the flush.
    wait_until("the notifier shown behind", || {
        audit.followers()[0].behind_events >= 199
    })
    .await;
    audit.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn detector_alerts_reach_a_signed_webhook_notifier() {
    const SECRET: &[u8] = b"notifier secret";
    let bodies: Arc<Mutex<Vec<Value>>> = Arc::default();
    let app =
        Router::new()
            .route(
                "/alerts",
                post(
                    |State(bodies): State<Arc<Mutex<Vec<Value>>>>,
                     headers: HeaderMap,
                     body: Bytes| async move {
                        let signature = headers[SIGNATURE_HEADER].to_str().unwrap();
                        if verify_webhook(SECRET, signature, &body, Duration::from_secs(60))
                            .is_err()
                        {
                            return StatusCode::UNAUTHORIZED;
                        }
                        bodies
                            .lock()
                            .unwrap()
                            .push(serde_json::from_slice(&body).unwrap());
                        StatusCode::NO_CONTENT
                    },
                ),
            )
            .with_state(Arc::clone(&bodies));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let dir = tempfile::tempdir().unwrap();
    let webhook = WebhookNotifier::builder(format!("http://{addr}/alerts"))
        .secret(SECRET)
        .build()
        .unwrap();
    let audit = AuditTrail::builder()
        .sink(JsonlFileSink::new(dir.path()))
        .detector(BruteForce::new("auth.login").per_username(3))
        .follower(AlertNotifier::new(webhook))
        .build()
        .unwrap();
    for _ in 0..12 {
        let failure = AuditEvent::new(
            Category::Auth,
            "auth.login",
            Outcome::Failure,
            Actor::anonymous(),
        )
        .with_detail("username", "alice");
        audit.record(failure).await.unwrap();
    }
    audit.flush().await.unwrap();
    wait_until("a notification", || !bodies.lock().unwrap().is_empty()).await;
    audit.shutdown().await.unwrap();
    let bodies = bodies.lock().unwrap();
    assert_eq!(
        bodies.len(),
        1,
        "one notification for the burst: {bodies:?}"
    );
    let alert = &bodies[0]["alert"];
    assert_eq!(
        alert["class_uid"], 2004,
        "the alert as an OCSF Detection Finding"
    );
    assert_eq!(bodies[0]["rule"], alert["finding_info"]["title"]);
}
