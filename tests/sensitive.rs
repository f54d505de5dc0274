//! Sensitive handlers: before, after and changes recorded with no audit code in the handler.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use audit_layer::event::Change;
use audit_layer::sensitive::Snapshot;
use audit_layer::sink::MemorySink;
use audit_layer::{
    AuditContext, AuditEvent, AuditTrail, Auditable, BoxError, Category, Outcome, sensitive,
};
use axum::body::Body;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use common::{memory_trail, only_event, request_from};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tower::ServiceExt;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Role {
    Admin,
    Viewer,
}

#[derive(Clone, Debug, Serialize, Deserialize, Auditable)]
struct Address {
    city: String,
    street: String,
}

#[derive(Clone, Debug, Serialize, Auditable)]
#[audit(resource = "user")]
struct User {
    #[audit(id)]
    id: u64,
    name: String,
    role: Role,
    #[audit(redact)]
    password_hash: String,
    #[audit(skip)]
    last_seen: u64,
    address: Address,
    tags: Vec<String>,
    #[audit(rename = "manager")]
    manager_id: Option<u64>,
}

#[derive(Default)]
struct Db {
    users: Mutex<BTreeMap<u64, User>>,
    fail_loads: AtomicBool,
}

#[derive(Clone, Default)]
struct AppState {
    db: Arc<Db>,
}

impl Snapshot<AppState> for User {
    type Key = u64;

    async fn load(state: &AppState, key: &u64) -> Result<Option<Self>, BoxError> {
        if state.db.fail_loads.load(Ordering::SeqCst) {
            return Err("database unavailable".into());
        }
        Ok(state.db.users.lock().unwrap().get(key).cloned())
    }
}

fn bob() -> User {
    User {
        id: 2,
        name: "bob".into(),
        role: Role::Viewer,
        password_hash: "$argon2id$secret-hash".into(),
        last_seen: 1,
        address: Address {
            city: "Paris".into(),
            street: "Rue A".into(),
        },
        tags: vec!["a".into()],
        manager_id: None,
    }
}

#[derive(Deserialize)]
struct RoleChange {
    role: Role,
}

/// An authorization extractor: only `x-role: admin` passes.
struct Admin;

impl<S: Send + Sync> FromRequestParts<S> for Admin {
    type Rejection = StatusCode;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, StatusCode> {
        match parts.headers.get("x-role") {
            Some(role) if role == "admin" => Ok(Admin),
            _ => Err(StatusCode::FORBIDDEN),
        }
    }
}

#[sensitive(action = "user.role.change", resource = User, key = id)]
async fn change_role(
    _admin: Admin,
    State(app): State<AppState>,
    Path(id): Path<u64>,
    Json(body): Json<RoleChange>,
) -> Result<Json<User>, StatusCode> {
    let mut users = app.db.users.lock().unwrap();
    let user = users.get_mut(&id).ok_or(StatusCode::NOT_FOUND)?;
    user.role = body.role;
    user.last_seen += 1;
    Ok(Json(user.clone()))
}

#[derive(Deserialize)]
struct NewUser {
    name: String,
    password: String,
}

#[sensitive(action = "user.create", resource = User, create, capture_body)]
async fn create_user(
    State(app): State<AppState>,
    Json(body): Json<NewUser>,
) -> Result<(StatusCode, Json<User>), StatusCode> {
    if body.name.is_empty() {
        return Err(StatusCode::UNPROCESSABLE_ENTITY);
    }
    let mut users = app.db.users.lock().unwrap();
    let id = users.keys().max().copied().unwrap_or(0) + 1;
    let user = User {
        id,
        name: body.name,
        role: Role::Viewer,
        password_hash: format!("hash-of-{}", body.password.len()),
        last_seen: 0,
        address: Address {
            city: "Lyon".into(),
            street: "Rue B".into(),
        },
        tags: vec![],
        manager_id: None,
    };
    users.insert(id, user.clone());
    Ok((StatusCode::CREATED, Json(user)))
}

#[sensitive(action = "user.delete", resource = User, key = id)]
async fn delete_user(State(app): State<AppState>, Path(id): Path<u64>) -> StatusCode {
    match app.db.users.lock().unwrap().remove(&id) {
        Some(_) => StatusCode::NO_CONTENT,
        None => StatusCode::NOT_FOUND,
    }
}

