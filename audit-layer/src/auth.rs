//! Authentication events, named once: the actions, the detail names and the failure
//! classes that [`AuditContext`]'s helpers record and the detectors count.
//!
//! A login recorded by hand took five to seven calls tied together by strings, and a
//! forgotten [`Category::Auth`] made it an ordinary, batched event.
//! One helper per authentication event does it all: the category (durable before the
//! response), the action, the outcome, and the details under the names below.
//!
//! | helper | action | outcome | details |
//! |---|---|---|---|
//! | [`login_succeeded`](AuditContext::login_succeeded) | [`LOGIN`] | success | the actor; target `user:<id>` |
//! | [`login_failed`](AuditContext::login_failed) | [`LOGIN`] | failure (`locked`: denied) | [`USERNAME`], [`FAILURE`] |
//! | [`logged_out`](AuditContext::logged_out) | [`LOGOUT`] | success | the actor |
//! | [`password_changed`](AuditContext::password_changed) | [`PASSWORD_CHANGE`] | success | the actor |
//! | [`password_reset_requested`](AuditContext::password_reset_requested) | [`PASSWORD_RESET_REQUEST`] | success | [`USERNAME`] |
//! | [`password_reset_completed`](AuditContext::password_reset_completed) | [`PASSWORD_RESET`] | success | the actor |
//! | [`mfa_challenged`](AuditContext::mfa_challenged) | [`MFA_CHALLENGE`] | success | the actor |
//! | [`mfa_verified`](AuditContext::mfa_verified) | [`MFA_VERIFY`] | success or failure | the actor |
//! | [`session_created`](AuditContext::session_created), [`session_revoked`](AuditContext::session_revoked) | [`SESSION_CREATE`], [`SESSION_REVOKE`] | success | the actor |
//! | [`api_key_created`](AuditContext::api_key_created), [`api_key_revoked`](AuditContext::api_key_revoked) | [`API_KEY_CREATE`], [`API_KEY_REVOKE`] | success | the actor; target `api_client:<key id>` |
//!
//! ```
//! use audit_layer::auth::LoginFailure;
//! use audit_layer::{Actor, AuditContext};
//! use http::StatusCode;
//!
//! async fn login(audit: AuditContext /* , the form */) -> StatusCode {
//!     # let (username, checked) = ("alice", Err::<u64, _>(LoginFailure::BadPassword));
//!     match checked {
//!         Ok(user_id) => {
//!             audit.login_succeeded(Actor::user(user_id.to_string()));
//!             StatusCode::OK
//!         }
//!         Err(failure) => {
//!             audit.login_failed(username, failure);
//!             StatusCode::UNAUTHORIZED
//!         }
//!     }
//! }
//! ```
//!
//! [`BruteForce::logins`](crate::detect::BruteForce::logins) counts the failures these
//! helpers record.

use crate::event::Outcome;
use crate::{Actor, AuditContext, Category};

/// A login, successful or not.
pub const LOGIN: &str = "auth.login";
/// A logout.
pub const LOGOUT: &str = "auth.logout";
/// A password changed by its owner.
pub const PASSWORD_CHANGE: &str = "auth.password.change";
/// A password reset asked for (the reset link or code sent).
pub const PASSWORD_RESET_REQUEST: &str = "auth.password.reset.request";
/// A password reset completed.
pub const PASSWORD_RESET: &str = "auth.password.reset";
/// A second factor asked for.
pub const MFA_CHALLENGE: &str = "auth.mfa.challenge";
/// A second factor checked.
pub const MFA_VERIFY: &str = "auth.mfa.verify";
/// A session opened.
pub const SESSION_CREATE: &str = "auth.session.create";
/// A session closed or revoked.
pub const SESSION_REVOKE: &str = "auth.session.revoke";
/// An API key issued.
pub const API_KEY_CREATE: &str = "auth.api_key.create";
/// An API key revoked.
pub const API_KEY_REVOKE: &str = "auth.api_key.revoke";

/// The detail that holds the username a login or reset was tried for.
pub const USERNAME: &str = "username";
/// The detail that holds why a login failed ([`LoginFailure::as_str`]).
pub const FAILURE: &str = "failure";

/// Why a login failed, as a class: what an investigator filters on (and what the client
/// should not be told apart).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LoginFailure {
    /// No account has that username.
    UnknownUser,
    /// The password did not match.
    BadPassword,
    /// The account is locked or disabled.
    Locked,
    /// The password matched; a second factor is required and was not given.
    MfaRequired,
}

