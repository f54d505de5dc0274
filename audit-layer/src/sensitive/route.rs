//! [`SensitiveRouteInfo`]: a route served by a sensitive handler, as the layer has seen it.

/// A route served by a sensitive handler, as the layer has seen it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[non_exhaustive]
pub struct SensitiveRouteInfo {
    /// The HTTP method.
    pub method: String,
    /// The route pattern (`/admin/users/{id}/role`).
    pub route: String,
    /// The handler's action (`user.role.change`).
    pub action: String,
}
