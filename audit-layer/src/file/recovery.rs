//! What a start finds after a crash: the chain's end, a torn last line, a torn checkpoint,
//! leftovers of an interrupted compression.

use std::fs;
use std::io;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use super::active::truncate;
use super::chain::{LinkHash, parse_line};
use super::checkpoint::write_private;
use super::layout::{self, CHECKPOINTS, TrailFile};
use super::trail::system_event;
use crate::event::{AuditEvent, Outcome};

/// The seq of the last event of the trail and its hash.
pub(super) fn last_event(trail_files: &[TrailFile]) -> io::Result<Option<(u64, LinkHash)>> {
    for file in trail_files.iter().rev() {
        if let Some(line) = file.last_line()? {
            let parsed = parse_line(&line).ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "the last line of {} is not a chained audit line",
                        file.name()
                    ),
                )
            })?;
            let hash = LinkHash::parse(parsed.hash).ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("the last line of {} has a malformed hash", file.name()),
                )
            })?;
            return Ok(Some((parsed.seq, hash)));
        }
    }
    Ok(None)
}

/// The seq of the first event of the trail.
pub(super) fn first_event(trail_files: &[TrailFile]) -> io::Result<Option<u64>> {
    for file in trail_files {
        if let Some((first, _)) = seq_range(file)? {
            return Ok(Some(first));
        }
    }
    Ok(None)
}

/// The first and last seq of a file.
pub(super) fn seq_range(file: &TrailFile) -> io::Result<Option<(u64, u64)>> {
    let seq = |line: Option<Vec<u8>>| line.as_deref().and_then(parse_line).map(|l| l.seq);
    Ok(seq(file.first_line()?).zip(seq(file.last_line()?)))
}

/// Moves an unterminated or unreadable tail of the last file aside into a `.torn` file and
/// returns the `audit.recovery` event that records it. Reads the file back from its end,
/// only as far as its last complete audit line.
pub(super) fn recover_torn_tail(
    file: &TrailFile,
    now: SystemTime,
) -> io::Result<Option<AuditEvent>> {
    let (start, tail) = layout::read_back(&file.path, |tail, at_start| {
        complete_lines_end(tail, at_start).is_some()
    })?;
    let good = complete_lines_end(&tail, true).unwrap_or(0);
    if good == tail.len() {
        return Ok(None);
    }
    let torn = move_aside(&file.path, &tail[good..], now)?;
    let offset = start + good as u64;
    truncate(&file.path, offset)?;
    let torn_bytes = (tail.len() - good) as u64;
    let reason = format!(
        "{} ended with {torn_bytes} byte(s) that are not a complete audit line (a write cut \
         short by a crash); they were moved to {torn}",
        file.name(),
    );
    tracing::warn!(target: "audit", "{reason}");
    Ok(Some(
        system_event("audit.recovery", Outcome::Success, reason, now)
            .with_detail("file", file.name())
            .with_detail("offset", offset)
            .with_detail("torn_bytes", torn_bytes)
            .with_detail("moved_to", torn),
    ))
}

/// Where the last complete audit line of `tail` (the end of a file) ends: after a crash a
/// file can end in a partial line, and also in whole lines of garbage (zeroed blocks).
/// `None` when `tail` does not reach back far enough to tell; with `at_start` (`tail` is
/// the whole file) it always tells, `Some(0)` when no line is an audit line.
fn complete_lines_end(tail: &[u8], at_start: bool) -> Option<usize> {
    let line_start = |end: usize| match tail[..end].iter().rposition(|b| *b == b'\n') {
        Some(i) => Some(i + 1),
        None => at_start.then_some(0),
    };
    let mut good = line_start(tail.len())?;
    while good > 0 {
        let start = line_start(good - 1)?;
        if parse_line(&tail[start..good - 1]).is_some() {
            return Some(good);
        }
        good = start;
    }
    Some(0)
}

/// The same for the checkpoints file.
pub(super) fn recover_checkpoints_file(
    dir: &Path,
    now: SystemTime,
) -> io::Result<Option<AuditEvent>> {
    let path = dir.join(CHECKPOINTS);
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let good = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    if good == bytes.len() {
        return Ok(None);
    }
    let torn = move_aside(&path, &bytes[good..], now)?;
    truncate(&path, good as u64)?;
    let reason = format!(
        "{CHECKPOINTS} ended with {} byte(s) of an unfinished checkpoint; they were moved to {torn}",
        bytes.len() - good
    );
    tracing::warn!(target: "audit", "{reason}");
    Ok(Some(
        system_event("audit.recovery", Outcome::Success, reason, now)
            .with_detail("file", CHECKPOINTS)
            .with_detail("moved_to", torn),
    ))
}

