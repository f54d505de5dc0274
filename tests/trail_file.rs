//! The file trail over time: restarts, crashes, rotation, compression, retention, and the
//! `audit` command that reads it.

mod common;

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, UNIX_EPOCH};

use audit_layer::file::{
    CheckpointKey, FaultKind, JsonlFileSink, JsonlFileSinkBuilder, ManualClock, verify_trail,
};
use audit_layer::sink::Sink;
use audit_layer::{Actor, AuditEvent, Category, Outcome};
use common::demo::audit_binary;
use common::trail::{
    OpenNow, START, builder, close, empty_trail_dir, event, options, runtime, write,
};
use common::trail_files;

fn all_events(dir: &Path) -> Vec<serde_json::Value> {
    common::demo::read_trail(dir)
}

#[test]
fn the_chain_continues_across_restarts() {
    let (dir, key, clock) = empty_trail_dir();
    for round in 0..3 {
        let mut sink = builder(dir.path(), &key, &clock).open_now().unwrap();
        write(&mut sink, &[event("a", "x"), event("b", "y")]);
        close(sink);
        let report = verify_trail(dir.path(), &options(&key)).unwrap();
        assert_eq!(report.events, 2 * (round + 1));
        assert_eq!(report.unsealed, 0);
    }
    let seqs: Vec<_> = all_events(dir.path())
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [0, 1, 2, 3, 4, 5]);
}

/// Events a crash left unsealed are sealed as soon as the trail opens again.
#[test]
fn events_a_crash_left_unsealed_are_sealed_at_the_next_start() {
    let (dir, key, clock) = empty_trail_dir();
    let open = || {
        builder(dir.path(), &key, &clock)
            .checkpoint_every(1_000, Duration::from_secs(3_600))
            .open_now()
            .unwrap()
    };
    let mut sink = open();
    // The first events are sealed at once; the next ones wait for the next checkpoint.
    write(&mut sink, &[event("a", "x")]);
    write(&mut sink, &[event("b", "x"), event("c", "y")]);
    // A crash: the sink is gone without closing.
    drop(sink);
    let report = verify_trail(dir.path(), &options(&key)).unwrap();
    assert_eq!((report.events, report.unsealed), (3, 2));

    let sink = open();
    let report = verify_trail(dir.path(), &options(&key)).unwrap();
    assert_eq!((report.events, report.unsealed), (3, 0));
    close(sink);
}

#[test]
fn a_torn_last_line_is_moved_aside_and_recorded() {
    let (dir, key, clock) = empty_trail_dir();
    let mut sink = builder(dir.path(), &key, &clock).open_now().unwrap();
    write(&mut sink, &[event("a", "x"), event("b", "y")]);
    // A crash: the process dies in the middle of a write, without closing.
    drop(sink);
    let file = &trail_files(dir.path())[0];
    let mut bytes = fs::read(file).unwrap();
    let torn = br#"{"seq":2,"prev_hash":"abc"#;
    bytes.extend_from_slice(torn);
    fs::write(file, &bytes).unwrap();

    let mut sink = builder(dir.path(), &key, &clock).open_now().unwrap();
    write(&mut sink, &[event("c", "z")]);
    close(sink);

    let moved: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".torn"))
        .collect();
    assert_eq!(moved.len(), 1, "{moved:?}");
    assert_eq!(
        fs::read(dir.path().join(&moved[0])).unwrap(),
        torn,
        "nothing is discarded"
    );
    let events = all_events(dir.path());
    let actions: Vec<_> = events
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["a", "b", "audit.recovery", "c"]);
    let recovery = &events[2];
    assert_eq!(recovery["category"], "system");
    assert_eq!(recovery["details"]["torn_bytes"], torn.len());
    assert_eq!(recovery["details"]["moved_to"], moved[0].as_str());
    verify_trail(dir.path(), &options(&key)).unwrap();
}

#[test]
fn zeroed_blocks_after_a_crash_are_recovered_too() {
    let (dir, key, clock) = empty_trail_dir();
    let mut sink = builder(dir.path(), &key, &clock).open_now().unwrap();
    write(&mut sink, &[event("a", "x")]);
    drop(sink);
    let file = &trail_files(dir.path())[0];
    let mut bytes = fs::read(file).unwrap();
    bytes.extend_from_slice(&[0u8; 300]);
    bytes.push(b'\n');
    fs::write(file, &bytes).unwrap();
    let sink = builder(dir.path(), &key, &clock).open_now().unwrap();
    close(sink);
    let report = verify_trail(dir.path(), &options(&key)).unwrap();
    assert_eq!(report.events, 2, "the event and the recovery record");
}

