//! The route report: every route, how it is audited, and the gaps.

use std::fmt;

use serde::Serialize;

/// How a route's requests are audited.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum RouteStatus {
    /// A `#[sensitive]` handler: an action, the target, and its state before and after.
    Sensitive,
    /// A handler that takes [`AuditContext`](crate::AuditContext) and records what it does
    /// itself (an action, details). `audit coverage` checks at run time that it does.
    Manual,
    /// Exempted, with the reason given.
    Exempt {
        /// Why this route needs no more than its request event.
        reason: String,
    },
    /// Only the layer's `http.request` event: who called what, not what it changed.
    RequestOnly,
    /// A service (`route_service`, `nest_service`): its handlers cannot be seen.
    Opaque,
}

impl RouteStatus {
    fn as_str(&self) -> &'static str {
        match self {
            Self::Sensitive => "sensitive",
            Self::Manual => "manual",
            Self::Exempt { .. } => "exempt",
            Self::RequestOnly => "request only",
            Self::Opaque => "opaque service",
        }
    }
}

/// One method of one route.
#[derive(Clone, Debug, Serialize)]
pub struct RouteCoverage {
    /// The HTTP method, or `*` for any (`any(..)`, services).
    pub method: String,
    /// The path as routed, with its prefixes (`/admin/users/{id}`).
    pub path: String,
    /// How its requests are audited.
    #[serde(flatten)]
    pub status: RouteStatus,
    /// Why it looks sensitive (`changes state under /admin`), or `None`.
    pub sensitive_because: Option<String>,
    /// The handler's type name (`app::admin::change_role`), when there is one.
    pub handler: Option<String>,
}

impl RouteCoverage {
    /// Whether this route is a gap: it looks sensitive, and nothing records what it does.
    pub fn is_gap(&self) -> bool {
        self.sensitive_because.is_some()
            && matches!(self.status, RouteStatus::RequestOnly | RouteStatus::Opaque)
    }
}

/// Every route of a router, how each is audited, and the gaps: sensitive-looking routes that
/// are neither `#[sensitive]`, manual nor exempted.
///
/// Assert on it in your own tests, and serve it to admins (it serializes to JSON):
///
/// ```
/// use audit_layer::coverage::{Router, post};
///
/// async fn flush() {}
///
/// let routes: Router = Router::new().route("/admin/cache/flush", post(flush));
/// let report = routes.coverage();
/// assert_eq!(report.gaps().len(), 1, "{report}");
/// assert!(report.to_string().contains("POST /admin/cache/flush"));
/// ```
#[derive(Clone, Debug, Default)]
pub struct CoverageReport {
    routes: Vec<RouteCoverage>,
}

impl CoverageReport {
    pub(crate) fn new(mut routes: Vec<RouteCoverage>) -> Self {
        routes.sort_by(|a, b| (&a.path, &a.method).cmp(&(&b.path, &b.method)));
        Self { routes }
    }

    /// Every route, by path and method.
    pub fn routes(&self) -> &[RouteCoverage] {
        &self.routes
    }

    /// The gaps: routes that look sensitive and record no more than their request.
    pub fn gaps(&self) -> Vec<&RouteCoverage> {
        self.routes.iter().filter(|r| r.is_gap()).collect()
    }

    /// The route of `method` and `path` (`"*"` for any method), if routed.
    pub fn route(&self, method: &str, path: &str) -> Option<&RouteCoverage> {
        self.routes
            .iter()
            .find(|r| r.method == method && r.path == path)
    }
}

/// A line per gap, then a count; readable in a test failure.
impl fmt::Display for CoverageReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let gaps = self.gaps();
        let looking = self
            .routes
            .iter()
            .filter(|r| r.sensitive_because.is_some())
            .count();
        for gap in &gaps {
            writeln!(
                f,
                "gap: {} {} {} and is {}{}",
                gap.method,
                gap.path,
                gap.sensitive_because.as_deref().unwrap_or_default(),
                gap.status.as_str(),
                gap.handler
                    .as_deref()
                    .map(|h| format!(" ({h})"))
                    .unwrap_or_default()
            )?;
        }
        write!(
            f,
            "{} route(s), {looking} sensitive-looking, {} gap(s)",
            self.routes.len(),
            gaps.len()
        )
    }
}

/// As JSON: `{"routes": [..], "gaps": [..]}`, each route with `method`, `path`, `status`
/// (`{"status": "exempt", "reason": ..}` for an exemption), `sensitive_because` and
/// `handler`.
impl Serialize for CoverageReport {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct as _;
        let mut report = serializer.serialize_struct("CoverageReport", 2)?;
        report.serialize_field("routes", &self.routes)?;
        report.serialize_field("gaps", &self.gaps())?;
        report.end()
    }
}
