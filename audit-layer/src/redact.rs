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
//! Every event passes through it, whoever filled it: the layer redacts the query it
//! captures, and the path segments of route parameters with secret names (`{token}`; so a
//! `{key}` parameter is redacted too: name it for what it holds, `{name}`, or change the
//! list); a handler's labels and `details` are redacted as its request's event is
//! completed; snapshots when they are taken; and an event that application code builds
//! whole is redacted and bounded, every part of it, by
//! [`AuditTrail::record`](crate::AuditTrail::record).
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
//! use audit_layer::SecretNames;
//!
//! let names = SecretNames::default();
//! assert!(names.is_secret("password"));
//! assert!(names.is_secret("Client_Secret"));
//! assert!(names.is_secret("refreshToken"));
//! assert!(names.is_secret("x-api-key"));
//! assert!(!names.is_secret("monkey"));
//! assert!(!names.is_secret("page"));
//! ```

use std::borrow::Cow;

use percent_encoding::percent_decode_str;

use crate::actor::Actor;
use crate::event::{AuditEvent, Change};
use crate::request_id::MAX_REQUEST_ID_LEN;

/// The value that replaces a secret.
pub const REDACTED: &str = "[REDACTED]";

/// The marker that ends a value cut to its bound.
pub const TRUNCATED: &str = "...[truncated]";

/// The names redacted by default (see the [module docs](self) for how they match).
pub const DEFAULT_SECRET_NAMES: &[&str] = &[
    "password",
    "passwd",
    "pwd",
    "secret",
    "token",
    "access_token",
    "refresh_token",
    "id_token",
    "api_key",
    "apikey",
    "key",
    "session",
    "auth",
    "signature",
    "card",
    "cvv",
];

/// Header names that can never be recorded, whatever the configuration says.
pub(crate) const FORBIDDEN_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
];

/// Upper bounds, in bytes, of recorded strings.
pub(crate) mod limits {
    pub(crate) const PATH: usize = 2048;
    pub(crate) const ROUTE: usize = 2048;
    pub(crate) const QUERY: usize = 2048;
    pub(crate) const USER_AGENT: usize = 512;
    pub(crate) const HEADER_VALUE: usize = 512;
    pub(crate) const FORWARDED_ENTRY: usize = 64;
    pub(crate) const FORWARDED_ENTRIES: usize = 32;
    /// Forwarding headers longer than this are not parsed at all.
    pub(crate) const FORWARDED_HEADER: usize = 32 * 1024;
    pub(crate) const ACTION: usize = 128;
    pub(crate) const TARGET: usize = 256;
    pub(crate) const REASON: usize = 1024;
    pub(crate) const ACTOR_FIELD: usize = 256;
    pub(crate) const ACTOR_ROLES: usize = 32;
    pub(crate) const LABEL_KEY: usize = 64;
    pub(crate) const LABEL_VALUE: usize = 256;
    pub(crate) const LABELS: usize = 64;
    pub(crate) const DETAIL_STRING: usize = 4096;
    /// An object key inside `details`, `before`, `after` or a change's values.
    pub(crate) const DETAIL_KEY: usize = 256;
    /// A recorded header's name, in an event built by application code.
    pub(crate) const HEADER_NAME: usize = 128;
    /// A change's field path (`address.city`), in an event built by application code.
    pub(crate) const CHANGE_FIELD: usize = 1024;
    pub(crate) const DETAIL_DEPTH: usize = 16;
}

/// The list of secret names, matched as the [module docs](self) describe.
#[derive(Clone, Debug)]
pub struct SecretNames {
    /// Entries, lower case, separators removed, shortest first: a name is compared only
    /// with the entries its length allows.
    squashed: Vec<String>,
    /// Exactly [`DEFAULT_SECRET_NAMES`], as `default()` makes it.
    is_default: bool,
}

impl Default for SecretNames {
    fn default() -> Self {
        let mut names = Self::new(DEFAULT_SECRET_NAMES.iter().copied());
        names.is_default = true;
        names
    }
}

impl SecretNames {
    /// A list of exactly these names.
    pub fn new<I, S>(names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut list = Self {
            squashed: Vec::new(),
            is_default: false,
        };
        list.extend(names);
        list
    }

    /// Adds names to the list.
    pub fn extend<I, S>(&mut self, names: I)
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        for name in names {
            let squashed = squash(name.as_ref());
            if !squashed.is_empty() && !self.squashed.contains(&squashed) {
                let at = self
                    .squashed
                    .partition_point(|entry| entry.len() <= squashed.len());
                self.squashed.insert(at, squashed);
                self.is_default = false;
            }
        }
    }

    /// Whether this is the default list, unchanged.
    pub(crate) fn is_default(&self) -> bool {
        self.is_default
    }

    /// Whether `name` names a secret. `name` may be percent-encoded, as in a query string.
    pub fn is_secret(&self, name: &str) -> bool {
        // Called for every query parameter of every request. Most names are lower-case
        // letters and digits (`page`, `q`, `limit`): one word, encoding nothing, their own
        // squashed form, compared as they are.
        if is_squashed(name) {
            return self.matches_squashed(name);
        }
        // Names of usual length are squashed on the stack.
        let decoded = decode_component(name);
        let mut buf = [0; 64];
        let squashed = match squash_into(&decoded, &mut buf) {
            Some(squashed) => Cow::Borrowed(squashed),
            None => Cow::Owned(squash(&decoded)),
        };
        if self.matches_squashed(&squashed) {
            return true;
        }
        // Decoded to one lower-case word: its own squashed form, just compared.
        if is_squashed(&decoded) {
            return false;
        }
        self.matches_a_word(&decoded)
    }

    /// Whether a name, squashed, equals an entry or contains one of five letters or more.
    fn matches_squashed(&self, squashed: &str) -> bool {
        // Entries are sorted by length: those of the name's length may equal it, shorter
        // ones of five letters or more may be in it, longer ones can be neither.
        let len = squashed.len();
        let shorter = self.squashed.partition_point(|entry| entry.len() < len);
        let same = shorter + self.squashed[shorter..].partition_point(|entry| entry.len() == len);
        self.squashed[shorter..same]
            .iter()
            .any(|entry| entry == squashed)
            || self.squashed[..shorter]
                .iter()
                .rev()
                .take_while(|entry| entry.len() >= MIN_CONTAINED_LEN)
                .any(|entry| squashed.contains(entry.as_str()))
    }

    /// Whether one of a name's words equals an entry.
    fn matches_a_word(&self, name: &str) -> bool {
        words(name).any(|word| {
            self.squashed
                .iter()
                .any(|entry| entry.eq_ignore_ascii_case(word))
        })
    }
}

/// The shortest entry matched inside a longer squashed name.
const MIN_CONTAINED_LEN: usize = 5;

