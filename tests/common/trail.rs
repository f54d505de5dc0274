//! Trail directories for the file-trail tests: a directory, a signing key and a manual
//! clock, and the sink built on them.

use std::fs;
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use audit_layer::file::{
    CheckpointKey, JsonlFileSink, JsonlFileSinkBuilder, ManualClock, VerifyOptions,
};
use audit_layer::sink::{Sink, SinkError};
use audit_layer::{Actor, AuditEvent, Category, Outcome};

/// The clock's start: 2026-09-21.
pub const START: u64 = 1_790_000_000;

/// An ordinary event of `actor`.
pub fn event(action: &'static str, actor: &str) -> AuditEvent {
    AuditEvent::new(
        Category::Request,
        action,
        Outcome::Success,
        Actor::user(actor),
    )
}

/// A runtime for a sink's async calls from a plain test.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
}

/// A new, empty trail directory, a signing key and a clock at `START`.
pub fn empty_trail_dir() -> (tempfile::TempDir, CheckpointKey, ManualClock) {
    let dir = tempfile::tempdir().unwrap();
    let key = CheckpointKey::generate().unwrap();
    let clock = ManualClock::new(UNIX_EPOCH + Duration::from_secs(START));
    (dir, key, clock)
}

/// A sink builder on `dir`, with the test's key and clock.
pub fn builder(dir: &Path, key: &CheckpointKey, clock: &ManualClock) -> JsonlFileSinkBuilder {
    JsonlFileSink::builder(dir)
        .signing_key(key.clone())
        .clock(clock.clone())
}

/// Writes `events` to the sink.
pub fn write(sink: &mut JsonlFileSink, events: &[AuditEvent]) {
    runtime().block_on(sink.write_batch(events)).unwrap();
}

/// Opens a sink at once, as the writer does before its first batch.
pub trait OpenNow {
    fn open_now(self) -> Result<JsonlFileSink, SinkError>;
}

impl OpenNow for JsonlFileSinkBuilder {
    fn open_now(self) -> Result<JsonlFileSink, SinkError> {
        let mut sink = self.build();
        runtime().block_on(sink.open())?;
        Ok(sink)
    }
}

/// Closes the sink.
pub fn close(mut sink: JsonlFileSink) {
    runtime().block_on(sink.close()).unwrap();
}

/// Verification with the test's public key.
pub fn options(key: &CheckpointKey) -> VerifyOptions {
    VerifyOptions {
        public_key: Some(key.public_key()),
        ..VerifyOptions::default()
    }
}

/// Every file of a directory and its bytes.
pub fn directory_contents(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut contents: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            let name = entry.file_name().to_string_lossy().into_owned();
            (name, fs::read(entry.path()).unwrap())
        })
        .collect();
    contents.sort();
    contents
}

/// A trail written in two sessions, its checkpoints published to a mirror, whose second
/// session can then be rolled back: its events cut from the file, and the checkpoints that
/// cover them from `checkpoints.jsonl`.
pub struct MirroredTrail {
    pub dir: tempfile::TempDir,
    /// The public key, in a directory of its own.
    pub public_key: std::path::PathBuf,
    _keys: tempfile::TempDir,
    kept_checkpoints: Vec<u8>,
    kept_len: u64,
}

impl MirroredTrail {
    /// Writes the two sessions, each sink with a mirror from `mirror`.
    pub fn write<M: audit_layer::file::CheckpointMirror>(mirror: impl Fn() -> M) -> Self {
        let (dir, key, clock) = empty_trail_dir();
        let mut sink = builder(dir.path(), &key, &clock)
            .checkpoint_mirror(mirror())
            .open_now()
            .unwrap();
        write(&mut sink, &[event("kept.a", "x"), event("kept.b", "x")]);
        close(sink);
        let kept_checkpoints = fs::read(dir.path().join("checkpoints.jsonl")).unwrap();
        let kept_len = fs::metadata(&super::trail_files(dir.path())[0])
            .unwrap()
            .len();
        let mut sink = builder(dir.path(), &key, &clock)
            .checkpoint_mirror(mirror())
            .open_now()
            .unwrap();
        write(&mut sink, &[event("rolled.back.a", "x")]);
        close(sink);
        let keys = tempfile::tempdir().unwrap();
        let public_key = keys.path().join("signing.pub");
        fs::write(&public_key, key.public_key().to_hex()).unwrap();
        Self {
            dir,
            public_key,
            _keys: keys,
            kept_checkpoints,
            kept_len,
        }
    }

    /// Cuts the second session: what whoever holds the directory and the key can do.
    pub fn roll_back(&self) {
        let file = &super::trail_files(self.dir.path())[0];
        let bytes = fs::read(file).unwrap();
        fs::write(file, &bytes[..self.kept_len as usize]).unwrap();
        fs::write(
            self.dir.path().join("checkpoints.jsonl"),
            &self.kept_checkpoints,
        )
        .unwrap();
    }

    /// `audit verify` of the trail with its public key and `args`: the exit status,
    /// standard output and standard error.
    pub fn verify(&self, args: &[&str]) -> (Option<i32>, String, String) {
        let mut all = vec![
            std::ffi::OsString::from("verify"),
            self.dir.path().into(),
            "--public-key".into(),
            self.public_key.clone().into(),
        ];
        all.extend(args.iter().map(std::ffi::OsString::from));
        super::demo::run_audit(all)
    }
}
