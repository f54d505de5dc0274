//! No secret reaches a record, whoever fills the event: the layer (query, headers; see
//! `request_events.rs`), the handler (labels, details), or application code that builds an
//! event whole and records it.

mod common;

use audit_layer::event::{Change, RequestInfo};
use audit_layer::sink::MemorySink;
use audit_layer::{Actor, AuditContext, AuditEvent, Category, Outcome};
use axum::Router;
use axum::body::Body;
use axum::routing::{get, post};
use common::{get as get_request, memory_trail, only_event, request_from};
use serde_json::json;
use tower::ServiceExt;

const REDACTED: &str = audit_layer::redact::REDACTED;

/// Every event the sink holds, as the JSON text a sink writes.
fn trail_text(sink: &MemorySink) -> String {
    sink.events()
        .iter()
        .map(|event| serde_json::to_string(event).unwrap())
        .collect::<Vec<_>>()
        .join("\n")
}

fn assert_no_leak(text: &str, secrets: &[&str]) {
    for secret in secrets {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }
}

#[tokio::test]
async fn secret_named_labels_and_details_from_handlers_and_the_trail_are_redacted() {
    let (builder, sink) = memory_trail();
    // A trail-wide label named like a secret, set before the list that makes it one.
    let audit = builder
        .label("deploy_token", "TRAIL-SECRET")
        .label("service", "billing")
        .label("queue", "amqp://billing:QUEUE-SECRET@mq/billing")
        .redact_also(["pin"])
        .label("pin", "TRAIL-PIN")
        .build()
        .unwrap();
    let app = Router::new()
        .route(
            "/login",
            post(|audit: AuditContext| async move {
                audit.label("session_token", "LABEL-SECRET");
                audit.label("tenant", "acme");
                audit.label("upstream", "https://svc:UPSTREAM-SECRET@ledger.internal/v2");
                audit.detail("password", "DETAIL-SECRET");
                audit.detail(
                    "user",
                    json!({
                        "name": "bob",
                        "apiKey": "NESTED-SECRET",
                        "devices": [{"refresh_token": "ARRAY-SECRET", "model": "phone"}],
                    }),
                );
                // An error's text, as applications put in details: free text, scanned as
                // a reason is.
                audit.detail(
                    "error",
                    "connect to postgres://app:TEXT-SECRET@db/app failed: timed out",
                );
                audit.detail("notes", json!(["format: csv", "token=ITEM-SECRET"]));
                "ok"
            }),
        )
        .layer(audit.layer());
    app.oneshot(
        request_from("192.0.2.10:1", "POST", "/login")
            .body(Body::empty())
            .unwrap(),
    )
    .await
    .unwrap();
    audit.flush().await.unwrap();

    let event = only_event(&sink);
    assert_eq!(event.labels["deploy_token"], REDACTED);
    assert_eq!(event.labels["pin"], REDACTED);
    assert_eq!(event.labels["session_token"], REDACTED);
    assert_eq!(event.labels["service"], "billing");
    assert_eq!(event.labels["tenant"], "acme");
    // A URL's credentials, under names that are no secret's.
    assert_eq!(
        event.labels["queue"],
        "amqp://billing:[REDACTED]@mq/billing"
    );
    assert_eq!(
        event.labels["upstream"],
        "https://svc:[REDACTED]@ledger.internal/v2"
    );
    let details = serde_json::Value::Object(event.details.clone().unwrap());
    assert_eq!(
        details,
        json!({
            "password": REDACTED,
            "user": {
                "name": "bob",
                "apiKey": REDACTED,
                "devices": [{"refresh_token": REDACTED, "model": "phone"}],
            },
            "error": "connect to postgres://app:[REDACTED]@db/app failed: timed out",
            "notes": ["format: csv", "token=[REDACTED]"],
        })
    );
    assert_no_leak(
        &trail_text(&sink),
        &[
            "TRAIL-SECRET",
            "TRAIL-PIN",
            "LABEL-SECRET",
            "DETAIL-SECRET",
            "NESTED-SECRET",
            "ARRAY-SECRET",
            "TEXT-SECRET",
            "ITEM-SECRET",
            "QUEUE-SECRET",
            "UPSTREAM-SECRET",
        ],
    );
    audit.shutdown().await.unwrap();
}

