//! axum's `Router`, keeping the list of its routes that axum does not give out.

use std::convert::Infallible;

use axum::extract::Request;
use axum::handler::Handler;
use axum::response::IntoResponse;
use axum::routing::Route;
use tower_layer::Layer;
use tower_service::Service;

use super::report::{CoverageReport, RouteCoverage, RouteStatus};
use super::routing::{MethodRouter, RoutedHandler};
use super::rules::CoverageRules;

/// axum's [`Router`](axum::Router) with a route inventory: each `route`, `nest` and `merge`
/// is recorded with its methods and how its handlers are audited, so that
/// [`coverage`](Self::coverage) can report the sensitive-looking routes nothing audits.
///
/// A drop-in for axum's: import it with this module's [`get`](super::get),
/// [`post`](super::post), … instead of axum's, build routes as before, and turn it into
/// axum's router with [`into_router`](Self::into_router), which logs a warning per gap.
///
/// ```
/// use audit_layer::AuditContext;
/// use audit_layer::coverage::{Router, get, post};
///
/// // Records what it does itself; `#[sensitive]` handlers count as audited too.
/// async fn export(audit: AuditContext) -> &'static str {
///     audit.set_action("config.export");
///     audit.mark_sensitive();
///     "name,value"
/// }
///
/// async fn flush() {}
/// async fn rename() {}
///
/// let routes: Router = Router::new()
///     .route("/config/export", get(export))
///     .route("/admin/cache/flush", post(flush).exempt("changes no data"))
///     .route("/admin/users/{id}/name", post(rename));
/// let report = routes.coverage();
/// let gaps = report.gaps();
/// assert_eq!(gaps.len(), 1, "{report}");
/// assert_eq!(gaps[0].path, "/admin/users/{id}/name");
/// let app: axum::Router = routes.into_router(); // logs a warning for the gap
/// /// ```
#[must_use]
pub struct Router<S = ()> {
    inner: axum::Router<S>,
    routes: Vec<Routed>,
    rules: CoverageRules,
}

/// One method of one route, before the rules judge it.
#[derive(Clone, Debug)]
struct Routed {
    path: String,
    handler: RoutedHandler,
    exempt: Option<String>,
}

impl<S> std::fmt::Debug for Router<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("routes", &self.routes)
            .field("rules", &self.rules)
            .finish_non_exhaustive()
    }
}

impl<S: Clone + Send + Sync + 'static> Default for Router<S> {
    fn default() -> Self {
        Self::new()
    }
}

