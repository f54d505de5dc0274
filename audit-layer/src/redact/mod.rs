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
//! costs an incident. An entry written `=code` matches only a whole name (`?code=` of an
//! OAuth callback, not `zip_code`); in free text, only before `=` (`code=...`, not
//! `status code: 503`).
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
//! `reason`, every string in `details`, `before`, `after`, changes and labels (an error's
//! text or a configuration value can quote a URL or a connection string), the `target`,
//! the user agent, each forwarding entry and every recorded header's value (a `Referer`
//! can carry a reset token in its query). The value after a secret name (`api_key=x`,
//! `"password": "x"`) or a credentials header (`Authorization: x`, to the end of its line),
//! a URL's credentials and `Bearer`/`Basic` credentials become `[REDACTED]`, and a card
//! number (13 to 19 digits passing the Luhn check) keeps only its last four digits, as it
//! does in the path and the query. It is a net, not a guarantee, and it over-redacts rather
//! than under-redacts. A change to the redacted part alone is still reported, as a
//! redacted change.
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
mod card;
mod json;
mod names;
mod request;
mod scrub;
mod text;

pub use self::names::{DEFAULT_SECRET_NAMES, SecretNames};

pub(crate) use self::bounds::{bound, bound_into, bound_json, limits};
pub(crate) use self::json::{redact_json, scan_strings_in};
pub(crate) use self::names::FORBIDDEN_HEADERS;
#[cfg(all(test, feature = "axum"))]
pub(crate) use self::scrub::PANIC_IN_SCRUB;
pub(crate) use self::scrub::{Scrubbed, scrub};
pub(crate) use self::text::scan_free_text;
