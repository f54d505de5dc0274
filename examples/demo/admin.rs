//! The administration routes. Each state-changing handler is `#[sensitive]`: its audit event
//! carries the target's state before and after, and the changed fields, without a line of
//! audit code in the handler itself.

use std::sync::Arc;

use audit_layer::detect::RECORD_COUNT;
use audit_layer::{AuditContext, sensitive};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::AppState;
use crate::auth::{Admin, CurrentUser};
use crate::store::{Account, ConfigEntry, Role, User, hash_password};

/// An error answer: a status and a one-line reason.
pub(crate) struct ApiError(StatusCode, &'static str);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, self.1).into_response()
    }
}

#[derive(Deserialize)]
pub(crate) struct NewUser {
    name: String,
    role: Role,
    password: String,
}

/// `POST /admin/users`: 201 with the new user.
#[sensitive(action = "user.create", resource = User, create, capture_body)]
pub(crate) async fn create_user(
    _admin: Admin,
    State(app): State<Arc<AppState>>,
    Json(body): Json<NewUser>,
) -> Result<(StatusCode, Json<User>), ApiError> {
    if body.name.trim().is_empty() || body.password.len() < 8 {
        return Err(ApiError(
            StatusCode::UNPROCESSABLE_ENTITY,
            "a name and a password of at least 8 characters are needed",
        ));
    }
    let hash = hash_off_thread(&app, body.password).await?;
    let user = app
        .store
        .create_user(body.name.trim(), body.role, hash)
        .ok_or(ApiError(StatusCode::CONFLICT, "that name is taken"))?;
    Ok((StatusCode::CREATED, Json(user)))
}

#[derive(Deserialize)]
pub(crate) struct RoleChange {
    role: Role,
}

/// `PUT /admin/users/{id}/role`: 200 with the user.
#[sensitive(action = "user.role.change", resource = User, key = id)]
pub(crate) async fn change_role(
    _admin: Admin,
    State(app): State<Arc<AppState>>,
    Path(id): Path<u64>,
    Json(body): Json<RoleChange>,
) -> Result<Json<User>, ApiError> {
    app.store
        .set_role(id, body.role)
        .map(Json)
        .ok_or(ApiError(StatusCode::NOT_FOUND, "no such user"))
}

/// `DELETE /admin/users/{id}`: 204.
#[sensitive(action = "user.delete", resource = User, key = id)]
pub(crate) async fn delete_user(
    Admin(current): Admin,
    State(app): State<Arc<AppState>>,
    Path(id): Path<u64>,
) -> Result<StatusCode, ApiError> {
    if current.user.id == id {
        return Err(ApiError(StatusCode::CONFLICT, "you cannot delete yourself"));
    }
    if app.store.delete_user(id) {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError(StatusCode::NOT_FOUND, "no such user"))
    }
}

#[derive(Deserialize)]
pub(crate) struct ConfigValue {
    value: serde_json::Value,
}

/// `PUT /admin/config/{name}`: 200 with the entry.
#[sensitive(action = "config.update", resource = ConfigEntry, key = key)]
pub(crate) async fn update_config(
    _admin: Admin,
    State(app): State<Arc<AppState>>,
    Path(key): Path<String>,
    Json(body): Json<ConfigValue>,
) -> Result<Json<ConfigEntry>, ApiError> {
    app.store
        .set_config(&key, body.value)
        .map(Json)
        .ok_or(ApiError(StatusCode::NOT_FOUND, "no such configuration key"))
}

#[derive(Deserialize)]
pub(crate) struct BalanceUpdate {
    user: String,
    balance: i64,
}

/// `POST /update-balance`: 200 with the account.
#[sensitive(action = "balance.update", resource = Account, key = body.user)]
pub(crate) async fn update_balance(
    _admin: Admin,
    State(app): State<Arc<AppState>>,
    Json(body): Json<BalanceUpdate>,
) -> Result<Json<Account>, ApiError> {
    app.store
        .set_balance(&body.user, body.balance)
        .map(Json)
        .ok_or(ApiError(StatusCode::NOT_FOUND, "no such account"))
}

#[derive(Deserialize)]
pub(crate) struct PasswordChange {
    old_password: String,
    new_password: String,
}

/// `POST /password`: the caller changes their own password. The hash is a redacted field:
/// the event says it changed, never what to.
#[sensitive(action = "auth.password.change", resource = User, key = current.user.id)]
pub(crate) async fn change_password(
    current: CurrentUser,
    State(app): State<Arc<AppState>>,
    Json(body): Json<PasswordChange>,
) -> Result<StatusCode, ApiError> {
    if body.new_password.len() < 8 {
        return Err(ApiError(
            StatusCode::UNPROCESSABLE_ENTITY,
            "the new password needs at least 8 characters",
        ));
    }
    let (state, name, old) = (app.clone(), current.user.name.clone(), body.old_password);
    let verified = app
        .hashers
        .run(move || state.store.authenticate(&name, &old))
        .await
        .is_some_and(|checked| checked.is_ok());
    if !verified {
        return Err(ApiError(StatusCode::FORBIDDEN, "the old password is wrong"));
    }
    let hash = hash_off_thread(&app, body.new_password).await?;
    app.store.set_password_hash(current.user.id, hash);
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /admin/export-users`: a CSV of users, without passwords. Nothing changes, so this is
/// the manual path: the handler names its action and records what it exported.
pub(crate) async fn export_users(
    _admin: Admin,
    audit: AuditContext,
    State(app): State<Arc<AppState>>,
) -> Response {
    let users = app.store.users();
    audit.set_action("user.export");
    audit.mark_sensitive();
    audit.detail("format", "csv");
    audit.detail(RECORD_COUNT, users.len());
    let mut csv = String::from("id,name,role\n");
    for user in &users {
        csv.push_str(&format!(
            "{},{},{}\n",
            user.id,
            user.name,
            user.role.as_str()
        ));
    }
    ([(header::CONTENT_TYPE, "text/csv")], csv).into_response()
}

/// Argon2 is deliberately slow: on the hashing threads, off the async workers.
async fn hash_off_thread(app: &AppState, password: String) -> Result<String, ApiError> {
    app.hashers
        .run(move || hash_password(&password))
        .await
        .and_then(Result::ok)
        .ok_or(ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            "cannot hash the password",
        ))
}
