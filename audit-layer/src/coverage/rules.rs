//! Which routes look sensitive: the one judgement the route report and the trail scan share.

use std::borrow::Cow;

use http::Method;

/// The words whose presence in a path makes a state-changing route sensitive-looking, by
/// default (plurals match too: `users`, `api-keys`).
const DEFAULT_WORDS: [&str; 13] = [
    "user",
    "role",
    "permission",
    "password",
    "key",
    "token",
    "session",
    "config",
    "setting",
    "balance",
    "payment",
    "transfer",
    "export",
];

/// The words that make a route sensitive-looking whatever its method: reading them out is
/// the sensitive act.
const DEFAULT_READ_WORDS: [&str; 1] = ["export"];

/// What makes a route look sensitive, and the routes exempted by name.
///
/// A route looks sensitive when it changes state (`POST`, `PUT`, `PATCH`, `DELETE`, or any
/// method: `any(..)` and services) and is under an admin prefix (`/admin` by default) or
/// names one of the words (users, roles, permissions, passwords, keys, tokens, sessions,
/// config, settings, balance, payment, transfer, export), or, whatever its method, names a
/// read word (export). Words are matched against the path's segments split at `-`, `_` and
/// `.`, ignoring case, a plural `s` and `{parameters}`.
///
/// ```
/// use audit_layer::coverage::CoverageRules;
/// use http::Method;
///
/// let rules = CoverageRules::default()
///     .admin_prefix("/internal")
///     .word("invoice")
///     .exempt(Method::POST, "/admin/cache/flush", "changes no data");
/// assert!(rules.why_sensitive(&Method::DELETE, "/invoices/{id}").is_some());
/// assert!(rules.why_sensitive(&Method::GET, "/admin/users").is_none());
/// assert!(rules.why_sensitive(&Method::GET, "/reports/export").is_some());
/// ```
#[derive(Clone, Debug)]
pub struct CoverageRules {
    admin_prefixes: Vec<String>,
    words: Vec<String>,
    read_words: Vec<String>,
    exempt: Vec<Exemption>,
}

#[derive(Clone, Debug)]
struct Exemption {
    method: Option<Method>,
    path: String,
    reason: Cow<'static, str>,
}

impl Default for CoverageRules {
    fn default() -> Self {
        Self {
            admin_prefixes: vec!["/admin".to_owned()],
            words: DEFAULT_WORDS.iter().map(|w| (*w).to_owned()).collect(),
            read_words: DEFAULT_READ_WORDS.iter().map(|w| (*w).to_owned()).collect(),
            exempt: Vec::new(),
        }
    }
}

impl CoverageRules {
    /// Rules with no prefix, no word and no exemption: nothing looks sensitive until added.
    pub fn empty() -> Self {
        Self {
            admin_prefixes: Vec::new(),
            words: Vec::new(),
            read_words: Vec::new(),
            exempt: Vec::new(),
        }
    }

    /// Another admin prefix (`/internal`): state-changing routes under it look sensitive.
    /// A prefix matches whole segments: `/admin` covers `/admin/users`, not `/administrivia`.
    pub fn admin_prefix(mut self, prefix: impl Into<String>) -> Self {
        let prefix = prefix.into();
        self.admin_prefixes
            .push(prefix.trim_end_matches('/').to_owned());
        self
    }

    /// Another word that makes state-changing routes naming it look sensitive.
    pub fn word(mut self, word: impl AsRef<str>) -> Self {
        self.words
            .push(singular(&word.as_ref().to_lowercase()).to_owned());
        self
    }

    /// Another word that makes routes naming it look sensitive whatever their method
    /// (`download`, say).
    pub fn read_word(mut self, word: impl AsRef<str>) -> Self {
        self.read_words
            .push(singular(&word.as_ref().to_lowercase()).to_owned());
        self
    }

    /// Exempts a route by method and path, as routed (`/admin/users/{id}`), with the
    /// reason the report shows. For routes you build, `MethodRouter::exempt` says it where
    /// the route is.
    pub fn exempt(
        mut self,
        method: Method,
        path: impl Into<String>,
        reason: impl Into<Cow<'static, str>>,
    ) -> Self {
        self.exempt.push(Exemption {
            method: Some(method),
            path: path.into(),
            reason: reason.into(),
        });
        self
    }