/// A long file whose garbage tail is longer than the first 64 KiB the sink reads back: it
/// reads further back until it finds the last complete line, and moves aside exactly what
/// follows it.
#[test]
fn a_torn_tail_longer_than_one_read_is_found_and_moved_aside() {
    let (dir, key, clock) = empty_trail_dir();
    let mut sink = builder(dir.path(), &key, &clock).open_now().unwrap();
    let events: Vec<_> = (0..400).map(|_| event("a", "x")).collect();
    write(&mut sink, &events);
    drop(sink);
    let file = &trail_files(dir.path())[0];
    let good = fs::metadata(file).unwrap().len();
    assert!(good > 128 * 1024, "{good} bytes: more than one read");
    let mut garbage = vec![0u8; 150 * 1024];
    garbage.push(b'\n');
    garbage.extend_from_slice(b"{\"seq\":400,\"prev_hash\":\"");
    fs::OpenOptions::new()
        .append(true)
        .open(file)
        .unwrap()
        .write_all(&garbage)
        .unwrap();

    let sink = builder(dir.path(), &key, &clock).open_now().unwrap();
    close(sink);
    let recovery = all_events(dir.path())
        .into_iter()
        .find(|e| e["action"] == "audit.recovery")
        .expect("a recovery event");
    assert_eq!(recovery["details"]["offset"], good);
    assert_eq!(recovery["details"]["torn_bytes"], garbage.len() as u64);
    let torn = dir
        .path()
        .join(recovery["details"]["moved_to"].as_str().unwrap());
    assert_eq!(fs::read(torn).unwrap(), garbage);
    let report = verify_trail(dir.path(), &options(&key)).unwrap();
    assert_eq!(report.events, 401, "the events and the recovery record");
}

/// A sink on a new trail whose file is zero-filled `bytes` ahead.
fn preallocated(bytes: u64) -> (tempfile::TempDir, CheckpointKey, ManualClock, JsonlFileSink) {
    let (dir, key, clock) = empty_trail_dir();
    let sink = builder(dir.path(), &key, &clock)
        .preallocate(bytes)
        .open_now()
        .unwrap();
    (dir, key, clock, sink)
}

/// The size of the trail's one file, and whether it ends in a newline (not in zeros).
fn only_file(dir: &Path) -> (u64, Vec<u8>) {
    let files = trail_files(dir);
    assert_eq!(files.len(), 1, "{files:?}");
    let bytes = fs::read(&files[0]).unwrap();
    (bytes.len() as u64, bytes)
}

#[test]
fn preallocated_zeros_stay_out_of_the_trail_and_are_cut_off_at_close() {
    // More zeros than `lines_end` reads at once: it has to read back across several reads.
    let (dir, key, _clock, mut sink) = preallocated(256 * 1024);
    write(&mut sink, &[event("a", "x"), event("b", "y")]);
    write(&mut sink, &[event("c", "z")]);
    runtime().block_on(sink.sync()).unwrap();

    // While the sink is open, the file ends in the zeros the next lines will go over...
    let (size, bytes) = only_file(dir.path());
    assert!(size >= 256 * 1024, "preallocated: {size} bytes");
    let lines_end = bytes.iter().rposition(|b| *b == b'\n').unwrap() + 1;
    assert!(bytes[lines_end..].iter().all(|b| *b == 0));
    // ...which verify, queries and the line count leave out.
    let report = verify_trail(dir.path(), &options(&key)).unwrap();
    assert_eq!(report.events, 3);
    let actions: Vec<_> = all_events(dir.path())
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(actions, ["a", "b", "c"]);
    assert_eq!(
        audit_layer::file::lines_end(&trail_files(dir.path())[0]).unwrap(),
        lines_end as u64
    );

    close(sink);
    let (size, bytes) = only_file(dir.path());
    assert_eq!(size, lines_end as u64, "closed: plain JSON Lines");
    assert_eq!(bytes.last(), Some(&b'\n'));
    assert_eq!(verify_trail(dir.path(), &options(&key)).unwrap().events, 3);
}

