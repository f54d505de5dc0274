//! The viewer over HTTP: pages of a real trail, filters and paging, one event with its
//! changes, escaping of hostile values, the security headers, and every view recorded.

mod common;

use audit_layer::event::{Change, Source};
use audit_layer::file::JsonlFileSink;
use audit_layer::viewer::Viewer;
use audit_layer::{Actor, AuditEvent, AuditTrail, Category, Outcome};
use axum::Router;
use axum::body::Body;
use axum::http::StatusCode;
use common::demo::read_trail;
use http_body_util::BodyExt;
use serde_json::json;
use tower::ServiceExt;

const HOSTILE: &str = "<script>alert(1)</script>\u{202e}gpj.exe";

/// A trail of 30 requests by bob, a hostile username's failed login, and a role change.
async fn trail_with_events(dir: &std::path::Path) -> AuditTrail {
    let trail = AuditTrail::builder()
        .sink(JsonlFileSink::new(dir))
        .build()
        .expect("trail");
    for n in 0..30 {
        let event = AuditEvent::new(
            Category::Request,
            "http.request",
            Outcome::Success,
            Actor::user("2").with_name("bob"),
        )
        .with_target(format!("item:{n}"));
        trail.record(event).await.expect("record");
    }
    let mut login = AuditEvent::new(
        Category::Auth,
        "auth.login",
        Outcome::Failure,
        Actor::anonymous(),
    )
    .with_detail("username", HOSTILE);
    let mut source = Source::default();
    source.ip = Some("203.0.113.9".parse().expect("ip"));
    login.source = Some(source);
    trail.record(login).await.expect("record");
    let mut change = AuditEvent::new(
        Category::Sensitive,
        "user.role.change",
        Outcome::Success,
        Actor::user("1").with_name("alice"),
    )
    .with_target("user:2");
    change.changes = Some(vec![
        Change::value("role", Some(json!("viewer")), Some(json!("admin"))),
        Change::redacted("password_hash"),
    ]);
    trail.record(change).await.expect("record");
    trail.flush().await.expect("flush");
    trail
}

fn app(trail: &AuditTrail, dir: &std::path::Path) -> Router {
    assert_eq!(trail.trail_dir(), Some(dir));
    Router::new()
        .nest(
            "/admin/audit",
            trail.viewer().expect("a file trail").page_size(10).router(),
        )
        .layer(trail.layer())
}

async fn get(app: &Router, uri: &str) -> (StatusCode, http::HeaderMap, String) {
    let request = common::request_from("192.0.2.5:4000", "GET", uri)
        .body(Body::empty())
        .expect("request");
    let response = app.clone().oneshot(request).await.expect("infallible");
    let status = response.status();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (
        status,
        headers,
        String::from_utf8(body.to_vec()).expect("utf-8"),
    )
}

#[tokio::test]
async fn the_events_page_pages_filters_and_escapes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let trail = trail_with_events(dir.path()).await;
    let app = app(&trail, dir.path());

    let (status, headers, page) = get(&app, "/admin/audit").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let csp = headers["content-security-policy"].to_str().expect("csp");
    assert!(
        csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["cache-control"], "no-store");
    // Newest first: the role change, then the login (its username only in the detail page).
    assert!(page.contains("user.role.change"), "{page}");
    // The list shows a change in brief, a redacted field as redacted.
    assert!(
        page.contains("role: viewer → <span class=\"changed\">admin</span><br>password_hash: <span class=\"redacted\">redacted</span>"),
        "{page}"
    );
    assert!(!page.contains("<script>"), "{page}");
    assert!(
        page.contains("<label for=\"f-actor\">"),
        "every input has a label"
    );
    // No resource from anywhere else: every link and source is the viewer's own.
    for attribute in ["href=\"", "src=\""] {
        for part in page.split(attribute).skip(1) {
            assert!(
                part.starts_with("/admin/audit"),
                "{attribute}{}",
                &part[..40.min(part.len())]
            );
        }
    }

    // Pages of ten, by cursor, with the filter kept in the link.
    let (_, _, first) = get(&app, "/admin/audit?actor=bob").await;
    assert_eq!(first.matches("<tr><td>").count(), 10, "{first}");
    assert!(!first.contains("user.role.change"));
    let older = first
        .split("href=\"")
        .find(|part| part.contains("before="))
        .and_then(|part| part.split('"').next())
        .expect("an older page link")
        .replace("&amp;", "&");
    assert!(older.contains("actor=bob"), "{older}");
    let (_, _, second) = get(&app, &older).await;
    assert_eq!(second.matches("<tr><td>").count(), 10);
    assert_ne!(first, second);

    // Free text and a bad filter.
    let (_, _, found) = get(&app, "/admin/audit?text=alert").await;
    assert_eq!(found.matches("<tr><td>").count(), 1, "{found}");
    let (status, _, bad) = get(&app, "/admin/audit?ip=not-an-ip").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(bad.contains("not-an-ip"), "{bad}");
    trail.shutdown().await.expect("shutdown");

    // Each view is an event of its own.
    let views: Vec<_> = read_trail(dir.path())
        .into_iter()
        .filter(|e| e["action"] == "audit.view")
        .collect();
    assert_eq!(views.len(), 5, "{views:#?}");
    assert_eq!(views[1]["request"]["query"], "actor=bob");
    assert_eq!(views[0]["details"]["view"], "events");
}

