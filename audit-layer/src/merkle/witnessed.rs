//! Checking a trail against its newest witnessed tree head: what `audit verify --witness`
//! does.

use std::ops::ControlFlow;
use std::path::Path;

use super::checkpoint::TreeHead;
use super::cosignature::cosignatures;
use super::files::TreeFiles;
use super::follower::{cosignatures_of, signed_heads};
use super::note::NoteVerifier;
use super::receipt::ReceiptError;
use super::{ProofError, root_of};

/// The newest tree head of a trail that enough witnesses cosigned, checked against the
/// trail's lines.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Witnessed {
    /// The head.
    pub head: TreeHead,
    /// The last line it covers.
    pub seq_to: u64,
    /// The witnesses that cosigned it.
    pub cosigned_by: Vec<String>,
    /// Lines of the trail after it: no witness vouches for them yet.
    pub after: u64,
}

/// Finds the newest head of the trail in `trail_dir` signed by `log` and cosigned by at
/// least `required` of `witnesses`, and checks that the trail's lines are the tree that
/// head signs: a trail rewritten or rolled back by whoever holds the directory and the
/// log's key fails here, since no witness cosigned its new heads.
pub fn check_witnessed(
    trail_dir: &Path,
    log: &NoteVerifier,
    witnesses: &[NoteVerifier],
    required: usize,
) -> Result<Witnessed, ReceiptError> {
    let files = TreeFiles::open_existing(trail_dir)?.ok_or(ReceiptError::NoTree)?;
    let first_seq = files.first_seq();
    let mut most = 0;
    let mut chosen = None;
    for signed in signed_heads(trail_dir)?.into_iter().rev() {
        let mut note = signed.note.clone();
        for cosigned in cosignatures_of(trail_dir, signed.size)? {
            note.push_str(&cosigned.line);
        }
        let head = TreeHead::open(&note, log)?;
        let found = cosignatures(&note, witnesses)?;
        most = most.max(found.len());
        if found.len() >= required {
            let names = found.into_iter().map(|cosigned| cosigned.witness).collect();
            chosen = Some((head, signed.seq_to, names));
            break;
        }
    }
    let Some((head, seq_to, cosigned_by)) = chosen else {
        return Err(ReceiptError::Witnesses {
            found: most,
            required,
        });
    };
    // The lines the head covers, from the files, into a root.
    let mut lines = Vec::new();
    let mut oldest = None;
    let mut after = 0u64;
    let mut unreadable = None;
    crate::file::for_each_event(trail_dir, |line, _| {
        let seq = crate::file::parse_line(line.as_bytes()).map(|parsed| parsed.seq);
        match seq {
            None => unreadable = Some(line.chars().take(80).collect::<String>()),
            Some(seq) => {
                oldest.get_or_insert(seq);
                if seq > seq_to {
                    after += 1;
                } else if seq >= first_seq {
                    lines.push(line.to_owned());
                }
            }
        }
        ControlFlow::Continue(())
    })?;
    if let Some(line) = unreadable {
        return Err(ReceiptError::Format(format!(
            "a line that is not chained: {line}"
        )));
    }
    if oldest.is_some_and(|oldest| oldest > first_seq) {
        return Err(ReceiptError::Format(format!(
            "the lines from seq {first_seq} are gone (retention): the witnessed tree cannot be \
             recomputed"
        )));
    }
    let (size, root) = root_of(lines.iter().map(String::as_bytes));
    if size != head.size || root != head.root {
        return Err(ReceiptError::Proof(ProofError::Mismatch(
            "the trail's lines are not the tree the witnesses cosigned",
        )));
    }
    Ok(Witnessed {
        head,
        seq_to,
        cosigned_by,
        after,
    })
}