/// Whether `name` is already its own squashed form: ASCII lower-case letters and digits.
fn is_squashed(name: &str) -> bool {
    name.bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// Lower case, ASCII letters and digits only.
fn squash(name: &str) -> String {
    name.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// [`squash`] into `buf`, or `None` if it does not fit.
fn squash_into<'a>(name: &str, buf: &'a mut [u8]) -> Option<&'a str> {
    let mut len = 0;
    for byte in name.bytes().filter(u8::is_ascii_alphanumeric) {
        *buf.get_mut(len)? = byte.to_ascii_lowercase();
        len += 1;
    }
    // Only ASCII letters and digits were copied.
    std::str::from_utf8(&buf[..len]).ok()
}

/// The words of a name, split at separators and camelCase humps (compare them ignoring
/// ASCII case).
fn words(name: &str) -> impl Iterator<Item = &str> + '_ {
    let mut rest = name;
    std::iter::from_fn(move || {
        let start = rest.find(|c: char| c.is_ascii_alphanumeric())?;
        rest = &rest[start..];
        let mut end = rest.len();
        let mut previous_lower = false;
        for (i, c) in rest.char_indices() {
            if !c.is_ascii_alphanumeric() || (previous_lower && c.is_ascii_uppercase()) {
                end = i;
                break;
            }
            previous_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
        }
        let word = &rest[..end];
        rest = &rest[end..];
        Some(word)
    })
}

/// Decodes `+` and percent escapes of a query component, lossily.
fn decode_component(text: &str) -> Cow<'_, str> {
    // Byte by byte: a `char` pattern costs more than the short names it scans.
    if !text.bytes().any(|b| b == b'%' || b == b'+') {
        return Cow::Borrowed(text);
    }
    let plus_decoded = text.replace('+', " ");
    Cow::Owned(
        percent_decode_str(&plus_decoded)
            .decode_utf8_lossy()
            .into_owned(),
    )
}

/// Appends the query string to `out`, with the value of every secret parameter replaced by
/// [`REDACTED`], bounded to `max` bytes. Parameter names and the other values are kept as
/// received. Written into the caller's buffer: the layer reuses one per request.
///
/// Pairs are separated by `&` and also by `;`, which some servers and proxies still read as
/// one (HTML 4's recommendation): `a=1;password=x` keeps no password, whichever way the
/// application reads it.
pub(crate) fn redact_query_into(out: &mut String, query: &str, names: &SecretNames, max: usize) {
    let start = out.len();
    out.reserve(query.len().min(max + 16));
    let mut rest = query;
    loop {
        let end = rest.find(['&', ';']).unwrap_or(rest.len());
        let pair = &rest[..end];
        match pair.split_once('=') {
            Some((name, _)) if names.is_secret(name) => {
                out.push_str(name);
                out.push('=');
                out.push_str(REDACTED);
            }
            // A bare `name` has no value to hide.
            _ => out.push_str(pair),
        }
        if end == rest.len() || out.len() - start > max {
            break;
        }
        // The separator as received.
        out.push_str(&rest[end..=end]);
        rest = &rest[end + 1..];
    }
    if out.len() - start > max {
        let end = start + cut_point(&out[start..], max);
        out.truncate(end);
        out.push_str(TRUNCATED);
    }
}

/// A `reason` as recorded: the values that its text puts after a secret name
/// (`password=x`, `"token": "x"`, `api_key: x`) or a credentials header (`Authorization:
/// Token x`, `Cookie: a=1; b=2`, to the end of the line), the password of a URL
/// (`postgres://user:x@host`) and the credentials after `Bearer` or `Basic`, replaced by
/// [`REDACTED`]; then bounded.
///
/// A reason is often text that no one wrote for the trail: a panic's message, a service's
/// or a loader's error, which can quote a request URL or a connection string. A line of
/// the trail cannot be scrubbed later without breaking its chain, so the likely shapes of a
/// secret are taken out before it is written. Free text has no grammar: this is a net for
/// the common shapes, not a guarantee; over-redaction costs a word of context.
pub(crate) fn recorded_reason(reason: String, names: &SecretNames) -> String {
    recorded_text(reason, names, limits::REASON)
}

/// A recorded header's value: client input of any shape (a `Referer` with a reset token in
/// its query, a proxy's `X-Original-URL`), scanned as free text, then bounded.
pub(crate) fn recorded_header_value(value: String, names: &SecretNames) -> String {
    recorded_text(value, names, limits::HEADER_VALUE)
}

/// Free text as recorded: [`recorded_reason`]'s redaction, then bounded to `max` bytes.
fn recorded_text(text: String, names: &SecretNames, max: usize) -> String {
    // The scan is bounded too: of a longer text, no more than the bound would be kept, and
    // redaction can only shorten what is there past a secret name.
    let scanned = 2 * max;
    if text.len() <= scanned {
        return bound_string(redact_text(text, names), max);
    }
    let kept = text[..cut_point(&text, scanned)].to_owned();
    cut(&redact_text(kept, names), max)
}

/// [`recorded_reason`] before the bound. The text is returned as it is when it holds none of
/// the characters a secret's shape needs.
fn redact_text(text: String, names: &SecretNames) -> String {
    if !text.bytes().any(|b| matches!(b, b'=' | b':' | b' ')) {
        return text;
    }
    let bytes = text.as_bytes();
    // Allocated at the first redaction: most texts have none.
    let mut out = String::new();
    // `text[copied..]` is still to be copied to `out`.
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        if !is_name_byte(bytes[i]) || (i > 0 && is_name_byte(bytes[i - 1])) {
            i += 1;
            continue;
        }
        // A word starts at `i`.
        let word_end = i + bytes[i..].iter().take_while(|&&b| is_name_byte(b)).count();
        let word = &text[i..word_end];
        let value = if bytes[word_end..].starts_with(b"://") {
            url_password(bytes, word_end + 3)
        } else if word.eq_ignore_ascii_case("bearer") || word.eq_ignore_ascii_case("basic") {
            credentials_after_scheme(bytes, word_end)
        } else if FORBIDDEN_HEADERS
            .iter()
            .any(|header| word.eq_ignore_ascii_case(header))
        {
            // A credentials header's value has spaces (`Token abc`) and `;` (cookies): it
            // runs to the end of its line.
            value_after_name(bytes, word_end, |b| b == b'\n' || b == b'\r')
        } else if names.is_secret(word) {
            value_after_name(bytes, word_end, ends_value)
        } else {
            None
        };
        match value {
            Some((start, end)) => {
                out.reserve(text.len());
                out.push_str(&text[copied..start]);
                out.push_str(REDACTED);
                copied = end;
                i = end.max(word_end);
            }
            None => i = word_end,
        }
    }
    if copied == 0 {
        return text;
    }
    out.push_str(&text[copied..]);
    out
}

/// Bytes of a name in free text: `api_key`, `X-Api-Key`, `user.password`.
fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.')
}

