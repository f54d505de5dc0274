//! Signed checkpoints of a file trail.

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::event::Timestamp;

/// One signed statement about the chain.
///
/// holding only the public key detects a trail that was truncated or wholly replaced.
///
/// Every N events or T seconds, at each file rotation and at shutdown, the file sink appends
/// a [`Checkpoint`] to `checkpoints.jsonl`: the seq range it covers, the last hash, the file
/// and its length so far, the time, and the previous checkpoint's signature, all signed.
/// The last hash covers the file's content byte for byte (see [`link_hash`](crate::file::link_hash)), so the
/// content is not hashed a second time. As with AWS CloudTrail's digest files, the
/// checkpoints form a chain of their own, and a trail whose events or checkpoints were
/// rewritten no longer matches any signature the attacker could produce.
///
/// Keys are 32-byte Ed25519 seeds stored as hex; the public key is 32 bytes of hex.
///
/// # Example
///
/// ```
/// use audit_layer::file::{CheckpointKey, PublicKey};
///
/// let key = CheckpointKey::generate()?;
/// let public = PublicKey::from_hex(&key.public_key().to_hex())?;
/// assert_eq!(public.key_id(), key.public_key().key_id());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Checkpoint {
    /// Always `"checkpoint"`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The first seq still in the trail when the checkpoint was written: above 0 once
    /// retention has purged the oldest files.
    #[serde(default)]
    pub first_seq: u64,
    /// The first seq this checkpoint covers (the previous checkpoint's `seq_to` + 1).
    pub seq_from: u64,
    /// The last seq it covers.
    pub seq_to: u64,
    /// The hash of event `seq_to`.
    pub last_hash: String,
    /// The file holding event `seq_to`, without `.gz`.
    pub file: String,
    /// That file's length (uncompressed) when the checkpoint was written. With `last_hash`
    /// it pins the file's content: a verifier accepts only lines in the exact form the
    /// chain hashes, so the chain's last hash covers every byte of the file before it.
    pub file_len: u64,
    /// The SHA-256 of the file's first `file_len` bytes, as checkpoints written before
    /// 2026-11-23 carry it (and sign it). New checkpoints leave it out: `last_hash` already
    /// covers those bytes. Kept so that the old checkpoints' signatures still verify.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_sha256: Option<String>,
    /// When it was written.
    pub time: Timestamp,
    /// `sha256` or `hmac-sha256`.
    pub chain: String,
    /// For a keyed chain, an identifier of its key (not the key): a verifier holding the
    /// wrong key is told so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain_key_id: Option<String>,
    /// The trail's id ([`JsonlFileSinkBuilder::trail_id`](crate::file::JsonlFileSinkBuilder::trail_id)),
    /// which its lines carry too: a copy of one trail's checkpoint filed under another
    /// trail does not verify as that trail's. Absent from checkpoints written before trails
    /// had ids.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trail: Option<String>,
    /// The first 16 hex digits of the SHA-256 of the signing public key.
    pub key_id: String,
    /// The previous checkpoint's signature (absent for the first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev_signature: Option<String>,
    /// The Ed25519 signature (hex) of this checkpoint's JSON without this field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

impl Checkpoint {
    /// The bytes the signature covers.
    pub(crate) fn signed_bytes(&self) -> Vec<u8> {
        let unsigned = Checkpoint {
            signature: None,
            ..self.clone()
        };
        serde_json::to_vec(&unsigned).unwrap_or_default()
    }

    /// Whether the signature is valid for `key`.
    pub fn verify(&self, key: &PublicKey) -> bool {
        let Some(signature) = self
            .signature
            .as_deref()
            .and_then(|s| hex::decode(s).ok())
            .and_then(|bytes| <[u8; 64]>::try_from(bytes).ok())
        else {
            return false;
        };
        key.0
            .verify_strict(&self.signed_bytes(), &Signature::from_bytes(&signature))
            .is_ok()
    }
}

/// A problem with a key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The key file could not be read or written.
    #[error("key file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// The key is not 32 bytes of hex.
    #[error("a key is 64 hex digits (32 bytes): {0}")]
    Format(String),
    /// The system's random source failed.
    #[error("cannot generate a key: {0}")]
    Random(String),
}

