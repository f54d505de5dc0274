use audit_layer::{Auditable, BoxError, sensitive};
use audit_layer::sensitive::Snapshot;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{post, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

#[derive(Clone, Serialize, Auditable)]
struct Account {
    #[audit(id)]
    owner: String,
    balance: i64,
}

#[derive(Default)]
struct AppState;

impl Snapshot<Arc<AppState>> for Account {
    type Key = String;

    async fn load(_state: &Arc<AppState>, key: &String) -> Result<Option<Self>, BoxError> {
        Ok(Some(Account { owner: key.clone(), balance: 0 }))
    }
}

#[derive(Deserialize)]
struct BalanceUpdate {
    user: String,
    balance: i64,
}

#[derive(Deserialize)]
struct Options {
    #[allow(dead_code)]
    dry_run: Option<bool>,
}

// A key that is an expression over a parameter, more extractors, `?` in the body, and
// axum's own `debug_handler` below the attribute.
#[sensitive(action = "balance.update", resource = Account, key = body.user, capture_body, on_load_error = "refuse")]
#[axum::debug_handler]
async fn update_balance(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(options): Query<Options>,
    Json(mut body): Json<BalanceUpdate>,
) -> Result<Json<Account>, StatusCode> {
    let _ = (state, headers, options);
    body.balance = body.balance.checked_add(0).ok_or(StatusCode::BAD_REQUEST)?;
    Ok(Json(Account { owner: body.user, balance: body.balance }))
}

#[sensitive(action = "account.open", resource = Account, create)]
pub async fn open_account(Json(body): Json<BalanceUpdate>) -> (StatusCode, Json<Account>) {
    (StatusCode::CREATED, Json(Account { owner: body.user, balance: body.balance }))
}

#[sensitive(action = "account.touch", resource = Account, key = owner)]
async fn touch(State(_state): State<Arc<AppState>>, Path(owner): Path<String>) -> impl axum::response::IntoResponse {
    let _ = owner;
    StatusCode::NO_CONTENT
}

fn main() {
    let _app: Router = Router::new()
        .route("/update-balance", post(update_balance))
        .route("/accounts", post(open_account))
        .route("/accounts/{owner}", put(touch))
        .with_state(Arc::new(AppState));
}
