//! Route coverage: the inventory of a router built with `audit_layer::coverage`, the gaps its
//! rules find, the start-up warning, and what a stored trail shows after the fact.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use audit_layer::coverage::{
    CoverageRules, RouteStatus, Router, TrailCoverage, any, delete, get, patch, post, put,
};
use audit_layer::file::JsonlFileSink;
use audit_layer::sensitive::Snapshot;
use audit_layer::{
    Actor, AuditContext, AuditEvent, AuditTrail, Auditable, BoxError, Category, Outcome, sensitive,
};
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{Method, StatusCode};
use common::demo::{audit_binary, read_trail};
use common::request_from;
use serde::Serialize;
use serde_json::Value;
use tower::ServiceExt;

#[derive(Clone, Debug, Serialize, Auditable)]
#[audit(resource = "user")]
struct User {
    #[audit(id)]
    id: u64,
    role: String,
}

#[derive(Clone, Default)]
struct AppState {
    users: Arc<Mutex<BTreeMap<u64, User>>>,
}

impl Snapshot<AppState> for User {
    type Key = u64;

    async fn load(state: &AppState, key: &u64) -> Result<Option<Self>, BoxError> {
        Ok(state.users.lock().expect("lock").get(key).cloned())
    }
}

#[sensitive(action = "user.role.change", resource = User, key = id)]
async fn change_role(State(state): State<AppState>, Path(id): Path<u64>) -> StatusCode {
    if let Some(user) = state.users.lock().expect("lock").get_mut(&id) {
        user.role = "admin".to_owned();
    }
    StatusCode::OK
}

/// A state holding user 2, a viewer.
fn with_a_viewer() -> AppState {
    let state = AppState::default();
    state.users.lock().expect("lock").insert(
        2,
        User {
            id: 2,
            role: "viewer".to_owned(),
        },
    );
    state
}

async fn export_users(audit: AuditContext) -> &'static str {
    audit.set_action("user.export");
    audit.mark_sensitive();
    "id,role"
}

async fn plain() -> StatusCode {
    StatusCode::OK
}

async fn list_users() -> &'static str {
    "[]"
}

/// A router with one route per rule, audited or not.
fn app() -> Router<AppState> {
    Router::new()
        .route("/admin/users/{id}/role", put(change_role))
        .route("/admin/users", get(list_users))
        .route("/admin/cache", delete(plain))
        .route("/admin/export-users", get(export_users))
        .route("/reports/export", get(plain))
        .route("/api-keys", post(plain))
        .route("/settings/theme", patch(plain).get(plain))
        .route("/login", post(plain))
        .route(
            "/admin/reindex",
            post(plain).exempt("rebuilds a cache; changes no data"),
        )
}

fn gaps(router: &Router<AppState>) -> Vec<(String, String)> {
    router
        .coverage()
        .gaps()
        .into_iter()
        .map(|gap| (gap.method.clone(), gap.path.clone()))
        .collect()
}

fn pair(method: &str, path: &str) -> (String, String) {
    (method.to_owned(), path.to_owned())
}

#[test]
fn each_rule_finds_its_gap_and_audited_routes_are_not_gaps() {
    let router = app();
    assert_eq!(
        gaps(&router),
        [
            pair("DELETE", "/admin/cache"),
            pair("POST", "/api-keys"),
            pair("GET", "/reports/export"),
            pair("PATCH", "/settings/theme"),
        ]
    );
    let report = router.coverage();
    assert_eq!(report.routes().len(), 10);
    let route = |method, path| report.route(method, path).expect("routed");
    assert_eq!(
        route("PUT", "/admin/users/{id}/role").status,
        RouteStatus::Sensitive
    );
    assert!(
        route("PUT", "/admin/users/{id}/role")
            .handler
            .as_deref()
            .is_some_and(|h| h.ends_with("change_role")),
        "{report:?}"
    );
    assert_eq!(
        route("GET", "/admin/export-users").status,
        RouteStatus::Manual
    );
    assert_eq!(
        route("GET", "/admin/users").sensitive_because,
        None,
        "a read"
    );
    assert_eq!(route("POST", "/login").sensitive_because, None);
    assert_eq!(
        route("POST", "/admin/reindex").status,
        RouteStatus::Exempt {
            reason: "rebuilds a cache; changes no data".to_owned()
        }
    );
    assert_eq!(
        route("DELETE", "/admin/cache").sensitive_because.as_deref(),
        Some("changes state under /admin")
    );
    assert_eq!(
        route("POST", "/api-keys").sensitive_because.as_deref(),
        Some("changes state and names `key`")
    );
    assert_eq!(route("GET", "/settings/theme").sensitive_because, None);

    // For a test failure: one line per gap, then the count.
    let text = report.to_string();
    assert!(
        text.contains("gap: DELETE /admin/cache changes state under /admin and is request only"),
        "{text}"
    );
    assert!(
        text.ends_with("10 route(s), 7 sensitive-looking, 4 gap(s)"),
        "{text}"
    );
}