#[tokio::test]
async fn one_event_shows_its_changes_and_hostile_values_as_text() {
    let dir = tempfile::tempdir().expect("tempdir");
    let trail = trail_with_events(dir.path()).await;
    let app = app(&trail, dir.path());
    let events = read_trail(dir.path());
    let seq_of = |action: &str| {
        events
            .iter()
            .find(|e| e["action"] == action)
            .and_then(|e| e["seq"].as_u64())
            .expect("event")
    };

    let (status, _, page) = get(
        &app,
        &format!("/admin/audit/events/{}", seq_of("user.role.change")),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("<caption>What changed</caption>"), "{page}");
    assert!(
        page.contains(
            "<tr class=\"changed\"><th scope=\"row\">role</th><td>viewer</td><td>admin</td></tr>"
        ),
        "{page}"
    );
    assert!(
        page.contains("redacted: changed, values not recorded"),
        "{page}"
    );

    let (_, _, login) = get(
        &app,
        &format!("/admin/audit/events/{}", seq_of("auth.login")),
    )
    .await;
    assert!(
        login.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{login}"
    );
    assert!(
        login.contains("\\u{202e}"),
        "the bidi override is shown, not obeyed"
    );
    assert!(!login.contains('\u{202e}') && !login.contains("<script>"));

    let (status, _, _) = get(&app, "/admin/audit/events/999999").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = get(&app, "/admin/audit/events/abc").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, headers, css) = get(&app, "/admin/audit/viewer.css").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers["content-type"]
            .to_str()
            .expect("type")
            .starts_with("text/css")
    );
    assert!(css.contains("table"));
    trail.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn without_the_audit_layer_the_viewer_refuses_to_show_anything() {
    let dir = tempfile::tempdir().expect("tempdir");
    let trail = trail_with_events(dir.path()).await;
    let bare: Router = Router::new().nest("/admin/audit", Viewer::new(dir.path()).router());
    let (status, _, body) = get(&bare, "/admin/audit").await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(body.contains("audit layer"), "{body}");
    trail.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn a_trail_without_files_has_no_viewer() {
    let (builder, _sink) = common::memory_trail();
    let trail = builder.build().expect("trail");
    assert_eq!(trail.trail_dir(), None);
    let error = trail.viewer().expect_err("no file trail to view");
    assert!(matches!(error, audit_layer::ConfigError::NoFileTrail));
    assert!(error.to_string().contains("JsonlFileSink"), "{error}");
    trail.shutdown().await.expect("shutdown");
}

/// Two role changes of user:2 a minute apart, with their snapshots, and a grant alert.
async fn history(dir: &std::path::Path) -> AuditTrail {
    let trail = AuditTrail::builder()
        .sink(JsonlFileSink::new(dir))
        .build()
        .expect("trail");
    for (minute, old, new) in [(3, "viewer", "editor"), (4, "editor", "admin")] {
        let time = audit_layer::event::Timestamp::parse(&format!("2026-12-04T14:0{minute}:00Z"))
            .expect("time");
        let mut change = AuditEvent::at(
            time,
            Category::Sensitive,
            "user.role.change",
            Outcome::Success,
            Actor::user("1").with_name("alice"),
        )
        .with_target("user:2");
        change.before = Some(json!({"id": 2, "name": "bob", "role": old}));
        change.after = Some(json!({"id": 2, "name": "bob", "role": new}));
        trail.record(change).await.expect("record");
    }
    let alert = AuditEvent::new(
        Category::Alert,
        "security.privilege.grant",
        Outcome::Success,
        Actor::user("1"),
    )
    .with_target("user:2");
    trail.record(alert).await.expect("record");
    let export = AuditEvent::new(
        Category::Request,
        "http.request",
        Outcome::Success,
        Actor::user("=cmd|' /C calc'!A0"),
    )
    .with_target("user:2");
    trail.record(export).await.expect("record");
    trail.flush().await.expect("flush");
    trail
}

#[tokio::test]
async fn a_targets_history_shows_its_state_as_of_a_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let trail = history(dir.path()).await;
    let app = app(&trail, dir.path());

    let (status, _, now) = get(&app, "/admin/audit/targets/user%3A2").await;
    assert_eq!(status, StatusCode::OK, "{now}");
    assert!(now.contains("History of user:2"), "{now}");
    assert!(now.contains("&quot;role&quot;: &quot;admin&quot;"), "{now}");
    let (_, _, earlier) = get(
        &app,
        "/admin/audit/targets/user%3A2?at=2026-12-04T14:03:30Z",
    )
    .await;
    assert!(
        earlier.contains("&quot;role&quot;: &quot;editor&quot;"),
        "{earlier}"
    );
    let (_, _, before) = get(
        &app,
        "/admin/audit/targets/user%3A2?at=2026-12-04T14:00:00Z",
    )
    .await;
    assert!(
        before.contains("No sensitive event recorded its state by then"),
        "{before}"
    );
    let (status, _, _) = get(&app, "/admin/audit/targets/user%3A2?at=yesterday").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // The alerts page, and alice's timeline.
    let (_, _, alerts) = get(&app, "/admin/audit/alerts").await;
    assert_eq!(alerts.matches("<tr><td>").count(), 1, "{alerts}");
    assert!(alerts.contains("security.privilege.grant"));
    let (_, _, alice) = get(&app, "/admin/audit/actors/1").await;
    assert_eq!(alice.matches("<tr><td>").count(), 3, "{alice}");
    assert!(
        alice.contains("href=\"/admin/audit/targets/user%3A2\""),
        "{alice}"
    );
    trail.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn exports_stream_the_filtered_view_and_are_audited() {
    let dir = tempfile::tempdir().expect("tempdir");
    let trail = history(dir.path()).await;
    let app = app(&trail, dir.path());

    let (status, headers, csv) = get(&app, "/admin/audit/export.csv?target=user%3A2").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers["content-type"]
            .to_str()
            .expect("type")
            .starts_with("text/csv")
    );
    assert!(
        headers["content-disposition"]
            .to_str()
            .expect("disposition")
            .contains("attachment")
    );
    let rows: Vec<_> = csv.lines().collect();
    assert_eq!(rows.len(), 5, "{csv}");
    assert!(rows[0].starts_with("seq,time,actor_id"));
    // A hostile actor id stays text in a spreadsheet.
    assert!(csv.contains("\"'=cmd|' /C calc'!A0\""), "{csv}");

    // The sensitive events, the CSV export among them (durable before its response).
    let stored: Vec<String> = read_trail(dir.path())
        .into_iter()
        .filter(|e| e["category"] == "sensitive")
        .map(|e| e.to_string())
        .collect();
    assert_eq!(stored.len(), 3);
    let (_, headers, ndjson) = get(&app, "/admin/audit/export.ndjson?category=sensitive").await;
    assert_eq!(headers["content-type"], "application/x-ndjson");
    let exported: Vec<String> = ndjson
        .lines()
        .map(|line| {
            serde_json::from_str::<serde_json::Value>(line)
                .expect("json")
                .to_string()
        })
        .collect();
    assert_eq!(exported, stored);
    trail.shutdown().await.expect("shutdown");
    let exports: Vec<_> = read_trail(dir.path())
        .into_iter()
        .filter(|e| e["action"] == "audit.export")
        .collect();
    assert_eq!(exports.len(), 2);
    assert_eq!(
        exports[0]["category"], "sensitive",
        "durable before the download"
    );
    assert_eq!(exports[1]["details"]["format"], "ndjson");
}