    /// Why a route looks sensitive, or `None` when it does not. `method` `None` stands for
    /// any method.
    pub fn why_sensitive(&self, method: &Method, path: &str) -> Option<String> {
        self.why(Some(method), path)
    }

    pub(crate) fn why(&self, method: Option<&Method>, path: &str) -> Option<String> {
        let tokens = tokens(path);
        if let Some(word) = self
            .read_words
            .iter()
            .find(|word| tokens.iter().any(|t| t == *word))
        {
            return Some(format!("names `{word}`"));
        }
        let changes_state = method
            .is_none_or(|m| [Method::POST, Method::PUT, Method::PATCH, Method::DELETE].contains(m));
        if !changes_state {
            return None;
        }
        let changes = if method.is_some() {
            "changes state"
        } else {
            "takes any method"
        };
        if let Some(prefix) = self
            .admin_prefixes
            .iter()
            .find(|prefix| under(path, prefix))
        {
            return Some(format!("{changes} under {prefix}"));
        }
        self.words
            .iter()
            .find(|word| tokens.iter().any(|t| t == *word))
            .map(|word| format!("{changes} and names `{word}`"))
    }

    /// Exempts every method of a path, as routed: a service's (`nest_service`'s
    /// `/static/{*rest}`), or a route taking any method.
    pub fn exempt_path(
        mut self,
        path: impl Into<String>,
        reason: impl Into<Cow<'static, str>>,
    ) -> Self {
        self.exempt.push(Exemption {
            method: None,
            path: path.into(),
            reason: reason.into(),
        });
        self
    }

    /// The reason a route was exempted by these rules, if it was. A route of any method is
    /// exempted only by [`exempt_path`](Self::exempt_path).
    pub(crate) fn exemption(&self, method: Option<&Method>, path: &str) -> Option<&str> {
        self.exempt
            .iter()
            .find(|e| e.path == path && (e.method.is_none() || e.method.as_ref() == method))
            .map(|e| e.reason.as_ref())
    }
}

/// Whether `path` is `prefix` or below it, by whole segments.
fn under(path: &str, prefix: &str) -> bool {
    if prefix.is_empty() {
        return true;
    }
    path.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// The words of a path: segments split at `-`, `_` and `.`, lower case, singular, without
/// parameters and wildcards.
fn tokens(path: &str) -> Vec<String> {
    path.split('/')
        .filter(|segment| !segment.starts_with('{') && !segment.starts_with('*'))
        .flat_map(|segment| segment.split(['-', '_', '.']))
        .filter(|token| !token.is_empty())
        .map(|token| singular(&token.to_lowercase()).to_owned())
        .collect()
}

fn singular(word: &str) -> &str {
    match word.strip_suffix('s') {
        Some(stem) if stem.len() >= 3 && !stem.ends_with('s') => stem,
        _ => word,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_rule_of_the_defaults() {
        let rules = CoverageRules::default();
        let why = |method: Method, path: &str| rules.why_sensitive(&method, path);
        assert!(why(Method::POST, "/admin/cache").is_some());
        assert!(why(Method::POST, "/administrivia").is_none());
        assert!(why(Method::GET, "/admin/users").is_none());
        for path in [
            "/users/{id}",
            "/v1/roles",
            "/permissions",
            "/me/password",
            "/api-keys",
            "/tokens/{token}",
            "/sessions",
            "/config",
            "/settings/theme",
            "/update-balance",
            "/payments",
            "/transfers",
        ] {
            assert!(why(Method::PATCH, path).is_some(), "{path}");
            assert!(why(Method::GET, path).is_none(), "{path}");
        }
        assert!(why(Method::GET, "/admin/export-users").is_some());
        assert!(why(Method::GET, "/reports/exports").is_some());
        assert!(why(Method::POST, "/login").is_none());
        assert!(
            why(Method::POST, "/monkeys").is_none(),
            "a word, not a suffix"
        );
        assert!(
            why(Method::POST, "/items/{user}").is_none(),
            "parameters are not words"
        );
        assert!(rules.why(None, "/users").is_some(), "any method");
        assert_eq!(singular("address"), "address");
    }
}
