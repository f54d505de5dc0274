//! The trail directory's writer lock, in a test binary of its own.
//!
//! The lock is `flock`, held by an open file description: a child process started by
//! another thread shares the descriptor from its fork until its exec closes it, and holds
//! the lock that long after the sink that took it is gone. These tests check that the lock
//! is free the moment a sink is dropped or `shutdown()` returns, so no test here starts a
//! process (the file-trail tests run the `audit` command).

mod common;

use std::fs;
use std::io::{self, Write};

use audit_layer::AuditTrail;
use audit_layer::file::{LOCK_FILE, verify_trail};
use common::trail::{
    OpenNow, builder, close, directory_contents, empty_trail_dir, event, options, runtime, write,
};
use common::trail_files;

/// A second sink on a directory being written is refused before it reads or repairs
/// anything there; once the first is gone, the directory opens again.
#[test]
fn a_trail_directory_takes_one_writing_sink_at_a_time() {
    let (dir, key, clock) = empty_trail_dir();
    let mut first = builder(dir.path(), &key, &clock).open_now().unwrap();
    write(&mut first, &[event("a", "x")]);
    // A partial line, as if a write were under way: a second writer's recovery would move it
    // aside.
    let file = &trail_files(dir.path())[0];
    fs::OpenOptions::new()
        .append(true)
        .open(file)
        .unwrap()
        .write_all(b"{\"seq\":1")
        .unwrap();
    let before = directory_contents(dir.path());

    let error = builder(dir.path(), &key, &clock).open_now().unwrap_err();
    let kind = std::error::Error::source(&error)
        .and_then(|source| source.downcast_ref::<io::Error>())
        .map(io::Error::kind);
    assert_eq!(kind, Some(io::ErrorKind::ResourceBusy), "{error}");
    let message = error.to_string();
    assert!(
        message.contains(&dir.path().display().to_string()),
        "{message}"
    );
    assert!(
        message.contains(&format!("by process {}", std::process::id())),
        "{message}"
    );
    assert_eq!(
        directory_contents(dir.path()),
        before,
        "nothing was touched"
    );

    drop(first);
    let second = builder(dir.path(), &key, &clock).open_now().unwrap();
    close(second);
    let report = verify_trail(dir.path(), &options(&key)).unwrap();
    assert_eq!(
        report.events, 2,
        "the event and the recovery of the partial line"
    );
}

/// `shutdown()` returns once the sinks are dropped: the directory can be opened again at
/// once, by a restart in the same process.
#[test]
fn a_trail_directory_is_free_as_soon_as_shutdown_returns() {
    let (dir, key, clock) = empty_trail_dir();
    let runtime = runtime();
    // The race it guards against (the lock released just after `shutdown()` returns) shows
    // within a few hundred rounds.
    const ROUNDS: u64 = 150;
    for round in 0..ROUNDS {
        let trail = AuditTrail::builder()
            .sink(builder(dir.path(), &key, &clock).open_now().unwrap())
            .build()
            .unwrap();
        runtime.block_on(trail.shutdown()).unwrap();
        // Probed directly: opening a sink would wait out a lock this process holds.
        let lock = fs::File::open(dir.path().join(LOCK_FILE)).unwrap();
        assert!(
            lock.try_lock().is_ok(),
            "round {round}: the directory is still locked after shutdown() returned"
        );
    }
    let report = verify_trail(dir.path(), &options(&key)).unwrap();
    assert_eq!(report.events, 2 * ROUNDS, "each round's start and stop");
    assert_eq!(report.unsealed, 0);
}

/// A lock this process holds is waited for a moment before it is refused: a child process
/// being started holds a copy of the lock until its exec, and a restart should not fail for
/// that instant. (A lock held for good is refused, as above.)
#[test]
fn a_lock_this_process_lets_go_of_within_a_moment_is_waited_for() {
    let (dir, key, clock) = empty_trail_dir();
    let first = builder(dir.path(), &key, &clock).open_now().unwrap();
    let release = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(50));
        close(first);
    });
    let second = builder(dir.path(), &key, &clock).open_now().unwrap();
    release.join().unwrap();
    close(second);
    let report = verify_trail(dir.path(), &options(&key)).unwrap();
    assert_eq!(report.unsealed, 0);
}

/// Building the sink does no I/O; a checked start opens it, and a directory another sink
/// writes fails the start with the reason, naming the sink.
#[test]
fn a_checked_start_on_a_directory_being_written_fails_with_the_reason() {
    let (dir, key, clock) = empty_trail_dir();
    let not_yet = dir.path().join("not-yet");
    let unopened = audit_layer::file::JsonlFileSink::new(&not_yet);
    assert!(!not_yet.exists(), "building the sink created nothing");
    drop(unopened);

    let first = builder(dir.path(), &key, &clock).open_now().unwrap();
    let runtime = runtime();
    let error = runtime
        .block_on(
            AuditTrail::builder()
                .sink(builder(dir.path(), &key, &clock).build())
                .build_checked(),
        )
        .expect_err("the directory is locked");
    let message = error.to_string();
    assert!(
        matches!(error, audit_layer::ConfigError::Unreachable { .. }),
        "{message}"
    );
    assert!(
        message.contains(&format!("jsonl:{}", dir.path().display())),
        "{message}"
    );
    assert!(
        message.contains(&format!("by process {}", std::process::id())),
        "{message}"
    );
    close(first);
}
