//! Signed notes (C2SP `signed-note`): a text and one or more Ed25519 signatures of it, each
//! by a named key, in the format transparency logs and their witnesses exchange.
//!
//! A note is its text (UTF-8, ending in a newline), a blank line, and one line per
//! signature: `— <name> <base64(key id || signature)>`. The key id is the first four bytes
//! of `SHA-256(name || "\n" || 0x01 || public key)`, and a verifier key is written
//! `<name>+<key id in hex>+<base64(0x01 || public key)>`.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::{Signature, Signer as _, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::file::{CheckpointKey, PublicKey};

/// The signature type of Ed25519 in signed notes.
const ED25519: u8 = 0x01;
/// The signature type of a witness's timestamped Ed25519 cosignature (C2SP
/// `tlog-cosignature`).
pub(super) const COSIGNATURE: u8 = 0x04;
/// What starts a signature line: an em dash and a space.
const SIGNATURE_PREFIX: &str = "\u{2014} ";

/// Why a note could not be signed or opened, or a verifier key read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NoteError {
    /// A key name that is empty, or holds a space, a `+` or a control character.
    #[error("a key name is not empty and holds no space, `+` or control character: {0:?}")]
    Name(String),
    /// A text that does not end in a newline or holds a control character.
    #[error("a note's text ends in a newline and holds no other control character")]
    Text,
    /// A note that is not text, a blank line and signature lines.
    #[error("not a signed note: {0}")]
    Malformed(&'static str),
    /// A verifier key not in the `<name>+<id>+<key>` form, or of another algorithm.
    #[error("not an Ed25519 verifier key: {0}")]
    VerifierKey(&'static str),
    /// A signature by a known key that does not verify: the note was changed.
    #[error("the signature by {0} does not verify: the note was changed")]
    BadSignature(String),
    /// No signature by any of the keys given.
    #[error("the note is signed by none of the keys given")]
    Unverified,
}

/// The public half of a note signer (a log), or of a witness that cosigns: its name and key.
#[derive(Clone, PartialEq, Eq)]
pub struct NoteVerifier {
    name: String,
    id: [u8; 4],
    key: VerifyingKey,
    /// [`ED25519`] for a log's signatures, [`COSIGNATURE`] for a witness's.
    kind: u8,
}

impl NoteVerifier {
    /// The verifier of notes signed by `key` under `name`.
    pub fn new(name: &str, key: &PublicKey) -> Result<Self, NoteError> {
        check_name(name)?;
        Ok(Self::of(name, *key.verifying_key()))
    }

    /// The verifier of the cosignatures a witness named `name` makes with `key`.
    pub fn witness(name: &str, key: &PublicKey) -> Result<Self, NoteError> {
        check_name(name)?;
        Ok(Self::of_kind(name, *key.verifying_key(), COSIGNATURE))
    }

    fn of(name: &str, key: VerifyingKey) -> Self {
        Self::of_kind(name, key, ED25519)
    }

    pub(super) fn of_kind(name: &str, key: VerifyingKey, kind: u8) -> Self {
        Self {
            name: name.to_owned(),
            id: key_id(name, kind, &key),
            key,
            kind,
        }
    }

    /// Whether it verifies a witness's cosignatures (rather than a log's signatures).
    pub fn is_witness(&self) -> bool {
        self.kind == COSIGNATURE
    }

    pub(super) fn id(&self) -> [u8; 4] {
        self.id
    }

    pub(super) fn key(&self) -> &VerifyingKey {
        &self.key
    }

    /// Reads a verifier key, `<name>+<key id in hex>+<base64(0x01 || public key)>`.
    pub fn parse(text: &str) -> Result<Self, NoteError> {
        let mut parts = text.splitn(3, '+');
        let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(NoteError::VerifierKey("three parts joined by `+`"));
        };
        check_name(name).map_err(|_| NoteError::VerifierKey("an invalid name"))?;
        let id = <[u8; 4]>::try_from(
            hex::decode(id).map_err(|_| NoteError::VerifierKey("a key id of 8 hex digits"))?,
        )
        .map_err(|_| NoteError::VerifierKey("a key id of 8 hex digits"))?;
        let key = BASE64
            .decode(key)
            .map_err(|_| NoteError::VerifierKey("a key in base64"))?;
        let Some((&kind, key)) = key
            .split_first()
            .filter(|(kind, _)| [ED25519, COSIGNATURE].contains(kind))
        else {
            return Err(NoteError::VerifierKey(
                "an Ed25519 key (type 0x01, or 0x04 for a witness)",
            ));
        };
        let key = <[u8; 32]>::try_from(key)
            .ok()
            .and_then(|key| VerifyingKey::from_bytes(&key).ok())
            .ok_or(NoteError::VerifierKey("a 32-byte Ed25519 key"))?;
        let verifier = Self::of_kind(name, key, kind);
        if verifier.id != id {
            return Err(NoteError::VerifierKey(
                "a key id that matches the name and key",
            ));
        }
        Ok(verifier)
    }

    /// The key's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The public key.
    pub fn public_key(&self) -> PublicKey {
        PublicKey::from_verifying_key(self.key)
    }
}

