//! Webhook signatures, as Stripe and GitHub sign theirs: an HMAC-SHA256 of the timestamp
//! and the body, in a header the receiver checks before it trusts a byte.
//!
//! `Audit-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The header that carries a webhook batch's signature.
pub const SIGNATURE_HEADER: &str = "audit-signature";

/// The header value that signs `body` at `timestamp` (seconds since the Unix epoch).
///
/// ```
/// use audit_layer::siem::{sign_webhook, verify_webhook};
/// use std::time::{Duration, SystemTime, UNIX_EPOCH};
///
/// let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
/// let header = sign_webhook(b"secret", now, b"{\"id\":1}\n");
/// assert!(header.starts_with(&format!("t={now},v1=")));
/// verify_webhook(b"secret", &header, b"{\"id\":1}\n", Duration::from_secs(300))?;
/// assert!(verify_webhook(b"other", &header, b"{\"id\":1}\n", Duration::from_secs(300)).is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn sign_webhook(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    format!(
        "t={timestamp},v1={}",
        hex::encode(mac(secret, timestamp, body).finalize().into_bytes())
    )
}

/// Checks a [`SIGNATURE_HEADER`] value against `body`: the HMAC matches (compared in
/// constant time) and the timestamp is within `tolerance` of now, so that a captured
/// request cannot be replayed later.
pub fn verify_webhook(
    secret: &[u8],
    header: &str,
    body: &[u8],
    tolerance: Duration,
) -> Result<(), SignatureError> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", value)) => timestamp = value.parse::<u64>().ok(),
            Some(("v1", value)) => signatures.push(value),
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed)?;
    if signatures.is_empty() {
        return Err(SignatureError::Malformed);
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    if now.abs_diff(timestamp) > tolerance.as_secs() {
        return Err(SignatureError::Expired {
            age: Duration::from_secs(now.abs_diff(timestamp)),
        });
    }
    let matches = signatures.iter().any(|signature| {
        hex::decode(signature)
            .is_ok_and(|bytes| mac(secret, timestamp, body).verify_slice(&bytes).is_ok())
    });
    if matches {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

fn mac(secret: &[u8], timestamp: u64, body: &[u8]) -> Hmac<Sha256> {
    // HMAC takes a key of any length.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of every length"));
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// Why a webhook signature was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum SignatureError {
    /// The header is not `t=<seconds>,v1=<hex>`.
    #[error("the signature header is not t=<seconds>,v1=<hex>")]
    Malformed,
    /// The signature was made too long ago (or in the future): a replay, or a clock off.
    #[error("the signature is {age:?} away from now, beyond the tolerance")]
    Expired {
        /// How far from now it was made.
        age: Duration,
    },
    /// The HMAC does not match: another secret, or an altered body.
    #[error("the signature does not match the body")]
    Mismatch,
}