#[tokio::test]
async fn events_recorded_by_application_code_are_redacted_and_bounded() {
    let (builder, sink) = memory_trail();
    let audit = builder.build().unwrap();
    let mut event = AuditEvent::new(
        Category::Sensitive,
        "user.credentials.rotate",
        Outcome::Success,
        Actor::service("x".repeat(1000)),
    );
    event.target = Some("t".repeat(1000));
    // A reason that quotes an error, as a job's often does.
    event.reason = Some(
        "vault said 403 for https://vault:REASON-SECRET@vault.internal/v1 (client_secret=ALSO-SECRET)"
            .into(),
    );
    event.labels.insert("api_key".into(), "LABEL-SECRET".into());
    event.labels.insert("job".into(), "rotate".into());
    event.details = Some(
        json!({"token": "DETAIL-SECRET", "db": {"password": "NESTED-SECRET", "host": "db1"}})
            .as_object()
            .unwrap()
            .clone(),
    );
    event.before = Some(json!({"name": "bob", "password": "BEFORE-SECRET"}));
    // A connection string under a name that is no secret's: its password goes.
    event.after = Some(json!({
        "name": "bob",
        "password": "AFTER-SECRET",
        "db_url": "postgres://bob:DSN-SECRET@db1/app",
    }));
    event.changes = Some(vec![
        Change::value(
            "credentials.password",
            Some(json!("OLD-SECRET")),
            Some(json!("NEW-SECRET")),
        ),
        Change::value(
            "profile",
            Some(json!({"secret": "OLD-NESTED-SECRET", "city": "Oslo"})),
            Some(json!({"secret": "NEW-NESTED-SECRET", "city": "Bergen"})),
        ),
        Change::value(
            "db_url",
            None,
            Some(json!("postgres://bob:CHANGE-DSN-SECRET@db1/app")),
        ),
        // Only the password changed: a redacted change, not two equal values.
        Change::value(
            "replica_url",
            Some(json!("postgres://bob:OLD-DSN-SECRET@db2/app")),
            Some(json!("postgres://bob:NEW-DSN-SECRET@db2/app")),
        ),
        Change::value(
            "settings",
            Some(json!({"token": "T-1"})),
            Some(json!({"token": "T-2"})),
        ),
    ]);
    let mut request = RequestInfo::default();
    request.id = "req-1".into();
    request.method = "POST".into();
    request.path = "/jobs/rotate/PATH-SECRET".into();
    request.route = Some("/jobs/{job}/{signature}".into());
    request.query = Some("token=QUERY-SECRET&page=2".into());
    request
        .headers
        .insert("Authorization".into(), "Bearer HEADER-SECRET".into());
    request
        .headers
        .insert("x-api-key".into(), "KEY-SECRET".into());
    request.headers.insert("x-tenant".into(), "acme".into());
    request.headers.insert(
        "referer".into(),
        "https://app/reset?token=REFERER-SECRET".into(),
    );
    event.request = Some(request);
    audit.record(event).await.unwrap();
    audit.flush().await.unwrap();

    let events = sink.events();
    let event = events
        .iter()
        .find(|e| e.action == "user.credentials.rotate")
        .expect("the recorded event");
    assert_eq!(event.labels["api_key"], REDACTED);
    assert_eq!(event.labels["job"], "rotate");
    let details = serde_json::Value::Object(event.details.clone().unwrap());
    assert_eq!(
        details,
        json!({"token": REDACTED, "db": {"password": REDACTED, "host": "db1"}})
    );
    assert_eq!(
        event.before,
        Some(json!({"name": "bob", "password": REDACTED}))
    );
    assert_eq!(
        event.after,
        Some(json!({
            "name": "bob",
            "password": REDACTED,
            "db_url": "postgres://bob:[REDACTED]@db1/app",
        }))
    );
    let changes = event.changes.as_ref().unwrap();
    assert_eq!(changes[0], Change::redacted("credentials.password"));
    assert_eq!(
        changes[1],
        Change::value(
            "profile",
            Some(json!({"secret": REDACTED, "city": "Oslo"})),
            Some(json!({"secret": REDACTED, "city": "Bergen"})),
        )
    );
    assert_eq!(
        changes[2],
        Change::value(
            "db_url",
            None,
            Some(json!("postgres://bob:[REDACTED]@db1/app")),
        )
    );
    assert_eq!(changes[3], Change::redacted("replica_url"));
    assert_eq!(changes[4], Change::redacted("settings"));
    let request = event.request.as_ref().unwrap();
    assert_eq!(request.path, "/jobs/rotate/[REDACTED]");
    assert_eq!(request.query.as_deref(), Some("token=[REDACTED]&page=2"));
    assert_eq!(request.headers.len(), 2);
    assert_eq!(request.headers["x-tenant"], "acme");
    assert_eq!(
        request.headers["referer"],
        "https://app/reset?token=[REDACTED]"
    );
    // Bounded as a request event's fields are.
    assert!(event.actor.id.len() <= 256 && event.actor.id.ends_with("...[truncated]"));
    let target = event.target.as_deref().unwrap();
    assert!(target.len() <= 256 && target.ends_with("...[truncated]"));
    assert_eq!(
        event.reason.as_deref(),
        Some(
            "vault said 403 for https://vault:[REDACTED]@vault.internal/v1 (client_secret=[REDACTED])"
        )
    );
    assert_no_leak(
        &trail_text(&sink),
        &[
            "LABEL-SECRET",
            "DETAIL-SECRET",
            "NESTED-SECRET",
            "BEFORE-SECRET",
            "AFTER-SECRET",
            "OLD-SECRET",
            "NEW-SECRET",
            "QUERY-SECRET",
            "HEADER-SECRET",
            "KEY-SECRET",
            "PATH-SECRET",
            "REASON-SECRET",
            "ALSO-SECRET",
            "DSN-SECRET",
            "REFERER-SECRET",
        ],
    );
    audit.shutdown().await.unwrap();
}