/// Bytes that end an unquoted value.
fn ends_value(b: u8) -> bool {
    b.is_ascii_whitespace() || matches!(b, b'&' | b';' | b',' | b')' | b']' | b'}' | b'"' | b'\'')
}

/// The span of the value that follows a name at `at`: an optional closing quote of the name,
/// `=` or `:` (with spaces around), then a quoted value or a run up to a byte that `ends`.
fn value_after_name(bytes: &[u8], mut at: usize, ends: fn(u8) -> bool) -> Option<(usize, usize)> {
    if matches!(bytes.get(at), Some(b'"' | b'\'')) {
        at += 1;
    }
    let spaces = |from: usize| from + bytes[from..].iter().take_while(|&&b| b == b' ').count();
    at = spaces(at);
    if !matches!(bytes.get(at), Some(b'=' | b':')) {
        return None;
    }
    at = spaces(at + 1);
    match bytes.get(at) {
        Some(&quote @ (b'"' | b'\'')) => {
            let start = at + 1;
            let mut end = start;
            while end < bytes.len() && bytes[end] != quote {
                // An escaped character, the quote included, belongs to the value.
                end += if bytes[end] == b'\\' { 2 } else { 1 };
            }
            let end = end.min(bytes.len());
            Some((start, end))
        }
        Some(_) => {
            let end = at + bytes[at..].iter().take_while(|&&b| !ends(b)).count();
            (end > at).then_some((at, end))
        }
        None => None,
    }
}

/// The password of a URL's `user:password@`, its authority starting at `at`; or, with no
/// password, the whole user part, which then is often a token (`https://TOKEN@host/`).
fn url_password(bytes: &[u8], at: usize) -> Option<(usize, usize)> {
    let authority = bytes[at..]
        .iter()
        .take_while(|&&b| !matches!(b, b'/' | b'?' | b'#') && !b.is_ascii_whitespace())
        .count();
    let authority = &bytes[at..at + authority];
    let user_end = authority.iter().rposition(|&b| b == b'@')?;
    let start = match authority[..user_end].iter().position(|&b| b == b':') {
        Some(colon) => colon + 1,
        None => 0,
    };
    (user_end > start).then_some((at + start, at + user_end))
}

/// `text` with the credentials of every URL in it ([`url_password`]'s span) replaced by
/// [`REDACTED`]; `None` when it holds none.
///
/// The one shape of free text that snapshots (structured data) and labels (short values)
/// are scanned for: unlike a `name: value` pair, a URL's `user:password@` cannot be
/// anything but credentials, and a configuration entry (`database_url`) often holds one
/// under a name that is not a secret's.
pub(crate) fn redact_url_credentials(text: &str) -> Option<String> {
    // Most strings have no `@`; the search for `://` is only set up for those that do.
    if !text.as_bytes().contains(&b'@') {
        return None;
    }
    let bytes = text.as_bytes();
    let mut out = String::new();
    // `text[copied..]` is still to be copied to `out`.
    let mut copied = 0;
    let mut from = 0;
    while let Some(found) = text[from..].find("://") {
        let authority = from + found + 3;
        if let Some((start, end)) = url_password(bytes, authority) {
            out.push_str(&text[copied..start]);
            out.push_str(REDACTED);
            copied = end;
        }
        from = authority;
    }
    if copied == 0 {
        return None;
    }
    out.push_str(&text[copied..]);
    Some(out)
}

/// Redacts, in place, the credentials of every URL in a string of `value`
/// ([`redact_url_credentials`]).
pub(crate) fn redact_url_credentials_in(value: &mut serde_json::Value) {
    for_each_string(value, 0, &mut |text| {
        if let Some(redacted) = redact_url_credentials(text) {
            *text = redacted;
        }
    });
}

/// The credentials after an authorization scheme (`Bearer abc.def`, `Basic dXNlcjpwYXNz`),
/// when what follows looks like them rather than like prose ("basic validation failed").
fn credentials_after_scheme(bytes: &[u8], at: usize) -> Option<(usize, usize)> {
    let start = at + bytes[at..].iter().take_while(|&&b| b == b' ').count();
    if start == at {
        return None;
    }
    let end = start
        + bytes[start..]
            .iter()
            .take_while(|&&b| !ends_value(b))
            .count();
    looks_like_credentials(&bytes[start..end]).then_some((start, end))
}

/// Whether `token` is in the credentials' alphabet (RFC 7235's token68) and not a plain
/// word: long, or holding a digit, a symbol or a capital past its first letter.
fn looks_like_credentials(token: &[u8]) -> bool {
    let token68 = |b: &u8| b.is_ascii_alphanumeric() || b"-._~+/=".contains(b);
    !token.is_empty()
        && token.iter().all(token68)
        && (token.len() >= 16 || token[1..].iter().any(|b| !b.is_ascii_lowercase()))
}

/// `text` cut to at most `max` bytes (at a character boundary), ending with [`TRUNCATED`]
/// when cut.
pub(crate) fn bound(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    cut(text, max)
}

/// Like [`bound`], appending to `out` instead of allocating.
pub(crate) fn bound_into(out: &mut String, text: &str, max: usize) {
    if text.len() <= max {
        out.push_str(text);
    } else {
        push_cut(out, text, max);
    }
}

/// Like [`bound`], reusing the allocation when nothing is cut.
pub(crate) fn bound_string(text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
    }
    cut(&text, max)
}

fn cut(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(max.min(text.len()) + TRUNCATED.len());
    push_cut(&mut out, text, max);
    out
}

/// Appends `text` cut to fit `max` bytes with [`TRUNCATED`] after it.
fn push_cut(out: &mut String, text: &str, max: usize) {
    out.push_str(&text[..cut_point(text, max)]);
    out.push_str(TRUNCATED);
}

/// Where to cut `text` so that it and [`TRUNCATED`] fit in `max` bytes: a character
/// boundary.
fn cut_point(text: &str, max: usize) -> usize {
    let mut end = max.saturating_sub(TRUNCATED.len()).min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    end
}

/// Bounds every string of a JSON value in place, object keys included, and cuts nesting
/// deeper than the limit.
pub(crate) fn bound_json(value: &mut serde_json::Value, depth: usize) {
    use serde_json::Value;
    match value {
        Value::String(s) if s.len() > limits::DETAIL_STRING => {
            *s = cut(s, limits::DETAIL_STRING);
        }
        Value::Array(_) | Value::Object(_) if depth >= limits::DETAIL_DEPTH => {
            *value = Value::String(TRUNCATED.to_owned());
        }
        Value::Array(items) => items.iter_mut().for_each(|v| bound_json(v, depth + 1)),
        Value::Object(map) => {
            // One pass over the entries; the keys are rebuilt only when one is too long.
            let mut long_key = false;
            for (key, value) in map.iter_mut() {
                long_key |= key.len() > limits::DETAIL_KEY;
                bound_json(value, depth + 1);
            }
            if long_key {
                bound_keys(map, limits::DETAIL_KEY);
            }
        }
        _ => {}
    }
}

