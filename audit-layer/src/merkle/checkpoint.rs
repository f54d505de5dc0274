//! The tree's signed head in the C2SP `tlog-checkpoint` form: the log's origin, the tree's
//! size and its root, as a signed note that transparency tooling reads.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::note::{NoteError, NoteVerifier, open_note, sign_note};
use super::{Hash, MerkleTree};
use crate::file::CheckpointKey;

/// A tree head: which log (its origin, a name such as `audit.example.com/orders`), how
/// many leaves, and their root. Its text is three lines:
///
/// ```text
/// audit.example.com/orders
/// 1024
/// 5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328 (in base64)
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TreeHead {
    /// The log's name: its signing key's name too.
    pub origin: String,
    /// How many leaves the tree holds.
    pub size: u64,
    /// The root of those leaves.
    pub root: Hash,
}

impl TreeHead {
    /// The head of `tree` as it stands, for the log `origin`.
    pub fn of(origin: &str, tree: &MerkleTree) -> Self {
        Self {
            origin: origin.to_owned(),
            size: tree.len(),
            root: tree.root(),
        }
    }

    /// The checkpoint's text: origin, size and root, each on a line.
    pub fn text(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            BASE64.encode(self.root)
        )
    }

    /// Reads a checkpoint's text (extension lines after the root are allowed, and ignored).
    pub fn parse(text: &str) -> Result<Self, NoteError> {
        let mut lines = text.split('\n');
        let (Some(origin), Some(size), Some(root)) = (lines.next(), lines.next(), lines.next())
        else {
            return Err(NoteError::Malformed(
                "a checkpoint is origin, size and root lines",
            ));
        };
        if origin.is_empty() {
            return Err(NoteError::Malformed("a checkpoint names its origin"));
        }
        // Decimal, no sign, no leading zero.
        if size.is_empty()
            || !size.bytes().all(|b| b.is_ascii_digit())
            || (size.len() > 1 && size.starts_with('0'))
        {
            return Err(NoteError::Malformed(
                "a checkpoint's size is a decimal number",
            ));
        }
        let size = size
            .parse()
            .map_err(|_| NoteError::Malformed("a checkpoint's size is a decimal number"))?;
        let root = BASE64
            .decode(root)
            .ok()
            .and_then(|root| Hash::try_from(root).ok())
            .ok_or(NoteError::Malformed(
                "a checkpoint's root is 32 bytes in base64",
            ))?;
        Ok(Self {
            origin: origin.to_owned(),
            size,
            root,
        })
    }

    /// The checkpoint signed by the log's `key`, under its origin's name.
    pub fn sign(&self, key: &CheckpointKey) -> Result<String, NoteError> {
        sign_note(&self.text(), &self.origin, key)
    }

    /// Checks a signed checkpoint against the log's verifier (whose name is the origin) and
    /// reads it.
    pub fn open(note: &str, log: &NoteVerifier) -> Result<Self, NoteError> {
        let opened = open_note(note, std::slice::from_ref(log))?;
        let head = Self::parse(&opened.text)?;
        if head.origin != log.name() {
            return Err(NoteError::Malformed("the checkpoint is another log's"));
        }
        Ok(head)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_round_trips_and_binds_its_fields() {
        let mut tree = MerkleTree::new();
        for n in 0..1024u32 {
            tree.push(&n.to_be_bytes());
        }
        let key = CheckpointKey::generate().unwrap();
        let head = TreeHead::of("audit.example.com/orders", &tree);
        let note = head.sign(&key).unwrap();
        assert!(
            note.starts_with(&format!(
                "audit.example.com/orders\n1024\n{}\n\n\u{2014} audit.example.com/orders ",
                BASE64.encode(tree.root())
            )),
            "{note}"
        );
        let log = NoteVerifier::new("audit.example.com/orders", &key.public_key()).unwrap();
        assert_eq!(TreeHead::open(&note, &log).unwrap(), head);
        // Another size or root, or another log's name: refused.
        let bigger = note.replacen("\n1024\n", "\n1025\n", 1);
        assert!(TreeHead::open(&bigger, &log).is_err());
        let other = NoteVerifier::new("audit.example.com/other", &key.public_key()).unwrap();
        assert!(TreeHead::open(&note, &other).is_err());
        for bad in [
            "o\n01\nAAAA\n",
            "o\n-1\n",
            "\n1\nAAAA\n",
            "o\n1\nnot base64\n",
        ] {
            assert!(TreeHead::parse(bad).is_err(), "{bad:?}");
        }
    }
}