/// Every string of a record is bounded, names included: header names, change paths and the
/// keys of `details`, `before` and `after`. Long keys are cut without losing a value, and a
/// secret name at the end of a long path still redacts it.
#[tokio::test]
async fn long_names_and_keys_are_bounded_without_losing_values() {
    let (builder, sink) = memory_trail();
    let audit = builder.build().unwrap();
    let long = "k".repeat(5000);
    let mut event = AuditEvent::new(
        Category::Sensitive,
        "config.import",
        Outcome::Success,
        Actor::service("importer"),
    );
    // Two keys that are the same once cut, and a short one.
    let mut details = serde_json::Map::new();
    details.insert(format!("{long}-a"), json!(1));
    details.insert(format!("{long}-b"), json!(2));
    details.insert("short".into(), json!({ long.clone(): "nested" }));
    event.details = Some(details);
    event.after = Some(json!({ long.clone(): "state" }));
    event.changes = Some(vec![
        Change::value(format!("{long}.limit"), Some(json!(1)), Some(json!(2))),
        Change::value(
            format!("{long}.password"),
            Some(json!("OLD-SECRET")),
            Some(json!("NEW-SECRET")),
        ),
    ]);
    let mut request = RequestInfo::default();
    request.id = "req-2".into();
    request.method = "POST".into();
    request.path = "/import".into();
    request.headers.insert(format!("x-{long}"), "value".into());
    event.request = Some(request);
    audit.record(event).await.unwrap();
    audit.flush().await.unwrap();

    let events = sink.events();
    let event = events
        .iter()
        .find(|e| e.action == "config.import")
        .expect("the recorded event");
    let details = event.details.as_ref().unwrap();
    assert_eq!(details.len(), 3, "{:?}", details.keys().collect::<Vec<_>>());
    let mut values: Vec<_> = details.values().filter_map(|v| v.as_i64()).collect();
    values.sort();
    assert_eq!(values, [1, 2], "both values kept under their cut keys");
    assert!(
        details.keys().all(|key| key.len() <= 256 + 4),
        "{details:?}"
    );
    assert!(details.keys().any(|key| key.ends_with("...[truncated]#2")));
    let nested = details["short"].as_object().unwrap();
    assert!(
        nested
            .keys()
            .all(|key| key.len() <= 256 && key.ends_with("...[truncated]"))
    );
    let after = event.after.as_ref().unwrap().as_object().unwrap();
    assert!(after.keys().all(|key| key.len() <= 256) && after.len() == 1);
    let changes = event.changes.as_ref().unwrap();
    assert!(changes.iter().all(|change| change.field.len() <= 1024));
    assert_eq!(changes[0].new, Some(json!(2)));
    assert!(changes[1].redacted, "{:?}", changes[1]);
    let headers = &event.request.as_ref().unwrap().headers;
    assert!(headers.keys().all(|name| name.len() <= 128) && headers.len() == 1);
    assert_no_leak(&trail_text(&sink), &["OLD-SECRET", "NEW-SECRET", &long]);
    audit.shutdown().await.unwrap();
}

