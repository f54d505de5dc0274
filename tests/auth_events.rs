//! Authentication events in one line: each `AuditContext` helper's event through the layer,
//! and the brute-force detector counting what `login_failed` records.

mod common;

use audit_layer::auth::{self, LoginFailure};
use audit_layer::detect::{BRUTEFORCE, BruteForce};
use audit_layer::{Actor, AuditContext, AuditEvent, Category, Outcome};
use axum::Router;
use axum::body::Body;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::post;
use common::{memory_trail, request_from};
use tower::ServiceExt;

fn alice() -> Actor {
    Actor::user("7").with_name("alice")
}

/// Each helper behind a route of its own name.
async fn helper(audit: AuditContext, Path(name): Path<String>) -> StatusCode {
    match name.as_str() {
        "login_succeeded" => audit.login_succeeded(alice()),
        "login_failed" => audit.login_failed("mallory", LoginFailure::BadPassword),
        "login_locked" => audit.login_failed("bob", LoginFailure::Locked),
        "logged_out" => audit.logged_out(alice()),
        "password_changed" => audit.password_changed(alice()),
        "password_reset_requested" => audit.password_reset_requested("alice"),
        "password_reset_completed" => audit.password_reset_completed(alice()),
        "mfa_challenged" => audit.mfa_challenged(alice()),
        "mfa_failed" => audit.mfa_verified(alice(), false),
        "session_created" => audit.session_created(alice()),
        "session_revoked" => audit.session_revoked(alice()),
        "api_key_created" => audit.api_key_created(alice(), "k-42"),
        "api_key_revoked" => audit.api_key_revoked(alice(), "k-42"),
        _ => return StatusCode::NOT_FOUND,
    }
    // The status a login form answers; the helpers' outcome wins over it.
    StatusCode::OK
}

#[tokio::test]
async fn each_helper_records_its_event_whole() {
    let (builder, sink) = memory_trail();
    let trail = builder.build().unwrap();
    let app = Router::new()
        .route("/{name}", post(helper))
        .layer(trail.layer());
    let cases: [(&str, &str, Outcome, Option<&str>); 13] = [
        (
            "login_succeeded",
            auth::LOGIN,
            Outcome::Success,
            Some("user:7"),
        ),
        ("login_failed", auth::LOGIN, Outcome::Failure, None),
        ("login_locked", auth::LOGIN, Outcome::Denied, None),
        ("logged_out", auth::LOGOUT, Outcome::Success, Some("user:7")),
        (
            "password_changed",
            auth::PASSWORD_CHANGE,
            Outcome::Success,
            Some("user:7"),
        ),
        (
            "password_reset_requested",
            auth::PASSWORD_RESET_REQUEST,
            Outcome::Success,
            None,
        ),
        (
            "password_reset_completed",
            auth::PASSWORD_RESET,
            Outcome::Success,
            Some("user:7"),
        ),
        (
            "mfa_challenged",
            auth::MFA_CHALLENGE,
            Outcome::Success,
            Some("user:7"),
        ),
        (
            "mfa_failed",
            auth::MFA_VERIFY,
            Outcome::Failure,
            Some("user:7"),
        ),
        (
            "session_created",
            auth::SESSION_CREATE,
            Outcome::Success,
            Some("user:7"),
        ),
        (
            "session_revoked",
            auth::SESSION_REVOKE,
            Outcome::Success,
            Some("user:7"),
        ),
        (
            "api_key_created",
            auth::API_KEY_CREATE,
            Outcome::Success,
            Some("api_client:k-42"),
        ),
        (
            "api_key_revoked",
            auth::API_KEY_REVOKE,
            Outcome::Success,
            Some("api_client:k-42"),
        ),
    ];
    for (name, action, outcome, target) in cases {
        let request = request_from("198.51.100.4:4000", "POST", &format!("/{name}"))
            .body(Body::empty())
            .unwrap();
        app.clone().oneshot(request).await.unwrap();
        let event = sink.take().pop().expect(name);
        assert_eq!(event.category, Category::Auth, "{name}: durable, as auth");
        assert_eq!(event.action, action, "{name}");
        assert_eq!(event.outcome, outcome, "{name}");
        assert_eq!(event.target.as_deref(), target, "{name}");
        assert_eq!(
            event
                .source
                .and_then(|s| s.ip)
                .map(|ip| ip.to_string())
                .as_deref(),
            Some("198.51.100.4"),
            "{name}: every auth event has its source IP"
        );
        let details = event.details.unwrap_or_default();
        match name {
            "login_failed" | "login_locked" | "password_reset_requested" => {
                assert!(event.actor.is_anonymous(), "{name}");
                assert!(details.contains_key(auth::USERNAME), "{name}");
            }
            _ => assert_eq!(event.actor.id, "7", "{name}"),
        }
        if name == "login_failed" {
            assert_eq!(details[auth::USERNAME], "mallory");
            assert_eq!(details[auth::FAILURE], "bad_password");
        }
        if name == "login_locked" {
            assert_eq!(details[auth::FAILURE], "locked");
        }
    }
}

#[tokio::test]
async fn the_brute_force_detector_counts_what_login_failed_records() {
    let (builder, sink) = memory_trail();
    let trail = builder
        .detector(BruteForce::logins().per_username(3))
        .build()
        .unwrap();
    let app = Router::new()
        .route(
            "/login",
            post(|audit: AuditContext| async move {
                audit.login_failed("Alice", LoginFailure::UnknownUser);
                StatusCode::UNAUTHORIZED
            }),
        )
        .layer(trail.layer());
    for _ in 0..3 {
        let request = request_from("203.0.113.5:1000", "POST", "/login")
            .body(Body::empty())
            .unwrap();
        app.clone().oneshot(request).await.unwrap();
    }
    trail.flush().await.unwrap();
    let alerts: Vec<AuditEvent> = sink.events_where(|e| e.category == Category::Alert);
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0].action, BRUTEFORCE);
    let details = alerts[0].details.as_ref().unwrap();
    assert_eq!(
        details[auth::USERNAME],
        "alice",
        "usernames are counted case-insensitively"
    );
}
