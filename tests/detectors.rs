//! Detectors: failed logins and privilege grants found in the trail's events, recorded as
//! `alert` events right after the event that raised them.

mod common;

use std::net::IpAddr;
use std::time::Duration;

use audit_layer::detect::{BRUTEFORCE, BruteForce, Detector, PRIVILEGE_GRANT, PrivilegeGrant};
use audit_layer::event::{Change, Source, Timestamp};
use audit_layer::file::JsonlFileSink;
use audit_layer::sink::MemorySink;
use audit_layer::testing::FaultySink;
use audit_layer::{
    Actor, AuditContext, AuditEvent, AuditTrail, Category, Durability, Health, Outcome,
};
use axum::body::Body;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use common::demo::{audit_binary, read_trail};
use common::{memory_trail, request_from};
use serde::Deserialize;
use serde_json::json;
use tower::ServiceExt;

#[derive(Deserialize)]
struct Login {
    username: String,
}

/// A login that always fails, recorded as the demo records it.
async fn failing_login(audit: AuditContext, Json(body): Json<Login>) -> StatusCode {
    audit.set_action("auth.login");
    audit.set_category(Category::Auth);
    audit.detail("username", body.username);
    audit.set_outcome(Outcome::Failure);
    StatusCode::UNAUTHORIZED
}

