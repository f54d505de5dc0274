//! [`Snapshot`]: how a sensitive handler reads the current state of its resource.

use std::fmt::Display;
use std::future::Future;

use super::Auditable;
use crate::error::BoxError;

/// Reads the current state of a resource from the application state `S`, once per resource
/// type. A `#[sensitive]` handler calls it just before its body runs (`before`) and just after
/// it returns (`after`), with the same key.
///
/// `Ok(None)` means the resource does not exist (before a creation, after a deletion).
///
#[cfg_attr(feature = "derive", doc = "```")]
#[cfg_attr(not(feature = "derive"), doc = "```ignore")]
/// use audit_layer::{Auditable, BoxError};
/// use audit_layer::sensitive::Snapshot;
/// use serde::Serialize;
/// use std::collections::HashMap;
/// use std::sync::{Arc, Mutex};
///
/// #[derive(Clone, Serialize, Auditable)]
/// #[audit(resource = "user")]
/// struct User {
///     #[audit(id)]
///     id: u64,
///     role: String,
/// }
///
/// #[derive(Clone, Default)]
/// struct AppState {
///     users: Arc<Mutex<HashMap<u64, User>>>,
/// }
///
/// impl Snapshot<AppState> for User {
///     type Key = u64;
///
///     async fn load(state: &AppState, key: &u64) -> Result<Option<Self>, BoxError> {
///         Ok(state.users.lock().map_err(|_| "poisoned")?.get(key).cloned())
///     }
/// }
/// ```
pub trait Snapshot<S>: Auditable + Sized {
    /// What identifies one resource (a user id); shown in the target when no state was found.
    type Key: Clone + Display + Send + Sync;

    /// The current state of the resource `key`, or `None` if it does not exist.
    fn load(
        state: &S,
        key: &Self::Key,
    ) -> impl Future<Output = Result<Option<Self>, BoxError>> + Send;
}