impl<S: Clone + Send + Sync + 'static> Router<S> {
    /// A router with no routes, judged by the default [`CoverageRules`].
    pub fn new() -> Self {
        Self {
            inner: axum::Router::new(),
            routes: Vec::new(),
            rules: CoverageRules::default(),
        }
    }

    /// The rules [`coverage`](Self::coverage) and [`into_router`](Self::into_router) judge
    /// by, instead of the defaults.
    pub fn rules(mut self, rules: CoverageRules) -> Self {
        self.rules = rules;
        self
    }

    /// Adds a route, as axum's `Router::route` (which panics on a conflicting route).
    #[track_caller]
    pub fn route(mut self, path: &str, methods: MethodRouter<S>) -> Self {
        let exempt = methods.exempt.map(|reason| reason.into_owned());
        self.routes
            .extend(methods.handlers.into_iter().map(|handler| Routed {
                path: path.to_owned(),
                handler,
                exempt: exempt.clone(),
            }));
        self.inner = self.inner.route(path, methods.inner);
        self
    }

    /// Routes every method of `path` to a service, as axum's `Router::route_service`. Its
    /// handlers cannot be seen: the report shows it as opaque, a gap if it looks sensitive.
    #[track_caller]
    pub fn route_service<T>(mut self, path: &str, service: T) -> Self
    where
        T: Service<Request, Error = Infallible> + Clone + Send + Sync + 'static,
        T::Response: IntoResponse,
        T::Future: Send + 'static,
    {
        self.routes.push(opaque(path));
        self.inner = self.inner.route_service(path, service);
        self
    }

    /// Nests a router under `prefix`, as axum's `Router::nest`; its routes are reported
    /// with the prefix.
    #[track_caller]
    pub fn nest(mut self, prefix: &str, router: Router<S>) -> Self {
        self.routes
            .extend(router.routes.into_iter().map(|routed| Routed {
                path: nested(prefix, &routed.path),
                ..routed
            }));
        self.inner = self.inner.nest(prefix, router.inner);
        self
    }

    /// Nests a service under `prefix`, as axum's `Router::nest_service`: reported as one
    /// opaque route `prefix/{*rest}`.
    #[track_caller]
    pub fn nest_service<T>(mut self, prefix: &str, service: T) -> Self
    where
        T: Service<Request, Error = Infallible> + Clone + Send + Sync + 'static,
        T::Response: IntoResponse,
        T::Future: Send + 'static,
    {
        self.routes.push(opaque(&nested(prefix, "/{*rest}")));
        self.inner = self.inner.nest_service(prefix, service);
        self
    }

    /// Merges another router's routes, as axum's `Router::merge`.
    #[track_caller]
    pub fn merge(mut self, other: Router<S>) -> Self {
        self.routes.extend(other.routes);
        self.inner = self.inner.merge(other.inner);
        self
    }

    /// A layer around every route, as axum's `Router::layer`.
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

    /// A layer run only when a route matched, as axum's `Router::route_layer`.
    pub fn route_layer<L>(self, layer: L) -> Self
    where
        L: Layer<Route> + Clone + Send + Sync + 'static,
        L::Service: Service<Request> + Clone + Send + Sync + 'static,
        <L::Service as Service<Request>>::Response: IntoResponse + 'static,
        <L::Service as Service<Request>>::Error: Into<Infallible> + 'static,
        <L::Service as Service<Request>>::Future: Send + 'static,
    {
        Self {
            inner: self.inner.route_layer(layer),
            ..self
        }
    }

    /// The handler of requests no route matched, as axum's `Router::fallback`.
    pub fn fallback<H, T>(self, handler: H) -> Self
    where
        H: Handler<T, S>,
        T: 'static,
    {
        Self {
            inner: self.inner.fallback(handler),
            ..self
        }
    }

    /// Gives the handlers their state, as axum's `Router::with_state`.
    pub fn with_state<S2>(self, state: S) -> Router<S2> {
        Router {
            inner: self.inner.with_state(state),
            routes: self.routes,
            rules: self.rules,
        }
    }

    /// Every route, how it is audited, and the gaps, by this router's rules.
    pub fn coverage(&self) -> CoverageReport {
        CoverageReport::new(
            self.routes
                .iter()
                .map(|routed| self.judge(routed))
                .collect(),
        )
    }

    /// axum's router, after a warning in the log (target `audit`) for each gap.
    pub fn into_router(self) -> axum::Router<S> {
        let report = self.coverage();
        for gap in report.gaps() {
            tracing::warn!(
                target: "audit",
                method = %gap.method,
                path = %gap.path,
                because = gap.sensitive_because.as_deref().unwrap_or_default(),
                handler = gap.handler.as_deref().unwrap_or_default(),
                "this route looks sensitive but records only its request: make its handler \
                 #[sensitive], record an action through AuditContext, or exempt it with a reason"
            );
        }
        self.inner
    }

    fn judge(&self, routed: &Routed) -> RouteCoverage {
        let method = routed.handler.method.as_ref();
        let exempt = routed.exempt.clone().or_else(|| {
            self.rules
                .exemption(method, &routed.path)
                .map(str::to_owned)
        });
        let status = match exempt {
            Some(reason) => RouteStatus::Exempt { reason },
            None => routed.handler.status.clone(),
        };
        RouteCoverage {
            method: method.map_or_else(|| "*".to_owned(), ToString::to_string),
            path: routed.path.clone(),
            status,
            sensitive_because: self.rules.why(method, &routed.path),
            handler: routed.handler.handler.clone(),
        }
    }
}

impl<S: Clone + Send + Sync + 'static> From<Router<S>> for axum::Router<S> {
    fn from(router: Router<S>) -> Self {
        router.into_router()
    }
}

fn opaque(path: &str) -> Routed {
    Routed {
        path: path.to_owned(),
        handler: RoutedHandler {
            method: None,
            status: RouteStatus::Opaque,
            handler: None,
        },
        exempt: None,
    }
}

/// A nested route's path, as axum joins it.
fn nested(prefix: &str, path: &str) -> String {
    if prefix.ends_with('/') {
        format!("{prefix}{}", path.trim_start_matches('/'))
    } else if path == "/" {
        prefix.to_owned()
    } else {
        format!("{prefix}{path}")
    }
}
