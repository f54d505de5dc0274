//! Files and directories only their owner can read, and the generated signing key.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::Path;

use super::checkpoint::CheckpointKey;
use super::sink::{GENERATED_KEY, GENERATED_PUBLIC_KEY};

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
