//! What an event is, in the terms SIEM schemas sort events by: one decision that every
//! format's mapping reads, so that OCSF's class and ECS's category never disagree.

use serde_json::Value;

use crate::event::{AuditEvent, Category};

/// What an event records, as the SIEM formats classify it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Kind<'a> {
    /// A request (or any event no rule below claims).
    Api,
    /// A login, successful or not.
    Login,
    /// A logout.
    Logout,
    /// Another authentication event (MFA, session, API key).
    OtherAuth,
    /// A change to an account.
    Account(AccountActivity),
    /// Roles or permissions granted to (or taken from) an account.
    Privileges { granted: bool, names: Vec<&'a str> },
    /// A detector's alert.
    Alert,
    /// The audit system's own events.
    Lifecycle(Lifecycle),
}

/// What was done to an account (OCSF Account Change's activities).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AccountActivity {
    Create,
    Enable,
    PasswordChange,
    PasswordReset,
    Disable,
    Delete,
    Lock,
    Unlock,
    Other,
}

/// What the audit system did (OCSF Application Lifecycle's activities).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Lifecycle {
    Start,
    Stop,
    Other,
}

/// Field names that hold an account's roles or permissions.
const PRIVILEGE_WORDS: [&str; 4] = ["role", "permission", "privilege", "group"];

/// Classifies `event`. The rules, in order (docs/siem.md has them as a table): alerts;
/// system events; a change to an account's roles or permissions; a change to an account
/// (a sensitive event whose target or action names a user or account, or any action about
/// a password); authentication; everything else is an API call.
pub(crate) fn classify(event: &AuditEvent) -> Kind<'_> {
    let action = event.action.as_ref();
    match event.category {
        Category::Alert => return Kind::Alert,
        Category::System => {
            return Kind::Lifecycle(match action {
                "audit.start" => Lifecycle::Start,
                "audit.stop" => Lifecycle::Stop,
                _ => Lifecycle::Other,
            });
        }
        _ => {}
    }
    let about_account = matches!(target_kind(event), Some("user" | "account"))
        || action.starts_with("user.")
        || action.starts_with("account.");
    if about_account && let Some(kind) = privileges(event) {
        return kind;
    }
    if action.contains("password") {
        return Kind::Account(if action.contains("reset") {
            AccountActivity::PasswordReset
        } else {
            AccountActivity::PasswordChange
        });
    }
    if event.category == Category::Sensitive && about_account {
        return Kind::Account(account_activity(action));
    }
    if event.category == Category::Auth {
        return if ["logout", "logoff", "signout", "sign_out"]
            .iter()
            .any(|word| action.contains(word))
        {
            Kind::Logout
        } else if ["login", "logon", "signin", "sign_in"]
            .iter()
            .any(|word| action.contains(word))
        {
            Kind::Login
        } else {
            Kind::OtherAuth
        };
    }
    Kind::Api
}

/// The activity an account action's name implies.
fn account_activity(action: &str) -> AccountActivity {
    let last = action.rsplit('.').next().unwrap_or(action);
    match last {
        "create" | "created" | "register" | "invite" => AccountActivity::Create,
        "delete" | "deleted" | "remove" | "removed" => AccountActivity::Delete,
        "enable" | "enabled" | "activate" | "reactivate" => AccountActivity::Enable,
        "disable" | "disabled" | "suspend" | "deactivate" => AccountActivity::Disable,
        "lock" | "locked" => AccountActivity::Lock,
        "unlock" | "unlocked" => AccountActivity::Unlock,
        _ => AccountActivity::Other,
    }
}

/// Roles granted or revoked by the event's changes: the values a privilege field gained,
/// else those it lost. `None` when no privilege field changed visibly.
fn privileges(event: &AuditEvent) -> Option<Kind<'_>> {
    let changes = event.changes.as_deref()?;
    let mut granted = Vec::new();
    let mut revoked = Vec::new();
    for change in changes {
        let field = change.field.as_bytes();
        let named = |word: &str| {
            field
                .windows(word.len())
                .any(|window| window.eq_ignore_ascii_case(word.as_bytes()))
        };
        if change.redacted || !PRIVILEGE_WORDS.into_iter().any(named) {
            continue;
        }
        let old = names(change.old.as_ref());
        let new = names(change.new.as_ref());
        granted.extend(new.iter().filter(|name| !old.contains(name)));
        revoked.extend(old.iter().filter(|name| !new.contains(name)));
    }
    if !granted.is_empty() {
        Some(Kind::Privileges {
            granted: true,
            names: granted,
        })
    } else if !revoked.is_empty() {
        Some(Kind::Privileges {
            granted: false,
            names: revoked,
        })
    } else {
        None
    }
}