/// The secret key that signs checkpoints.
#[derive(Clone)]
pub struct CheckpointKey {
    key: SigningKey,
}

impl CheckpointKey {
    /// A new random key.
    pub fn generate() -> Result<Self, KeyError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| KeyError::Random(e.to_string()))?;
        Ok(Self {
            key: SigningKey::from_bytes(&seed),
        })
    }

    /// The key in `signing.key` of the trail directory `dir`, generated (with `signing.pub`)
    /// on first use: what a [`JsonlFileSink`](crate::file::JsonlFileSink) given no key
    /// signs with, for a follower that signs with the same key
    /// ([`TreeFollower`](crate::merkle::TreeFollower)). Fine for a demo; in production, load
    /// the key from a secret store.
    pub fn load_or_generate(dir: &Path) -> Result<Self, KeyError> {
        let io = |source| KeyError::Io {
            path: dir.to_path_buf(),
            source,
        };
        super::private::create_private_dir(dir).map_err(io)?;
        super::private::load_or_generate_key(dir).map_err(io)
    }

    /// A key from its 64 hex digits.
    pub fn from_hex(text: &str) -> Result<Self, KeyError> {
        Ok(Self {
            key: SigningKey::from_bytes(&hex32(text)?),
        })
    }

    /// A key from a file holding its 64 hex digits.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, KeyError> {
        Self::from_hex(&read_key_file(path.as_ref())?)
    }

    /// A key from an environment variable holding its 64 hex digits; `Ok(None)` if the
    /// variable is not set.
    pub fn from_env(var: &str) -> Result<Option<Self>, KeyError> {
        match std::env::var(var) {
            Ok(text) => Self::from_hex(&text).map(Some),
            Err(std::env::VarError::NotPresent) => Ok(None),
            Err(e) => Err(KeyError::Format(format!("{var}: {e}"))),
        }
    }

    /// Saves the secret key (mode 0600) and the public key next to it.
    pub fn save(&self, secret: &Path, public: &Path) -> Result<(), KeyError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| KeyError::Io { path, source }
        };
        write_private(
            secret,
            format!("{}\n", hex::encode(self.key.to_bytes())).as_bytes(),
        )
        .map_err(io(secret))?;
        fs::write(public, format!("{}\n", self.public_key().to_hex())).map_err(io(public))
    }

    /// The public key that verifies this key's signatures.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.key.verifying_key())
    }

    /// The Ed25519 key itself, for the signed notes of [`merkle`](crate::merkle).
    pub(crate) fn signing_key(&self) -> &SigningKey {
        &self.key
    }

    /// Signs a checkpoint (sets its `key_id` and `signature`).
    pub(crate) fn sign(&self, checkpoint: &mut Checkpoint) {
        checkpoint.key_id = self.public_key().key_id();
        checkpoint.signature = None;
        let signature = self.key.sign(&checkpoint.signed_bytes());
        checkpoint.signature = Some(hex::encode(signature.to_bytes()));
    }
}

impl fmt::Debug for CheckpointKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CheckpointKey")
            .field("key_id", &self.public_key().key_id())
            .finish_non_exhaustive()
    }
}

/// The public key that verifies checkpoint signatures.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    /// A key from its 64 hex digits.
    pub fn from_hex(text: &str) -> Result<Self, KeyError> {
        VerifyingKey::from_bytes(&hex32(text)?)
            .map(Self)
            .map_err(|e| KeyError::Format(e.to_string()))
    }

    /// A key from a file holding its 64 hex digits.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, KeyError> {
        Self::from_hex(&read_key_file(path.as_ref())?)
    }

    /// The Ed25519 key itself, for the signed notes of [`merkle`](crate::merkle).
    pub(crate) fn verifying_key(&self) -> &VerifyingKey {
        &self.0
    }

    pub(crate) fn from_verifying_key(key: VerifyingKey) -> Self {
        Self(key)
    }

    /// The key as 64 hex digits.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0.to_bytes())
    }

    /// The first 16 hex digits of the key's SHA-256, as checkpoints record it.
    pub fn key_id(&self) -> String {
        let mut id = hex::encode(Sha256::digest(self.0.to_bytes()));
        id.truncate(16);
        id
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PublicKey").field(&self.to_hex()).finish()
    }
}