/// The verifier key, as [`NoteVerifier::parse`] reads it.
impl fmt::Display for NoteVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut key = vec![self.kind];
        key.extend_from_slice(self.key.as_bytes());
        write!(
            f,
            "{}+{}+{}",
            self.name,
            hex::encode(self.id),
            BASE64.encode(key)
        )
    }
}

impl fmt::Debug for NoteVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("NoteVerifier")
            .field(&self.to_string())
            .finish()
    }
}

/// A note whose signatures were checked.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Note {
    /// The text, ending in a newline.
    pub text: String,
    /// The names of the given keys that signed it.
    pub signed_by: Vec<String>,
}

/// Signs `text` (ending in a newline) as `name` with `key`: the note, its signature line
/// last. Signing an already signed note adds a signature line.
pub fn sign_note(text: &str, name: &str, key: &CheckpointKey) -> Result<String, NoteError> {
    check_name(name)?;
    check_text(text)?;
    let signature = key.signing_key().sign(text.as_bytes());
    let verifier = NoteVerifier::of(name, key.signing_key().verifying_key());
    Ok(format!("{text}\n{}", signature_line(&verifier, &signature)))
}

/// Adds a signature by `key` under `name` to a signed `note`.
pub fn add_signature(note: &str, name: &str, key: &CheckpointKey) -> Result<String, NoteError> {
    check_name(name)?;
    let (text, _) = split(note)?;
    let signature = key.signing_key().sign(text.as_bytes());
    let verifier = NoteVerifier::of(name, key.signing_key().verifying_key());
    Ok(format!("{note}{}", signature_line(&verifier, &signature)))
}

/// Checks `note` against `verifiers`: its text, if at least one of them signed it and every
/// signature by one of them verifies. Signatures by other keys are left unchecked.
pub fn open_note(note: &str, verifiers: &[NoteVerifier]) -> Result<Note, NoteError> {
    let (text, signatures) = split(note)?;
    let mut signed_by = Vec::new();
    for line in signatures {
        let (name, blob) = parse_line(line)?;
        let (id, signature) = blob.split_at(4);
        let Some(verifier) = verifiers.iter().find(|verifier| {
            verifier.kind == ED25519 && verifier.name == name && verifier.id == id
        }) else {
            continue;
        };
        let valid = Signature::from_slice(signature).is_ok_and(|signature| {
            verifier
                .key
                .verify_strict(text.as_bytes(), &signature)
                .is_ok()
        });
        if !valid {
            return Err(NoteError::BadSignature(name.to_owned()));
        }
        if !signed_by.iter().any(|signer| signer == name) {
            signed_by.push(name.to_owned());
        }
    }
    if signed_by.is_empty() {
        return Err(NoteError::Unverified);
    }
    Ok(Note {
        text: text.to_owned(),
        signed_by,
    })
}

/// The text (with its final newline) and the signature lines (without theirs).
pub(super) fn split(note: &str) -> Result<(&str, Vec<&str>), NoteError> {
    // The last blank line separates them: the text itself may hold none (it ends in a
    // newline and has no empty line before its signatures).
    let at = note
        .rfind("\n\n")
        .ok_or(NoteError::Malformed("no blank line before the signatures"))?;
    let (text, signatures) = (&note[..=at], &note[at + 2..]);
    check_text(text).map_err(|_| NoteError::Malformed("the text holds a control character"))?;
    let Some(signatures) = signatures.strip_suffix('\n') else {
        return Err(NoteError::Malformed(
            "the last signature line ends in a newline",
        ));
    };
    let lines: Vec<&str> = signatures.split('\n').collect();
    if lines.iter().any(|line| line.is_empty()) {
        return Err(NoteError::Malformed("an empty signature line"));
    }
    Ok((text, lines))
}

fn signature_line(verifier: &NoteVerifier, signature: &Signature) -> String {
    blob_line(&verifier.name, verifier.id, &[], signature)
}

/// `— name base64(id || prefix || signature)`.
pub(super) fn blob_line(name: &str, id: [u8; 4], prefix: &[u8], signature: &Signature) -> String {
    let mut blob = id.to_vec();
    blob.extend_from_slice(prefix);
    blob.extend_from_slice(&signature.to_bytes());
    format!("{SIGNATURE_PREFIX}{name} {}\n", BASE64.encode(blob))
}

