//! axum's method routing, remembering each handler's method and how it is audited.

use std::any::type_name;
use std::borrow::Cow;
use std::convert::Infallible;

use axum::extract::Request;
use axum::handler::Handler;
use axum::response::IntoResponse;
use axum::routing::Route;
use tower_layer::Layer;
use tower_service::Service;

use super::report::RouteStatus;
use crate::AuditContext;
use crate::sensitive::handler::SensitiveRoute;

/// axum's [`MethodRouter`](axum::routing::MethodRouter), with the method and audit status of
/// each handler it routes to: what [`Router`](super::Router) reports. Made by
/// [`get`](super::get), [`post`](super::post) and the other functions of this module, as
/// axum's are.
#[must_use]
pub struct MethodRouter<S = ()> {
    pub(super) inner: axum::routing::MethodRouter<S>,
    pub(super) handlers: Vec<RoutedHandler>,
    pub(super) exempt: Option<Cow<'static, str>>,
}

impl<S> std::fmt::Debug for MethodRouter<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MethodRouter")
            .field("handlers", &self.handlers)
            .field("exempt", &self.exempt)
            .finish_non_exhaustive()
    }
}

/// One method of a method router.
#[derive(Clone, Debug)]
pub(super) struct RoutedHandler {
    /// `None` for any method.
    pub(super) method: Option<http::Method>,
    pub(super) status: RouteStatus,
    pub(super) handler: Option<String>,
}

impl<S: Clone + Send + Sync + 'static> MethodRouter<S> {
    /// Exempts every method of this route from the coverage rules, with the reason the report
    /// shows (`"flushes a cache; changes no data"`).
    pub fn exempt(mut self, reason: impl Into<Cow<'static, str>>) -> Self {
        self.exempt = Some(reason.into());
        self
    }

    /// A layer around this route's handlers, as axum's `MethodRouter::layer`.
    pub fn layer<L>(self, layer: L) -> Self
    where
        L: Layer<Route> + Clone + Send + Sync + 'static,
        L::Service: Service<Request> + Clone + Send + Sync + 'static,
        <L::Service as Service<Request>>::Response: IntoResponse + 'static,
        <L::Service as Service<Request>>::Error: Into<Infallible> + 'static,
        <L::Service as Service<Request>>::Future: Send + 'static,
    {
        Self {
            inner: self.inner.layer(layer),
            ..self
        }
    }

    /// A layer run only when one of this route's methods matched, as axum's
    /// `MethodRouter::route_layer`.
    pub fn route_layer<L>(self, layer: L) -> Self
    where
        L: Layer<Route> + Clone + Send + Sync + 'static,
        L::Service: Service<Request, Error = Infallible> + Clone + Send + Sync + 'static,
        <L::Service as Service<Request>>::Response: IntoResponse + 'static,
        <L::Service as Service<Request>>::Future: Send + 'static,
    {
        Self {
            inner: self.inner.route_layer(layer),
            ..self
        }
    }

    fn with<H, T>(
        mut self,
        method: Option<http::Method>,
        add: impl FnOnce(axum::routing::MethodRouter<S>) -> axum::routing::MethodRouter<S>,
    ) -> Self
    where
        H: Handler<T, S>,
        T: 'static,
    {
        self.inner = add(self.inner);
        self.handlers.push(routed::<H, T>(method));
        self
    }
}

/// How a handler is audited, from the extractors it takes: a `#[sensitive]` handler takes
/// the hidden `SensitiveRoute` first; a manual one takes `AuditContext`.
fn routed<H, T>(method: Option<http::Method>) -> RoutedHandler {
    let extractors = type_name::<T>();
    let status = if mentions(extractors, type_path::<SensitiveRoute<()>>()) {
        RouteStatus::Sensitive
    } else if mentions(extractors, type_path::<AuditContext>()) {
        RouteStatus::Manual
    } else {
        RouteStatus::RequestOnly
    };
    RoutedHandler {
        method,
        status,
        handler: Some(type_name::<H>().to_owned()),
    }
}

/// A type's path without its generic arguments.
fn type_path<T>() -> &'static str {
    let name = type_name::<T>();
    name.split_once('<').map_or(name, |(path, _)| path)
}

/// Whether a list of type names names the type at `path` (as itself, not as a prefix of a
/// longer name).
fn mentions(types: &str, path: &str) -> bool {
    types.match_indices(path).any(|(at, _)| {
        let before = types[..at].chars().next_back();
        let after = types[at + path.len()..].chars().next();
        !before.is_some_and(is_ident) && !after.is_some_and(is_ident)
    })
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == ':'
}

macro_rules! method_functions {
    ($($(#[$doc:meta])* $name:ident => $method:expr;)*) => {
        $(
            $(#[$doc])*
            pub fn $name<H, T, S>(handler: H) -> MethodRouter<S>
            where
                H: Handler<T, S>,
                T: 'static,
                S: Clone + Send + Sync + 'static,
            {
                MethodRouter {
                    inner: axum::routing::MethodRouter::new(),
                    handlers: Vec::new(),
                    exempt: None,
                }
                .$name(handler)
            }
        )*

        impl<S: Clone + Send + Sync + 'static> MethodRouter<S> {
            $(
                $(#[$doc])*
                pub fn $name<H, T>(self, handler: H) -> Self
                where
                    H: Handler<T, S>,
                    T: 'static,
                {
                    self.with::<H, T>($method, |inner| inner.$name(handler))
                }
            )*
        }
    };
}

method_functions! {
    /// Routes `GET` (and `HEAD`) requests to `handler`, as axum's `get`.
    get => Some(http::Method::GET);
    /// Routes `POST` requests to `handler`, as axum's `post`.
    post => Some(http::Method::POST);
    /// Routes `PUT` requests to `handler`, as axum's `put`.
    put => Some(http::Method::PUT);
    /// Routes `PATCH` requests to `handler`, as axum's `patch`.
    patch => Some(http::Method::PATCH);
    /// Routes `DELETE` requests to `handler`, as axum's `delete`.
    delete => Some(http::Method::DELETE);
    /// Routes `HEAD` requests to `handler`, as axum's `head`.
    head => Some(http::Method::HEAD);
    /// Routes `OPTIONS` requests to `handler`, as axum's `options`.
    options => Some(http::Method::OPTIONS);
}

/// Routes every method to `handler`, as axum's `any`: reported as method `*`, which counts
/// as state-changing.
pub fn any<H, T, S>(handler: H) -> MethodRouter<S>
where
    H: Handler<T, S>,
    T: 'static,
    S: Clone + Send + Sync + 'static,
{
    MethodRouter {
        inner: axum::routing::any(handler),
        handlers: vec![routed::<H, T>(None)],
        exempt: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_type_is_named_whole_or_not_at_all() {
        let path = "audit_layer::AuditContext";
        assert!(mentions("(M, audit_layer::AuditContext)", path));
        assert!(mentions("(M, audit_layer::AuditContext, Json<u8>)", path));
        assert!(!mentions("(M, audit_layer::AuditContextual)", path));
        assert!(!mentions("(M, my::audit_layer::AuditContext)", path));
        assert_eq!(type_path::<Vec<u8>>(), "alloc::vec::Vec");
    }
}