/// The names a privilege field holds: a string, or an array of strings.
fn names(value: Option<&Value>) -> Vec<&str> {
    match value {
        Some(Value::String(name)) => vec![name.as_str()],
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

/// The kind part of the event's `kind:id` target (`user` of `user:7`).
pub(crate) fn target_kind(event: &AuditEvent) -> Option<&str> {
    let target = event.target.as_deref()?;
    target.split_once(':').map(|(kind, _)| kind)
}

/// The account an account event is about: the target's id (`7` of `user:7`), else the
/// username the application recorded, else the actor.
pub(crate) fn subject_user(event: &AuditEvent) -> (&str, Option<&str>) {
    if let Some(target) = event.target.as_deref()
        && let Some((kind, id)) = target.split_once(':')
        && matches!(kind, "user" | "account")
    {
        return (id, None);
    }
    let username = detail_str(event, "username");
    match username {
        Some(name) if event.actor.is_anonymous() => ("", Some(name)),
        _ => (
            event.actor.id.as_str(),
            username.or(event.actor.name.as_deref()),
        ),
    }
}

/// A string entry of the event's details.
pub(crate) fn detail_str<'a>(event: &'a AuditEvent, key: &str) -> Option<&'a str> {
    event.details.as_ref()?.get(key)?.as_str()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Change, Outcome};
    use crate::{Actor, AuditEvent};

    fn event(category: Category, action: &'static str) -> AuditEvent {
        AuditEvent::new(category, action, Outcome::Success, Actor::user("7"))
    }

    #[test]
    fn classes_follow_the_documented_rules() {
        assert_eq!(classify(&event(Category::Alert, "auth.login")), Kind::Alert);
        assert_eq!(
            classify(&event(Category::System, "audit.start")),
            Kind::Lifecycle(Lifecycle::Start)
        );
        assert_eq!(classify(&event(Category::Auth, "auth.login")), Kind::Login);
        assert_eq!(
            classify(&event(Category::Auth, "auth.logout")),
            Kind::Logout
        );
        assert_eq!(
            classify(&event(Category::Auth, "auth.mfa")),
            Kind::OtherAuth
        );
        assert_eq!(
            classify(&event(Category::Auth, "auth.password.reset")),
            Kind::Account(AccountActivity::PasswordReset)
        );
        assert_eq!(
            classify(&event(Category::Sensitive, "user.delete").with_target("user:2")),
            Kind::Account(AccountActivity::Delete)
        );
        assert_eq!(
            classify(
                &event(Category::Sensitive, "balance.update").with_target("account_balance:2")
            ),
            Kind::Api
        );
        assert_eq!(
            classify(&event(Category::Request, "http.request")),
            Kind::Api
        );
    }

    #[test]
    fn a_role_change_grants_what_is_new_and_revokes_what_is_gone() {
        let mut grant = event(Category::Sensitive, "user.role.change").with_target("user:2");
        grant.changes = Some(vec![Change::value(
            "role",
            Some("viewer".into()),
            Some("admin".into()),
        )]);
        assert_eq!(
            classify(&grant),
            Kind::Privileges {
                granted: true,
                names: vec!["admin"]
            }
        );
        let mut revoke = event(Category::Sensitive, "user.update").with_target("user:2");
        revoke.changes = Some(vec![Change::value(
            "roles",
            Some(serde_json::json!(["admin", "viewer"])),
            Some(serde_json::json!(["viewer"])),
        )]);
        assert_eq!(
            classify(&revoke),
            Kind::Privileges {
                granted: false,
                names: vec!["admin"]
            }
        );
        // A redacted role change says nothing about which roles: an account change.
        let mut hidden = event(Category::Sensitive, "user.update").with_target("user:2");
        hidden.changes = Some(vec![Change::redacted("role")]);
        assert_eq!(classify(&hidden), Kind::Account(AccountActivity::Other));
    }
}