/// Cuts the keys longer than `max`. A cut key that meets another gets a number after it
/// (`...[truncated]#2`), so that no value is lost to the cut.
fn bound_keys<M, V>(map: &mut M, max: usize)
where
    M: Default + IntoIterator<Item = (String, V)> + Extend<(String, V)>,
    for<'a> &'a M: IntoIterator<Item = (&'a String, &'a V)>,
{
    // Nearly every map has only short keys: nothing to rebuild.
    if !(&*map).into_iter().any(|(key, _)| key.len() > max) {
        return;
    }
    let (long, short): (Vec<_>, Vec<_>) = std::mem::take(map)
        .into_iter()
        .partition(|(key, _)| key.len() > max);
    let mut taken: std::collections::BTreeSet<String> =
        short.iter().map(|(key, _)| key.clone()).collect();
    map.extend(short);
    for (key, value) in long {
        let cut_key = cut(&key, max);
        let mut unique = cut_key.clone();
        let mut n = 2;
        while taken.contains(&unique) {
            unique = format!("{cut_key}#{n}");
            n += 1;
        }
        taken.insert(unique.clone());
        map.extend([(unique, value)]);
    }
}

/// Every string of `value` as [`recorded_text`] records free text.
fn redact_strings(value: &mut serde_json::Value, names: &SecretNames) {
    for_each_string(value, 0, &mut |text| {
        *text = recorded_text(std::mem::take(text), names, limits::DETAIL_STRING);
    });
}

/// Calls `f` on every string of `value`, down to the depth that [`bound_json`] keeps (what
/// is deeper is cut whole, so scanning it would be wasted).
fn for_each_string(value: &mut serde_json::Value, depth: usize, f: &mut impl FnMut(&mut String)) {
    use serde_json::Value;
    match value {
        Value::String(text) => f(text),
        _ if depth >= limits::DETAIL_DEPTH => {}
        Value::Array(items) => items
            .iter_mut()
            .for_each(|item| for_each_string(item, depth + 1, f)),
        Value::Object(map) => map
            .values_mut()
            .for_each(|field| for_each_string(field, depth + 1, f)),
        _ => {}
    }
}

/// Redacts, in place, the value of every object field whose name is a secret name, at any
/// depth.
pub(crate) fn redact_json(value: &mut serde_json::Value, names: &SecretNames) {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            for (key, field) in map.iter_mut() {
                if names.is_secret(key) {
                    *field = Value::String(REDACTED.to_owned());
                } else {
                    redact_json(field, names);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| redact_json(v, names)),
        _ => {}
    }
}

/// Appends the request's `path` to `out`, bounded to `max` bytes, with each segment that
/// the matched `route` gives a secret name (`/password-reset/{token}`) replaced by
/// [`REDACTED`]; a secret catch-all (`{*secret}`) takes the rest of the path with it.
///
/// The route says which segment is which. Where the path does not line up with it (a
/// middleware rewrote the URI after the router matched it), the route itself is written,
/// with its secret parameters redacted and the others left as `{name}`: some context is
/// lost, no secret is written. Lining the two up some other way (a stripped prefix) could
/// be ambiguous with a catch-all, and ambiguity could put a secret under a name that is
/// not one.
#[inline]
pub(crate) fn path_into(
    out: &mut String,
    path: &str,
    route: Option<&str>,
    names: &SecretNames,
    max: usize,
) {
    // Most routes have no parameter at all (a byte loop over a short route is cheaper than
    // a `str` searcher's setup), and most parameters are not secrets: the path is then
    // copied as it is.
    match route {
        Some(route) if route.bytes().any(|b| b == b'{') => {
            redacted_path_into(out, path, route, names, max);
        }
        _ => bound_into(out, path, max),
    }
}

/// [`path_into`] for a route with parameters.
fn redacted_path_into(out: &mut String, path: &str, route: &str, names: &SecretNames, max: usize) {
    // Most routes with parameters have no secret one (`/users/{id}`): one pass over the
    // route's bytes says so, and the path is copied as it is.
    if !parameters(route).any(|name| names.is_secret(name.strip_prefix('*').unwrap_or(name))) {
        bound_into(out, path, max);
        return;
    }
    let start = out.len();
    let path_segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let route_segments: Vec<&str> = route.trim_start_matches('/').split('/').collect();
    if lines_up(&route_segments, &path_segments) {
        for (i, segment) in path_segments.iter().enumerate() {
            out.push('/');
            // Past a catch-all, path segments have no route segment of their own: they
            // are its, and were redacted with it or are kept.
            let pattern = route_segments.get(i).copied().unwrap_or("");
            match secret_parameter(pattern, names) {
                Some(Parameter::CatchAll) => {
                    out.push_str(REDACTED);
                    break;
                }
                Some(Parameter::Segment) => out.push_str(REDACTED),
                None => out.push_str(segment),
            }
            // Past the bound nothing more is kept, so nothing more is needed.
            if out.len() - start > max {
                break;
            }
        }
    } else {
        for segment in &route_segments {
            out.push('/');
            match secret_parameter(segment, names) {
                Some(_) => out.push_str(REDACTED),
                None => out.push_str(segment),
            }
        }
    }
    if out.len() - start > max {
        let end = start + cut_point(&out[start..], max);
        out.truncate(end);
        out.push_str(TRUNCATED);
    }
}

/// How a secret route parameter takes its part of the path.
#[derive(Debug, PartialEq, Eq)]
enum Parameter {
    /// `{name}`, or a segment holding one (`{name}.json`): that one segment.
    Segment,
    /// `{*name}`: every segment from here on.
    CatchAll,
}

/// The kind of `segment` of a route when it holds a parameter with a secret name.
fn secret_parameter(segment: &str, names: &SecretNames) -> Option<Parameter> {
    // A router takes one parameter per segment (axum's does); every one is checked all the
    // same, so that a router allowing two cannot hide a secret behind a first harmless one.
    parameters(segment).find_map(|name| match name.strip_prefix('*') {
        Some(name) if names.is_secret(name) => Some(Parameter::CatchAll),
        None if names.is_secret(name) => Some(Parameter::Segment),
        _ => None,
    })
}

/// The names of the parameters in one route segment (`{name}`, `{*name}`), with `{{` and
/// `}}` read as the literal braces they stand for, as axum's router reads them.
///
/// Given a whole route, it yields the parameters of every segment. It walks bytes: routes
/// are short, and a `str` searcher's setup costs more than the walk.
fn parameters(segment: &str) -> impl Iterator<Item = &str> {
    let bytes = segment.as_bytes();
    let mut at = 0;
    std::iter::from_fn(move || {
        while at < bytes.len() {
            match bytes[at] {
                // An escaped brace: literal text.
                brace @ (b'{' | b'}') if bytes.get(at + 1) == Some(&brace) => at += 2,
                b'{' => {
                    let start = at + 1;
                    // An unclosed brace ends with its segment.
                    let end = bytes[start..]
                        .iter()
                        .position(|&b| b == b'}' || b == b'/')
                        .map_or(bytes.len(), |len| start + len);
                    at = end + 1;
                    return Some(&segment[start..end]);
                }
                // A stray closing brace, which no router accepts, or literal text.
                _ => at += 1,
            }
        }
        None
    })
}