#[derive(Deserialize)]
struct Move {
    user: u64,
    city: String,
    fail_after_write: bool,
}

/// Changes the address, then fails if asked: a partly applied change.
#[sensitive(action = "user.move", resource = User, key = body.user)]
async fn move_user(State(app): State<AppState>, Json(body): Json<Move>) -> StatusCode {
    if let Some(user) = app.db.users.lock().unwrap().get_mut(&body.user) {
        user.address.city = body.city.clone();
    }
    if body.fail_after_write {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::OK
    }
}

/// Fails before changing anything.
#[sensitive(action = "user.rename", resource = User, key = id)]
async fn rename_fails(State(_app): State<AppState>, Path(id): Path<u64>) -> Result<(), StatusCode> {
    let _ = id;
    Err(StatusCode::CONFLICT)
}

#[sensitive(action = "user.password.change", resource = User, key = id)]
async fn set_password(State(app): State<AppState>, Path(id): Path<u64>) -> StatusCode {
    if let Some(user) = app.db.users.lock().unwrap().get_mut(&id) {
        user.password_hash = "$argon2id$new-secret-hash".into();
    }
    StatusCode::NO_CONTENT
}

#[sensitive(action = "user.touch", resource = User, key = id, on_load_error = "refuse")]
async fn strict_touch(State(app): State<AppState>, Path(id): Path<u64>) -> StatusCode {
    if let Some(user) = app.db.users.lock().unwrap().get_mut(&id) {
        user.last_seen += 1;
    }
    StatusCode::OK
}

#[sensitive(action = "user.explode", resource = User, key = id)]
async fn explode(State(_app): State<AppState>, Path(id): Path<u64>) -> StatusCode {
    if id > 0 {
        panic!("handler bug");
    }
    StatusCode::OK
}

fn app(audit: &AuditTrail, state: AppState) -> Router {
    Router::new()
        .route("/users", post(create_user))
        .route("/users/{id}", delete(delete_user))
        .route("/users/{id}/role", put(change_role))
        .route("/users/{id}/rename", post(rename_fails))
        .route("/users/{id}/password", post(set_password))
        .route("/users/{id}/touch", post(strict_touch))
        .route("/move", post(move_user))
        .route("/users/{id}/explode", post(explode))
        .route("/export", get(export))
        .layer(audit.layer())
        .with_state(state)
}

/// The manual path: an export names its action and details; a change recorded by hand.
async fn export(audit: AuditContext, State(app): State<AppState>) -> String {
    audit.set_action("user.export");
    audit.mark_sensitive();
    let users = app.db.users.lock().unwrap();
    audit.detail("format", "csv");
    audit.detail("record_count", users.len());
    let before = users.get(&2).cloned();
    let mut after = before.clone();
    if let Some(user) = after.as_mut() {
        user.tags.push("exported".into());
    }
    audit.record_change(before.as_ref(), after.as_ref());
    users
        .values()
        .map(|u| u.name.clone())
        .collect::<Vec<_>>()
        .join("\n")
}

struct Fixture {
    audit: AuditTrail,
    sink: MemorySink,
    state: AppState,
    app: Router,
}

fn fixture() -> Fixture {
    let (builder, sink) = memory_trail();
    let audit = builder.build().unwrap();
    let state = AppState::default();
    state.db.users.lock().unwrap().insert(2, bob());
    let app = app(&audit, state.clone());
    Fixture {
        audit,
        sink,
        state,
        app,
    }
}

impl Fixture {
    async fn call(
        &self,
        method: &str,
        uri: &str,
        body: Option<serde_json::Value>,
        admin: bool,
    ) -> (StatusCode, AuditEvent) {
        let mut request = request_from("192.0.2.1:1", method, uri);
        if admin {
            request = request.header("x-role", "admin");
        }
        let request = match body {
            Some(body) => request
                .header("content-type", "application/json")
                .body(Body::from(body.to_string())),
            None => request.body(Body::empty()),
        }
        .unwrap();
        let response = self.app.clone().oneshot(request).await.unwrap();
        self.audit.flush().await.unwrap();
        let event = only_event(&self.sink);
        self.sink.take();
        (response.status(), event)
    }
}

fn to_json<T: Serialize>(value: &T) -> serde_json::Value {
    serde_json::to_value(value).unwrap()
}