#[test]
fn zeros_a_crash_left_preallocated_are_cut_off_at_the_next_start_with_nothing_lost() {
    let (dir, key, clock, mut sink) = preallocated(16 * 1024);
    write(&mut sink, &[event("a", "x"), event("b", "y")]);
    // A crash: the sink is gone without closing, its zeros still in the file.
    drop(sink);
    assert!(only_file(dir.path()).0 >= 16 * 1024);

    // Reopened without preallocation: the zeros go, the chain continues after `b`.
    let mut sink = builder(dir.path(), &key, &clock).open_now().unwrap();
    write(&mut sink, &[event("c", "z")]);
    close(sink);
    let (size, bytes) = only_file(dir.path());
    assert_eq!(bytes.last(), Some(&b'\n'));
    assert!(size < 16 * 1024);
    let events = all_events(dir.path());
    let actions: Vec<_> = events
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["a", "b", "c"],
        "zeros are not a torn line to record"
    );
    let seqs: Vec<_> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, [0, 1, 2]);
    assert!(
        !fs::read_dir(dir.path()).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .ends_with(".torn")),
        "nothing was moved aside"
    );
    assert_eq!(verify_trail(dir.path(), &options(&key)).unwrap().events, 3);
}

#[test]
fn sealed_lines_overwritten_with_zeros_are_reported_as_truncation() {
    let (dir, key, _clock, mut sink) = preallocated(4 * 1024);
    write(
        &mut sink,
        &[event("a", "x"), event("b", "y"), event("c", "z")],
    );
    close(sink);
    let file = &trail_files(dir.path())[0];
    let mut bytes = fs::read(file).unwrap();
    // The last line becomes zeros, as preallocated space would be.
    let last_line = bytes[..bytes.len() - 1]
        .iter()
        .rposition(|b| *b == b'\n')
        .unwrap()
        + 1;
    bytes[last_line..].fill(0);
    fs::write(file, &bytes).unwrap();
    let fault = verify_trail(dir.path(), &options(&key)).unwrap_err();
    assert_eq!(fault.kind, FaultKind::Truncated, "{fault}");
}

#[test]
fn zeros_after_the_lines_of_a_closed_file_are_reported_by_verify() {
    let (dir, key, clock, mut sink) = preallocated(4 * 1024);
    write(&mut sink, &[event("a", "x")]);
    clock.advance(Duration::from_secs(86_400));
    write(&mut sink, &[event("next-day", "x")]);
    close(sink);
    let files = trail_files(dir.path());
    assert_eq!(files.len(), 2, "{files:?}");
    // Rotation cut the first file's zeros off: only the file being written may have them.
    assert_eq!(fs::read(&files[0]).unwrap().last(), Some(&b'\n'));
    verify_trail(dir.path(), &options(&key)).unwrap();

    let mut bytes = fs::read(&files[0]).unwrap();
    bytes.extend_from_slice(&[0u8; 512]);
    fs::write(&files[0], &bytes).unwrap();
    let fault = verify_trail(dir.path(), &options(&key)).unwrap_err();
    assert!(
        matches!(fault.kind, FaultKind::Inserted | FaultKind::Modified),
        "{fault}"
    );
}

#[test]
fn files_rotate_by_size_and_by_day_and_gzip_when_closed() {
    let (dir, key, clock) = empty_trail_dir();
    let mut sink = builder(dir.path(), &key, &clock)
        .rotate_bytes(600)
        .gzip(true)
        .open_now()
        .unwrap();
    for i in 0..6 {
        write(&mut sink, &[event("a", &format!("user-{i}"))]);
    }
    clock.advance(Duration::from_secs(86_400));
    write(&mut sink, &[event("next-day", "x")]);
    close(sink);

    let names: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("audit-"))
        .collect();
    assert!(
        names.iter().any(|n| n == "audit-2026-09-21.jsonl.gz"),
        "{names:?}"
    );
    assert!(
        names.iter().any(|n| n == "audit-2026-09-21.1.jsonl.gz"),
        "{names:?}"
    );
    assert!(
        names.iter().any(|n| n == "audit-2026-09-22.jsonl"),
        "{names:?}"
    );
    let report = verify_trail(dir.path(), &options(&key)).unwrap();
    assert_eq!(report.events, 7);
    assert!(report.files >= 3);
    let last = all_events(dir.path()).pop().unwrap();
    assert_eq!(last["action"], "next-day");
}

