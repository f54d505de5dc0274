//! Who did it: the actor of an event.

use serde::{Deserialize, Serialize};

/// Who performed an audited action.
///
/// The layer resolves the actor when the response is ready, from the first of:
///
/// 1. an [`Actor`] in the **response** extensions (a login handler naming the user it just
///    authenticated, or an auth layer *inside* the audit layer);
/// 2. an actor set on the request's [`AuditContext`](crate::AuditContext) (an extractor or
///    middleware inside the audit layer);
/// 3. an [`Actor`] in the **request** extensions when the request reached the audit layer (an
///    auth layer *outside* it);
/// 4. the resolver given to
///    [`AuditTrailBuilder::actor_resolver`](crate::AuditTrailBuilder::actor_resolver) (or
///    [`actor_resolver_async`](crate::AuditTrailBuilder::actor_resolver_async), whose
///    look-up the response waits for);
/// 5. the header named by
///    [`AuditTrailBuilder::trust_actor_header`](crate::AuditTrailBuilder::trust_actor_header),
///    an explicit opt-in;
/// 6. otherwise [`Actor::anonymous`].
///
/// # Example
///
/// ```
/// use audit_layer::{Actor, ActorKind};
///
/// let alice = Actor::user("1").with_name("alice").with_role("admin");
/// assert_eq!(alice.kind, ActorKind::User);
/// assert_eq!(
///     serde_json::to_string(&alice).unwrap(),
///     r#"{"id":"1","kind":"user","name":"alice","roles":["admin"]}"#
/// );
/// assert_eq!(serde_json::to_string(&Actor::anonymous()).unwrap(), r#"{"id":"anonymous","kind":"anonymous"}"#);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Actor {
    /// A stable identifier: a user id, a service account name.
    pub id: String,
    /// What kind of actor this is.
    pub kind: ActorKind,
    /// A readable name, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Roles held when the action was performed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
}

/// The id of [`Actor::anonymous`].
pub(crate) const ANONYMOUS_ID: &str = "anonymous";

impl Actor {
    /// An authenticated user.
    pub fn user(id: impl Into<String>) -> Self {
        Self::new(id, ActorKind::User)
    }

    /// A service or machine identity (an API client, a job).
    pub fn service(id: impl Into<String>) -> Self {
        Self::new(id, ActorKind::Service)
    }

    /// Nobody authenticated.
    pub fn anonymous() -> Self {
        Self::new(ANONYMOUS_ID, ActorKind::Anonymous)
    }

    pub(crate) fn new(id: impl Into<String>, kind: ActorKind) -> Self {
        Self {
            id: id.into(),
            kind,
            name: None,
            roles: Vec::new(),
        }
    }

    /// Sets the readable name.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Adds one role.
    pub fn with_role(mut self, role: impl Into<String>) -> Self {
        self.roles.push(role.into());
        self
    }

    /// Adds several roles.
    pub fn with_roles<I, R>(mut self, roles: I) -> Self
    where
        I: IntoIterator<Item = R>,
        R: Into<String>,
    {
        self.roles.extend(roles.into_iter().map(Into::into));
        self
    }

    /// Whether this is [`Actor::anonymous`].
    pub fn is_anonymous(&self) -> bool {
        self.kind == ActorKind::Anonymous
    }
}

/// What kind of [`Actor`] acted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum ActorKind {
    /// A person with an account.
    User,
    /// A machine identity.
    Service,
    /// Nobody authenticated.
    Anonymous,
}
