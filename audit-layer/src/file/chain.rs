//! The hash chain of a file trail.

use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

/// The `prev_hash` of the first event of a trail.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// A secret key that turns the chain into an HMAC-SHA256 chain.
///
/// A line is the event's JSON with three fields in front:
///
/// ```text
/// {"seq":7,"prev_hash":"<64 hex>","hash":"<64 hex>","trail":"<id>","schema":"audit/1",...}
/// ```
///
/// (`trail`, the trail's id, is written by the file trail before the event's own members;
/// lines written before trails had ids lack it.)
///
/// `hash` is SHA-256 (or, with a [`ChainKey`], HMAC-SHA256) of
/// `prev_hash + "\n" + seq + "\n" + event`, where `event` is the line without the three
/// chain fields (`{"trail":...,"schema":...}`), byte for byte as written. `seq` starts at 0 and has no
/// gaps; the first `prev_hash` is [`GENESIS`]. Changing, removing, inserting or reordering
/// any line breaks the chain at that line. With a key, someone who can write the files
/// cannot recompute the chain either; signed checkpoints ([`Checkpoint`](crate::file::Checkpoint)) protect an
/// unkeyed chain against wholesale replacement.
///
/// # Example
///
/// ```
/// use audit_layer::file::{ChainKey, GENESIS, link_hash};
///
/// let event = br#"{"schema":"audit/1"}"#;
/// let plain = link_hash(None, GENESIS, 0, event);
/// let keyed = link_hash(Some(&ChainKey::new(b"secret".to_vec())), GENESIS, 0, event);
/// assert_eq!(plain.as_str().len(), 64);
/// assert_ne!(plain, keyed);
/// ```
#[derive(Clone)]
pub struct ChainKey {
    mac: Hmac<Sha256>,
}

impl ChainKey {
    /// A key from raw bytes (any length; 32 random bytes is right).
    pub fn new(bytes: Vec<u8>) -> Self {
        let mac = match Hmac::<Sha256>::new_from_slice(&bytes) {
            Ok(mac) => mac,
            Err(_) => unreachable!("HMAC accepts keys of any length"),
        };
        Self { mac }
    }

    /// A key from hex text (as stored in a key file; whitespace around it is ignored).
    pub fn from_hex(text: &str) -> Result<Self, hex::FromHexError> {
        hex::decode(text.trim()).map(Self::new)
    }

    /// An identifier of the key that reveals nothing about it: 16 hex digits of its HMAC
    /// of a fixed label.
    pub fn id(&self) -> String {
        let mut mac = self.mac.clone();
        mac.update(b"audit-layer chain key id");
        let mut id = hex::encode(mac.finalize().into_bytes());
        id.truncate(16);
        id
    }
}

impl fmt::Debug for ChainKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ChainKey([REDACTED])")
    }
}

/// The name of the chain's algorithm, as checkpoints record it.
pub(crate) fn algorithm(key: Option<&ChainKey>) -> &'static str {
    if key.is_some() {
        "hmac-sha256"
    } else {
        "sha256"
    }
}

/// The hex hash of one link of the chain.
pub fn link_hash(key: Option<&ChainKey>, prev_hash: &str, seq: u64, event: &[u8]) -> LinkHash {
    link_hash_parts(key, prev_hash.as_bytes(), seq, &[event])
}

/// A link's hash: 64 lowercase hex digits, kept inline so that chaining an event allocates
/// nothing.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct LinkHash([u8; 64]);

impl LinkHash {
    /// The genesis hash: what the first event of a trail links to.
    pub const GENESIS: Self = Self([b'0'; 64]);

    /// The hex digits, as bytes (what the file sink writes, without re-checking UTF-8).
    pub fn as_bytes(&self) -> &[u8; 64] {
        &self.0
    }

    /// The hex digits.
    pub fn as_str(&self) -> &str {
        // Only ever filled by `hex::encode_to_slice` or from a valid hex string.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    /// Parses 64 lowercase hex digits.
    pub fn parse(text: &str) -> Option<Self> {
        let bytes: [u8; 64] = text.as_bytes().try_into().ok()?;
        bytes
            .iter()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
            .then_some(Self(bytes))
    }
}

impl fmt::Display for LinkHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for LinkHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LinkHash({})", self.as_str())
    }
}

