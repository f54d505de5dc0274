//! Witness cosignatures (C2SP `tlog-cosignature` v1): a witness's timestamped Ed25519
//! signature of a checkpoint it checked, added to the checkpoint's note as one more line.

use ed25519_dalek::{Signature, Signer as _};

use super::note::{COSIGNATURE, NoteError, NoteVerifier, blob_line, check_name, parse_line, split};
use crate::file::CheckpointKey;

/// A cosignature found valid on a note.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Cosigned {
    /// The witness's name.
    pub witness: String,
    /// When it cosigned (seconds since the Unix epoch).
    pub time: u64,
}

/// What a witness signs: the version line, the time, then the checkpoint's text.
fn message(text: &str, time: u64) -> String {
    format!("cosignature/v1\ntime {time}\n{text}")
}

/// The cosignature line of the witness `name` with `key` on the signed checkpoint `note`,
/// at `time` (seconds since the Unix epoch): to append to the note.
pub fn cosign(note: &str, name: &str, key: &CheckpointKey, time: u64) -> Result<String, NoteError> {
    check_name(name)?;
    let (text, _) = split(note)?;
    let signature = key.signing_key().sign(message(text, time).as_bytes());
    let witness = NoteVerifier::of_kind(name, key.signing_key().verifying_key(), COSIGNATURE);
    Ok(blob_line(
        name,
        witness.id(),
        &time.to_be_bytes(),
        &signature,
    ))
}

/// The cosignatures on `note` by the `witnesses` given (made with
/// [`NoteVerifier::witness`]), each witness once. Lines by others are left unchecked; a
/// line by one of them that does not verify is an error (the note was changed).
pub fn cosignatures(note: &str, witnesses: &[NoteVerifier]) -> Result<Vec<Cosigned>, NoteError> {
    let (text, lines) = split(note)?;
    let mut found: Vec<Cosigned> = Vec::new();
    for line in lines {
        let (name, blob) = parse_line(line)?;
        let Some(witness) = witnesses
            .iter()
            .find(|w| w.is_witness() && w.name() == name && w.id()[..] == blob[..4])
        else {
            continue;
        };
        let bad = || NoteError::BadSignature(name.to_owned());
        let time = blob
            .get(4..12)
            .and_then(|bytes| <[u8; 8]>::try_from(bytes).ok())
            .map(u64::from_be_bytes)
            .ok_or_else(bad)?;
        let signature = blob
            .get(12..)
            .and_then(|bytes| Signature::from_slice(bytes).ok())
            .ok_or_else(bad)?;
        witness
            .key()
            .verify_strict(message(text, time).as_bytes(), &signature)
            .map_err(|_| bad())?;
        if !found.iter().any(|cosigned| cosigned.witness == name) {
            found.push(Cosigned {
                witness: name.to_owned(),
                time,
            });
        }
    }
    Ok(found)
}
