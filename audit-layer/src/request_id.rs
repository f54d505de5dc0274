//! The request id: kept from the client when it is safe, generated otherwise.
//!
//! An incoming `x-request-id` (the header name is configurable) is kept only if it is 1 to
//! 128 bytes of `[A-Za-z0-9._:-]`; anything else is replaced by a fresh UUID v7, so a client
//! cannot inject text into the trail or into log lines that quote the id. The id is put in the
//! request extensions for handlers and set on the response.
//!
//! # Example
//!
//! ```
//! use audit_layer::RequestId;
//!
//! assert!(RequestId::is_acceptable("req-42.a:b_c"));
//! assert!(!RequestId::is_acceptable("has space"));
//! assert!(!RequestId::is_acceptable(&"x".repeat(129)));
//! assert_eq!(RequestId::generate().as_str().len(), 36);
//! ```

use std::fmt;

use http::HeaderValue;
use uuid::Uuid;

/// The longest request id kept from a client, in bytes.
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// The id of one request, in the request extensions of every audited request.
///
/// With the `axum` feature it is also an extractor.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RequestId(
    /// Kept as a header value (always a valid id, so always ASCII): the response header and
    /// every clone share its bytes instead of copying them.
    HeaderValue,
);

impl RequestId {
    /// A fresh UUID v7 id.
    pub fn generate() -> Self {
        let mut buf = Uuid::encode_buffer();
        let text = Uuid::now_v7().hyphenated().encode_lower(&mut buf);
        Self(HeaderValue::from_bytes(text.as_bytes()).unwrap_or(HeaderValue::from_static("-")))
    }

    /// Whether a client-supplied id may be kept as is.
    pub fn is_acceptable(id: &str) -> bool {
        !id.is_empty()
            && id.len() <= MAX_REQUEST_ID_LEN
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
    }

    /// The incoming header's id if acceptable, else a fresh one.
    pub(crate) fn from_header(value: Option<&HeaderValue>) -> Self {
        match value {
            Some(value) if value.to_str().is_ok_and(Self::is_acceptable) => Self(value.clone()),
            _ => Self::generate(),
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        // Only acceptable ids and UUIDs are ever stored: ASCII, so this never falls back.
        self.0.to_str().unwrap_or_default()
    }

    pub(crate) fn header_value(&self) -> HeaderValue {
        self.0.clone()
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
        assert_eq!(RequestId::from_header(Some(&keep)).as_str(), "abc-123");
        for bad in ["", "a b", "a\tb", "<script>", "é"] {
            let value = HeaderValue::from_bytes(bad.as_bytes()).unwrap();
            let id = RequestId::from_header(Some(&value));
            assert_ne!(id.as_str(), bad);
            assert!(Uuid::parse_str(id.as_str()).is_ok());
        }
        let long = HeaderValue::from_str(&"a".repeat(129)).unwrap();
        assert_eq!(RequestId::from_header(Some(&long)).as_str().len(), 36);
        let exact = "a".repeat(128);
        let value = HeaderValue::from_str(&exact).unwrap();
        assert_eq!(RequestId::from_header(Some(&value)).as_str(), exact);
    }
}
