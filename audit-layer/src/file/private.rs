//! Files and directories only their owner can read, and the generated signing key.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::Path;

use super::checkpoint::CheckpointKey;
use super::sink::{GENERATED_KEY, GENERATED_PUBLIC_KEY, TRAIL_ID};

pub(super) fn load_or_generate_key(dir: &Path) -> io::Result<CheckpointKey> {
    let secret = dir.join(GENERATED_KEY);
    let to_io = |e: super::checkpoint::KeyError| io::Error::other(e.to_string());
    if secret.exists() {
        return CheckpointKey::from_file(&secret).map_err(to_io);
    }
    let key = CheckpointKey::generate().map_err(to_io)?;
    key.save(&secret, &dir.join(GENERATED_PUBLIC_KEY))
        .map_err(to_io)?;
    tracing::warn!(
        target: "audit",
        dir = %dir.display(),
        "generated a checkpoint signing key in the trail directory: fine for a demo; in \
         production pass one from a secret store (JsonlFileSinkBuilder::signing_key)"
    );
    Ok(key)
}

/// Opens `path` to write, creating it (mode `0600`): appending, or at offsets. Readable
/// too: a trail file removed while open is written back from what it holds.
pub(super) fn open_private(path: &Path, append: bool) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.append(append).read(true).write(true).create(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

#[cfg(unix)]
pub(super) fn create_private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    if !dir.exists() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    let meta = fs::metadata(dir)?;
    if !meta.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!(
                "audit directory {} exists and is not a directory",
                dir.display()
            ),
        ));
    }
    if meta.permissions().mode() & 0o077 != 0 {
        tracing::warn!(
            target: "audit",
            dir = %dir.display(),
            mode = format_args!("{:o}", meta.permissions().mode() & 0o777),
            "audit directory is readable by other users; 0700 is recommended"
        );
    }
    Ok(())
}

#[cfg(not(unix))]
pub(super) fn create_private_dir(dir: &Path) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    if !fs::metadata(dir)?.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!(
                "audit directory {} exists and is not a directory",
                dir.display()
            ),
        ));
    }
    Ok(())
}

/// The trail's id: `configured`, or the one stored in [`TRAIL_ID`], generated on first use.
/// A trail keeps its id: a configured one that differs from the stored one is refused.
pub(super) fn load_or_create_trail_id(dir: &Path, configured: Option<&str>) -> io::Result<String> {
    let path = dir.join(TRAIL_ID);
    let stored = match std::fs::read_to_string(&path) {
        Ok(text) => Some(text.trim().to_owned()),
        Err(error) if error.kind() == io::ErrorKind::NotFound => None,
        Err(error) => return Err(error),
    };
    let invalid = |id: &str| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("`{id}` is not a trail id: 1 to 64 letters, digits, `-` or `_`"),
        )
    };
    match (stored, configured) {
        (Some(stored), Some(configured)) if stored != configured => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "the trail in {} is `{stored}` ({TRAIL_ID}), not `{configured}`: a trail keeps \
                 its id; give another directory for another trail",
                dir.display()
            ),
        )),
        (Some(stored), _) if !is_trail_id(&stored) => Err(invalid(&stored)),
        (Some(stored), _) => Ok(stored),
        (None, Some(configured)) if !is_trail_id(configured) => Err(invalid(configured)),
        (None, configured) => {
            let id =
                configured.map_or_else(|| uuid::Uuid::now_v7().simple().to_string(), str::to_owned);
            super::checkpoint::write_private(&path, format!("{id}\n").as_bytes())?;
            Ok(id)
        }
    }
}

/// 1 to 64 letters, digits, `-` or `_`: a trail's id in rows, subjects and file names.
pub(crate) fn is_trail_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}