impl LoginFailure {
    /// The name recorded in the [`FAILURE`] detail: `unknown_user`, `bad_password`,
    /// `locked`, `mfa_required`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UnknownUser => "unknown_user",
            Self::BadPassword => "bad_password",
            Self::Locked => "locked",
            Self::MfaRequired => "mfa_required",
        }
    }
}

impl AuditContext {
    /// One authentication event: category, action and outcome, under one lock.
    fn auth_event(&self, action: &'static str, outcome: Outcome) {
        let mut notes = self.lock();
        notes.category = Some(Category::Auth);
        notes.action = Some(action.into());
        notes.outcome = Some(outcome);
    }

    /// An event whose actor is `actor` and whose target is that actor's account.
    fn about(&self, actor: Actor) {
        let mut notes = self.lock();
        notes.target = Some(format!("user:{}", actor.id));
        notes.actor = Some(actor);
    }

    /// A login that succeeded: `actor` is who just logged in.
    pub fn login_succeeded(&self, actor: Actor) {
        self.auth_event(LOGIN, Outcome::Success);
        self.about(actor);
    }

    /// A login that failed: the username tried and why. The actor stays who the request
    /// carried (nobody, usually); a locked account is a denial, the others failures.
    pub fn login_failed(&self, username: impl Into<String>, failure: LoginFailure) {
        let outcome = match failure {
            LoginFailure::Locked => Outcome::Denied,
            _ => Outcome::Failure,
        };
        self.auth_event(LOGIN, outcome);
        self.detail(USERNAME, username.into());
        self.detail(FAILURE, failure.as_str());
    }

    /// A logout by `actor`.
    pub fn logged_out(&self, actor: Actor) {
        self.auth_event(LOGOUT, Outcome::Success);
        self.about(actor);
    }

    /// `actor` changed their password.
    pub fn password_changed(&self, actor: Actor) {
        self.auth_event(PASSWORD_CHANGE, Outcome::Success);
        self.about(actor);
    }

    /// A password reset asked for `username` (recorded whether or not it exists, as the
    /// answer to the client should be the same).
    pub fn password_reset_requested(&self, username: impl Into<String>) {
        self.auth_event(PASSWORD_RESET_REQUEST, Outcome::Success);
        self.detail(USERNAME, username.into());
    }

    /// `actor`'s password reset, completed.
    pub fn password_reset_completed(&self, actor: Actor) {
        self.auth_event(PASSWORD_RESET, Outcome::Success);
        self.about(actor);
    }

    /// A second factor asked of `actor`.
    pub fn mfa_challenged(&self, actor: Actor) {
        self.auth_event(MFA_CHALLENGE, Outcome::Success);
        self.about(actor);
    }

    /// `actor`'s second factor checked: `passed` or not.
    pub fn mfa_verified(&self, actor: Actor, passed: bool) {
        let outcome = if passed {
            Outcome::Success
        } else {
            Outcome::Failure
        };
        self.auth_event(MFA_VERIFY, outcome);
        self.about(actor);
    }

    /// A session opened for `actor`. Record no session token: it is the credential.
    pub fn session_created(&self, actor: Actor) {
        self.auth_event(SESSION_CREATE, Outcome::Success);
        self.about(actor);
    }

    /// A session of `actor` closed or revoked.
    pub fn session_revoked(&self, actor: Actor) {
        self.auth_event(SESSION_REVOKE, Outcome::Success);
        self.about(actor);
    }

    /// An API key issued by `actor`, named by its id (`key_id`, never the key itself), as
    /// the target `api_client:<key id>`: a kind named `api_key` would be taken for a secret
    /// and redacted.
    pub fn api_key_created(&self, actor: Actor, key_id: impl Into<String>) {
        self.auth_event(API_KEY_CREATE, Outcome::Success);
        self.set_actor(actor);
        self.set_target(format!("api_client:{}", key_id.into()));
    }

    /// An API key revoked by `actor`, named by its id.
    pub fn api_key_revoked(&self, actor: Actor, key_id: impl Into<String>) {
        self.auth_event(API_KEY_REVOKE, Outcome::Success);
        self.set_actor(actor);
        self.set_target(format!("api_client:{}", key_id.into()));
    }
}
