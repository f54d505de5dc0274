//! [`CheckpointFeed`]: the trail's signed checkpoints, read from `checkpoints.jsonl` as it
//! grows, for a follower that keeps them beside the lines.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::file::Checkpoint;
use crate::file::layout::CHECKPOINTS;

/// The most checkpoints handed over at once.
const CHUNK: usize = 256;

/// Reads checkpoints from where it last stopped, and hands over those the store does not
/// hold whose lines the store already has. Holds at most [`CHUNK`] checkpoints, however long
/// the file.
#[derive(Debug)]
pub(super) struct CheckpointFeed {
    path: PathBuf,
    /// The `seq_to` of the last checkpoint the store holds.
    held: Option<u64>,
    /// Bytes of the file read so far (whole lines only).
    offset: u64,
    /// Read, not yet handed over: their lines are not all shipped yet.
    waiting: Vec<Checkpoint>,
}

impl CheckpointFeed {
    /// A feed for the trail in `dir`, whose store holds checkpoints up to `held`.
    pub(super) fn new(dir: &Path, held: Option<u64>) -> Self {
        Self {
            path: dir.join(CHECKPOINTS),
            held,
            offset: 0,
            waiting: Vec::new(),
        }
    }

    /// Checkpoints after the held one whose lines are all before `next_seq` (shipped), in
    /// order, at most [`CHUNK`].
    pub(super) fn due(&mut self, next_seq: u64) -> io::Result<Vec<Checkpoint>> {
        if self.waiting.len() < CHUNK {
            self.read_more(CHUNK - self.waiting.len())?;
        }
        let ready = self
            .waiting
            .iter()
            .take_while(|checkpoint| checkpoint.seq_to < next_seq)
            .count();
        Ok(self.waiting[..ready].to_vec())
    }

    /// The store now holds `checkpoints` (what [`due`](Self::due) returned).
    pub(super) fn shipped(&mut self, checkpoints: &[Checkpoint]) {
        if let Some(last) = checkpoints.last() {
            self.held = Some(last.seq_to);
            self.waiting
                .retain(|checkpoint| checkpoint.seq_to > last.seq_to);
        }
    }

    /// Reads up to `max` more checkpoints after the held one.
    fn read_more(&mut self, max: usize) -> io::Result<()> {
        let mut file = match File::open(&self.path) {
            Ok(file) => file,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(error) => return Err(error),
        };
        let len = file.metadata()?.len();
        if len < self.offset {
            // Recovery cut a torn line off the end: read the whole file again.
            self.offset = 0;
            self.waiting.clear();
        }
        if len == self.offset {
            return Ok(());
        }
        file.seek(SeekFrom::Start(self.offset))?;
        let mut text = Vec::new();
        // Checkpoints are a few hundred bytes: 1 MiB holds thousands.
        file.take(1 << 20).read_to_end(&mut text)?;
        let mut taken = 0;
        let mut read = 0;
        for line in text.split_inclusive(|b| *b == b'\n') {
            if taken == max || !line.ends_with(b"\n") {
                break;
            }
            read += line.len();
            let line = &line[..line.len() - 1];
            if line.is_empty() {
                continue;
            }
            let checkpoint: Checkpoint = serde_json::from_slice(line).map_err(|error| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{CHECKPOINTS} at byte {}: {error}",
                        self.offset + read as u64
                    ),
                )
            })?;
            if self.held.is_none_or(|held| checkpoint.seq_to > held) {
                self.waiting.push(checkpoint);
                taken += 1;
            }
        }
        self.offset += read as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Timestamp;

    fn checkpoint(seq_to: u64) -> Checkpoint {
        let mut text = serde_json::json!({
            "type": "checkpoint", "seq_from": 0, "seq_to": seq_to, "last_hash": "00",
            "file": "f", "file_len": 1, "time": Timestamp::from_unix_micros(1),
            "chain": "sha256", "key_id": "k",
        })
        .to_string();
        text.push('\n');
        serde_json::from_str(&text).unwrap()
    }

    fn append(dir: &Path, checkpoints: &[u64]) {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(CHECKPOINTS))
            .unwrap();
        for seq_to in checkpoints {
            let mut line = serde_json::to_vec(&checkpoint(*seq_to)).unwrap();
            line.push(b'\n');
            file.write_all(&line).unwrap();
        }
    }

    fn seqs(checkpoints: &[Checkpoint]) -> Vec<u64> {
        checkpoints.iter().map(|cp| cp.seq_to).collect()
    }

    #[test]
    fn hands_over_what_the_shipped_lines_cover_and_what_the_file_gains_later() {
        let dir = tempfile::tempdir().unwrap();
        let mut feed = CheckpointFeed::new(dir.path(), Some(9));
        assert!(feed.due(100).unwrap().is_empty(), "no file yet");
        append(dir.path(), &[9, 19, 29]);
        let due = feed.due(25).unwrap();
        assert_eq!(seqs(&due), [19], "29 covers lines not shipped yet");
        feed.shipped(&due);
        assert!(feed.due(25).unwrap().is_empty());
        append(dir.path(), &[39]);
        let due = feed.due(40).unwrap();
        assert_eq!(seqs(&due), [29, 39]);
        feed.shipped(&due);
        assert!(feed.due(1000).unwrap().is_empty());
    }

    #[test]
    fn a_torn_last_line_waits_and_a_long_file_comes_in_chunks() {
        let dir = tempfile::tempdir().unwrap();
        append(dir.path(), &(0..600).collect::<Vec<_>>());
        std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join(CHECKPOINTS))
            .and_then(|mut file| std::io::Write::write_all(&mut file, b"{\"type\":"))
            .unwrap();
        let mut feed = CheckpointFeed::new(dir.path(), None);
        let mut all = Vec::new();
        loop {
            let due = feed.due(u64::MAX).unwrap();
            if due.is_empty() {
                break;
            }
            assert!(due.len() <= CHUNK);
            feed.shipped(&due);
            all.extend(seqs(&due));
        }
        assert_eq!(all, (0..600).collect::<Vec<_>>());
    }
}