#[tokio::test]
async fn a_change_records_before_after_and_changes() {
    let f = fixture();
    let (status, event) = f
        .call("PUT", "/users/2/role", Some(json!({"role": "admin"})), true)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(event.category, Category::Sensitive);
    assert_eq!(event.action, "user.role.change");
    assert_eq!(event.outcome, Outcome::Success);
    assert_eq!(event.target.as_deref(), Some("user:2"));
    let before = event.before.unwrap();
    let after = event.after.unwrap();
    assert_eq!(before["role"], "viewer");
    assert_eq!(after["role"], "admin");
    assert_eq!(before["password_hash"], "[REDACTED]");
    assert_eq!(
        before["address"],
        json!({"city": "Paris", "street": "Rue A"})
    );
    assert_eq!(before["manager"], serde_json::Value::Null);
    assert!(
        before.get("last_seen").is_none(),
        "skipped fields appear nowhere"
    );
    assert!(before.get("manager_id").is_none(), "renamed");
    // last_seen changed too, but it is skipped.
    assert_eq!(
        to_json(&event.changes.unwrap()),
        json!([{"field": "role", "old": "viewer", "new": "admin"}])
    );
}

#[tokio::test]
async fn a_creation_has_no_before_and_lists_every_field() {
    let f = fixture();
    let (status, event) = f
        .call(
            "POST",
            "/users",
            Some(json!({"name": "dave", "password": "dave-secret-pw"})),
            false,
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(event.action, "user.create");
    assert_eq!(event.target.as_deref(), Some("user:3"));
    assert!(event.before.is_none());
    let after = event.after.unwrap();
    assert_eq!(after["name"], "dave");
    assert_eq!(after["password_hash"], "[REDACTED]");
    let changes = to_json(&event.changes.unwrap());
    assert!(
        changes
            .as_array()
            .unwrap()
            .contains(&json!({"field": "name", "new": "dave"}))
    );
    assert!(
        changes
            .as_array()
            .unwrap()
            .contains(&json!({"field": "address.city", "new": "Lyon"}))
    );
    assert!(
        changes
            .as_array()
            .unwrap()
            .contains(&json!({"field": "password_hash", "redacted": true}))
    );
    // capture_body: the body, with the password redacted.
    assert_eq!(
        event.details.unwrap()["request_body"],
        json!({"name": "dave", "password": "[REDACTED]"})
    );
    let text = serde_json::to_string(&f.sink.request_events()).unwrap();
    assert!(!text.contains("dave-secret-pw"));
}

/// A snapshot's strings are bounded in the record, as every value of an event is; the
/// change is still seen, and the resource itself is stored whole.
#[tokio::test]
async fn long_values_in_snapshots_are_bounded() {
    let f = fixture();
    let name = "n".repeat(10_000);
    let (status, event) = f
        .call(
            "POST",
            "/users",
            Some(json!({"name": name, "password": "pw"})),
            false,
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let after = event.after.unwrap();
    let recorded = after["name"].as_str().unwrap();
    assert!(recorded.len() <= 4096 && recorded.ends_with("...[truncated]"));
    let changes = event.changes.unwrap();
    let change = changes.iter().find(|c| c.field == "name").unwrap();
    assert_eq!(change.new.as_ref().unwrap().as_str(), Some(recorded));
    assert_eq!(f.state.db.users.lock().unwrap()[&3].name, name);
}

#[tokio::test]
async fn a_failed_creation_records_the_attempt() {
    let f = fixture();
    let (status, event) = f
        .call(
            "POST",
            "/users",
            Some(json!({"name": "", "password": "x"})),
            false,
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(event.outcome, Outcome::Failure);
    assert_eq!(event.action, "user.create");
    assert!(event.before.is_none() && event.after.is_none());
    assert_eq!(event.changes.unwrap(), vec![]);
}

#[tokio::test]
async fn a_deletion_keeps_the_whole_redacted_record() {
    let f = fixture();
    let (status, event) = f.call("DELETE", "/users/2", None, false).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(event.action, "user.delete");
    assert_eq!(event.target.as_deref(), Some("user:2"));
    assert!(event.after.is_none());
    let before = event.before.unwrap();
    assert_eq!(before["name"], "bob");
    assert_eq!(before["password_hash"], "[REDACTED]");
    let changes = to_json(&event.changes.unwrap());
    assert!(
        changes
            .as_array()
            .unwrap()
            .contains(&json!({"field": "name", "old": "bob"}))
    );
    assert!(f.state.db.users.lock().unwrap().is_empty());

    // Deleting what does not exist: a 404 failure, targeted by its key.
    let (status, event) = f.call("DELETE", "/users/99", None, false).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(event.outcome, Outcome::Failure);
    assert_eq!(event.target.as_deref(), Some("user:99"));
    assert!(event.before.is_none() && event.after.is_none());
}

#[tokio::test]
async fn a_failed_handler_that_changed_nothing() {
    let f = fixture();
    let (status, event) = f.call("POST", "/users/2/rename", None, false).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(event.outcome, Outcome::Failure);
    assert_eq!(event.before, event.after);
    assert!(event.before.is_some());
    assert_eq!(event.changes.unwrap(), vec![]);
}

#[tokio::test]
async fn a_failed_handler_that_changed_something_shows_it() {
    let f = fixture();
    let (status, event) = f
        .call(
            "POST",
            "/move",
            Some(json!({"user": 2, "city": "Oslo", "fail_after_write": true})),
            false,
        )
        .await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(event.outcome, Outcome::Error);
    assert_eq!(event.target.as_deref(), Some("user:2"));
    assert_eq!(
        to_json(&event.changes.unwrap()),
        json!([{"field": "address.city", "old": "Paris", "new": "Oslo"}])
    );
}

/// Two loads of the same data give equal snapshots, redacted fields included, even where a
/// `HashMap` iterates its entries in another order each time: nothing is reported changed
/// that did not change.
#[test]
fn equal_data_gives_equal_snapshots_whatever_a_hash_maps_order() {
    #[derive(Serialize, Auditable)]
    struct Vault {
        #[audit(redact)]
        keys: HashMap<String, String>,
        labels: HashMap<String, u32>,
    }
    let load = || Vault {
        keys: (0..64)
            .map(|i| (format!("k{i}"), format!("v{i}")))
            .collect(),
        labels: (0..64).map(|i| (format!("l{i}"), i)).collect(),
    };
    let (first, second) = (load(), load());
    assert_ne!(
        first.keys.keys().collect::<Vec<_>>(),
        second.keys.keys().collect::<Vec<_>>(),
        "the two maps should iterate in different orders for this test to mean anything"
    );
    assert_eq!(first.audit_snapshot(), second.audit_snapshot());
}

/// Names the application adds to the trail's list are redacted in snapshots too, nested
/// fields included, although the type did not mark them.
#[tokio::test]
async fn the_trails_own_secret_names_apply_to_snapshots() {
    let (builder, sink) = memory_trail();
    let audit = builder.redact_also(["city"]).build().unwrap();
    let state = AppState::default();
    state.db.users.lock().unwrap().insert(2, bob());
    let f = Fixture {
        app: app(&audit, state.clone()),
        audit,
        sink,
        state,
    };
    let body = json!({"user": 2, "city": "Oslo", "fail_after_write": false});
    let (status, event) = f.call("POST", "/move", Some(body), false).await;
    assert_eq!(status, StatusCode::OK);
    let text = serde_json::to_string(&event).unwrap();
    assert!(!text.contains("Paris") && !text.contains("Oslo"), "{text}");
    for state in [&event.before, &event.after] {
        let address = &state.as_ref().unwrap()["address"];
        assert_eq!(address["city"], "[REDACTED]", "{text}");
        assert_eq!(address["street"], "Rue A", "{text}");
    }
    let changes = event.changes.unwrap();
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert!(
        changes[0].field == "address.city" && changes[0].redacted,
        "{changes:?}"
    );
    f.audit.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_redacted_field_that_changed_shows_no_values() {
    let f = fixture();
    let (_, event) = f.call("POST", "/users/2/password", None, false).await;
    assert_eq!(
        to_json(event.changes.as_ref().unwrap()),
        json!([{"field": "password_hash", "redacted": true}])
    );
    let text = serde_json::to_string(&event).unwrap();
    assert!(!text.contains("secret-hash"), "{text}");
}

#[tokio::test]
async fn a_loader_error_is_in_the_reason_and_the_handler_still_runs() {
    let f = fixture();
    f.state.db.fail_loads.store(true, Ordering::SeqCst);
    let (status, event) = f
        .call("PUT", "/users/2/role", Some(json!({"role": "admin"})), true)
        .await;
    assert_eq!(status, StatusCode::OK, "the handler ran");
    assert_eq!(f.state.db.users.lock().unwrap()[&2].role, Role::Admin);
    assert_eq!(event.action, "user.role.change");
    assert_eq!(event.target.as_deref(), Some("user:2"));
    assert_eq!(
        event.reason.as_deref(),
        Some(
            "before-state load failed: database unavailable; after-state load failed: database unavailable"
        )
    );
}

#[tokio::test]
async fn a_loader_error_can_refuse_the_change() {
    let f = fixture();
    f.state.db.fail_loads.store(true, Ordering::SeqCst);
    let (status, event) = f.call("POST", "/users/2/touch", None, false).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        f.state.db.users.lock().unwrap()[&2].last_seen,
        1,
        "the handler did not run"
    );
    assert_eq!(event.outcome, Outcome::Error);
    assert_eq!(event.action, "user.touch");
    assert!(event.reason.unwrap().contains("database unavailable"));
}

#[tokio::test]
async fn a_panicking_handler_still_records_its_before_state() {
    let f = fixture();
    let (status, event) = f.call("POST", "/users/2/explode", None, false).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(event.outcome, Outcome::Error);
    assert_eq!(event.action, "user.explode");
    assert_eq!(event.reason.as_deref(), Some("panic: handler bug"));
    assert_eq!(event.before.unwrap()["name"], "bob");
}

#[tokio::test]
async fn a_rejected_caller_is_recorded_as_the_action_denied() {
    let f = fixture();
    let (status, event) = f
        .call(
            "PUT",
            "/users/2/role",
            Some(json!({"role": "admin"})),
            false,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(f.state.db.users.lock().unwrap()[&2].role, Role::Viewer);
    assert_eq!(event.category, Category::Sensitive);
    assert_eq!(event.action, "user.role.change");
    assert_eq!(event.outcome, Outcome::Denied);
    assert!(event.before.is_none(), "the handler did not run");
}

#[tokio::test]
async fn the_manual_path_records_details_and_an_explicit_pair() {
    let f = fixture();
    let (status, event) = f.call("GET", "/export", None, false).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(event.action, "user.export");
    assert_eq!(event.category, Category::Sensitive);
    let details = event.details.unwrap();
    assert_eq!(details["format"], "csv");
    assert_eq!(details["record_count"], 1);
    assert_eq!(event.target.as_deref(), Some("user:2"));
    assert_eq!(
        to_json(&event.changes.unwrap()),
        json!([{"field": "tags", "old": ["a"], "new": ["a", "exported"]}])
    );
}

#[tokio::test]
async fn sensitive_routes_are_known_to_the_trail() {
    let f = fixture();
    f.call("PUT", "/users/2/role", Some(json!({"role": "admin"})), true)
        .await;
    f.call("DELETE", "/users/2", None, false).await;
    let routes: Vec<_> = f
        .audit
        .sensitive_routes()
        .into_iter()
        .map(|r| format!("{} {} {}", r.method, r.route, r.action))
        .collect();
    assert_eq!(
        routes,
        [
            "DELETE /users/{id} user.delete",
            "PUT /users/{id}/role user.role.change"
        ]
    );
}

#[tokio::test]
async fn without_the_layer_a_sensitive_handler_refuses_to_run() {
    let state = AppState::default();
    state.db.users.lock().unwrap().insert(2, bob());
    let app = Router::new()
        .route("/users/{id}", delete(delete_user))
        .with_state(state.clone());
    let request = request_from("192.0.2.1:1", "DELETE", "/users/2")
        .body(Body::empty())
        .unwrap();
    let response = app.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        state.db.users.lock().unwrap().len(),
        1,
        "nothing was deleted"
    );
}

/// A generic resource: the derive bounds its parameter by `Serialize`.
#[derive(Clone, Serialize, Auditable)]
#[audit(resource = "setting")]
struct Setting<T> {
    #[audit(id)]
    key: String,
    value: T,
}

#[test]
fn generic_resources_and_nested_snapshots() {
    let setting = Setting {
        key: "max_upload_mb".into(),
        value: 10u32,
    };
    assert_eq!(<Setting<u32> as Auditable>::RESOURCE, "setting");
    assert_eq!(setting.audit_id().as_deref(), Some("max_upload_mb"));
    assert_eq!(
        setting.audit_snapshot().to_json(),
        json!({"key": "max_upload_mb", "value": 10})
    );
    let user = bob();
    assert_eq!(user.audit_snapshot().to_json()["address"]["city"], "Paris");
    assert_eq!(<Address as Auditable>::RESOURCE, "address");
}

/// Fields named like secrets are redacted even when unmarked; nested keys too.
#[test]
fn the_name_based_safety_net() {
    #[derive(Serialize, Auditable)]
    struct Integration {
        #[audit(id)]
        name: String,
        api_token: String,
        settings: BTreeMap<String, String>,
    }
    let integration = Integration {
        name: "crm".into(),
        api_token: "tok-123".into(),
        settings: [
            ("client_secret".to_owned(), "s3cr3t".to_owned()),
            ("region".to_owned(), "eu".to_owned()),
        ]
        .into_iter()
        .collect(),
    };
    assert_eq!(
        integration.audit_snapshot().to_json(),
        json!({"name": "crm", "api_token": "[REDACTED]", "settings": {"client_secret": "[REDACTED]", "region": "eu"}})
    );
}

/// A connection string in a field whose name is no secret's (`database_url`) loses its
/// password, in the snapshots and in the changes; a change to the password alone is still
/// reported, as redacted, and a change elsewhere in the URL shows what is visible.
#[tokio::test]
async fn credentials_in_urls_are_redacted_in_snapshots_and_changes() {
    #[derive(Clone, Serialize, Auditable)]
    #[audit(resource = "config")]
    struct Connection {
        #[audit(id)]
        name: String,
        database_url: String,
        replicas: Vec<String>,
    }
    let connection = |url: &str, replica: &str| Connection {
        name: "primary".into(),
        database_url: url.into(),
        replicas: vec![replica.into()],
    };
    let old = connection(
        "postgres://app:old-pw@db-1/app",
        "postgres://ro:ro-pw@db-2/app",
    );
    let rotated = connection(
        "postgres://app:new-pw@db-1/app",
        "postgres://ro:ro-pw@db-2/app",
    );
    let moved = connection(
        "postgres://app:new-pw@db-3/app",
        "postgres://ro:ro-pw@db-2/app",
    );
    assert_eq!(
        old.audit_snapshot().to_json(),
        json!({
            "name": "primary",
            "database_url": "postgres://app:[REDACTED]@db-1/app",
            "replicas": ["postgres://ro:[REDACTED]@db-2/app"],
        })
    );

    let (builder, sink) = memory_trail();
    let audit = builder.build().unwrap();
    let states = Arc::new([old, rotated, moved]);
    let app = Router::new()
        .route(
            "/config/{step}",
            put(
                move |context: AuditContext, Path(step): Path<usize>| async move {
                    context.set_action("config.update");
                    context.record_change(Some(&states[step]), Some(&states[step + 1]));
                },
            ),
        )
        .layer(audit.layer());
    for step in 0..2 {
        let request = request_from("192.0.2.1:1", "PUT", &format!("/config/{step}"))
            .body(Body::empty())
            .unwrap();
        assert_eq!(
            app.clone().oneshot(request).await.unwrap().status(),
            StatusCode::OK
        );
    }
    audit.shutdown().await.unwrap();

    let events = sink.request_events();
    assert_eq!(events.len(), 2);
    for event in &sink.events() {
        let line = serde_json::to_string(event).unwrap();
        for secret in ["old-pw", "new-pw", "ro-pw"] {
            assert!(!line.contains(secret), "{secret} leaked: {line}");
        }
    }
    // The rotation changed only the password: named, never shown.
    assert_eq!(
        events[0].changes,
        Some(vec![Change::redacted("database_url")])
    );
    // The move changed the host: shown, with the password still out.
    assert_eq!(
        events[1].changes,
        Some(vec![Change::value(
            "database_url",
            Some(json!("postgres://app:[REDACTED]@db-1/app")),
            Some(json!("postgres://app:[REDACTED]@db-3/app")),
        )])
    );
}

/// A redacted field of an `Auditable` type stays redacted when that type sits in an
/// `Option`, a `Vec` or a map of the snapshotted one, and a change to it is reported as
/// redacted.
#[tokio::test]
async fn redactions_inside_options_vecs_and_maps_of_auditable_types_apply() {
    #[derive(Clone, Serialize, Auditable)]
    struct Contact {
        name: String,
        #[audit(redact)]
        phone: String,
    }
    #[derive(Clone, Serialize, Auditable)]
    #[audit(resource = "patient")]
    struct Patient {
        #[audit(id)]
        id: u64,
        emergency: Option<Contact>,
        others: Vec<Contact>,
        guardian: Option<Contact>,
        by_role: BTreeMap<String, Contact>,
    }
    let contact = |phone: &str| Contact {
        name: "ann".into(),
        phone: phone.into(),
    };
    let before = Patient {
        id: 9,
        emergency: Some(contact("555-0101")),
        others: vec![contact("555-0102")],
        guardian: None,
        by_role: [("nurse".to_owned(), contact("555-0104"))].into(),
    };
    let after = Patient {
        id: 9,
        emergency: Some(contact("555-0201")),
        others: vec![contact("555-0202")],
        guardian: Some(contact("555-0203")),
        by_role: [("nurse".to_owned(), contact("555-0204"))].into(),
    };
    assert_eq!(
        after.audit_snapshot().to_json(),
        json!({
            "id": 9,
            "emergency": {"name": "ann", "phone": "[REDACTED]"},
            "others": [{"name": "ann", "phone": "[REDACTED]"}],
            "guardian": {"name": "ann", "phone": "[REDACTED]"},
            "by_role": {"nurse": {"name": "ann", "phone": "[REDACTED]"}},
        })
    );

    let (builder, sink) = memory_trail();
    let audit = builder.build().unwrap();
    let app = Router::new()
        .route(
            "/patients/9",
            put(move |context: AuditContext| async move {
                context.set_action("patient.update");
                context.record_change(Some(&before), Some(&after));
            }),
        )
        .layer(audit.layer());
    let request = request_from("192.0.2.1:1", "PUT", "/patients/9")
        .body(Body::empty())
        .unwrap();
    assert_eq!(app.oneshot(request).await.unwrap().status(), StatusCode::OK);
    audit.shutdown().await.unwrap();

    let event = only_event(&sink);
    let line = serde_json::to_string(&event).unwrap();
    assert!(!line.contains("555-0"), "a redacted phone leaked: {line}");
    let changes = serde_json::to_value(&event.changes).unwrap();
    let has_change = |wanted: &dyn Fn(&serde_json::Value) -> bool| {
        changes.as_array().unwrap().iter().any(wanted)
    };
    assert!(
        has_change(&|c| c["field"] == "emergency.phone" && c["redacted"] == true),
        "{changes}"
    );
    assert!(
        has_change(&|c| c["field"] == "others" && c["redacted"] == true),
        "{changes}"
    );
    assert!(
        has_change(&|c| c["field"] == "guardian" && c["old"].is_null()),
        "{changes}"
    );
    assert!(
        has_change(&|c| c["field"] == "by_role" && c["redacted"] == true),
        "{changes}"
    );
}

/// A sensitive event's memory goes back to its request once synced, and the next request's
/// event is written into it: none of the states, changes or target may show through.
#[tokio::test]
async fn the_next_event_keeps_nothing_of_a_sensitive_one_before_it() {
    let f = fixture();
    let (_, change) = f
        .call("PUT", "/users/2/role", Some(json!({"role": "admin"})), true)
        .await;
    assert!(change.before.is_some() && change.after.is_some() && change.changes.is_some());

    let (status, event) = f.call("GET", "/nowhere", None, false).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(event.category, Category::Request);
    assert_eq!(event.action, "http.request");
    assert_eq!(event.outcome, Outcome::Failure);
    assert!(event.actor.is_anonymous());
    assert_eq!(event.actor.id, "anonymous");
    let request = event.request.as_ref().unwrap();
    assert_eq!(request.path, "/nowhere");
    assert_eq!(request.route, None);
    assert_eq!(request.query, None);
    assert_eq!(request.id, event.id.to_string());
    assert_eq!(event.source.as_ref().unwrap().user_agent, None);
    for (field, present) in [
        ("target", event.target.is_some()),
        ("reason", event.reason.is_some()),
        ("details", event.details.is_some()),
        ("before", event.before.is_some()),
        ("after", event.after.is_some()),
        ("changes", event.changes.is_some()),
        ("labels", !event.labels.is_empty()),
    ] {
        assert!(!present, "{field} of the sensitive event showed through");
    }
}