async fn fail_login(app: &Router, peer: &str, username: &str) {
    let request = request_from(peer, "POST", "/login")
        .header("content-type", "application/json")
        .body(Body::from(json!({ "username": username }).to_string()))
        .expect("request");
    let response = app.clone().oneshot(request).await.expect("infallible");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

/// A trail with one detector, writing to memory.
fn watched(detector: impl Detector) -> (AuditTrail, MemorySink) {
    let (builder, sink) = memory_trail();
    (builder.detector(detector).build().expect("trail"), sink)
}

/// A login route behind the trail's layer.
fn login_app(trail: &AuditTrail) -> Router {
    Router::new()
        .route("/login", post(failing_login))
        .layer(trail.layer())
}

fn alerts(sink: &MemorySink) -> Vec<AuditEvent> {
    sink.events_where(|e| e.category == Category::Alert)
}

/// A failed login at `seconds` past an arbitrary start, from `ip`.
fn failure_at(seconds: u64, username: &str, ip: &str) -> AuditEvent {
    let time = Timestamp::from_unix_micros(1_800_000_000_000_000 + seconds * 1_000_000);
    let mut event = AuditEvent::at(
        time,
        Category::Auth,
        "auth.login",
        Outcome::Failure,
        Actor::anonymous(),
    )
    .with_detail("username", username);
    let mut source = Source::default();
    source.ip = Some(ip.parse::<IpAddr>().expect("ip"));
    event.source = Some(source);
    event
}

#[tokio::test]
async fn five_failed_logins_for_one_username_raise_one_bruteforce_alert() {
    let (trail, sink) = watched(BruteForce::new("auth.login"));
    let app = login_app(&trail);

    // From five addresses, so that only the per-username count can reach its threshold.
    for n in 0..4 {
        fail_login(&app, &format!("192.0.2.{n}:4000"), "alice").await;
    }
    trail.flush().await.expect("flush");
    assert!(alerts(&sink).is_empty(), "four failures are not an attack");

    fail_login(&app, "192.0.2.4:4000", "Alice").await;
    trail.flush().await.expect("flush");
    let events = sink.events();
    let alerts = alerts(&sink);
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    let alert = &alerts[0];
    assert_eq!(alert.action, BRUTEFORCE);
    assert_eq!(alert.category, Category::Alert);
    assert_eq!(alert.target.as_deref(), Some("username:alice"));
    let details = alert.details.as_ref().expect("details");
    assert_eq!(details["username"], "alice");
    assert_eq!(details["count"], 5);
    assert_eq!(details["window_seconds"], 60.0);
    // The alert names the five failures, and is written right after the last of them.
    let failures: Vec<_> = events
        .iter()
        .filter(|e| e.action == "auth.login")
        .map(|e| json!(e.id.to_string()))
        .collect();
    assert_eq!(details["events"], json!(failures));
    let position = events.iter().position(|e| e.id == alert.id).expect("alert");
    assert_eq!(events[position - 1].id.to_string(), failures[4]);
    assert_eq!(
        alert.source.as_ref().and_then(|s| s.ip),
        Some("192.0.2.4".parse().expect("ip"))
    );
    trail.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn ten_failures_from_one_address_raise_one_alert_whatever_the_usernames() {
    let (trail, sink) = watched(BruteForce::new("auth.login"));
    let app = login_app(&trail);
    for n in 0..10 {
        fail_login(&app, "203.0.113.9:5000", &format!("user{n}")).await;
    }
    trail.flush().await.expect("flush");
    let alerts = alerts(&sink);
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    assert_eq!(alerts[0].target.as_deref(), Some("ip:203.0.113.9"));
    let details = alerts[0].details.as_ref().expect("details");
    assert_eq!(details["source_ip"], "203.0.113.9");
    assert_eq!(details["count"], 10);
    trail.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn only_failures_inside_the_window_count_and_a_burst_alerts_once_until_quiet() {
    let (trail, sink) = watched(
        BruteForce::new("auth.login")
            .per_username(3)
            .per_source_ip(0)
            .within(Duration::from_secs(60)),
    );
    let fail = |seconds: &[u64]| {
        let trail = &trail;
        let seconds = seconds.to_vec();
        async move {
            for at in seconds {
                trail
                    .record(failure_at(at, "bob", "192.0.2.4"))
                    .await
                    .expect("record");
            }
            trail.flush().await.expect("flush");
        }
    };
    // Two early failures leave the window before the third arrives.
    fail(&[0, 10, 75]).await;
    assert!(alerts(&sink).is_empty(), "{:#?}", alerts(&sink));

    // 75, 80, 90: three inside 60 s, one alert. The failures that follow, each less than
    // 60 s after the one before, are the same burst.
    fail(&[80, 90, 91, 92, 120, 150]).await;
    assert_eq!(alerts(&sink).len(), 1, "{:#?}", alerts(&sink));

    // After 61 s of quiet, it takes three again.
    fail(&[211, 212]).await;
    assert_eq!(alerts(&sink).len(), 1, "{:#?}", alerts(&sink));
    fail(&[213]).await;
    let alerts = alerts(&sink);
    assert_eq!(alerts.len(), 2, "{alerts:#?}");
    assert_eq!(alerts[1].details.as_ref().expect("details")["count"], 3);
    trail.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn successes_other_actions_and_counts_turned_off_raise_nothing() {
    let (trail, sink) = watched(
        BruteForce::new("auth.login")
            .per_source_ip(0)
            .per_username(2),
    );
    for at in 0..5 {
        let mut success = failure_at(at, "carol", "192.0.2.1");
        success.outcome = Outcome::Success;
        trail.record(success).await.expect("record");
        let mut other = failure_at(at, "carol", "192.0.2.1");
        other.action = "auth.password.change".into();
        trail.record(other).await.expect("record");
        // No username: only the (turned off) per-address count could see it.
        let mut nameless = failure_at(at, "", "192.0.2.1");
        nameless.details = None;
        trail.record(nameless).await.expect("record");
    }
    trail.flush().await.expect("flush");
    assert!(alerts(&sink).is_empty(), "{:#?}", alerts(&sink));
    trail.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn the_tracked_keys_are_bounded() {
    let (trail, sink) = watched(
        BruteForce::new("auth.login")
            .per_username(2)
            .per_source_ip(0)
            .max_tracked(2),
    );
    // a and b fill the table; c, with neither expired, makes every count start again.
    for name in ["a", "b", "c", "a"] {
        trail
            .record(failure_at(1, name, "192.0.2.1"))
            .await
            .expect("record");
    }
    trail.flush().await.expect("flush");
    assert!(alerts(&sink).is_empty(), "a's first failure was forgotten");
    trail
        .record(failure_at(2, "c", "192.0.2.1"))
        .await
        .expect("record");
    trail.flush().await.expect("flush");
    let alerts = alerts(&sink);
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].target.as_deref(), Some("username:c"));
    trail.shutdown().await.expect("shutdown");
}

fn role_change(old: serde_json::Value, new: serde_json::Value) -> AuditEvent {
    let mut event = AuditEvent::new(
        Category::Sensitive,
        "user.role.change",
        Outcome::Success,
        Actor::user("1").with_name("alice"),
    )
    .with_target("user:2");
    event.changes = Some(vec![Change::value("role", Some(old), Some(new))]);
    event
}

#[tokio::test]
async fn a_role_change_to_admin_raises_a_privilege_grant() {
    let (trail, sink) = watched(PrivilegeGrant::new(["admin"]));
    let grant = role_change(json!("viewer"), json!("Admin"));
    trail.record(grant.clone()).await.expect("record");
    trail.flush().await.expect("flush");

    let alerts = alerts(&sink);
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    let alert = &alerts[0];
    assert_eq!(alert.action, PRIVILEGE_GRANT);
    assert_eq!(alert.category, Category::Alert);
    assert_eq!(alert.target.as_deref(), Some("user:2"));
    assert_eq!(alert.actor.id, "1", "the actor is who granted it");
    let details = alert.details.as_ref().expect("details");
    assert_eq!(details["role"], "admin");
    assert_eq!(details["old"], "viewer");
    assert_eq!(details["events"], json!([grant.id.to_string()]));
    assert_eq!(details["rule"], "privilege_grant");
    trail.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn only_new_privileged_roles_of_successful_changes_raise_a_grant() {
    let (trail, sink) = watched(PrivilegeGrant::new(["admin"]));
    let quiet = [
        role_change(json!("admin"), json!("viewer")),
        role_change(json!("viewer"), json!("editor")),
        role_change(json!(["admin"]), json!(["admin", "editor"])),
        {
            let mut denied = role_change(json!("viewer"), json!("admin"));
            denied.outcome = Outcome::Denied;
            denied
        },
        {
            let mut redacted = role_change(json!("viewer"), json!("admin"));
            redacted.changes = Some(vec![Change::redacted("role")]);
            redacted
        },
        {
            let mut other_field = role_change(json!("viewer"), json!("admin"));
            other_field.changes = Some(vec![Change::value(
                "nickname",
                Some(json!("x")),
                Some(json!("admin")),
            )]);
            other_field
        },
    ];
    for event in quiet {
        trail.record(event).await.expect("record");
    }
    trail.flush().await.expect("flush");
    assert!(alerts(&sink).is_empty(), "{:#?}", alerts(&sink));

    // A list that gains the role, and a creation (no old value) in a nested field.
    trail
        .record(role_change(json!(["editor"]), json!(["editor", "admin"])))
        .await
        .expect("record");
    let mut created = AuditEvent::new(
        Category::Sensitive,
        "user.create",
        Outcome::Success,
        Actor::user("1"),
    );
    created.changes = Some(vec![Change::value(
        "profile.role",
        None,
        Some(json!("admin")),
    )]);
    trail.record(created).await.expect("record");
    trail.flush().await.expect("flush");
    assert_eq!(alerts(&sink).len(), 2, "{:#?}", alerts(&sink));
    trail.shutdown().await.expect("shutdown");
}

/// A detector with a bug.
struct Panicking;

impl Detector for Panicking {
    fn name(&self) -> &str {
        "panicking"
    }

    fn observe(&mut self, _event: &AuditEvent, alerts: &mut Vec<AuditEvent>) {
        alerts.push(AuditEvent::new(
            Category::Alert,
            "half.done",
            Outcome::Success,
            Actor::anonymous(),
        ));
        panic!("a detector bug");
    }
}

#[tokio::test]
async fn a_panicking_detector_loses_no_event_and_stops_no_other_detector() {
    let (builder, sink) = memory_trail();
    let trail = builder
        .detector(Panicking)
        .detector(PrivilegeGrant::new(["admin"]))
        .build()
        .expect("trail");
    let grant = role_change(json!("viewer"), json!("admin"));
    trail.record(grant.clone()).await.expect("record");
    trail.flush().await.expect("flush");
    assert!(sink.events().iter().any(|e| e.id == grant.id));
    let alerts = alerts(&sink);
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    assert_eq!(alerts[0].action, PRIVILEGE_GRANT);
    assert_eq!(trail.health(), Health::Healthy);
    trail.shutdown().await.expect("shutdown");
}

/// Syncs by the sink before and after an alert, with alerts at `durability`.
async fn syncs_around_an_alert(durability: Durability) -> (u64, u64) {
    let memory = MemorySink::new();
    let (sink, faults) = FaultySink::new(memory.clone());
    let trail = AuditTrail::builder()
        .sink(sink)
        .sync_interval(Duration::from_secs(3600))
        .durability(Category::Alert, durability)
        .detector(PrivilegeGrant::new(["admin"]))
        .build()
        .expect("trail");
    trail
        .record(role_change(json!("viewer"), json!("editor")))
        .await
        .expect("record");
    trail.flush().await.expect("flush");
    let syncs = faults.syncs();
    trail
        .record(role_change(json!("viewer"), json!("admin")))
        .await
        .expect("record");
    trail.flush().await.expect("flush");
    assert_eq!(alerts(&memory).len(), 1);
    let after = faults.syncs();
    trail.shutdown().await.expect("shutdown");
    (syncs, after)
}

#[tokio::test]
async fn an_alert_is_synced_in_the_round_that_raises_it() {
    let (before, after) = syncs_around_an_alert(Durability::Synced).await;
    assert!(
        after > before,
        "the alert was not synced: {before} syncs, then {after}"
    );
}

#[tokio::test]
async fn batched_alerts_wait_for_the_sync_interval() {
    let (before, after) = syncs_around_an_alert(Durability::Batched).await;
    assert_eq!(before, after, "a batched alert was synced at once");
}

#[tokio::test]
async fn a_full_table_forgets_expired_keys_first() {
    let (trail, sink) = watched(
        BruteForce::new("auth.login")
            .per_username(2)
            .per_source_ip(0)
            .max_tracked(4)
            .within(Duration::from_secs(60)),
    );
    // a and b leave the window; the fifth key makes room by forgetting them, and c keeps
    // its count.
    for (at, name) in [
        (0, "a"),
        (0, "b"),
        (100, "c"),
        (100, "d"),
        (100, "e"),
        (101, "c"),
    ] {
        trail
            .record(failure_at(at, name, "192.0.2.1"))
            .await
            .expect("record");
    }
    trail.flush().await.expect("flush");
    let alerts = alerts(&sink);
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    assert_eq!(alerts[0].target.as_deref(), Some("username:c"));
    trail.shutdown().await.expect("shutdown");
}

/// A detector of its own, as an application writes one: every `export` is worth a look.
struct Exports;

impl Detector for Exports {
    fn name(&self) -> &str {
        "exports"
    }

    fn observe(&mut self, event: &AuditEvent, alerts: &mut Vec<AuditEvent>) {
        if event.action == "user.export" {
            // Given the wrong category on purpose: the trail records it as an alert.
            alerts.push(
                AuditEvent::new(
                    Category::Request,
                    "security.export",
                    Outcome::Success,
                    event.actor.clone(),
                )
                .with_detail("event", event.id.to_string()),
            );
        }
    }
}

#[tokio::test]
async fn an_applications_own_detector_raises_alerts() {
    let (trail, sink) = watched(Exports);
    let export = AuditEvent::new(
        Category::Sensitive,
        "user.export",
        Outcome::Success,
        Actor::user("1"),
    );
    trail.record(export.clone()).await.expect("record");
    trail.flush().await.expect("flush");
    let alerts = alerts(&sink);
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    assert_eq!(alerts[0].action, "security.export");
    assert_eq!(alerts[0].category, Category::Alert);
    assert_eq!(
        alerts[0].details.as_ref().expect("details")["event"],
        export.id.to_string()
    );
    trail.shutdown().await.expect("shutdown");
}

/// Writes a file trail of five failed logins for dave and a grant of admin, with or without
/// the detectors live.
async fn file_trail(dir: &std::path::Path, live_detectors: bool) {
    let mut builder = AuditTrail::builder().sink(JsonlFileSink::new(dir));
    if live_detectors {
        builder = builder
            .detector(BruteForce::new("auth.login"))
            .detector(PrivilegeGrant::new(["admin"]));
    }
    let trail = builder.build().expect("trail");
    for at in 0..5 {
        trail
            .record(failure_at(at, "dave", "198.51.100.7"))
            .await
            .expect("record");
    }
    trail
        .record(role_change(json!("viewer"), json!("admin")))
        .await
        .expect("record");
    trail.shutdown().await.expect("shutdown");
}

fn audit_detect(args: &[&str]) -> (i32, Vec<serde_json::Value>, String) {
    let output = std::process::Command::new(audit_binary())
        .arg("detect")
        .args(args)
        .output()
        .expect("run audit");
    let alerts = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("an alert per line"))
        .collect();
    (
        output.status.code().unwrap_or(-1),
        alerts,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn audit_detect_replays_a_stored_trail_and_finds_what_live_detectors_found() {
    let quiet = tempfile::tempdir().expect("tempdir");
    file_trail(quiet.path(), false).await;
    let watched = tempfile::tempdir().expect("tempdir");
    file_trail(watched.path(), true).await;

    let (code, replayed, err) = audit_detect(&[quiet.path().to_str().expect("utf-8")]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("2 alert(s) from"), "{err}");
    let actions: Vec<_> = replayed.iter().map(|a| a["action"].clone()).collect();
    assert_eq!(actions, [json!(BRUTEFORCE), json!(PRIVILEGE_GRANT)]);
    assert_eq!(replayed[0]["target"], "username:dave");
    assert_eq!(replayed[0]["category"], "alert");

    // What the live detectors wrote into the other trail: the same alerts, at the same
    // times (their triggers'); the replay skips the recorded ones instead of doubling them.
    let recorded: Vec<_> = read_trail(watched.path())
        .into_iter()
        .filter(|e| e["category"] == "alert")
        .collect();
    assert_eq!(recorded.len(), 2);
    for (live, replay) in recorded.iter().zip(&replayed) {
        for field in ["action", "target", "reason", "outcome"] {
            assert_eq!(live[field], replay[field], "{field}");
        }
    }
    assert_eq!(recorded[0]["time"], replayed[0]["time"]);
    let (code, again, _) = audit_detect(&[watched.path().to_str().expect("utf-8")]);
    assert_eq!(code, 0);
    assert_eq!(again.len(), 2, "{again:#?}");

    // Thresholds from the command line: the username count off, another privileged role.
    let (code, only, err) = audit_detect(&[
        quiet.path().to_str().expect("utf-8"),
        "--per-username",
        "0",
        "--privileged",
        "owner",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(only.is_empty(), "{only:#?}");
    assert!(err.contains("0 alert(s) from"), "{err}");

    // For people: a header and a row per alert.
    let output = std::process::Command::new(audit_binary())
        .args(["detect", quiet.path().to_str().expect("utf-8")])
        .args(["--format", "table"])
        .output()
        .expect("run audit");
    assert!(output.status.success());
    let table = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<_> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    assert!(lines[0].starts_with("TIME"), "{table}");
    assert!(lines[1].contains(BRUTEFORCE) && lines[1].contains("username:dave"));
    assert!(lines[2].contains(PRIVILEGE_GRANT) && lines[2].contains("user:2"));
}

#[test]
fn audit_detect_on_a_missing_trail_is_one_clear_line() {
    let output = std::process::Command::new(audit_binary())
        .args(["detect", "/nonexistent/audit-log"])
        .output()
        .expect("run audit");
    assert_eq!(output.status.code(), Some(2));
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(err.starts_with("audit: /nonexistent/audit-log"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[tokio::test]
async fn a_long_username_is_counted_whole_and_shown_cut() {
    let (trail, sink) = watched(BruteForce::new("auth.login").per_source_ip(0));
    let long = "x".repeat(4000);
    let other = format!("{}y", "x".repeat(3999));
    for at in 0..4 {
        trail
            .record(failure_at(at, &long, "192.0.2.1"))
            .await
            .expect("record");
    }
    // Same first 200 bytes, another username: it does not add to the first one's count.
    trail
        .record(failure_at(4, &other, "192.0.2.1"))
        .await
        .expect("record");
    trail.flush().await.expect("flush");
    assert!(alerts(&sink).is_empty(), "{:#?}", alerts(&sink));
    trail
        .record(failure_at(5, &long, "192.0.2.1"))
        .await
        .expect("record");
    trail.flush().await.expect("flush");
    let alerts = alerts(&sink);
    assert_eq!(alerts.len(), 1);
    let target = alerts[0].target.as_deref().expect("target");
    assert!(target.starts_with("username:xxxx"), "{target}");
    assert!(target.len() <= 256, "{} bytes", target.len());
    trail.shutdown().await.expect("shutdown");
}