#[tokio::test]
async fn path_segments_named_like_secrets_by_their_route_are_redacted() {
    let (builder, sink) = memory_trail();
    let audit = builder.build().unwrap();
    // The layer on a nested router sees the path without `/api`; the event keeps the path
    // the client sent.
    let api = Router::new()
        .route("/invites/{invite_token}", get(|| async { "ok" }))
        .route("/users/{id}", get(|| async { "ok" }))
        .layer(audit.layer());
    let app = Router::new()
        .route("/password-reset/{token}", get(|| async { "ok" }))
        .route("/downloads/{*signature}", get(|| async { "ok" }))
        // `{{` and `}}` are literal braces: the parameter is the one after them.
        .route("/keys/{{v1}}{key}", get(|| async { "ok" }))
        .layer(audit.layer())
        .nest("/api", api);
    for uri in [
        "/password-reset/RESET-SECRET?lang=en",
        "/downloads/SIGNED/URL-SECRET",
        "/keys/{v1}KEY-SECRET",
        "/api/invites/INVITE-SECRET",
        "/api/users/7",
    ] {
        let response = app.clone().oneshot(get_request(uri)).await.unwrap();
        assert_eq!(response.status(), 200, "{uri}");
    }
    audit.flush().await.unwrap();

    let recorded: Vec<_> = sink
        .request_events()
        .into_iter()
        .map(|event| {
            let request = event.request.unwrap();
            (request.path, request.route.unwrap(), request.query)
        })
        .collect();
    assert_eq!(
        recorded,
        [
            (
                "/password-reset/[REDACTED]".to_owned(),
                "/password-reset/{token}".to_owned(),
                Some("lang=en".to_owned())
            ),
            (
                "/downloads/[REDACTED]".to_owned(),
                "/downloads/{*signature}".to_owned(),
                None
            ),
            (
                "/keys/[REDACTED]".to_owned(),
                "/keys/{{v1}}{key}".to_owned(),
                None
            ),
            (
                "/api/invites/[REDACTED]".to_owned(),
                "/api/invites/{invite_token}".to_owned(),
                None
            ),
            (
                "/api/users/7".to_owned(),
                "/api/users/{id}".to_owned(),
                None
            ),
        ]
    );
    assert_no_leak(
        &trail_text(&sink),
        &["RESET-SECRET", "URL-SECRET", "KEY-SECRET", "INVITE-SECRET"],
    );
    audit.shutdown().await.unwrap();
}

