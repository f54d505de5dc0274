//! The trail's tree on disk, in `DIR/merkle/`: one file per level of complete subtrees'
//! hashes, appended as lines arrive, and read a node at a time for proofs.

use std::fs::{File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::tree::{Nodes, consistency_proof, inclusion_proof, root_at};
use super::{Hash, ProofError, leaf_hash, node_hash};
use crate::file::TrailLine;

/// The tree's folder, in the trail directory.
pub const MERKLE_DIR: &str = "merkle";
/// What the files hold, replaced whole after each append.
const STATE: &str = "tree.json";

/// The Merkle tree of a trail's lines, kept in `DIR/merkle/` (see the
/// [module docs](super)): level `l`'s file holds the hash of each complete run of `2^l`
/// lines, 32 bytes each, about 64 bytes a line in all. Leaf `i` is line `first_seq + i`.
///
/// It is derived from the trail: deleted, it is made again from the files (with the same
/// roots, from the same first line).
#[derive(Debug)]
pub struct TreeFiles {
    dir: PathBuf,
    levels: Vec<File>,
    state: State,
    /// The last node of each level whose count is odd: the left half of a pair to come.
    frontier: Vec<Option<Hash>>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct State {
    /// The trail's id.
    trail: Option<String>,
    /// The seq of leaf 0.
    first_seq: u64,
    /// Leaves held.
    size: u64,
    /// The hash of the last line held, as the trail's chain has it.
    last_hash: Option<String>,
}

impl TreeFiles {
    /// Opens the tree of the trail in `trail_dir`, making an empty one if there is none.
    /// Files longer than the tree's state (a crash between an append and its state) are cut
    /// back to it.
    pub fn open(trail_dir: &Path) -> io::Result<Self> {
        std::fs::create_dir_all(trail_dir.join(MERKLE_DIR))?;
        Self::load(trail_dir, true)?.ok_or_else(|| io::Error::other("the tree's folder vanished"))
    }

    /// Opens the tree of the trail in `trail_dir` to read roots and proofs, changing
    /// nothing (its follower may be adding to it); `None` if the trail has no tree.
    pub fn open_existing(trail_dir: &Path) -> io::Result<Option<Self>> {
        Self::load(trail_dir, false)
    }

    fn load(trail_dir: &Path, write: bool) -> io::Result<Option<Self>> {
        let dir = trail_dir.join(MERKLE_DIR);
        let state: State = match std::fs::read(dir.join(STATE)) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                io::Error::other(format!(
                    "{}: not a tree state: {e}",
                    dir.join(STATE).display()
                ))
            })?,
            Err(e) if e.kind() == io::ErrorKind::NotFound && write => State::default(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut files = Self {
            dir,
            levels: Vec::new(),
            state,
            frontier: Vec::new(),
        };
        let height = 64 - files.state.size.leading_zeros() as usize;
        for level in 0..height.max(1) {
            let file = if write {
                files.level_file(level)?
            } else {
                File::open(files.dir.join(format!("level-{level:02}")))?
            };
            let count = files.state.size >> level;
            let len = file.metadata()?.len();
            if len < count * 32 {
                return Err(io::Error::other(format!(
                    "{}: level {level} holds {} nodes of {count}: delete the folder to make \
                     the tree again from the trail",
                    files.dir.display(),
                    len / 32
                )));
            }
            if write {
                file.set_len(count * 32)?;
            }
            files.frontier.push(if count % 2 == 1 {
                Some(read_node(&file, count - 1)?)
            } else {
                None
            });
            files.levels.push(file);
        }
        Ok(Some(files))
    }

    fn level_file(&self, level: usize) -> io::Result<File> {
        OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(self.dir.join(format!("level-{level:02}")))
    }

    /// How many lines the tree holds.
    pub fn len(&self) -> u64 {
        self.state.size
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.state.size == 0
    }

    /// The seq of its first line (leaf 0).
    pub fn first_seq(&self) -> u64 {
        self.state.first_seq
    }

    /// The trail it holds lines of, and the seq and hash of its last line; `None` when it
    /// holds none.
    pub fn cursor(&self) -> Option<(&str, u64, &str)> {
        match (&self.state.trail, &self.state.last_hash) {
            (Some(trail), Some(hash)) if self.state.size > 0 => {
                Some((trail, self.state.first_seq + self.state.size - 1, hash))
            }
            _ => None,
        }
    }

    /// The leaf of line `seq`, if the tree holds it.
    pub fn leaf_index(&self, seq: u64) -> Option<u64> {
        seq.checked_sub(self.state.first_seq)
            .filter(|&index| index < self.state.size)
    }

    /// Adds `lines` of `trail`, which follow the last line held (or start the tree), and
    /// saves the new state.
    pub fn append(&mut self, trail: &str, lines: &[TrailLine]) -> io::Result<()> {
        let Some(last) = lines.last() else {
            return Ok(());
        };
        if self.state.size == 0 {
            self.state.trail = Some(trail.to_owned());
            self.state.first_seq = lines[0].seq;
        } else if self.state.trail.as_deref() != Some(trail)
            || lines[0].seq != self.state.first_seq + self.state.size
        {
            return Err(io::Error::other(format!(
                "{}: line {} of trail {trail} does not follow the tree's last line",
                self.dir.display(),
                lines[0].seq
            )));
        }
        let mut written: Vec<Vec<u8>> = Vec::new();
        let mut size = self.state.size;
        for line in lines {
            let mut hash = leaf_hash(line.json.as_bytes());
            let mut index = size;
            let mut level = 0;
            loop {
                if written.len() == level {
                    written.push(Vec::new());
                }
                if self.frontier.len() == level {
                    self.frontier.push(None);
                }
                written[level].extend_from_slice(&hash);
                // An even index starts a pair; an odd one completes it, and its parent.
                if index.is_multiple_of(2) {
                    self.frontier[level] = Some(hash);
                    break;
                }
                let left = self.frontier[level]
                    .take()
                    .ok_or_else(|| io::Error::other("the tree's frontier lost a node"))?;
                hash = node_hash(&left, &hash);
                index /= 2;
                level += 1;
            }
            size += 1;
        }
        for (level, bytes) in written.iter().enumerate() {
            if self.levels.len() == level {
                let file = self.level_file(level)?;
                self.levels.push(file);
            }
            self.levels[level].write_all(bytes)?;
        }
        self.state.size = size;
        self.state.last_hash = Some(last.hash.clone());
        self.save()
    }

    fn save(&self) -> io::Result<()> {
        let path = self.dir.join(STATE);
        let temporary = path.with_extension("json.new");
        std::fs::write(
            &temporary,
            serde_json::to_vec(&self.state).map_err(io::Error::other)?,
        )?;
        std::fs::rename(&temporary, &path)
    }

    /// The root of the tree of the first `size` lines.
    pub fn root_at(&self, size: u64) -> Result<Hash, ProofError> {
        root_at(self, self.state.size, size)
    }

    /// The inclusion proof of leaf `index` in the tree of the first `size` lines.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, ProofError> {
        inclusion_proof(self, self.state.size, index, size)
    }

    /// The consistency proof from the tree of the first `old` lines to that of `new`.
    pub fn consistency_proof(&self, old: u64, new: u64) -> Result<Vec<Hash>, ProofError> {
        consistency_proof(self, self.state.size, old, new)
    }
}

