//! Free text (a reason, a detail, a header's value): the common shapes of a secret.

use super::REDACTED;
use super::bounds::{bound_string, cut, cut_point, limits};
use super::card::{MIN_CARD_DIGITS, mask_card_numbers};
use super::names::{FORBIDDEN_HEADERS, SecretNames};

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
pub(super) fn recorded_text(text: String, names: &SecretNames, max: usize) -> String {
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
/// a secret's shapes.
fn redact_text(text: String, names: &SecretNames) -> String {
    scan_free_text(&text, names).unwrap_or(text)
}

/// Free text with every shape of a secret it holds taken out: the value after a secret name
/// or a credentials header, a URL's credentials, `Bearer`/`Basic` credentials (each
/// replaced by [`REDACTED`]) and card numbers ([`mask_card_numbers`]). `None` when it holds
/// none, so that clean text is not copied.
pub(crate) fn scan_free_text(text: &str, names: &SecretNames) -> Option<String> {
    // One pass says which shapes could be there: most texts (an id, a word, a path) hold
    // none of what each needs.
    let (mut separated, mut at_sign, mut digits) = (false, false, 0);
    for &b in text.as_bytes() {
        match b {
            b'=' | b':' | b' ' => separated = true,
            b'@' => at_sign = true,
            b'0'..=b'9' => digits += 1,
            _ => {}
        }
    }
    let mut redacted = None;
    if separated {
        redacted = redact_secret_shapes(text, names);
    }
    if at_sign {
        redacted = redact_url_credentials(redacted.as_deref().unwrap_or(text)).or(redacted);
    }
    if digits >= MIN_CARD_DIGITS {
        redacted = mask_card_numbers(redacted.as_deref().unwrap_or(text)).or(redacted);
    }
    redacted
}

/// [`scan_free_text`] but for URLs' credentials without a word before `://` and card
/// numbers; for a text that holds `=`, `:` or a space.
fn redact_secret_shapes(text: &str, names: &SecretNames) -> Option<String> {
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
        } else if !separator_follows(bytes, word_end) {
            // Not `name = value` nor `name: value`: the name is not looked up.
            None
        } else if FORBIDDEN_HEADERS
            .iter()
            .any(|header| word.eq_ignore_ascii_case(header))
        {
            // A credentials header's value has spaces (`Token abc`) and `;` (cookies): it
            // runs to the end of its line.
            value_after_name(bytes, word_end, |b| b == b'\n' || b == b'\r')
        } else if names.is_secret_word(word)
            || (bytes.get(word_end) == Some(&b'=') && names.is_secret(word))
        {
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
        return None;
    }
    out.push_str(&text[copied..]);
    Some(out)
}

/// Whether `=` or `:` follows a name ending at `at` (after a closing quote and spaces), as
/// [`value_after_name`] needs.
fn separator_follows(bytes: &[u8], mut at: usize) -> bool {
    if matches!(bytes.get(at), Some(b'"' | b'\'')) {
        at += 1;
    }
    at += bytes[at.min(bytes.len())..]
        .iter()
        .take_while(|&&b| b == b' ')
        .count();
    matches!(bytes.get(at), Some(b'=' | b':'))
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
/// Found by its `://` wherever it is, as a scheme need not be a word (`git+ssh://`).
fn redact_url_credentials(text: &str) -> Option<String> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redact::{TRUNCATED, scan_strings_in};

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

    /// The strings of structured values (snapshots, changes, labels) are scanned as free
    /// text: a configuration value can hold a URL's credentials or `api_key=...` under a
    /// name that is no secret's. Clean text is kept without a copy.
    #[test]
    fn strings_of_structured_values_lose_urls_credentials_and_secret_pairs() {
        let names = SecretNames::default();
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
            (
                "password: hunter2, key=value",
                Some("password: [REDACTED], key=[REDACTED]"),
            ),
            ("@://", None),
            ("", None),
        ] {
            assert_eq!(scan_free_text(text, &names).as_deref(), redacted, "{text}");
        }

        let mut value = serde_json::json!({
            "dsn": "postgres://a:one@h/d",
            "replicas": ["postgres://b:two@h/d", 3, null],
            "nested": {"url": "nats://c:three@h:4222"},
            "note": "key: value",
        });
        scan_strings_in(&mut value, &names);
        assert_eq!(
            value,
            serde_json::json!({
                "dsn": "postgres://a:[REDACTED]@h/d",
                "replicas": ["postgres://b:[REDACTED]@h/d", 3, null],
                "nested": {"url": "nats://c:[REDACTED]@h:4222"},
                "note": "key: [REDACTED]",
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

    proptest::proptest! {
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
            let redacted = scan_free_text(&text, &SecretNames::default());
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
    }
}