/// A user's own detector is application code: what it writes into its alerts (a reason
/// quoting a request, details holding a password) passes the same scrub as every event.
#[tokio::test]
async fn a_custom_detectors_alert_is_scrubbed() {
    struct Quoting;
    impl audit_layer::detect::Detector for Quoting {
        fn name(&self) -> &str {
            "quoting"
        }
        fn observe(&mut self, event: &AuditEvent, alerts: &mut Vec<AuditEvent>) {
            if event.action == "auth.login" {
                alerts.push(
                    AuditEvent::new(
                        Category::Alert,
                        "security.suspicious",
                        Outcome::Failure,
                        Actor::service("quoting"),
                    )
                    .with_reason("login body was password=REASON-SECRET&user=bob")
                    .with_detail("password", "DETAIL-SECRET")
                    .with_detail("note", "Authorization: Bearer NOTE-SECRET-0123456789")
                    .with_label("api_key", "LABEL-SECRET"),
                );
            }
        }
    }

    let (builder, sink) = memory_trail();
    let audit = builder.detector(Quoting).build().unwrap();
    audit
        .record(AuditEvent::new(
            Category::Auth,
            "auth.login",
            Outcome::Failure,
            Actor::user("bob"),
        ))
        .await
        .unwrap();
    audit.flush().await.unwrap();

    let alerts: Vec<_> = sink
        .events()
        .into_iter()
        .filter(|event| event.category == Category::Alert)
        .collect();
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    let alert = &alerts[0];
    assert_eq!(alert.action, "security.suspicious");
    assert_eq!(
        alert.reason.as_deref(),
        Some("login body was password=[REDACTED]&user=bob")
    );
    let details = alert.details.as_ref().unwrap();
    assert_eq!(details["password"], REDACTED);
    assert_eq!(alert.labels["api_key"], REDACTED);
    assert_no_leak(
        &trail_text(&sink),
        &[
            "REASON-SECRET",
            "DETAIL-SECRET",
            "NOTE-SECRET",
            "LABEL-SECRET",
        ],
    );
    audit.shutdown().await.unwrap();
}

/// A value that tower-http's `SetSensitiveRequestHeadersLayer` marks sensitive is never
/// copied into a record: not as a recorded header (even one the configuration names), not
/// as the user agent.
#[tokio::test]
async fn a_header_value_marked_sensitive_is_never_recorded() {
    use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;

    let (builder, sink) = memory_trail();
    let audit = builder
        .record_headers(["x-tenant", "x-partner-ref"])
        .build()
        .unwrap();
    let marked = [
        http::HeaderName::from_static("x-partner-ref"),
        http::header::USER_AGENT,
    ];
    // Outside the audit layer, as tower-http's docs place it: the mark is set before the
    // layer captures the request.
    let app = Router::new()
        .route("/hello", get(|| async { "hello" }))
        .layer(audit.layer())
        .layer(SetSensitiveRequestHeadersLayer::new(marked));
    let request = request_from("192.0.2.10:50000", "GET", "/hello")
        .header("x-tenant", "acme")
        .header("x-partner-ref", "PARTNER-SECRET")
        .header("user-agent", "agent/1 UA-SECRET")
        .body(Body::empty())
        .unwrap();
    let response = app.oneshot(request).await.unwrap();
    assert_eq!(response.status(), 200);
    audit.flush().await.unwrap();

    let event = only_event(&sink);
    let request = event.request.as_ref().unwrap();
    assert_eq!(request.headers["x-tenant"], "acme");
    assert_eq!(request.headers["x-partner-ref"], REDACTED);
    assert_eq!(
        event.source.as_ref().unwrap().user_agent.as_deref(),
        Some(REDACTED)
    );
    assert_no_leak(&trail_text(&sink), &["PARTNER-SECRET", "UA-SECRET"]);
    audit.shutdown().await.unwrap();
}

