//! Secret names: the list, and how a name is matched against it.

use std::borrow::Cow;

use percent_encoding::percent_decode_str;

/// The names redacted by default (see the [module docs](crate::redact) for how they match).
///
/// Drawn from OWASP's Logging Cheat Sheet (passwords, session ids, access tokens, keys,
/// payment card data) and the parameters of OAuth 2.0 / OpenID Connect (`code`, `id_token`,
/// `client_assertion`, `code_verifier`), SAML (`SAMLResponse`, `SAMLRequest`, `SAMLart`) and
/// AWS Signature V4 (`X-Amz-Signature`, `X-Amz-Credential`, `X-Amz-Security-Token`).
pub const DEFAULT_SECRET_NAMES: &[&str] = &[
    "password",
    "passwd",
    "pwd",
    "passphrase",
    "secret",
    "token",
    "access_token",
    "refresh_token",
    "id_token",
    "jwt",
    "api_key",
    "apikey",
    "key",
    "credential",
    "authorization",
    "cookie",
    "session",
    "sid",
    "auth",
    "signature",
    "sig",
    "assertion",
    "code_verifier",
    "=code",
    "otp",
    "totp",
    "pin",
    "samlresponse",
    "samlrequest",
    "samlart",
    "card",
    "cvv",
    "cvc",
];

/// Header names that can never be recorded, whatever the configuration says.
pub(crate) const FORBIDDEN_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
];

/// The list of secret names, matched as the [module docs](crate::redact) describe.
#[derive(Clone, Debug)]
pub struct SecretNames {
    /// Entries, lower case, separators removed, shortest first: a name is compared only
    /// with the entries its length allows.
    squashed: Vec<String>,
    /// The [`pairs`] of each entry of `squashed`, at the same index.
    pairs: Vec<u64>,
    /// Entries given as `=name`: they match a whole name only.
    whole: Vec<String>,
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
            pairs: Vec::new(),
            whole: Vec::new(),
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
            if let Some(whole) = name.as_ref().strip_prefix('=') {
                let squashed = squash(whole);
                if !squashed.is_empty() && !self.whole.contains(&squashed) {
                    self.whole.push(squashed);
                    self.is_default = false;
                }
                continue;
            }
            let squashed = squash(name.as_ref());
            if !squashed.is_empty() && !self.squashed.contains(&squashed) {
                let at = self
                    .squashed
                    .partition_point(|entry| entry.len() <= squashed.len());
                self.pairs.insert(at, pairs(&squashed));
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
        self.is_secret_word(name) || self.is_whole_entry(name)
    }

    /// Whether `name`, whole, is an entry given as `=name`.
    fn is_whole_entry(&self, name: &str) -> bool {
        if self.whole.is_empty() {
            return false;
        }
        if is_squashed(name) {
            return self.whole.iter().any(|entry| entry == name);
        }
        let decoded = decode_component(name);
        let mut buf = [0; 64];
        match squash_into(&decoded, &mut buf) {
            Some(squashed) => self.whole.iter().any(|entry| entry == squashed),
            // Longer than any entry.
            None => false,
        }
    }

    /// [`is_secret`](Self::is_secret) without the entries that match a whole name only: for
    /// a word of free text, which is rarely a whole name (`status code: 503`).
    pub(crate) fn is_secret_word(&self, name: &str) -> bool {
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
        if self.squashed[shorter..same]
            .iter()
            .any(|entry| entry == squashed)
        {
            return true;
        }
        // An entry is in the name only if each of its letter pairs is: most are ruled out by
        // one AND, without a search.
        let in_name = pairs(squashed);
        self.squashed[..shorter]
            .iter()
            .zip(&self.pairs[..shorter])
            .rev()
            .take_while(|(entry, _)| entry.len() >= MIN_CONTAINED_LEN)
            .any(|(entry, pairs)| pairs & !in_name == 0 && squashed.contains(entry.as_str()))
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

/// The pairs of adjacent bytes of `text`, each hashed to one of 64 bits.
fn pairs(text: &str) -> u64 {
    text.as_bytes().windows(2).fold(0, |bits, pair| {
        bits | 1 << ((u32::from(pair[0]) * 31 + u32::from(pair[1])) % 64)
    })
}

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
        names.extend(["ssn"]);
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
}
