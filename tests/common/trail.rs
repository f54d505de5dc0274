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
