//! The files of a trail directory: names, order, and reading them (gzipped or not).
//!
//! `audit-YYYY-MM-DD.jsonl` is the first file of a UTC day; size rotation adds
//! `audit-YYYY-MM-DD.N.jsonl` (N = 1, 2, ...); closed files may be gzipped (`.jsonl.gz`).
//! The trail's order is (day, part).

use std::fs;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;

/// The name of the checkpoints file in a trail directory.
pub(crate) const CHECKPOINTS: &str = "checkpoints.jsonl";

/// One file of a trail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TrailFile {
    pub(crate) path: PathBuf,
    pub(crate) day: String,
    pub(crate) part: u32,
    pub(crate) gzipped: bool,
}

impl TrailFile {
    /// The file's name without `.gz`: what checkpoints call it.
    pub(crate) fn stem(&self) -> String {
        file_name(&self.day, self.part)
    }

    pub(crate) fn name(&self) -> String {
        self.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// The content's length, decompressed: the file's size, or for a gzipped file its
    /// decompressed bytes counted as they stream past, not held.
    pub(crate) fn content_len(&self) -> io::Result<u64> {
        if !self.gzipped {
            return Ok(fs::metadata(&self.path)?.len());
        }
        io::copy(
            &mut GzDecoder::new(fs::File::open(&self.path)?),
            &mut io::sink(),
        )
    }

    /// The first line that is not empty, without its newline: read from the start, not
    /// the whole file.
    pub(crate) fn first_line(&self) -> io::Result<Option<Vec<u8>>> {
        let file = fs::File::open(&self.path)?;
        let mut reader: Box<dyn BufRead> = if self.gzipped {
            Box::new(BufReader::new(GzDecoder::new(file)))
        } else {
            Box::new(BufReader::new(file))
        };
        let mut line = Vec::new();
        loop {
            line.clear();
            if reader.read_until(b'\n', &mut line)? == 0 {
                return Ok(None);
            }
            if line.last() == Some(&b'\n') {
                line.pop();
            }
            if !line.is_empty() {
                return Ok(Some(line));
            }
        }
    }

    /// The last line that is not empty, without its newline. A plain file is read back from
    /// its end ([`read_back`]); a gzipped one has to be decompressed whole.
    pub(crate) fn last_line(&self) -> io::Result<Option<Vec<u8>>> {
        fn last(bytes: &[u8]) -> Option<&[u8]> {
            bytes.split(|b| *b == b'\n').rfind(|l| !l.is_empty())
        }
        if self.gzipped {
            return Ok(last(&self.read()?).map(<[u8]>::to_vec));
        }
        // Enough once a newline comes before the last line.
        let (_, tail) = read_back(&self.path, |tail, _| {
            let lines = &tail[..tail.iter().rposition(|b| *b != b'\n').map_or(0, |i| i + 1)];
            lines.contains(&b'\n')
        })?;
        Ok(last(&tail).map(<[u8]>::to_vec))
    }

    /// The whole content, decompressed.
    pub(crate) fn read(&self) -> io::Result<Vec<u8>> {
        let raw = fs::read(&self.path)?;
        if !self.gzipped {
            return Ok(raw);
        }
        let mut out = Vec::with_capacity(raw.len() * 4);
        GzDecoder::new(&raw[..]).read_to_end(&mut out)?;
        Ok(out)
    }
}

/// The content of a file without the zero bytes a file sink preallocated after its last
/// line ([`JsonlFileSinkBuilder::preallocate`](crate::JsonlFileSinkBuilder::preallocate)):
/// the space the next lines will overwrite, which holds no data.
pub(crate) fn without_padding(bytes: &[u8]) -> &[u8] {
    let end = bytes.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
    &bytes[..end]
}

/// [`without_padding`]'s length for a file on disk, read back from its end: only the zeros
/// and the last line's tail are read.
pub(crate) fn lines_end(path: &Path) -> io::Result<u64> {
    let mut file = fs::File::open(path)?;
    let mut end = file.metadata()?.len();
    let mut buf = vec![0; 64 * 1024];
    while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        let chunk = &mut buf[..(end - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(chunk)?;
        let kept = without_padding(chunk).len();
        if kept > 0 {
            return Ok(start + kept as u64);
        }
        end = start;
    }
    Ok(0)
}

/// The end of a plain file, read back from its end: 64 KiB, then twice as much each time,
/// until `enough(tail, at_start)` says the bytes read suffice or the whole file is read
/// (`at_start`). Returns where the bytes start, and the bytes. At start-up the sink needs
/// only the last lines of a file that may hold 64 MiB.
pub(crate) fn read_back(
    path: &Path,
    mut enough: impl FnMut(&[u8], bool) -> bool,
) -> io::Result<(u64, Vec<u8>)> {
    let mut file = fs::File::open(path)?;
    let len = file.metadata()?.len();
    let mut want: u64 = 64 * 1024;
    loop {
        let start = len.saturating_sub(want);
        let mut tail = vec![0; (len - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut tail)?;
        if enough(&tail, start == 0) || start == 0 {
            return Ok((start, tail));
        }
        want = want.saturating_mul(2);
    }
}

/// `audit-YYYY-MM-DD.jsonl` or `audit-YYYY-MM-DD.N.jsonl`.
pub(crate) fn file_name(day: &str, part: u32) -> String {
    if part == 0 {
        format!("audit-{day}.jsonl")
    } else {
        format!("audit-{day}.{part}.jsonl")
    }
}

/// Parses a trail file name into (day, part, gzipped).
pub(crate) fn parse_name(name: &str) -> Option<(String, u32, bool)> {
    let (name, gzipped) = match name.strip_suffix(".gz") {
        Some(inner) => (inner, true),
        None => (name, false),
    };
    let inner = name.strip_prefix("audit-")?.strip_suffix(".jsonl")?;
    let (day, part) = match inner.split_once('.') {
        Some((day, part)) => (day, part.parse().ok().filter(|p| *p > 0)?),
        None => (inner, 0),
    };
    let bytes = day.as_bytes();
    let shape_ok = bytes.len() == 10
        && bytes.iter().enumerate().all(|(i, b)| match i {
            4 | 7 => *b == b'-',
            _ => b.is_ascii_digit(),
        });
    shape_ok.then(|| (day.to_owned(), part, gzipped))
}

/// The trail files of `dir`, in trail order. A part present both plain and gzipped (a crash
/// during compression) is listed once, plain: the plain file is the original.
pub(crate) fn list(dir: &Path) -> io::Result<Vec<TrailFile>> {
    let mut files: Vec<TrailFile> = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some((day, part, gzipped)) = parse_name(&name.to_string_lossy()) else {
            continue;
        };
        if !entry.file_type()?.is_file() {
            continue;
        }
        files.push(TrailFile {
            path: entry.path(),
            day,
            part,
            gzipped,
        });
    }
    files.sort_by(|a, b| (&a.day, a.part, a.gzipped).cmp(&(&b.day, b.part, b.gzipped)));
    files.dedup_by(|later, earlier| later.day == earlier.day && later.part == earlier.part);
    Ok(files)
}

/// The seq of the oldest line the trail in `dir` still holds; `None` for no line.
#[cfg(feature = "index")]
pub(crate) fn oldest_seq(dir: &Path) -> io::Result<Option<u64>> {
    let Some(oldest) = list(dir)?.into_iter().next() else {
        return Ok(None);
    };
    Ok(oldest.first_line()?.and_then(|line| {
        serde_json::from_slice::<serde_json::Value>(&line)
            .ok()?
            .get("seq")?
            .as_u64()
    }))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn content_len_is_the_decompressed_length() {
        let dir = tempfile::tempdir().unwrap();
        let content = b"{\"seq\":0}\n".repeat(1_000);
        let plain = dir.path().join("audit-2026-11-22.jsonl");
        fs::write(&plain, &content).unwrap();
        let gzipped = dir.path().join("audit-2026-11-21.jsonl.gz");
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(&content).unwrap();
        fs::write(&gzipped, encoder.finish().unwrap()).unwrap();
        let files = list(dir.path()).unwrap();
        assert_eq!(files.len(), 2);
        for file in files {
            assert_eq!(
                file.content_len().unwrap(),
                content.len() as u64,
                "{file:?}"
            );
            assert_eq!(file.read().unwrap(), content, "{file:?}");
        }
    }

    #[test]
    fn names_round_trip() {
        assert_eq!(
            parse_name("audit-2026-11-22.jsonl"),
            Some(("2026-11-22".into(), 0, false))
        );
        assert_eq!(
            parse_name("audit-2026-11-22.3.jsonl.gz"),
            Some(("2026-11-22".into(), 3, true))
        );
        assert_eq!(file_name("2026-11-22", 3), "audit-2026-11-22.3.jsonl");
        for bad in [
            "audit-2026-11-22.jsonl.torn",
            "audit-2026-11-2x.jsonl",
            "audit-2026-11-22.0.jsonl",
            "checkpoints.jsonl",
            "audit-2026-11-22.x.jsonl",
        ] {
            assert_eq!(parse_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn listing_is_in_trail_order_and_prefers_plain_files() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "audit-2026-11-23.jsonl",
            "audit-2026-11-22.10.jsonl",
            "audit-2026-11-22.2.jsonl.gz",
            "audit-2026-11-22.2.jsonl",
            "audit-2026-11-22.jsonl.gz",
            "notes.txt",
        ] {
            fs::write(dir.path().join(name), b"").unwrap();
        }
        let names: Vec<_> = list(dir.path())
            .unwrap()
            .iter()
            .map(TrailFile::name)
            .collect();
        assert_eq!(
            names,
            [
                "audit-2026-11-22.jsonl.gz",
                "audit-2026-11-22.2.jsonl",
                "audit-2026-11-22.10.jsonl",
                "audit-2026-11-23.jsonl"
            ]
        );
    }
}