#[test]
fn nested_and_merged_routers_are_reported_with_their_prefixes() {
    let billing: Router<AppState> = Router::new()
        .route("/payments", post(plain))
        .route("/", get(plain));
    let admin: Router<AppState> = Router::new().route("/flags/{name}", put(plain));
    let users: Router<AppState> = Router::new().route("/{id}/role", put(change_role));
    let router = Router::new()
        .nest("/billing", billing)
        .nest("/admin", admin.nest("/users", users))
        .merge(Router::new().route("/transfers", any(plain)));
    assert_eq!(
        gaps(&router),
        [
            pair("PUT", "/admin/flags/{name}"),
            pair("POST", "/billing/payments"),
            pair("*", "/transfers"),
        ]
    );
    let report = router.coverage();
    assert!(report.route("GET", "/billing").is_some(), "{report:?}");
    assert_eq!(
        report
            .route("PUT", "/admin/users/{id}/role")
            .expect("nested")
            .status,
        RouteStatus::Sensitive
    );
    assert_eq!(
        report
            .route("*", "/transfers")
            .expect("any")
            .sensitive_because
            .as_deref(),
        Some("takes any method and names `transfer`")
    );
}

#[test]
fn services_are_opaque_and_rules_can_change_and_exempt() {
    let service = tower::service_fn(|_request: axum::extract::Request| async {
        Ok::<_, std::convert::Infallible>(StatusCode::OK)
    });
    let router: Router<AppState> = Router::new()
        .route_service("/admin/legacy", service)
        .nest_service("/static", service)
        .route("/internal/jobs", post(plain))
        .route("/invoices/{id}", delete(plain))
        .route("/admin/cache", delete(plain));
    assert_eq!(
        gaps(&router),
        [pair("DELETE", "/admin/cache"), pair("*", "/admin/legacy")]
    );
    assert_eq!(
        router
            .coverage()
            .route("*", "/static/{*rest}")
            .expect("nested service")
            .status,
        RouteStatus::Opaque
    );

    let rules = CoverageRules::default()
        .admin_prefix("/internal")
        .word("invoice")
        .exempt(Method::DELETE, "/admin/cache", "clears a cache")
        .exempt(Method::GET, "/admin/legacy", "not this method");
    let router = router.rules(rules);
    assert_eq!(
        gaps(&router),
        [
            pair("*", "/admin/legacy"),
            pair("POST", "/internal/jobs"),
            pair("DELETE", "/invoices/{id}"),
        ]
    );
    let router = router.rules(
        CoverageRules::default()
            .admin_prefix("/internal")
            .word("invoice")
            .exempt(Method::DELETE, "/admin/cache", "clears a cache")
            .exempt_path("/admin/legacy", "read-only pages")
            .exempt(
                Method::POST,
                "/internal/jobs",
                "enqueues, the job records itself",
            )
            .exempt(Method::DELETE, "/invoices/{id}", "drafts only"),
    );
    assert!(router.coverage().gaps().is_empty(), "{}", router.coverage());
    let nothing = router.rules(CoverageRules::empty());
    assert!(nothing.coverage().gaps().is_empty());
}

#[test]
fn the_report_serializes_for_an_admin_endpoint() {
    let json = serde_json::to_value(app().coverage()).expect("json");
    assert_eq!(json["routes"].as_array().map(Vec::len), Some(10));
    assert_eq!(json["gaps"].as_array().map(Vec::len), Some(4));
    let exempt = json["routes"]
        .as_array()
        .expect("routes")
        .iter()
        .find(|r| r["path"] == "/admin/reindex")
        .expect("exempt route");
    assert_eq!(exempt["status"], "exempt");
    assert_eq!(exempt["reason"], "rebuilds a cache; changes no data");
    assert_eq!(exempt["method"], "POST");
    assert_eq!(json["gaps"][0]["status"], "request_only");
    assert_eq!(
        json["gaps"][0]["sensitive_because"],
        "changes state under /admin"
    );
}

/// A `tracing` writer that keeps what it is given.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn into_router_warns_once_per_gap() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        let _router: axum::Router<AppState> = app().into_router();
    });
    let log = String::from_utf8(captured.0.lock().expect("lock").clone()).expect("utf-8");
    let warnings: Vec<_> = log.lines().filter(|l| l.contains("WARN")).collect();
    assert_eq!(warnings.len(), 4, "{log}");
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("path=/api-keys") && w.contains("method=POST")),
        "{log}"
    );
}