fn hex32(text: &str) -> Result<[u8; 32], KeyError> {
    let bytes = hex::decode(text.trim()).map_err(|e| KeyError::Format(e.to_string()))?;
    <[u8; 32]>::try_from(bytes).map_err(|b| KeyError::Format(format!("got {} bytes", b.len())))
}

fn read_key_file(path: &Path) -> Result<String, KeyError> {
    fs::read_to_string(path).map_err(|source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes a file readable by its owner only.
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Reads the checkpoints of a trail directory, in order. A missing file is an empty list; a
/// line that does not parse is an error naming it.
pub(crate) fn read_checkpoints(dir: &Path) -> io::Result<Vec<Checkpoint>> {
    let path = dir.join(super::layout::CHECKPOINTS);
    let text = match fs::read(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    text.split(|b| *b == b'\n')
        .enumerate()
        .filter(|(_, line)| !line.is_empty())
        .map(|(number, line)| {
            serde_json::from_slice(line).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{} line {}: {e}", super::layout::CHECKPOINTS, number + 1),
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checkpoint() -> Checkpoint {
        Checkpoint {
            kind: "checkpoint".into(),
            first_seq: 0,
            seq_from: 0,
            seq_to: 9,
            last_hash: "ab".repeat(32),
            file: "audit-2026-11-22.jsonl".into(),
            file_len: 100,
            file_sha256: None,
            time: Timestamp::from_unix_micros(1),
            chain: "sha256".into(),
            chain_key_id: None,
            trail: Some("trail-1".into()),
            key_id: String::new(),
            prev_signature: None,
            signature: None,
        }
    }

    #[test]
    fn signatures_verify_and_detect_changes() {
        let key = CheckpointKey::generate().unwrap();
        let mut cp = checkpoint();
        key.sign(&mut cp);
        assert!(cp.verify(&key.public_key()));
        let other = CheckpointKey::generate().unwrap();
        assert!(!cp.verify(&other.public_key()));
        let mut forged = cp.clone();
        forged.seq_to = 10;
        assert!(!forged.verify(&key.public_key()));
        let json = serde_json::to_string(&cp).unwrap();
        assert!(!json.contains("file_sha256"), "{json}");
        let back: Checkpoint = serde_json::from_str(&json).unwrap();
        assert!(back.verify(&key.public_key()));
    }

    #[test]
    fn checkpoints_that_carry_a_file_digest_still_verify() {
        // As written before checkpoints stopped hashing the file a second time.
        let key = CheckpointKey::generate().unwrap();
        let mut old = checkpoint();
        old.file_sha256 = Some("cd".repeat(32));
        key.sign(&mut old);
        let json = serde_json::to_string(&old).unwrap();
        assert!(
            json.contains(r#""file_len":100,"file_sha256":"cdcd"#),
            "{json}"
        );
        let back: Checkpoint = serde_json::from_str(&json).unwrap();
        assert!(back.verify(&key.public_key()));
        let mut forged = back;
        forged.file_sha256 = Some("ab".repeat(32));
        assert!(!forged.verify(&key.public_key()));
    }

    #[test]
    fn keys_round_trip_through_files() {
        let dir = tempfile::tempdir().unwrap();
        let key = CheckpointKey::generate().unwrap();
        let (secret, public) = (dir.path().join("k"), dir.path().join("k.pub"));
        key.save(&secret, &public).unwrap();
        let loaded = CheckpointKey::from_file(&secret).unwrap();
        assert_eq!(loaded.public_key(), key.public_key());
        assert_eq!(PublicKey::from_file(&public).unwrap(), key.public_key());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                fs::metadata(&secret).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        assert!(matches!(
            CheckpointKey::from_hex("abc"),
            Err(KeyError::Format(_))
        ));
        assert!(matches!(
            CheckpointKey::from_file(dir.path().join("missing")),
            Err(KeyError::Io { .. })
        ));
    }
}
