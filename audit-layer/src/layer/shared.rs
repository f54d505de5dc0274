//! [`Shared`]: what every clone of the layer, every request's [`AuditContext`](crate::AuditContext)
//! and the trail's handle share.

use std::collections::BTreeSet;
use std::sync::{Mutex, PoisonError};

use super::config::Config;
use crate::delivery::Intake;

/// The layer's configuration, the way into the queue, and what the layer has learned.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) intake: Intake,
    /// Routes served by sensitive handlers, learned as they are called.
    sensitive_routes: Mutex<BTreeSet<SensitiveRouteInfo>>,
}

impl AsRef<Intake> for Shared {
    fn as_ref(&self) -> &Intake {
        &self.intake
    }
}

impl Shared {
    pub(crate) fn new(config: Config, intake: Intake) -> Self {
        Self {
            config,
            intake,
            sensitive_routes: Mutex::default(),
        }
    }

    /// Remembers that a sensitive handler serves this route.
    #[cfg_attr(not(feature = "axum"), allow(dead_code))]
    pub(crate) fn note_sensitive_route(&self, method: &str, route: &str, action: &str) {
        let mut routes = self
            .sensitive_routes
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let known = routes
            .iter()
            .any(|r| r.method == method && r.route == route && r.action == action);
        if !known {
            routes.insert(SensitiveRouteInfo {
                method: method.to_owned(),
                route: route.to_owned(),
                action: action.to_owned(),
            });
        }
    }

    /// The routes served by sensitive handlers so far.
    pub(crate) fn sensitive_routes(&self) -> Vec<SensitiveRouteInfo> {
        self.sensitive_routes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .cloned()
            .collect()
    }
}

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