#[tokio::test]
async fn the_router_still_routes_and_records_as_axums() {
    let trail = AuditTrail::builder()
        .sink(audit_layer::sink::MemorySink::new())
        .build()
        .expect("trail");
    let state = with_a_viewer();
    let app: axum::Router = app()
        .route("/anything", any(plain))
        .layer(trail.layer())
        .with_state(state.clone())
        .into();
    for (method, uri, status) in [
        ("PUT", "/admin/users/2/role", StatusCode::OK),
        ("GET", "/admin/export-users", StatusCode::OK),
        ("DELETE", "/anything", StatusCode::OK),
        ("POST", "/admin/users", StatusCode::METHOD_NOT_ALLOWED),
    ] {
        let request = request_from("192.0.2.1:1000", method, uri)
            .body(Body::empty())
            .expect("request");
        let response = app.clone().oneshot(request).await.expect("infallible");
        assert_eq!(response.status(), status, "{method} {uri}");
    }
    assert_eq!(state.users.lock().expect("lock")[&2].role, "admin");
    trail.shutdown().await.expect("shutdown");
}

/// A trail written through a router with an audited, a manual, an unaudited and an exempt
/// sensitive-looking route, and authentication events with and without a source IP.
async fn write_trail(dir: &std::path::Path) {
    let trail = AuditTrail::builder()
        .sink(JsonlFileSink::new(dir))
        .build()
        .expect("trail");
    let state = with_a_viewer();
    async fn forbidden() -> StatusCode {
        StatusCode::FORBIDDEN
    }
    async fn forgot_its_action(audit: AuditContext) -> StatusCode {
        audit.detail("note", "names no action");
        StatusCode::OK
    }
    let app: axum::Router = Router::new()
        .route("/admin/users/{id}/role", put(change_role))
        .route("/admin/export-users", get(export_users))
        .route("/admin/cache", delete(plain))
        .route("/admin/flags", post(forbidden))
        .route("/settings", put(forgot_its_action))
        .layer(trail.layer())
        .with_state(state)
        .into();
    for (method, uri) in [
        ("PUT", "/admin/users/2/role"),
        ("GET", "/admin/export-users"),
        ("DELETE", "/admin/cache"),
        ("DELETE", "/admin/cache"),
        ("POST", "/admin/flags"),
        ("PUT", "/settings"),
        ("POST", "/admin/nowhere"),
    ] {
        let request = request_from("192.0.2.1:1000", method, uri)
            .body(Body::empty())
            .expect("request");
        app.clone().oneshot(request).await.expect("infallible");
    }
    // A login recorded from a background job, with no request and so no source.
    let login = AuditEvent::new(
        Category::Auth,
        audit_layer::auth::LOGIN,
        Outcome::Success,
        Actor::user("7"),
    );
    trail.record(login).await.expect("record");
    trail.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn a_stored_trail_shows_run_time_gaps_and_auth_events_without_an_ip() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_trail(dir.path()).await;

    let found = TrailCoverage::scan(dir.path(), &CoverageRules::default()).expect("scan");
    assert!(!found.is_clean());
    assert_eq!(found.events, read_trail(dir.path()).len() as u64);
    let unaudited: Vec<_> = found
        .unaudited
        .iter()
        .map(|u| (u.method.as_str(), u.route.as_str(), u.count))
        .collect();
    // The denied request never reached its handler, and no route matched the last one.
    assert_eq!(
        unaudited,
        [("DELETE", "/admin/cache", 2), ("PUT", "/settings", 1)]
    );
    assert_eq!(found.auth_without_ip.len(), 1);
    assert_eq!(found.auth_without_ip[0].action, "auth.login");
    assert_eq!(found.auth_without_ip[0].count, 1);

    let exempted = CoverageRules::default().exempt(Method::DELETE, "/admin/cache", "a cache");
    let found = TrailCoverage::scan(dir.path(), &exempted).expect("scan");
    assert_eq!(found.unaudited.len(), 1);

    // The command: exit 1 with findings, as JSON or lines for people.
    let output = std::process::Command::new(audit_binary())
        .args(["coverage", dir.path().to_str().expect("utf-8")])
        .output()
        .expect("run audit");
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let json: Value = serde_json::from_slice(&output.stdout).expect("json");
    assert_eq!(json["unaudited"][0]["route"], "/admin/cache");
    assert_eq!(json["auth_without_ip"][0]["action"], "auth.login");
    let output = std::process::Command::new(audit_binary())
        .args([
            "coverage",
            dir.path().to_str().expect("utf-8"),
            "--format",
            "table",
        ])
        .output()
        .expect("run audit");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("unaudited: DELETE /admin/cache"), "{text}");
    assert!(
        text.contains("no source IP: 1 event(s) of auth.login"),
        "{text}"
    );
}

#[test]
fn audit_coverage_of_a_clean_or_missing_trail() {
    let dir = tempfile::tempdir().expect("tempdir");
    let output = std::process::Command::new(audit_binary())
        .args(["coverage", dir.path().to_str().expect("utf-8")])
        .output()
        .expect("run audit");
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let output = std::process::Command::new(audit_binary())
        .args(["coverage", "/nonexistent/audit-log"])
        .output()
        .expect("run audit");
    assert_eq!(output.status.code(), Some(2));
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(err.starts_with("audit: /nonexistent/audit-log"), "{err}");
}