#[test]
fn retention_purges_old_sealed_files_and_the_trail_still_verifies() {
    let (dir, key, clock) = empty_trail_dir();
    let retention = |b: JsonlFileSinkBuilder| b.retention(Some(Duration::from_secs(30 * 86_400)));
    let mut sink = retention(builder(dir.path(), &key, &clock))
        .open_now()
        .unwrap();
    write(&mut sink, &[event("old-1", "x"), event("old-2", "x")]);
    clock.advance(Duration::from_secs(10 * 86_400));
    write(&mut sink, &[event("middle", "x")]);
    clock.advance(Duration::from_secs(25 * 86_400));
    // 35 days after the first file's day: it goes; the middle one (25 days) stays.
    write(&mut sink, &[event("new", "x")]);
    close(sink);

    let names: Vec<_> = trail_files(dir.path())
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["audit-2026-10-01.jsonl", "audit-2026-10-26.jsonl"]);
    let events = all_events(dir.path());
    let purge = events
        .iter()
        .find(|e| e["action"] == "audit.retention.purge")
        .expect("the purge is recorded");
    assert_eq!(purge["category"], "system");
    assert_eq!(
        purge["details"]["files"],
        serde_json::json!(["audit-2026-09-21.jsonl"])
    );
    assert_eq!(
        (
            purge["details"]["seq_from"].as_u64(),
            purge["details"]["seq_to"].as_u64()
        ),
        (Some(0), Some(1))
    );
    let report = verify_trail(dir.path(), &options(&key)).unwrap();
    assert_eq!(report.first_seq, Some(2));

    // Deleting the next file by hand is not a purge: it is detected.
    fs::remove_file(dir.path().join("audit-2026-10-01.jsonl")).unwrap();
    let fault = verify_trail(dir.path(), &options(&key)).unwrap_err();
    assert_eq!(fault.kind, FaultKind::MissingFile, "{fault}");
}

#[test]
fn retention_by_size_keeps_the_newest_and_never_unsealed_files() {
    let (dir, key, clock) = empty_trail_dir();
    let mut sink = builder(dir.path(), &key, &clock)
        .rotate_bytes(400)
        .retention(None)
        .retention_bytes(Some(1_500))
        .open_now()
        .unwrap();
    for i in 0..12 {
        write(&mut sink, &[event("a", &format!("user-{i}"))]);
    }
    close(sink);
    let total: u64 = trail_files(dir.path())
        .iter()
        .map(|f| fs::metadata(f).unwrap().len())
        .sum();
    // The budget is met (the active file may push past it until the next rotation).
    assert!(total <= 1_500 + 1_000, "{total}");
    let report = verify_trail(dir.path(), &options(&key)).unwrap();
    assert!(report.first_seq.unwrap() > 0);
    assert!(
        all_events(dir.path())
            .iter()
            .any(|e| e["action"] == "audit.retention.purge")
    );
}

#[test]
fn a_checkpoint_is_written_when_the_interval_passes() {
    let (dir, key, clock) = empty_trail_dir();
    let mut sink = builder(dir.path(), &key, &clock)
        .checkpoint_every(1_000, Duration::from_secs(60))
        .open_now()
        .unwrap();
    write(&mut sink, &[event("a", "x")]);
    let unsealed = |dir: &Path| verify_trail(dir, &options(&key)).unwrap().unsealed;
    assert_eq!(
        unsealed(dir.path()),
        0,
        "a trail's first events are sealed at once"
    );
    write(&mut sink, &[event("b", "x")]);
    assert_eq!(unsealed(dir.path()), 1);
    runtime().block_on(sink.tick()).unwrap();
    assert_eq!(unsealed(dir.path()), 1, "not yet due");
    clock.advance(Duration::from_secs(61));
    runtime().block_on(sink.tick()).unwrap();
    assert_eq!(unsealed(dir.path()), 0);
    close(sink);
}

