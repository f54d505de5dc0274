//! A request's id.

use std::fmt;
use std::hash::{Hash, Hasher};

use http::HeaderValue;
use uuid::Uuid;

use crate::event::{Timestamp, event_id};

/// The longest request id kept from a client, in bytes.
pub(crate) const MAX_REQUEST_ID_LEN: usize = crate::redact::limits::REQUEST_ID;

/// The id of one request, in the request extensions of every audited request.
///
/// With the `axum` feature it is also an extractor. Two ids are equal when their text is.
///
/// An incoming `x-request-id` (the header name is configurable) is kept only if it is 1 to
/// 128 bytes of `[A-Za-z0-9._:-]`; anything else is replaced by a fresh UUID v7 (the id of the
/// request's event), so a client cannot inject text into the trail or into log lines that
/// quote the id. The id is put in the request extensions for handlers and set on the
/// response.
///
/// # Example
///
/// ```
/// use audit_layer::RequestId;
///
/// assert!(RequestId::is_acceptable("req-42.a:b_c"));
/// assert!(!RequestId::is_acceptable("has space"));
/// assert!(!RequestId::is_acceptable(&"x".repeat(129)));
/// assert_eq!(RequestId::generate().as_str().len(), 36);
/// ```
#[derive(Clone)]
pub struct RequestId(Repr);

#[derive(Clone)]
enum Repr {
    /// A generated UUID, hyphenated, lower case: kept inline, so that the clones a request
    /// makes (extensions, response) do not allocate.
    Generated([u8; UUID_TEXT_LEN]),
    /// A client's id, always acceptable (so ASCII): the header value shares the request's
    /// bytes instead of copying them.
    Client(HeaderValue),
}

const UUID_TEXT_LEN: usize = 36;

impl RequestId {
    /// A fresh UUID v7 id.
    pub fn generate() -> Self {
        Self::from_uuid(event_id(Timestamp::now()))
    }

    fn from_uuid(id: Uuid) -> Self {
        let mut text = [0; UUID_TEXT_LEN];
        id.hyphenated().encode_lower(&mut text);
        Self(Repr::Generated(text))
    }

    /// Whether a client-supplied id may be kept as is.
    pub fn is_acceptable(id: &str) -> bool {
        !id.is_empty()
            && id.len() <= MAX_REQUEST_ID_LEN
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
    }

    /// The incoming header's id if acceptable, else `fresh` (the layer passes its event's
    /// id: a request that brings no id of its own is known by its event's).
    pub(crate) fn from_header_or(value: Option<&HeaderValue>, fresh: Uuid) -> Self {
        match value {
            Some(value) if value.to_str().is_ok_and(Self::is_acceptable) => {
                Self(Repr::Client(value.clone()))
            }
            _ => Self::from_uuid(fresh),
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        // Only acceptable ids and UUIDs are ever stored: ASCII, so neither falls back.
        match &self.0 {
            Repr::Generated(text) => std::str::from_utf8(text).unwrap_or_default(),
            Repr::Client(value) => value.to_str().unwrap_or_default(),
        }
    }

    pub(crate) fn header_value(&self) -> HeaderValue {
        match &self.0 {
            Repr::Generated(text) => {
                HeaderValue::from_bytes(text).unwrap_or(HeaderValue::from_static("-"))
            }
            Repr::Client(value) => value.clone(),
        }
    }
}

impl PartialEq for RequestId {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for RequestId {}

impl Hash for RequestId {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl fmt::Debug for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RequestId").field(&self.as_str()).finish()
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(feature = "axum")]
mod extract {
    use axum::extract::FromRequestParts;
    use http::StatusCode;
    use http::request::Parts;

    use super::RequestId;

    impl<S: Send + Sync> FromRequestParts<S> for RequestId {
        type Rejection = (StatusCode, &'static str);

        async fn from_request_parts(
            parts: &mut Parts,
            _state: &S,
        ) -> Result<Self, Self::Rejection> {
            parts.extensions.get::<RequestId>().cloned().ok_or((
                StatusCode::INTERNAL_SERVER_ERROR,
                "RequestId needs the audit layer in front of this handler",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_acceptable_ids_only() {
        let keep = HeaderValue::from_static("abc-123");
        let fresh = Uuid::now_v7();
        let from_header = |value: &HeaderValue| RequestId::from_header_or(Some(value), fresh);
        assert_eq!(from_header(&keep).as_str(), "abc-123");
        for bad in ["", "a b", "a\tb", "<script>", "é"] {
            let value = HeaderValue::from_bytes(bad.as_bytes()).unwrap();
            assert_eq!(from_header(&value).as_str(), fresh.to_string());
        }
        let long = HeaderValue::from_str(&"a".repeat(129)).unwrap();
        assert_eq!(from_header(&long).as_str(), fresh.to_string());
        assert_eq!(
            RequestId::from_header_or(None, fresh).as_str(),
            fresh.to_string()
        );
        let exact = "a".repeat(128);
        let value = HeaderValue::from_str(&exact).unwrap();
        assert_eq!(from_header(&value).as_str(), exact);
    }

    #[test]
    fn generated_and_client_ids_compare_by_text() {
        let fresh = Uuid::now_v7();
        let generated = RequestId::from_header_or(None, fresh);
        let text = HeaderValue::from_str(&fresh.to_string()).unwrap();
        let client = RequestId::from_header_or(Some(&text), Uuid::now_v7());
        assert_eq!(generated, client);
        assert_eq!(generated.header_value(), client.header_value());
        assert_eq!(
            format!("{generated:?}"),
            format!("RequestId({:?})", fresh.to_string())
        );
        assert_ne!(generated, RequestId::generate());
    }
}