/// Writes `bytes` to `<file>.<unix seconds>.torn` and returns that name.
fn move_aside(path: &Path, bytes: &[u8], now: SystemTime) -> io::Result<String> {
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let name = format!(
        "{}.{secs}.torn",
        path.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default()
    );
    write_private(&path.with_file_name(&name), bytes)?;
    Ok(name)
}

/// Removes half-written compressed files left by a crash.
pub(super) fn remove_leftovers(dir: &Path) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_name().to_string_lossy().ends_with(".gz.tmp") {
            fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::file::chain::append_line;

    /// `count` chained lines, from seq 0.
    fn chained_lines(count: u64) -> Vec<u8> {
        let mut out = Vec::new();
        let mut prev = LinkHash::GENESIS;
        for seq in 0..count {
            prev = append_line(&mut out, None, seq, &prev, |out| {
                out.extend_from_slice(br#""schema":"audit/1"}"#);
                Ok::<_, ()>(())
            })
            .unwrap();
        }
        out
    }

    fn trail_file(dir: &Path, bytes: &[u8]) -> TrailFile {
        let path = dir.join(layout::file_name("2026-12-03", 0));
        fs::write(&path, bytes).unwrap();
        layout::list(dir).unwrap().remove(0)
    }

    #[test]
    fn the_end_of_the_last_complete_line_is_found_past_any_garbage() {
        let good = chained_lines(3);
        assert_eq!(complete_lines_end(&good, true), Some(good.len()));
        let mut torn = good.clone();
        torn.extend_from_slice(br#"{"seq":3,"prev_ha"#);
        assert_eq!(complete_lines_end(&torn, true), Some(good.len()));
        // Zeroed blocks after a crash are whole lines of garbage.
        let mut zeroed = good.clone();
        zeroed.extend_from_slice(&[0; 100]);
        zeroed.push(b'\n');
        zeroed.extend_from_slice(&[0; 10]);
        assert_eq!(complete_lines_end(&zeroed, true), Some(good.len()));
        // Nothing that parses: nothing is kept.
        assert_eq!(complete_lines_end(b"not a line\nnor this", true), Some(0));
        // A tail that does not reach a line's start cannot tell, unless it is the whole file.
        assert_eq!(complete_lines_end(b"no newline here", false), None);
    }

    #[test]
    fn a_torn_tail_is_moved_aside_and_recorded_and_the_file_ends_at_its_last_line() {
        let dir = tempfile::tempdir().unwrap();
        let good = chained_lines(4);
        let mut bytes = good.clone();
        bytes.extend_from_slice(br#"{"seq":4,"prev_hash":"ab"#);
        let file = trail_file(dir.path(), &bytes);
        let now = UNIX_EPOCH + Duration::from_secs(1_764_720_000);

        let event = recover_torn_tail(&file, now)
            .unwrap()
            .expect("a recovery event");
        assert_eq!(event.action, "audit.recovery");
        let details = event.details.as_ref().unwrap();
        assert_eq!(details["offset"], good.len() as u64);
        assert_eq!(details["torn_bytes"], (bytes.len() - good.len()) as u64);
        assert_eq!(fs::read(&file.path).unwrap(), good);
        let moved = details["moved_to"].as_str().unwrap();
        assert_eq!(
            fs::read(dir.path().join(moved)).unwrap(),
            &bytes[good.len()..]
        );
        assert_eq!(
            last_event(std::slice::from_ref(&file)).unwrap().unwrap().0,
            3
        );
        assert_eq!(seq_range(&file).unwrap(), Some((0, 3)));

        // A file that ends cleanly is left alone.
        assert!(recover_torn_tail(&file, now).unwrap().is_none());
    }

    #[test]
    fn a_torn_checkpoint_is_moved_aside_and_leftovers_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let now = UNIX_EPOCH + Duration::from_secs(1_764_720_000);
        assert!(recover_checkpoints_file(dir.path(), now).unwrap().is_none());
        fs::write(dir.path().join(CHECKPOINTS), b"{\"seq_to\":1}\n{\"seq_").unwrap();
        let event = recover_checkpoints_file(dir.path(), now).unwrap().unwrap();
        assert_eq!(event.action, "audit.recovery");
        assert_eq!(
            fs::read(dir.path().join(CHECKPOINTS)).unwrap(),
            b"{\"seq_to\":1}\n"
        );

        let leftover = dir.path().join("audit-2026-12-02.jsonl.gz.tmp");
        fs::write(&leftover, b"half").unwrap();
        remove_leftovers(dir.path()).unwrap();
        assert!(!leftover.exists());
    }
}