/// Whether `segment` is what the literal route `pattern` (which holds no parameter)
/// matches: the same text, once `{{` and `}}` are read as single braces.
fn literal_matches(pattern: &str, segment: &str) -> bool {
    if !pattern.contains(['{', '}']) {
        return pattern == segment;
    }
    pattern.replace("{{", "{").replace("}}", "}") == segment
}

/// Whether `path` is what `route` matches, segment by segment: every literal the same,
/// one segment for each parameter, and at least one for a catch-all.
fn lines_up(route: &[&str], path: &[&str]) -> bool {
    for (i, pattern) in route.iter().enumerate() {
        let (mut parameter, mut catch_all) = (false, false);
        for name in parameters(pattern) {
            parameter = true;
            catch_all |= name.starts_with('*');
        }
        if catch_all {
            return path.len() > i;
        }
        let Some(segment) = path.get(i) else {
            return false;
        };
        if !parameter && !literal_matches(pattern, segment) {
            return false;
        }
    }
    path.len() == route.len()
}

/// A label's value as recorded: [`REDACTED`] under a secret name, else without a URL's
/// credentials (a label is a short value, not free text: only that shape is certain) and
/// bounded.
pub(crate) fn label_value(key: &str, value: String, names: &SecretNames) -> String {
    if names.is_secret(key) {
        REDACTED.to_owned()
    } else {
        let value = redact_url_credentials(&value).unwrap_or(value);
        bound_string(value, limits::LABEL_VALUE)
    }
}

/// `details` as recorded: secret-named fields redacted at any depth, every other string
/// treated as free text (as a `reason` is: `detail("error", e.to_string())` can quote a
/// connection string), strings and nesting bounded.
pub(crate) fn recorded_details(
    details: serde_json::Map<String, serde_json::Value>,
    names: &SecretNames,
) -> serde_json::Map<String, serde_json::Value> {
    let mut value = serde_json::Value::Object(details);
    redact_json(&mut value, names);
    redact_strings(&mut value, names);
    bound_json(&mut value, 0);
    match value {
        serde_json::Value::Object(map) => map,
        _ => serde_json::Map::new(),
    }
}