#[test]
fn a_torn_checkpoint_line_is_recovered() {
    let (dir, key, clock) = empty_trail_dir();
    let mut sink = builder(dir.path(), &key, &clock).open_now().unwrap();
    write(&mut sink, &[event("a", "x")]);
    close(sink);
    let path = dir.path().join("checkpoints.jsonl");
    let mut text = fs::read(&path).unwrap();
    text.extend_from_slice(br#"{"type":"checkpoint","seq_fr"#);
    fs::write(&path, text).unwrap();
    let sink = builder(dir.path(), &key, &clock).open_now().unwrap();
    close(sink);
    verify_trail(dir.path(), &options(&key)).unwrap();
    assert!(
        all_events(dir.path())
            .iter()
            .any(|e| e["action"] == "audit.recovery")
    );
}

/// A trail with a few events of different actors, actions and outcomes.
fn sample_trail() -> (tempfile::TempDir, CheckpointKey) {
    let (dir, key, clock) = empty_trail_dir();
    let mut sink = builder(dir.path(), &key, &clock).open_now().unwrap();
    write(
        &mut sink,
        &[
            event("user.role.change", "alice").with_target("user:2"),
            AuditEvent::new(
                Category::Auth,
                "auth.login",
                Outcome::Failure,
                Actor::anonymous(),
            ),
            event("config.update", "alice").with_target("config:max_upload_mb"),
        ],
    );
    close(sink);
    // Where the sink's generated key would have left its public half.
    fs::write(dir.path().join("signing.pub"), key.public_key().to_hex()).unwrap();
    (dir, key)
}

fn audit(args: &[&str]) -> (i32, String, String) {
    let output = Command::new(audit_binary()).args(args).output().unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn the_audit_command_verifies_and_names_faults() {
    let (dir, key) = sample_trail();
    let trail = dir.path().to_str().unwrap();
    let (code, out, err) = audit(&["verify", trail]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.starts_with("OK: 1 file(s), 3 event(s), seq 0..=2"),
        "{out}"
    );
    assert!(out.contains("signatures verified"), "{out}");

    // With the public key from elsewhere.
    let elsewhere = tempfile::tempdir().unwrap();
    let public = elsewhere.path().join("signing.pub");
    fs::write(&public, key.public_key().to_hex()).unwrap();
    let (code, _, _) = audit(&["verify", trail, "--public-key", public.to_str().unwrap()]);
    assert_eq!(code, 0);

    let file = &trail_files(dir.path())[0];
    let text = fs::read_to_string(file)
        .unwrap()
        .replace("config:max_upload_mb", "config:max_upload_gb");
    fs::write(file, text).unwrap();
    let (code, _, err) = audit(&["verify", trail]);
    assert_eq!(code, 1);
    assert!(
        err.starts_with("FAULT: modified: audit-2026-09-21.jsonl line 3 seq 2"),
        "{err}"
    );
}

#[test]
fn the_audit_command_reports_bad_input_in_one_line() {
    let (code, _, err) = audit(&["verify", "/nonexistent/trail"]);
    assert_eq!(code, 2);
    assert!(err.starts_with("audit: /nonexistent/trail: "), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    let (dir, _) = sample_trail();
    let trail = dir.path().to_str().unwrap();
    let (code, _, err) = audit(&["query", trail, "--since", "last tuesday"]);
    assert_eq!(code, 2);
    assert!(err.contains("not an RFC 3339 time"), "{err}");
    let (code, _, err) = audit(&["verify", trail, "--key", "/nonexistent/key"]);
    assert_eq!(code, 2);
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn the_audit_command_queries_with_filters() {
    let (dir, _) = sample_trail();
    let trail = dir.path().to_str().unwrap();
    let (code, out, _) = audit(&["query", trail, "--actor", "alice"]);
    assert_eq!(code, 0);
    assert_eq!(out.lines().count(), 2);
    let (_, out, _) = audit(&["query", trail, "--action", "auth.*", "--outcome", "failure"]);
    let line: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(line["action"], "auth.login");
    let (_, out, _) = audit(&["query", trail, "--target", "config:*", "--format", "table"]);
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(out.lines().next().unwrap().starts_with("TIME"));
    assert!(out.contains("config.update"), "{out}");
    let (_, out, _) = audit(&["query", trail, "--since", "2030-01-01"]);
    assert!(out.is_empty());
    let (_, out, _) = audit(&[
        "query",
        trail,
        "--until",
        "2030-01-01",
        "--ip",
        "10.0.0.0/8",
    ]);
    assert!(out.is_empty(), "no event has a source address");
}

/// The `action` of each JSON line `audit tail` printed.
fn actions_of(output: &str) -> Vec<String> {
    output
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["action"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

#[test]
fn the_audit_command_tails_and_follows() {
    let (dir, key) = sample_trail();
    let trail = dir.path().to_str().unwrap();
    let (code, out, _) = audit(&["tail", trail, "-n", "2"]);
    assert_eq!(code, 0);
    let actions = actions_of(&out);
    assert_eq!(actions, ["auth.login", "config.update"]);

    let mut follower = Command::new(audit_binary())
        .args(["tail", trail, "-f", "-n", "0"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(400));
    let clock = ManualClock::new(UNIX_EPOCH + Duration::from_secs(START));
    let mut sink = builder(dir.path(), &key, &clock).open_now().unwrap();
    write(&mut sink, &[event("late.arrival", "bob")]);
    close(sink);
    std::thread::sleep(Duration::from_millis(800));
    follower.kill().unwrap();
    let output = follower.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("late.arrival"), "{text}");
}

#[test]
fn the_audit_command_follows_lines_written_over_preallocated_zeros() {
    let (dir, key) = sample_trail();
    let trail = dir.path().to_str().unwrap();
    let clock = ManualClock::new(UNIX_EPOCH + Duration::from_secs(START));
    let mut sink = builder(dir.path(), &key, &clock)
        .preallocate(32 * 1024)
        .open_now()
        .unwrap();
    write(&mut sink, &[event("before.follow", "bob")]);
    runtime().block_on(sink.sync()).unwrap();

    let mut follower = Command::new(audit_binary())
        .args(["tail", trail, "-f", "-n", "1"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(400));
    // The file's size does not change: these lines go over the zeros.
    let size = fs::metadata(&trail_files(dir.path())[0]).unwrap().len();
    write(&mut sink, &[event("over.zeros", "bob")]);
    write(&mut sink, &[event("over.zeros.again", "bob")]);
    runtime().block_on(sink.sync()).unwrap();
    assert_eq!(
        fs::metadata(&trail_files(dir.path())[0]).unwrap().len(),
        size
    );
    std::thread::sleep(Duration::from_millis(800));
    follower.kill().unwrap();
    let output = follower.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    let actions = actions_of(&text);
    assert_eq!(
        actions,
        ["before.follow", "over.zeros", "over.zeros.again"],
        "{text}"
    );
    close(sink);
}

/// Characters that reorder or hide text (a bidi override, a line separator, a zero-width
/// space) and C1 controls, recorded in a target, are shown escaped by `audit tail` and
/// `audit query`, in both formats: what is shown is what the trail holds.
#[test]
fn the_audit_command_shows_display_spoofing_characters_escaped() {
    let (dir, key, clock) = empty_trail_dir();
    let mut sink = builder(dir.path(), &key, &clock).open_now().unwrap();
    let spoof = "user:7\u{202E}txt.exe\u{2028}forged line\u{200B}\u{009B}31m";
    write(&mut sink, &[event("a", "x").with_target(spoof)]);
    close(sink);
    let trail = dir.path().to_str().unwrap();
    for args in [
        vec!["tail", trail, "--format", "table"],
        vec!["tail", trail],
        vec!["query", trail, "--format", "table"],
        vec!["query", trail],
    ] {
        let (code, out, err) = audit(&args);
        assert_eq!(code, 0, "{args:?}: {err}");
        for raw in ['\u{202E}', '\u{2028}', '\u{200B}', '\u{009B}'] {
            assert!(!out.contains(raw), "{args:?} shows {raw:?} raw: {out}");
        }
        if args.contains(&"table") {
            assert!(
                out.contains("user:7<U+202E>txt.exe<U+2028>forged line<U+200B>?31m"),
                "{out}"
            );
        } else {
            let line = out.lines().find(|l| l.contains("user:7")).unwrap();
            let event: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(event["target"], spoof, "the same value, escaped");
        }
    }
}

/// `rm -rf` of the trail directory, or of the day's file, while the sink writes: the next
/// sync notices, writes the file back from the open file, and records `audit.recovery`;
/// nothing written before or after is lost.
#[test]
fn a_removed_trail_is_noticed_and_written_back_at_the_next_sync() {
    for remove_dir in [true, false] {
        let (dir, key, clock) = empty_trail_dir();
        let mut sink = builder(dir.path(), &key, &clock).open_now().unwrap();
        let runtime = runtime();
        write(&mut sink, &[event("before.a", "x"), event("before.b", "x")]);
        runtime.block_on(sink.sync()).unwrap();
        let file = trail_files(dir.path())[0].clone();
        if remove_dir {
            fs::remove_dir_all(dir.path()).unwrap();
        } else {
            fs::remove_file(&file).unwrap();
        }
        // Written to a file no path names, then synced: the sync writes it back first.
        write(&mut sink, &[event("after.a", "x")]);
        runtime.block_on(sink.sync()).unwrap();
        assert!(file.exists(), "the file is back");
        write(&mut sink, &[event("after.b", "x")]);
        close(sink);

        let actions: Vec<String> = all_events(dir.path())
            .iter()
            .map(|e| e["action"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(
            actions,
            [
                "before.a",
                "before.b",
                "after.a",
                "audit.recovery",
                "after.b"
            ],
            "remove_dir: {remove_dir}"
        );
        let recovery = all_events(dir.path())
            .into_iter()
            .find(|e| e["action"] == "audit.recovery")
            .unwrap();
        let reason = recovery["reason"].as_str().unwrap();
        let removed = if remove_dir {
            "trail directory"
        } else {
            "trail file"
        };
        assert!(reason.contains(&format!("the {removed} ")), "{reason}");
        assert!(reason.contains("was removed"), "{reason}");
        // The chain runs on unbroken through the file written back; the checkpoints that
        // went with the directory are missed, as any deletion is.
        let verified = verify_trail(dir.path(), &options(&key));
        if remove_dir {
            let fault = verified.unwrap_err();
            assert!(fault.detail.contains("gone"), "{fault:?}");
        } else {
            assert_eq!(verified.unwrap().events, 5);
        }
    }
}

/// Events after the last checkpoint (a crash, or lines a forger appended and chained) fail
/// `audit verify` with exit status 3, saying how many and since when, unless
/// `--allow-unsealed` accepts them.
#[test]
fn the_audit_command_refuses_an_unsealed_tail_unless_allowed() {
    let (dir, key, clock) = empty_trail_dir();
    let mut sink = builder(dir.path(), &key, &clock)
        .checkpoint_every(1_000, Duration::from_secs(3_600))
        .open_now()
        .unwrap();
    // The first events are sealed at once; the next ones wait for the next checkpoint.
    write(&mut sink, &[event("sealed", "x")]);
    clock.advance(Duration::from_secs(5));
    write(
        &mut sink,
        &[event("unsealed.a", "x"), event("unsealed.b", "x")],
    );
    drop(sink);
    let keys = tempfile::tempdir().unwrap();
    let public = keys.path().join("signing.pub");
    fs::write(&public, key.public_key().to_hex()).unwrap();
    let trail = dir.path().to_str().unwrap();
    let public = public.to_str().unwrap();

    let (code, _, err) = audit(&["verify", trail, "--public-key", public]);
    assert_eq!(code, 3, "{err}");
    assert!(err.starts_with("UNSEALED: 2 event(s) since 20"), "{err}");
    let (code, out, err) = audit(&["verify", trail, "--public-key", public, "--allow-unsealed"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("unsealed: 2 event(s)"), "{out}");
}

/// Whoever holds the directory and the key can cut the trail's tail together with the
/// checkpoints that cover it (or a whole day file with its checkpoint), and what is left
/// verifies. A checkpoint mirror kept elsewhere turns that into a fault.
#[test]
fn a_checkpoint_mirror_makes_a_rolled_back_tail_a_fault() {
    for cut_whole_day in [false, true] {
        let (dir, key, clock) = empty_trail_dir();
        let mirror = tempfile::tempdir().unwrap();
        let sink_builder = || {
            builder(dir.path(), &key, &clock)
                .checkpoint_mirror(audit_layer::file::DirectoryMirror::new(mirror.path()))
        };
        let mut sink = sink_builder().open_now().unwrap();
        write(&mut sink, &[event("kept.a", "x"), event("kept.b", "x")]);
        close(sink);
        let kept_checkpoints = fs::read_to_string(dir.path().join("checkpoints.jsonl")).unwrap();
        let kept_file = trail_files(dir.path())[0].clone();
        let kept_len = fs::metadata(&kept_file).unwrap().len();
        if cut_whole_day {
            clock.advance(Duration::from_secs(86_400));
        }
        let mut sink = sink_builder().open_now().unwrap();
        write(
            &mut sink,
            &[event("rolled.back.a", "x"), event("rolled.back.b", "x")],
        );
        close(sink);
        assert_eq!(
            trail_files(dir.path()).len(),
            if cut_whole_day { 2 } else { 1 }
        );

        // The rollback: the later events and the checkpoints that cover them are gone.
        if cut_whole_day {
            fs::remove_file(&trail_files(dir.path())[1]).unwrap();
        } else {
            let bytes = fs::read(&kept_file).unwrap();
            fs::write(&kept_file, &bytes[..kept_len as usize]).unwrap();
        }
        fs::write(dir.path().join("checkpoints.jsonl"), &kept_checkpoints).unwrap();

        let keys = tempfile::tempdir().unwrap();
        let public = keys.path().join("signing.pub");
        fs::write(&public, key.public_key().to_hex()).unwrap();
        let (trail, public) = (dir.path().to_str().unwrap(), public.to_str().unwrap());
        let (code, _, err) = audit(&["verify", trail, "--public-key", public]);
        assert_eq!(code, 0, "alone, what is left verifies: {err}");

        let copy = mirror.path().join("checkpoints.jsonl");
        let copy = copy.to_str().unwrap();
        let (code, _, err) = audit(&[
            "verify",
            trail,
            "--public-key",
            public,
            "--against-checkpoint",
            copy,
        ]);
        assert_eq!(code, 1, "{err}");
        assert!(err.starts_with("FAULT: rolled back: "), "{err}");
        assert!(err.contains("its tail was removed"), "{err}");
    }
}

/// A follower's reader: the trail in order from any seq, across rotations and gzipped
/// files, going on as the trail grows, never past a line still being written or a line
/// that does not verify.
#[test]
fn a_trail_reader_follows_the_trail_in_order_and_stops_at_a_fault() {
    use audit_layer::file::{FaultKind, TrailReader};
    let (dir, key, clock) = empty_trail_dir();
    let mut sink = builder(dir.path(), &key, &clock)
        .rotate_bytes(700)
        .gzip(true)
        .open_now()
        .unwrap();
    for n in 0..6 {
        write(
            &mut sink,
            &[event("a", &format!("u{n}")), event("b", &format!("u{n}"))],
        );
    }
    assert!(trail_files(dir.path()).len() > 2, "rotated");
    let mut reader = TrailReader::new(dir.path(), 0, None);
    let mut seqs = Vec::new();
    loop {
        let lines = reader.read(5).unwrap();
        if lines.is_empty() {
            break;
        }
        assert!(lines.len() <= 5);
        for line in &lines {
            let event: serde_json::Value = serde_json::from_str(&line.json).unwrap();
            assert_eq!(event["seq"], line.seq);
            assert_eq!(event["hash"], line.hash.as_str());
        }
        seqs.extend(lines.iter().map(|line| line.seq));
    }
    assert_eq!(seqs, (0..12).collect::<Vec<_>>());

    // The trail grows: the reader goes on from where it was, and from the middle too.
    write(&mut sink, &[event("c", "x")]);
    let lines = reader.read(100).unwrap();
    assert_eq!(lines.iter().map(|l| l.seq).collect::<Vec<_>>(), [12]);
    let mut middle = TrailReader::new(dir.path(), 7, None);
    let lines = middle.read(100).unwrap();
    assert_eq!(
        lines.iter().map(|l| l.seq).collect::<Vec<_>>(),
        (7..13).collect::<Vec<_>>()
    );
    close(sink);

    // A line still being written is not read; nor is anything past a line that does not
    // verify, however often the reader asks.
    let newest = trail_files(dir.path()).pop().unwrap();
    let whole = fs::read(&newest).unwrap();
    fs::write(&newest, [&whole[..], b"{\"seq\":13,\"prev"].concat()).unwrap();
    assert!(reader.read(100).unwrap().is_empty());
    fs::write(&newest, &whole).unwrap();
    let text = String::from_utf8(whole).unwrap();
    let forged = text.replacen("\"action\":\"c\"", "\"action\":\"C\"", 1);
    assert_ne!(forged, text);
    fs::write(&newest, forged).unwrap();
    let mut fresh = TrailReader::new(dir.path(), 0, None);
    let mut read = Vec::new();
    let fault = loop {
        match fresh.read(3) {
            Ok(lines) => read.extend(lines.iter().map(|l| l.seq)),
            Err(fault) => break fault,
        }
    };
    assert_eq!(
        read,
        (0..12).collect::<Vec<_>>(),
        "everything before the fault"
    );
    assert_eq!(fault.kind, FaultKind::Modified);
    assert_eq!(fault.seq, Some(12));
    assert_eq!(fresh.read(3).unwrap_err(), fault, "and never past it");
    assert_eq!(fresh.next_seq(), 12);
}

/// A reader takes a large file a chunk at a time, and a line larger than a chunk whole.
#[test]
fn a_trail_reader_reads_lines_larger_than_its_chunk_and_files_larger_than_its_batch() {
    use audit_layer::file::TrailReader;

    let dir = tempfile::tempdir().unwrap();
    let runtime = common::trail::runtime();
    let mut sink = JsonlFileSink::new(dir.path());
    let big = AuditEvent::new(
        Category::System,
        "big",
        Outcome::Success,
        Actor::service("job"),
    )
    .with_detail("blob", "x".repeat(3 << 20));
    let small: Vec<AuditEvent> = (0..20_000)
        .map(|n| {
            AuditEvent::new(
                Category::System,
                "small",
                Outcome::Success,
                Actor::service("job"),
            )
            .with_detail("n", n)
        })
        .collect();
    runtime.block_on(async {
        sink.write_batch(&small[..10_000]).await.unwrap();
        sink.write_batch(std::slice::from_ref(&big)).await.unwrap();
        sink.write_batch(&small[10_000..]).await.unwrap();
        sink.close().await.unwrap();
    });
    drop(sink);
    let mut reader = TrailReader::new(dir.path(), 0, None);
    let mut seqs = Vec::new();
    let mut big_lines = 0;
    loop {
        let lines = reader.read(4096).unwrap();
        if lines.is_empty() {
            break;
        }
        for line in lines {
            big_lines += usize::from(line.json.len() > 3 << 20);
            seqs.push(line.seq);
        }
    }
    assert_eq!(seqs, (0..20_001).collect::<Vec<u64>>());
    assert_eq!(big_lines, 1);
}