impl PartialEq<str> for LinkHash {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for LinkHash {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// [`link_hash`] of an event given in pieces (the verifier hashes `{` and the rest of a line
/// without copying them together).
pub(crate) fn link_hash_parts(
    key: Option<&ChainKey>,
    prev_hash: &[u8],
    seq: u64,
    event: &[&[u8]],
) -> LinkHash {
    link_hash_of(
        key,
        prev_hash,
        itoa::Buffer::new().format(seq).as_bytes(),
        event,
    )
}

/// [`link_hash_parts`] with the sequence number already in decimal.
fn link_hash_of(
    key: Option<&ChainKey>,
    prev_hash: &[u8],
    seq_text: &[u8],
    event: &[&[u8]],
) -> LinkHash {
    let digest: [u8; 32] = match key {
        Some(key) => {
            let mut mac = key.mac.clone();
            feed(&mut mac, prev_hash, seq_text, event);
            mac.finalize().into_bytes().into()
        }
        None => {
            let mut hasher = Sha256::new();
            feed(&mut hasher, prev_hash, seq_text, event);
            hasher.finalize().into()
        }
    };
    let mut hex = [0; 64];
    // The buffer is exactly twice the digest's length, so this cannot fail.
    let _ = hex::encode_to_slice(digest, &mut hex);
    LinkHash(hex)
}

/// What a link hashes, keyed or not: `prev_hash \n seq \n event`.
fn feed(
    hasher: &mut impl sha2::digest::Update,
    prev_hash: &[u8],
    seq_text: &[u8],
    event: &[&[u8]],
) {
    hasher.update(prev_hash);
    hasher.update(b"\n");
    hasher.update(seq_text);
    hasher.update(b"\n");
    for part in event {
        hasher.update(part);
    }
}

/// Appends one chained line (with its newline) and returns its hash. `write_members`
/// appends the event's JSON without its opening brace (`"schema":...}`), which the chain
/// fields replace.
///
/// The event is written once, in place: the line's `hash` is a placeholder until the
/// event's bytes are there to hash. If `write_members` fails, `out` is left as it was.
pub(crate) fn append_line<E>(
    out: &mut Vec<u8>,
    key: Option<&ChainKey>,
    seq: u64,
    prev_hash: &LinkHash,
    write_members: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
) -> Result<LinkHash, E> {
    let start = out.len();
    let mut seq_buf = itoa::Buffer::new();
    let seq_text = seq_buf.format(seq).as_bytes();
    out.extend_from_slice(b"{\"seq\":");
    out.extend_from_slice(seq_text);
    out.extend_from_slice(b",\"prev_hash\":\"");
    out.extend_from_slice(prev_hash.as_bytes());
    out.extend_from_slice(b"\",\"hash\":\"");
    let hash_at = out.len();
    out.extend_from_slice(LinkHash::GENESIS.as_bytes());
    out.extend_from_slice(b"\",");
    let members_at = out.len();
    if let Err(error) = write_members(out) {
        out.truncate(start);
        return Err(error);
    }
    let hash = link_hash_of(
        key,
        prev_hash.as_bytes(),
        seq_text,
        &[b"{", &out[members_at..]],
    );
    out[hash_at..hash_at + hash.as_bytes().len()].copy_from_slice(hash.as_bytes());
    out.push(b'\n');
    Ok(hash)
}

/// One line of a chained file, split into its parts.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ChainedLine<'a> {
    pub(crate) seq: u64,
    pub(crate) prev_hash: &'a str,
    pub(crate) hash: &'a str,
    /// The event without its opening brace: `"schema":...}`.
    pub(crate) rest: &'a [u8],
}

impl ChainedLine<'_> {
    /// The hash this line should carry, given its own fields.
    pub(crate) fn expected_hash(&self, key: Option<&ChainKey>) -> LinkHash {
        link_hash_parts(key, self.prev_hash.as_bytes(), self.seq, &[b"{", self.rest])
    }
}

/// Parses a line (without its newline) written by [`append_line`]; `None` if it is not one.
pub(crate) fn parse_line(line: &[u8]) -> Option<ChainedLine<'_>> {
    let rest = line.strip_prefix(b"{\"seq\":")?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > 20 || (digits > 1 && rest[0] == b'0') {
        return None;
    }
    let seq = std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()?;
    let rest = rest[digits..].strip_prefix(b",\"prev_hash\":\"")?;
    let (prev_hash, rest) = hex64(rest)?;
    let rest = rest.strip_prefix(b"\",\"hash\":\"")?;
    let (hash, rest) = hex64(rest)?;
    let rest = rest.strip_prefix(b"\",")?;
    if !rest.starts_with(b"\"") || !rest.ends_with(b"}") {
        return None;
    }
    Some(ChainedLine {
        seq,
        prev_hash,
        hash,
        rest,
    })
}