/// A signature line's name and decoded bytes (a key id first).
pub(super) fn parse_line(line: &str) -> Result<(&str, Vec<u8>), NoteError> {
    let (name, blob) = line
        .strip_prefix(SIGNATURE_PREFIX)
        .and_then(|rest| rest.split_once(' '))
        .ok_or(NoteError::Malformed("a signature line is `— name base64`"))?;
    let blob = BASE64
        .decode(blob)
        .map_err(|_| NoteError::Malformed("a signature in base64"))?;
    if blob.len() < 4 {
        return Err(NoteError::Malformed("a signature of a key id and bytes"));
    }
    Ok((name, blob))
}

/// `SHA-256(name || "\n" || kind || key)[..4]`.
fn key_id(name: &str, kind: u8, key: &VerifyingKey) -> [u8; 4] {
    let mut hasher = Sha256::new();
    hasher.update(name.as_bytes());
    hasher.update(b"\n");
    hasher.update([kind]);
    hasher.update(key.as_bytes());
    let digest = hasher.finalize();
    [digest[0], digest[1], digest[2], digest[3]]
}

pub(super) fn check_name(name: &str) -> Result<(), NoteError> {
    if name.is_empty()
        || name
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '+')
    {
        return Err(NoteError::Name(name.to_owned()));
    }
    Ok(())
}

fn check_text(text: &str) -> Result<(), NoteError> {
    if !text.ends_with('\n') || text.chars().any(|c| c.is_control() && c != '\n') {
        return Err(NoteError::Text);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    // The example of Go's reference implementation (golang.org/x/mod/sumdb/note).
    const VERIFIER: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    const SEED: &str = "AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
    const TEXT: &str = "If you think cryptography is the answer to your problem,\n\
                        then you don't know what your problem is.\n";
    const SIGNATURE: &str = "\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";

    fn reference_key() -> CheckpointKey {
        let seed = BASE64.decode(SEED).unwrap();
        assert_eq!(seed[0], ED25519);
        CheckpointKey::from_hex(&hex::encode(&seed[1..])).unwrap()
    }

    #[test]
    fn the_reference_example_is_reproduced_byte_for_byte() {
        let key = reference_key();
        let note = sign_note(TEXT, "PeterNeumann", &key).unwrap();
        assert_eq!(note, format!("{TEXT}\n{SIGNATURE}"));
        let verifier = NoteVerifier::parse(VERIFIER).unwrap();
        assert_eq!(verifier.to_string(), VERIFIER);
        assert_eq!(
            NoteVerifier::new("PeterNeumann", &key.public_key()).unwrap(),
            verifier
        );
        let opened = open_note(&note, &[verifier]).unwrap();
        assert_eq!(opened.text, TEXT);
        assert_eq!(opened.signed_by, ["PeterNeumann"]);
    }

    #[test]
    fn changes_and_strangers_are_refused() {
        let key = reference_key();
        let verifier = NoteVerifier::parse(VERIFIER).unwrap();
        let note = sign_note(TEXT, "PeterNeumann", &key).unwrap();
        let changed = note.replacen("problem", "problems", 1);
        assert_eq!(
            open_note(&changed, std::slice::from_ref(&verifier)),
            Err(NoteError::BadSignature("PeterNeumann".into()))
        );
        let other = CheckpointKey::generate().unwrap();
        let stranger = NoteVerifier::new("PeterNeumann", &other.public_key()).unwrap();
        assert_eq!(open_note(&note, &[stranger]), Err(NoteError::Unverified));
        // A second signature, by another key: both verify; either alone suffices.
        let cosigned = add_signature(&note, "witness.example", &other).unwrap();
        let witness = NoteVerifier::new("witness.example", &other.public_key()).unwrap();
        let opened = open_note(&cosigned, &[verifier.clone(), witness]).unwrap();
        assert_eq!(opened.signed_by, ["PeterNeumann", "witness.example"]);
        assert!(open_note(&cosigned, &[verifier]).is_ok());
        // Malformed notes and keys.
        for bad in [
            TEXT.to_owned(),
            format!("{TEXT}\n"),
            format!("{TEXT}\n{}", &SIGNATURE[..20]),
        ] {
            assert!(open_note(&bad, &[]).is_err(), "{bad:?}");
        }
        for bad in [
            "PeterNeumann",
            "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
            "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        ] {
            assert!(NoteVerifier::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(sign_note("no newline", "a", &key), Err(NoteError::Text));
        assert!(matches!(
            sign_note(TEXT, "a b", &key),
            Err(NoteError::Name(_))
        ));
    }
}