#[tokio::test]
async fn the_status_page_shows_followers_and_coverage_gaps() {
    let dir = tempfile::tempdir().expect("tempdir");
    let trail = AuditTrail::builder()
        .sink(JsonlFileSink::new(dir.path()))
        .follower(audit_layer::index::IndexFollower::new())
        .build()
        .expect("trail");
    async fn flush() {}
    let routes: audit_layer::coverage::Router = audit_layer::coverage::Router::new()
        .route("/admin/cache", audit_layer::coverage::post(flush));
    let viewer = Viewer::new(dir.path()).coverage(routes.coverage());
    let app = Router::new()
        .nest("/admin/audit", viewer.router())
        .layer(trail.layer());
    trail
        .record(AuditEvent::new(
            Category::System,
            "test",
            Outcome::Success,
            Actor::service("t"),
        ))
        .await
        .expect("record");
    trail.flush().await.expect("flush");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (_, _, status) = get(&app, "/admin/audit/status").await;
        if status.contains("<td>index</td>") {
            assert!(status.contains("1 gap(s)"), "{status}");
            assert!(status.contains("<td>/admin/cache</td>"), "{status}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{status}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    trail.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn the_chain_status_is_checked_incrementally_and_shows_a_break() {
    let dir = tempfile::tempdir().expect("tempdir");
    let trail = trail_with_events(dir.path()).await;
    let app = app(&trail, dir.path());
    // The seq the status page says the chain is verified up to.
    let verified = |status: &str| -> u64 {
        status
            .split("up to seq ")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .and_then(|seq| seq.parse().ok())
            .unwrap_or_else(|| panic!("a verified seq: {status}"))
    };
    let last = read_trail(dir.path())
        .last()
        .and_then(|e| e["seq"].as_u64())
        .expect("seq");
    let (_, _, status) = get(&app, "/admin/audit/status").await;
    assert!(verified(&status) >= last, "{last} {status}");
    // The next look checks only what came since.
    trail
        .record(AuditEvent::new(
            Category::System,
            "later",
            Outcome::Success,
            Actor::service("t"),
        ))
        .await
        .expect("record");
    trail.flush().await.expect("flush");
    let now = read_trail(dir.path())
        .last()
        .and_then(|e| e["seq"].as_u64())
        .expect("seq");
    let (_, _, status) = get(&app, "/admin/audit/status").await;
    assert!(now > last && verified(&status) >= now, "{now} {status}");
    trail.shutdown().await.expect("shutdown");

    // An altered line: a viewer that looks from the start says where the chain breaks.
    let file = audit_layer::file::trail_files(dir.path())
        .expect("files")
        .remove(0);
    let text = std::fs::read_to_string(&file).expect("read");
    assert!(text.contains("\"target\":\"item:3\""), "{text}");
    std::fs::write(
        &file,
        text.replacen("\"target\":\"item:3\"", "\"target\":\"item:9\"", 1),
    )
    .expect("write");
    let (code, out, err) = common::demo::run_audit(["verify", dir.path().to_str().expect("utf-8")]);
    assert_eq!(code, Some(1), "{out}{err}");
    let trail = AuditTrail::builder()
        .sink(audit_layer::sink::MemorySink::new())
        .build()
        .expect("trail");
    let (_, _, broken) = get(&app_over(&trail, dir.path()), "/admin/audit/status").await;
    assert!(broken.contains("The chain breaks"), "{broken}");
    trail.shutdown().await.expect("shutdown");
}

/// A viewer of `dir` behind the layer of another trail (so its views are not written into
/// `dir`).
fn app_over(trail: &AuditTrail, dir: &std::path::Path) -> Router {
    Router::new()
        .nest("/admin/audit", Viewer::new(dir).router())
        .layer(trail.layer())
}

#[tokio::test]
async fn new_events_arrive_live_as_rows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let trail = trail_with_events(dir.path()).await;
    let views = AuditTrail::builder()
        .sink(audit_layer::sink::MemorySink::new())
        .build()
        .expect("trail");
    let app = app_over(&views, dir.path());
    let (_, _, page) = get(&app, "/admin/audit?actor=alice").await;
    let live = page
        .split("data-live=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a live table")
        .replace("&amp;", "&");
    assert!(
        live.starts_with("/admin/audit/live?actor=alice&after="),
        "{live}"
    );
    assert!(page.contains("<script src=\"/admin/audit/viewer.js\" defer></script>"));

    let request = common::request_from("192.0.2.5:4000", "GET", &live)
        .body(Body::empty())
        .expect("request");
    let response = app.clone().oneshot(request).await.expect("infallible");
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut body = response.into_body().into_data_stream();
    // Bob's event does not match; alice's new one does.
    for (id, name) in [("2", "bob"), ("1", "alice")] {
        let event = AuditEvent::new(
            Category::Sensitive,
            "config.update",
            Outcome::Success,
            Actor::user(id).with_name(name),
        )
        .with_target("config:<b>x</b>");
        trail.record(event).await.expect("record");
    }
    trail.flush().await.expect("flush");
    let mut received = String::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while !received.contains("event: row") {
        use futures_util::StreamExt as _;
        let chunk = tokio::time::timeout_at(deadline, body.next())
            .await
            .expect("a row within 10 s")
            .expect("the stream goes on")
            .expect("bytes");
        received.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert_eq!(received.matches("event: row").count(), 1, "{received}");
    assert!(
        received.contains("config.update") && received.contains("alice"),
        "{received}"
    );
    assert!(
        received.contains("config:&lt;b&gt;x&lt;/b&gt;"),
        "{received}"
    );
    let (status, headers, script) = get(&app, "/admin/audit/viewer.js").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers["content-type"]
            .to_str()
            .expect("type")
            .starts_with("text/javascript")
    );
    assert!(script.contains("EventSource"));
    trail.shutdown().await.expect("shutdown");
    views.shutdown().await.expect("shutdown");
}