fn hex64(bytes: &[u8]) -> Option<(&str, &[u8])> {
    let (hash, rest) = bytes.split_at_checked(64)?;
    if !hash.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    Some((std::str::from_utf8(hash).ok()?, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_round_trips_and_verifies() {
        let event = br#"{"schema":"audit/1","id":"x"}"#;
        let hash = link_hash(None, GENESIS, 12, event);
        let mut line = b"before".to_vec();
        let appended = append_line(&mut line, None, 12, &LinkHash::GENESIS, |out| {
            out.extend_from_slice(&event[1..]);
            Ok::<_, ()>(())
        });
        assert_eq!(appended, Ok(hash));
        let line = line.split_off(b"before".len());
        assert!(line.ends_with(b"}\n"));
        let text = std::str::from_utf8(&line).unwrap();
        assert!(text.starts_with(r#"{"seq":12,"prev_hash":"000"#), "{text}");
        let value: serde_json::Value = serde_json::from_str(text).unwrap();
        assert_eq!(value["seq"], 12);
        assert_eq!(value["schema"], "audit/1");

        let parsed = parse_line(&line[..line.len() - 1]).unwrap();
        assert_eq!(parsed.seq, 12);
        assert_eq!(parsed.hash, hash.as_str());
        assert_eq!(parsed.expected_hash(None), hash);
    }

    #[test]
    fn a_failed_event_leaves_the_buffer_as_it_was() {
        let mut out = b"kept\n".to_vec();
        let appended = append_line(&mut out, None, 3, &LinkHash::GENESIS, |out| {
            out.extend_from_slice(b"\"schema\":");
            Err("cannot encode")
        });
        assert_eq!(appended, Err("cannot encode"));
        assert_eq!(out, b"kept\n");
    }

    #[test]
    fn link_hashes_parse_only_lowercase_hex_of_the_right_length() {
        let hash = link_hash(None, GENESIS, 0, b"{}");
        assert_eq!(LinkHash::parse(hash.as_str()), Some(hash));
        assert_eq!(LinkHash::GENESIS.as_str(), GENESIS);
        let upper = hash.as_str().to_uppercase();
        for bad in ["", "00", &upper, &format!("{hash}0"), &"g".repeat(64)] {
            assert_eq!(LinkHash::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn malformed_lines_do_not_parse() {
        for bad in [
            &b""[..],
            b"{}",
            b"{\"seq\":-1}",
            b"{\"seq\":01,\"prev_hash\":\"",
            b"{\"seq\":1,\"prev_hash\":\"zz\"}",
        ] {
            assert!(
                parse_line(bad).is_none(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn a_link_hashes_the_previous_hash_the_sequence_and_the_event_in_one_text() {
        use sha2::Digest;
        let expected = |prev: &[u8], seq: u64, event: &[u8]| {
            let mut text = prev.to_vec();
            text.extend_from_slice(format!("\n{seq}\n").as_bytes());
            text.extend_from_slice(event);
            hex::encode(Sha256::digest(&text))
        };
        let long_prev = "f".repeat(200);
        let long_event = format!("{{\"a\":\"{}\"}}", "x".repeat(300));
        for prev in [GENESIS, "", "ab", long_prev.as_str()] {
            for seq in [0, 7, u64::MAX] {
                for event in ["{}", "{\"schema\":\"audit/1\"}", long_event.as_str()] {
                    let (first, rest) = event.as_bytes().split_at(1);
                    let want = expected(prev.as_bytes(), seq, event.as_bytes());
                    // Whole, split as the verifier splits a line, and in many small pieces.
                    assert_eq!(link_hash(None, prev, seq, event.as_bytes()).as_str(), want);
                    let parts = [first, rest];
                    let hash = link_hash_parts(None, prev.as_bytes(), seq, &parts);
                    assert_eq!(hash.as_str(), want);
                    let bytes: Vec<&[u8]> = event.as_bytes().chunks(7).collect();
                    let hash = link_hash_parts(None, prev.as_bytes(), seq, &bytes);
                    assert_eq!(hash.as_str(), want, "{prev} {seq} {event}");
                }
            }
        }
    }

    #[test]
    fn keyed_hashes_depend_on_the_key() {
        let a = ChainKey::new(b"a".to_vec());
        let b = ChainKey::from_hex("62").unwrap();
        assert_ne!(
            link_hash(Some(&a), GENESIS, 0, b"{}"),
            link_hash(Some(&b), GENESIS, 0, b"{}")
        );
        assert_eq!(format!("{a:?}"), "ChainKey([REDACTED])");
    }
}
