//! Authentication: a bearer token or the session cookie names the user.
//!
//! The middleware runs *outside* the audit layer and puts the user's [`Actor`] in the request
//! extensions, where the audit layer finds it (`audit_layer::Actor`). The login handler, inside the layer, names the
//! user it has just authenticated by returning the `Actor` in its response extensions.

use std::sync::Arc;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::AppState;
use crate::store::{Role, User};

/// The cookie that carries the session token.
pub(crate) const SESSION_COOKIE: &str = "session";

/// The authenticated user of a request, and the token it used.
#[derive(Clone, Debug)]
pub(crate) struct CurrentUser {
    pub(crate) user: User,
    pub(crate) token: String,
}

/// Resolves the caller from `Authorization: Bearer <token>` or the session cookie.
pub(crate) async fn authenticate(
    State(state): State<Arc<AppState>>,
    mut request: Request,
    next: Next,
) -> Response {
    if let Some(token) = token_of(&request)
        && let Some(user) = state.store.session_user(&token)
    {
        request.extensions_mut().insert(user.actor());
        request.extensions_mut().insert(CurrentUser { user, token });
    }
    next.run(request).await
}

fn token_of(request: &Request) -> Option<String> {
    let headers = request.headers();
    if let Some(bearer) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    {
        return Some(bearer.trim().to_owned());
    }
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name == SESSION_COOKIE).then(|| value.to_owned())
        })
}

impl<S: Send + Sync> FromRequestParts<S> for CurrentUser {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<CurrentUser>()
            .cloned()
            .ok_or_else(|| (StatusCode::UNAUTHORIZED, "log in first: POST /login").into_response())
    }
}

/// Lets administrators through to what it guards (the viewer's pages), and answers the
/// others as [`Admin`] does.
pub(crate) async fn admin_only(_admin: Admin, request: Request, next: Next) -> Response {
    next.run(request).await
}

/// An administrator: 401 for anonymous callers, 403 for other users. As an extractor it runs
/// before the handler body, so a refused caller changes nothing, and the audit event of the
/// refused request says `denied`.
#[derive(Clone, Debug)]
pub(crate) struct Admin(pub(crate) CurrentUser);

impl<S: Send + Sync> FromRequestParts<S> for Admin {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let current = CurrentUser::from_request_parts(parts, state).await?;
        if current.user.role != Role::Admin {
            return Err((StatusCode::FORBIDDEN, "administrators only").into_response());
        }
        Ok(Admin(current))
    }
}
