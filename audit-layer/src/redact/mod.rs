//! Redaction and bounds: what keeps secrets and oversized values out of the trail.
//!
//! A name (query parameter, JSON field, label, changed field's path, header) is a secret
//! name when, compared without regard to case:
//!
//! - one of its words equals an entry of the list (words are split at `_ - . [ ]`, spaces and
//!   camelCase humps, so `client_secret`, `api-key` and `refreshToken` match), or
//! - the name without separators contains an entry of five letters or more (`sessionid`,
//!   `userpassword`), or equals any entry (`apikey`).
//!
//! Short entries (`key`, `pwd`, `auth`, `card`, `cvv`) match only as whole words, so `monkey`
//! is not redacted; a name that is over-redacted costs a little context, a secret that is not
//! costs an incident.
//!
//! Every event passes through one stage before it is queued, whoever filled it: the
//! layer's (which captures a request as it is and leaves the judging here), an event
//! that application code builds whole and hands to
//! [`AuditTrail::record`](crate::AuditTrail::record), a detector's alert, and the trail's
//! own events. A query loses the values of its secret parameters; a path, the segments of
//! route parameters with secret names (`{token}`; so a `{key}` parameter is redacted too:
//! name it for what it holds, `{name}`, or change the list). A header value that
//! `HeaderValue::set_sensitive` marks (as tower-http's `SetSensitiveHeaders` does) is never
//! copied: it is recorded as `[REDACTED]`, whatever the configuration records.
//!
//! Free text, which no name describes, is scanned for the common shapes of a secret: every
//! `reason`, every string in `details` (an error's text, put there by a handler, can
//! quote a URL or a connection string), and every recorded header's value (a `Referer`
//! can carry a reset token in its query). The value after a secret name (`api_key=x`,
//! `"password": "x"`) or a credentials header (`Authorization: x`, to the end of its line),
//! a URL's password and `Bearer`/`Basic` credentials become `[REDACTED]`. It is a net, not a
//! guarantee, and it over-redacts rather than under-redacts. Snapshots (`before`, `after`)
//! and the values of changes are structured data, and labels short values: they are
//! redacted by name, and of their strings only a URL's credentials are taken out
//! (`postgres://app:[REDACTED]@db`, under a name like `database_url` that is no secret's).
//! A change to the redacted part alone is still reported, as a redacted change.
//!
//! Bounds are in bytes, and a cut value ends in `...[truncated]`: strings in `details`,
//! `before`, `after` and changes at 4 KiB, their object keys at 256 (a cut key that meets
//! another gets `#2`, `#3` after it, so no value is lost), nesting at 16 levels; paths and
//! queries at 2 KiB, header values and user agents at 512, header names at 128 (the
//! layer's recorded headers are named in the configuration, which refuses a longer name).
//! A name is checked for secrets before it is cut.
//!
//! # Example
//!
//! ```
//! use audit_layer::redact::SecretNames;
//!
//! let names = SecretNames::default();
//! assert!(names.is_secret("password"));
//! assert!(names.is_secret("Client_Secret"));
//! assert!(names.is_secret("refreshToken"));
//! assert!(names.is_secret("x-api-key"));
//! assert!(!names.is_secret("monkey"));
//! assert!(!names.is_secret("page"));
//! ```

/// The value that replaces a secret.
pub const REDACTED: &str = "[REDACTED]";

/// The marker that ends a value cut to its bound.
pub const TRUNCATED: &str = "...[truncated]";

mod bounds;
mod json;
mod names;
mod request;
mod scrub;
mod text;

pub use self::names::{DEFAULT_SECRET_NAMES, SecretNames};

pub(crate) use self::bounds::{bound, bound_into, bound_json, limits};
pub(crate) use self::json::{redact_json, redact_url_credentials_in};
pub(crate) use self::names::FORBIDDEN_HEADERS;
#[cfg(all(test, feature = "axum"))]
pub(crate) use self::scrub::PANIC_IN_SCRUB;
pub(crate) use self::scrub::{Scrubbed, scrub};
pub(crate) use self::text::redact_url_credentials;
