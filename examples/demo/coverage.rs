//! `GET /admin/audit/coverage`: every route's audit status, and the gaps, as JSON.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::AppState;
use crate::auth::Admin;

/// The coverage report as JSON: `{"routes": [..], "gaps": [..]}`.
pub(crate) async fn coverage_report(_admin: Admin, State(app): State<Arc<AppState>>) -> Response {
    match app.coverage.get() {
        Some(report) => Json(report).into_response(),
        None => (StatusCode::SERVICE_UNAVAILABLE, "not computed yet").into_response(),
    }
}