/// What the hostile campaign planted, field by field: the user agent, query parameters
/// under the names OAuth, OpenID Connect, SAML and AWS signatures use, forwarding entries,
/// the target, free text inside a snapshot's configuration value, and card numbers
/// anywhere. None of it is recorded; a card number keeps its last four digits.
#[tokio::test]
async fn secrets_in_every_free_text_field_and_under_every_common_name_are_not_recorded() {
    let (builder, sink) = memory_trail();
    let audit = builder.trusted_proxies(["10.0.0.0/8"]).build().unwrap();
    let app = Router::new()
        .route(
            "/callback",
            get(|audit: AuditContext| async move {
                audit.set_target("user:7 api_key=TARGET-S1");
                "ok"
            }),
        )
        .layer(audit.layer());
    let secret_params = [
        "jwt",
        "passphrase",
        "credentials",
        "authorization",
        "cookie",
        "sig",
        "otp",
        "pin",
        "code",
        "id_token",
        "X-Amz-Signature",
        "X-Amz-Credential",
        "X-Amz-Security-Token",
        "SAMLResponse",
        "client_assertion",
        "code_verifier",
    ];
    let query: Vec<String> = secret_params
        .iter()
        .enumerate()
        .map(|(i, name)| format!("{name}=QUERY-S{i}"))
        .chain([
            "zip_code=75001".to_owned(),
            "ref=4111111111111111".to_owned(),
        ])
        .collect();
    for user_agent in [
        "curl/8 Authorization: Bearer UA-S1",
        "bot api_key=UA-S2",
        "fetch https://u:UA-S3@h/",
        "pay 5500 0000 0000 0004",
    ] {
        let request = request_from(
            "10.0.0.2:1",
            "GET",
            &format!("/callback?{}", query.join("&")),
        )
        .header("user-agent", user_agent)
        .header("x-forwarded-for", "token=XFF-S1, 198.51.100.4")
        .body(Body::empty())
        .unwrap();
        app.clone().oneshot(request).await.unwrap();
    }
    let mut change = AuditEvent::new(
        Category::Sensitive,
        "config.change",
        Outcome::Success,
        Actor::user("1"),
    );
    change.before = Some(json!({"upstream": "retry=3 api_key=SNAP-S1 Bearer SNAP-S2xyz"}));
    change.after = Some(json!({"upstream": r#"password: "SNAP-S3" card 4111111111111111"#}));
    audit.record(change).await.unwrap();
    audit.shutdown().await.unwrap();
    let text = trail_text(&sink);
    let planted: Vec<String> = (0..secret_params.len())
        .map(|i| format!("QUERY-S{i}="))
        .chain(
            [
                "TARGET-S1",
                "UA-S1",
                "UA-S2",
                "UA-S3",
                "XFF-S1",
                "SNAP-S1",
                "SNAP-S2",
                "SNAP-S3",
            ]
            .map(str::to_owned),
        )
        .chain(["4111111111111111", "5500 0000 0000 0004"].map(str::to_owned))
        .collect();
    // `QUERY-S1=` would also match `QUERY-S10`: each marker is checked with what follows.
    for marker in &planted {
        let marker = marker.trim_end_matches('=');
        let leaked = text
            .match_indices(marker)
            .any(|(at, _)| !text[at + marker.len()..].starts_with(|c: char| c.is_ascii_digit()));
        assert!(!leaked, "{marker} leaked: {text}");
    }
    assert!(text.contains("zip_code=75001"), "{text}");
    assert!(text.contains("ref=************1111"), "{text}");
    assert!(text.contains("**** **** **** 0004"), "{text}");
    let event = sink.events_of("http.request").remove(0);
    assert_eq!(
        event.source.as_ref().unwrap().ip,
        Some("198.51.100.4".parse().unwrap())
    );
}