/// `text` bounded to `max` bytes, kept borrowed when it fits.
pub(crate) fn bound_cow(text: Cow<'static, str>, max: usize) -> Cow<'static, str> {
    match text {
        Cow::Owned(s) => Cow::Owned(bound_string(s, max)),
        Cow::Borrowed(s) if s.len() > max => Cow::Owned(bound(s, max)),
        borrowed => borrowed,
    }
}

/// An actor with every field bounded.
pub(crate) fn bound_actor(mut actor: Actor) -> Actor {
    actor.id = bound_string(actor.id, limits::ACTOR_FIELD);
    actor.name = actor.name.map(|n| bound_string(n, limits::ACTOR_FIELD));
    actor.roles.truncate(limits::ACTOR_ROLES);
    for role in &mut actor.roles {
        *role = bound_string(std::mem::take(role), limits::ACTOR_FIELD);
    }
    actor
}

/// Redacts and bounds an event that application code built whole
/// ([`AuditTrail::record`](crate::AuditTrail::record)): what the layer does to each part of
/// a request event as it captures it, done to every part. The `reason` and the strings of
/// `details`, free text, lose the common shapes of a secret (see [`recorded_reason`]); the
/// `target`, an identifier, is bounded only.
pub(crate) fn sanitize_event(event: &mut AuditEvent, names: &SecretNames) {
    fn bound_in_place(text: &mut String, max: usize) {
        *text = bound_string(std::mem::take(text), max);
    }
    fn redact_value(value: &mut serde_json::Value, names: &SecretNames) {
        redact_json(value, names);
        redact_url_credentials_in(value);
        bound_json(value, 0);
    }

    event.action = bound_cow(std::mem::take(&mut event.action), limits::ACTION);
    event.actor = bound_actor(std::mem::replace(&mut event.actor, Actor::anonymous()));
    if let Some(source) = &mut event.source {
        if let Some(user_agent) = &mut source.user_agent {
            bound_in_place(user_agent, limits::USER_AGENT);
        }
        if let Some(forwarded) = &mut source.forwarded {
            forwarded.truncate(limits::FORWARDED_ENTRIES);
            for entry in forwarded {
                bound_in_place(entry, limits::FORWARDED_ENTRY);
            }
        }
    }
    if let Some(request) = &mut event.request {
        bound_in_place(&mut request.id, MAX_REQUEST_ID_LEN);
        request.method = bound_cow(std::mem::take(&mut request.method), limits::ACTION);
        let path = std::mem::take(&mut request.path);
        path_into(
            &mut request.path,
            &path,
            request.route.as_deref(),
            names,
            limits::PATH,
        );
        if let Some(route) = &mut request.route {
            bound_in_place(route, limits::ROUTE);
        }
        if let Some(query) = &mut request.query {
            let mut redacted = String::new();
            redact_query_into(&mut redacted, query, names, limits::QUERY);
            *query = redacted;
        }
        request.headers.retain(|name, _| {
            let name = name.to_ascii_lowercase();
            !FORBIDDEN_HEADERS.contains(&name.as_str()) && !names.is_secret(&name)
        });
        bound_keys(&mut request.headers, limits::HEADER_NAME);
        for value in request.headers.values_mut() {
            *value = recorded_header_value(std::mem::take(value), names);
        }
    }
    if let Some(target) = &mut event.target {
        bound_in_place(target, limits::TARGET);
    }
    event.reason = event
        .reason
        .take()
        .map(|reason| recorded_reason(reason, names));
    event.labels = std::mem::take(&mut event.labels)
        .into_iter()
        .take(limits::LABELS)
        .map(|(key, value)| {
            let value = label_value(&key, value, names);
            (bound_string(key, limits::LABEL_KEY), value)
        })
        .collect();
    event.details = event
        .details
        .take()
        .map(|details| recorded_details(details, names));
    for state in [&mut event.before, &mut event.after].into_iter().flatten() {
        redact_value(state, names);
    }
    for change in event.changes.iter_mut().flatten() {
        // A dotted path is split into words too: `user.password` is a secret name. Checked
        // whole, before the cut could take the secret word off its end.
        let secret = names.is_secret(&change.field);
        bound_in_place(&mut change.field, limits::CHANGE_FIELD);
        if secret {
            *change = Change::redacted(std::mem::take(&mut change.field));
        } else {
            let differed = change.old != change.new;
            for value in [&mut change.old, &mut change.new].into_iter().flatten() {
                redact_value(value, names);
            }
            // Only what was redacted differed: say that it changed, never what to, as a
            // snapshot's diff does, rather than show two equal values.
            if differed && change.old == change.new {
                *change = Change::redacted(std::mem::take(&mut change.field));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// A lower-case name skips the word-by-word test: its answer must be the one both
        /// tests together give. Names are built around entries, so that matches are common.
        #[test]
        fn a_lower_case_name_gets_the_answer_of_both_tests(
            name in "[a-z0-9]{0,3}(password|secret|token|key|auth|card|cvv|pwd)?[a-z0-9]{0,3}",
        ) {
            let names = SecretNames::default();
            proptest::prop_assert_eq!(
                names.is_secret(&name),
                names.matches_squashed(&name) || names.matches_a_word(&name),
                "{}", name
            );
        }
    }

    proptest::proptest! {
        /// Entries are searched by length: the answer must be that of comparing the name
        /// with every entry, whatever lengths a custom list holds.
        #[test]
        fn searching_by_length_gets_the_answer_of_every_entry(
            entries in proptest::collection::vec("[a-e]{1,7}", 0..12),
            name in "[a-e]{0,10}",
        ) {
            let names = SecretNames::new(&entries);
            let every_entry = names.squashed.iter().any(|entry| {
                *entry == name
                    || (entry.len() >= 5
                        && name.len() > entry.len()
                        && name.contains(entry.as_str()))
            });
            proptest::prop_assert_eq!(
                names.matches_squashed(&name),
                every_entry,
                "{} in {:?}", name, entries
            );
        }
    }

    /// Snapshots skip the trail's redaction pass for the default list only: any name added
    /// must make the list count as changed.
    #[test]
    fn only_the_unchanged_default_list_is_default() {
        let mut names = SecretNames::default();
        assert!(names.is_default());
        names.extend(["Password", "api-key"]);
        assert!(
            names.is_default(),
            "names already in the list change nothing"
        );
        names.extend(["pin"]);
        assert!(!names.is_default());
        assert!(!SecretNames::new(DEFAULT_SECRET_NAMES.iter().copied()).is_default());
    }

    #[test]
    fn default_list_matches_words_and_long_substrings() {
        let names = SecretNames::default();
        for secret in [
            "password",
            "PASSWORD",
            "new_password",
            "passwordConfirm",
            "pwd",
            "client_secret",
            "token",
            "access_token",
            "accessToken",
            "id_token",
            "api_key",
            "apiKey",
            "X-Api-Key",
            "apikey",
            "key",
            "session",
            "sessionid",
            "auth",
            "x-auth",
            "signature",
            "card",
            "card_number",
            "cvv",
            "pass%77ord",
            "api+key",
            "X-Auth",
            "Session-Key",
            "cardCVV",
        ] {
            assert!(names.is_secret(secret), "{secret} should be secret");
        }
        for plain in [
            "page", "q", "monkey", "sort", "keyboard", "user", "id", "name",
        ] {
            assert!(!names.is_secret(plain), "{plain} should not be secret");
        }
        // Names too long to squash on the stack take the allocating path, same answers.
        let long = "a".repeat(100);
        assert!(names.is_secret(&format!("{long}_password")));
        assert!(names.is_secret(&format!("{long}-Key")));
        assert!(!names.is_secret(&format!("{long}_page")));
    }

    #[test]
    fn custom_names_extend() {
        let mut names = SecretNames::new(["pin"]);
        assert!(names.is_secret("PIN"));
        assert!(!names.is_secret("password"));
        names.extend(["otp"]);
        assert!(names.is_secret("otp_code"));
    }

    fn redact_query(query: &str, names: &SecretNames, max: usize) -> String {
        let mut out = String::new();
        redact_query_into(&mut out, query, names, max);
        out
    }

    #[test]
    fn the_query_is_appended_and_bounded_on_its_own() {
        let names = SecretNames::default();
        let mut out = "kept:".to_owned();
        redact_query_into(&mut out, "a=1&token=x", &names, 2048);
        assert_eq!(out, "kept:a=1&token=[REDACTED]");
        let mut out = "kept:".to_owned();
        redact_query_into(&mut out, &format!("a={}", "é".repeat(3000)), &names, 2048);
        assert!(out.starts_with("kept:a=éé"));
        assert!(out.ends_with(TRUNCATED));
        assert!(out.len() - "kept:".len() <= 2048);

        let mut out = "kept:".to_owned();
        bound_into(&mut out, &"é".repeat(100), 51);
        assert_eq!(&out["kept:".len()..], bound(&"é".repeat(100), 51));
    }

    #[test]
    fn query_values_are_redacted_names_kept() {
        let names = SecretNames::default();
        assert_eq!(
            redact_query("page=2&token=abc&Password=x%20y&flag&q=a=b", &names, 2048),
            "page=2&token=[REDACTED]&Password=[REDACTED]&flag&q=a=b"
        );
        assert_eq!(redact_query("", &names, 2048), "");
        assert_eq!(
            redact_query("a=1;password=x&b=2;;token=y;", &names, 2048),
            "a=1;password=[REDACTED]&b=2;;token=[REDACTED];"
        );
        assert_eq!(redact_query("&&a", &names, 2048), "&&a");
    }

    #[test]
    fn secrets_in_free_text_are_redacted() {
        let names = SecretNames::default();
        let cases = [
            // (reason, recorded)
            (
                "panic: error sending request for url (https://api.example/v1?api_key=K1&page=2)",
                "panic: error sending request for url (https://api.example/v1?api_key=[REDACTED]&page=2)",
            ),
            (
                "connect postgres://app:S3cret@db:5432/app failed",
                "connect postgres://app:[REDACTED]@db:5432/app failed",
            ),
            (
                r#"called `Result::unwrap()` on an `Err` value: Login { user: "bob", password: "hun\"ter2" }"#,
                r#"called `Result::unwrap()` on an `Err` value: Login { user: "bob", password: "[REDACTED]" }"#,
            ),
            (
                r#"bad body {"refreshToken":"T2","id":7}"#,
                r#"bad body {"refreshToken":"[REDACTED]","id":7}"#,
            ),
            (
                "upstream said Bearer abc.def.ghi; retry",
                "upstream said Bearer [REDACTED]; retry",
            ),
            // A credentials header's whole value, to the end of its line.
            (
                "upstream said Authorization: Bearer abc.def.ghi; retry",
                "upstream said Authorization: [REDACTED]",
            ),
            ("X-Api-Key: k-123\nthen", "X-Api-Key: [REDACTED]\nthen"),
            (
                "sent Authorization: Token abc123\r\nHost: x",
                "sent Authorization: [REDACTED]\r\nHost: x",
            ),
            (
                r#"headers: {"cookie": "a=1; sid=xyz", "host": "h"}"#,
                r#"headers: {"cookie": "[REDACTED]", "host": "h"}"#,
            ),
            ("Cookie: a=1; b=2", "Cookie: [REDACTED]"),
            ("Basic dXNlcjpwYXNz", "Basic [REDACTED]"),
            ("bearer eyJhbGciOiJIUzI1NiJ9", "bearer [REDACTED]"),
            ("basic validation failed", "basic validation failed"),
            ("Basic Auth is off", "Basic Auth is off"),
            ("token = 'q1' é", "token = '[REDACTED]' é"),
            ("client_secret=é€x&b=1", "client_secret=[REDACTED]&b=1"),
            // Nothing to take: kept as it is.
            ("user not found: bob", "user not found: bob"),
            ("monkey=banana", "monkey=banana"),
            ("password:", "password:"),
            ("token=", "token="),
            ("http://host:80/path", "http://host:80/path"),
            (
                "clone https://ghp_T0KEN@github.com/o/r.git failed",
                "clone https://[REDACTED]@github.com/o/r.git failed",
            ),
            ("redis://:pw@cache:6379", "redis://:[REDACTED]@cache:6379"),
            ("mailto://@x", "mailto://@x"),
            ("", ""),
        ];
        for (reason, recorded) in cases {
            assert_eq!(
                recorded_reason(reason.to_owned(), &names),
                recorded,
                "{reason}"
            );
        }
    }

    /// Structured values are scanned for a URL's credentials only: a `name: value` pair in
    /// a configuration value is data, a URL's `user:password@` never is.
    #[test]
    fn credentials_in_urls_are_redacted_and_nothing_else_is() {
        for (text, redacted) in [
            (
                "postgres://app:pw@db:5432/app?sslmode=require",
                Some("postgres://app:[REDACTED]@db:5432/app?sslmode=require"),
            ),
            (
                "https://ghp_TOKEN@github.com/org/repo.git",
                Some("https://[REDACTED]@github.com/org/repo.git"),
            ),
            (
                "primary=redis://:pw@r1 replica=redis://u:p2@r2/0",
                Some("primary=redis://:[REDACTED]@r1 replica=redis://u:[REDACTED]@r2/0"),
            ),
            ("amqp://p@ss:w@rd@mq/", Some("amqp://p@ss:[REDACTED]@mq/")),
            // No credentials: kept whole, without a copy.
            ("ops@example.com", None),
            ("https://example.com/@handle", None),
            ("https://example.com/a?next=x@y", None),
            ("password: hunter2, key=value", None),
            ("@://", None),
            ("", None),
        ] {
            assert_eq!(redact_url_credentials(text).as_deref(), redacted, "{text}");
        }

        let mut value = serde_json::json!({
            "dsn": "postgres://a:one@h/d",
            "replicas": ["postgres://b:two@h/d", 3, null],
            "nested": {"url": "nats://c:three@h:4222"},
            "note": "key: value",
        });
        redact_url_credentials_in(&mut value);
        assert_eq!(
            value,
            serde_json::json!({
                "dsn": "postgres://a:[REDACTED]@h/d",
                "replicas": ["postgres://b:[REDACTED]@h/d", 3, null],
                "nested": {"url": "nats://c:[REDACTED]@h:4222"},
                "note": "key: value",
            })
        );
    }

    #[test]
    fn a_long_reason_is_scanned_no_further_than_it_is_kept_and_marked_as_cut() {
        let names = SecretNames::default();
        // A secret value that runs past the bound: redacted, and the cut still shows.
        let reason = format!("password={}", "x".repeat(100 * limits::REASON));
        assert_eq!(
            recorded_reason(reason, &names),
            format!("password={REDACTED}{TRUNCATED}")
        );
        let reason = format!("{} token=abc", "é".repeat(limits::REASON));
        let recorded = recorded_reason(reason, &names);
        assert!(recorded.len() <= limits::REASON && recorded.ends_with(TRUNCATED));
        assert!(!recorded.contains("abc"));
    }

    #[test]
    fn long_query_is_bounded_with_marker() {
        let names = SecretNames::default();
        let query = format!("a={}", "x".repeat(5000));
        let out = redact_query(&query, &names, 2048);
        assert_eq!(out.len(), 2048);
        assert!(out.ends_with(TRUNCATED));
    }

    #[test]
    fn bound_cuts_at_char_boundary() {
        let text = "é".repeat(100);
        let out = bound(&text, 51);
        assert!(out.len() <= 51);
        assert!(out.ends_with(TRUNCATED));
        assert_eq!(bound("short", 51), "short");
    }

    #[test]
    fn json_redaction_is_recursive() {
        let mut value = serde_json::json!({
            "name": "bob",
            "password": "hunter2",
            "nested": {"apiKey": "k", "list": [{"token": "t", "ok": 1}]}
        });
        redact_json(&mut value, &SecretNames::default());
        assert_eq!(
            value,
            serde_json::json!({
                "name": "bob",
                "password": REDACTED,
                "nested": {"apiKey": REDACTED, "list": [{"token": REDACTED, "ok": 1}]}
            })
        );
    }

    fn recorded_path(path: &str, route: Option<&str>, max: usize) -> String {
        let mut out = String::from("kept:");
        path_into(&mut out, path, route, &SecretNames::default(), max);
        // What was there before is left alone.
        out.strip_prefix("kept:").unwrap().to_owned()
    }

    #[test]
    fn path_segments_that_secret_route_parameters_name_are_redacted() {
        let cases = [
            // (path, route, recorded)
            ("/users/7", Some("/users/{id}"), "/users/7"),
            ("/reset/abc", None, "/reset/abc"),
            ("/reset/abc", Some("/reset/{token}"), "/reset/[REDACTED]"),
            (
                "/users/7/reset/abc/",
                Some("/users/{id}/reset/{resetToken}/"),
                "/users/7/reset/[REDACTED]/",
            ),
            (
                "/hooks/abc.json",
                Some("/hooks/{secret}.json"),
                "/hooks/[REDACTED]",
            ),
            (
                "/files/a/b/c",
                Some("/files/{*secret_path}"),
                "/files/[REDACTED]",
            ),
            ("/files/a/b", Some("/files/{*rest}"), "/files/a/b"),
            // A secret parameter, then a catch-all that is not: the rest is kept.
            (
                "/x/abc/d/e/f",
                Some("/x/{token}/{*rest}"),
                "/x/[REDACTED]/d/e/f",
            ),
            // Nothing lines up (a path rewritten after the match): the route, its secret
            // parameters redacted.
            (
                "/invites/abc",
                Some("/api/invites/{invite_token}"),
                "/api/invites/[REDACTED]",
            ),
            (
                "/dl/x/y",
                Some("/api/dl/{*signature}"),
                "/api/dl/[REDACTED]",
            ),
            (
                "/a/b/c",
                Some("/reset/{token}/{id}"),
                "/reset/[REDACTED]/{id}",
            ),
            // `{{` and `}}` are literal braces, as axum's router reads them: a literal
            // `{token}` is no parameter, and a parameter after escaped braces is one.
            ("/docs/{token}", Some("/docs/{{token}}"), "/docs/{token}"),
            ("/k/{a}xyz", Some("/k/{{a}}{token}"), "/k/[REDACTED]"),
            ("/k/}xyz", Some("/k/}}{key}"), "/k/[REDACTED]"),
            (
                "/k/{x}/{*rest}/a",
                Some("/k/{{x}}/{{*rest}}/{secret}"),
                "/k/{x}/{*rest}/[REDACTED]",
            ),
            // A literal that does not match: nothing lines up.
            (
                "/docs/token/abc",
                Some("/docs/{{token}}/{token}"),
                "/docs/{{token}}/[REDACTED]",
            ),
        ];
        for (path, route, recorded) in cases {
            assert_eq!(
                recorded_path(path, route, 2048),
                recorded,
                "{path} {route:?}"
            );
        }
    }

    proptest::proptest! {
        /// Whatever the route and the path (the layer may see any pair, a rewritten URI
        /// included), recording the path neither panics nor exceeds its bound.
        #[test]
        fn any_path_and_route_are_recorded_within_bounds(
            route in r"(/([a-z]{1,3}|\{[a-z]{1,3}\}|\{token\}|\{\*[a-z]{1,5}\}|\{\{)){0,6}/?",
            path in r"(/[a-zA-Z0-9{}*]{0,4}){0,8}/?",
            max in 0usize..64,
        ) {
            let recorded = recorded_path(&path, Some(&route), max);
            proptest::prop_assert!(recorded.len() <= max.max(TRUNCATED.len()));
        }

        /// Whatever the text, recording it as a reason neither panics nor exceeds its
        /// bound, and a secret written as `name=value` or `name: "value"` among any other
        /// text does not survive.
        #[test]
        fn any_reason_is_recorded_within_bounds_without_its_secrets(
            before in r"[ -~é€\n]{0,40}",
            after in r"([ ,;&)\n][ -~é€]{0,40})?",
            shape in 0usize..4,
        ) {
            let names = SecretNames::default();
            let recorded = recorded_reason(format!("{before}{after}"), &names);
            proptest::prop_assert!(recorded.len() <= limits::REASON);
            let secret = match shape {
                0 => "password=SECRETx".to_owned(),
                1 => r#""api_key": "SECRET \" x""#.to_owned(),
                2 => "https://u:SECRET@h/".to_owned(),
                _ => "Bearer SECRET.x".to_owned(),
            };
            let recorded = recorded_reason(format!("{before} {secret}{after}"), &names);
            proptest::prop_assert!(!recorded.contains("SECRET"), "{}", recorded);
        }

        /// Whatever surrounds it, a URL's password does not survive the scan of
        /// structured values, and the scan never panics on any text.
        #[test]
        fn no_url_password_survives_the_scan_of_structured_values(
            before in r#"(\PC|[:/@?# ]){0,20}"#,
            scheme in "[a-z][a-z0-9+.-]{0,8}",
            user in "[a-zA-Z0-9._~-]{0,8}",
            after in r#"([/?# ]\PC{0,20})?"#,
        ) {
            let text = format!("{before} {scheme}://{user}:SECRET@host{after}");
            let redacted = redact_url_credentials(&text);
            let recorded = redacted.as_deref().unwrap_or(&text);
            proptest::prop_assert!(!recorded.contains("SECRET"), "{}", recorded);
        }

        /// Any text at all, of any characters, quotes and escapes included: recorded as a
        /// reason without a panic.
        #[test]
        fn any_text_is_recorded_as_a_reason_without_a_panic(
            text in r#"(\PC|[:=@\\"' ]|password|Bearer |https://){0,60}"#,
        ) {
            let recorded = recorded_reason(text, &SecretNames::default());
            proptest::prop_assert!(recorded.len() <= limits::REASON);
        }

        /// A path that a route matched keeps none of the text of its secret parameters,
        /// catch-alls included, and all of the rest.
        #[test]
        fn a_matched_path_keeps_no_secret_parameter(
            segments in proptest::collection::vec((0u8..5, "[a-z]{1,3}"), 0..6),
            catch_all in proptest::option::of(
                (proptest::bool::ANY, proptest::collection::vec("[a-z]{1,3}", 1..4)),
            ),
        ) {
            let (mut route, mut path, mut kept) = (String::new(), String::new(), String::new());
            for (i, (kind, text)) in segments.iter().enumerate() {
                let (pattern, value, shown) = match kind {
                    0 => (text.clone(), text.clone(), text.clone()),
                    1 => (format!("{{id{i}}}"), text.clone(), text.clone()),
                    // Escaped braces: a literal `{token}` is kept, and a parameter after
                    // them is one.
                    2 => (format!("{{{{token{text}}}}}"), format!("{{token{text}}}"), format!("{{token{text}}}")),
                    3 => (format!("{text}{{{{{{token{i}}}"), format!("{text}{{SECRET"), REDACTED.to_owned()),
                    _ => (format!("{{token{i}}}"), format!("SECRET{text}"), REDACTED.to_owned()),
                };
                route += &format!("/{pattern}");
                path += &format!("/{value}");
                kept += &format!("/{shown}");
            }
            if let Some((secret, rest)) = &catch_all {
                if *secret {
                    route += "/{*signature}";
                    path += &rest.iter().map(|s| format!("/SECRET{s}")).collect::<String>();
                    kept += &format!("/{REDACTED}");
                } else {
                    route += "/{*rest}";
                    let rest: String = rest.iter().map(|s| format!("/{s}")).collect();
                    path += &rest;
                    kept += &rest;
                }
            }
            let recorded = recorded_path(&path, Some(&route), 2048);
            proptest::prop_assert!(!recorded.contains("SECRET"), "{} from {} {}", recorded, path, route);
            if route.contains("token") || route.contains("signature") {
                proptest::prop_assert_eq!(recorded, kept);
            }
        }
    }

    #[test]
    fn route_parameters_are_read_as_axum_reads_them() {
        let names = |route| parameters(route).collect::<Vec<_>>();
        assert_eq!(names("/a/{{x}}/{id}/{*rest}"), ["id", "*rest"]);
        assert_eq!(names("/k/{{{token}}}}"), ["token"]);
        assert_eq!(names("/k/}}{key}.json"), ["key"]);
        assert_eq!(names("/a/{tok/b/{id}"), ["tok", "id"]);
        assert!(names("/plain/{{literal}}").is_empty());
    }

    #[test]
    fn a_redacted_path_is_bounded_like_any_other() {
        let long = format!("/reset/abc/{}", "x".repeat(100));
        let recorded = recorded_path(&long, Some("/reset/{token}/{rest}"), 40);
        assert_eq!(recorded, format!("/reset/[REDACTED]/xxxxxxxx{TRUNCATED}"));
        assert!(recorded.len() <= 40);
    }
}