impl Nodes for TreeFiles {
    fn node(&self, level: usize, index: u64) -> Result<Hash, ProofError> {
        let file = self
            .levels
            .get(level)
            .ok_or_else(|| ProofError::Io(format!("no level {level}")))?;
        read_node(file, index).map_err(|e| ProofError::Io(e.to_string()))
    }
}

fn read_node(file: &File, index: u64) -> io::Result<Hash> {
    let mut hash = [0u8; 32];
    file.read_exact_at(&mut hash, index * 32)?;
    Ok(hash)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::MerkleTree;

    fn lines(from: u64, to: u64) -> Vec<TrailLine> {
        (from..to)
            .map(|seq| TrailLine {
                seq,
                hash: format!("hash-{seq}"),
                json: format!("{{\"seq\":{seq},\"action\":\"http.request\"}}"),
            })
            .collect()
    }

    #[test]
    fn the_files_hold_the_tree_memory_holds_across_batches_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let mut memory = MerkleTree::new();
        let mut files = TreeFiles::open(dir.path()).unwrap();
        assert!(files.is_empty() && files.cursor().is_none());
        // Batches of every size from 1, starting at seq 5 (retention took 0 to 4).
        let mut seq = 5;
        for batch in 1..=40u64 {
            let lines = lines(seq, seq + batch);
            files.append("trail-a", &lines).unwrap();
            for line in &lines {
                memory.push(line.json.as_bytes());
            }
            seq += batch;
            if batch % 7 == 0 {
                files = TreeFiles::open(dir.path()).unwrap();
            }
            assert_eq!(files.len(), memory.len());
            assert_eq!(files.root_at(files.len()).unwrap(), memory.root());
        }
        let size = files.len();
        assert_eq!(files.first_seq(), 5);
        assert_eq!(files.leaf_index(5), Some(0));
        assert_eq!(files.leaf_index(4), None);
        assert_eq!(files.leaf_index(5 + size), None);
        assert_eq!(
            files.cursor(),
            Some(("trail-a", 4 + size, &*format!("hash-{}", 4 + size)))
        );
        for old in [1, 2, 63, 64, 65, size / 2, size - 1] {
            assert_eq!(files.root_at(old).unwrap(), memory.root_at(old).unwrap());
            assert_eq!(
                files.consistency_proof(old, size).unwrap(),
                memory.consistency_proof(old, size).unwrap()
            );
        }
        for index in [0, 1, size / 3, size - 1] {
            assert_eq!(
                files.inclusion_proof(index, size).unwrap(),
                memory.inclusion_proof(index, size).unwrap()
            );
        }
        // A line that does not follow, or another trail's: refused, nothing changed.
        assert!(files.append("trail-a", &lines(seq + 1, seq + 2)).is_err());
        assert!(files.append("trail-b", &lines(seq, seq + 1)).is_err());
        assert_eq!(files.len(), size);
    }

    #[test]
    fn nodes_written_past_the_saved_state_are_cut_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut files = TreeFiles::open(dir.path()).unwrap();
        files.append("t", &lines(0, 10)).unwrap();
        let root = files.root_at(10).unwrap();
        // A crash after the nodes of 6 more lines were written, before the state was.
        let saved = std::fs::read(dir.path().join(MERKLE_DIR).join(STATE)).unwrap();
        files.append("t", &lines(10, 16)).unwrap();
        std::fs::write(dir.path().join(MERKLE_DIR).join(STATE), saved).unwrap();
        let mut files = TreeFiles::open(dir.path()).unwrap();
        assert_eq!(files.len(), 10);
        assert_eq!(files.root_at(10).unwrap(), root);
        files.append("t", &lines(10, 16)).unwrap();
        let mut memory = MerkleTree::new();
        for line in lines(0, 16) {
            memory.push(line.json.as_bytes());
        }
        assert_eq!(files.root_at(16).unwrap(), memory.root());
        // A level file shorter than the state says: a clear error, not a wrong root.
        let level = dir.path().join(MERKLE_DIR).join("level-00");
        let file = OpenOptions::new().write(true).open(&level).unwrap();
        file.set_len(32 * 3).unwrap();
        let error = TreeFiles::open(dir.path()).unwrap_err();
        assert!(error.to_string().contains("delete the folder"), "{error}");
    }
}
