//! Followers of the file trail, through the public API, with a store in memory that can be
//! taken down: every event arrives once and in order, an outage only makes the follower fall
//! behind, a line that does not verify stops it, and retention spares what it still needs.

use std::fs;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use audit_layer::file::{JsonlFileSink, TrailLine, for_each_event, trail_files};
use audit_layer::follow::{Cursor, Follower, FollowerState, read_follower_statuses};
use audit_layer::sink::{BoxFuture, SinkError};
use audit_layer::{Actor, AuditEvent, AuditTrail, Category, Health, Outcome};

/// A store in memory: its lines are its cursor. `down` makes every call fail.
#[derive(Clone, Default)]
struct Store {
    lines: Arc<Mutex<Vec<TrailLine>>>,
    down: Arc<AtomicBool>,
}

impl Store {
    fn seqs(&self) -> Vec<u64> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .map(|line| line.seq)
            .collect()
    }

    fn actions(&self) -> Vec<String> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .map(|line| line.event().unwrap().action.into_owned())
            .collect()
    }
}

impl Follower for Store {
    fn name(&self) -> &str {
        "memory"
    }

    fn cursor<'a>(&'a mut self, _trail: &'a str) -> BoxFuture<'a, Result<Cursor, SinkError>> {
        Box::pin(async move {
            if self.down.load(Ordering::SeqCst) {
                return Err(SinkError::new("the store is down"));
            }
            Ok(match self.lines.lock().unwrap().last() {
                Some(last) => Cursor::after(last.seq, last.hash.clone()),
                None => Cursor::empty(),
            })
        })
    }

    fn ship<'a>(
        &'a mut self,
        _trail: &'a str,
        lines: &'a [TrailLine],
    ) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            if self.down.load(Ordering::SeqCst) {
                return Err(SinkError::new("the store is down"));
            }
            let mut stored = self.lines.lock().unwrap();
            let next = stored.last().map_or(0, |line| line.seq + 1);
            // From the cursor on; past it only after a gap the trail records.
            assert!(lines[0].seq >= next, "{} shipped again", lines[0].seq);
            stored.extend_from_slice(lines);
            Ok(())
        })
    }
}

fn event(action: &'static str) -> AuditEvent {
    AuditEvent::new(
        Category::System,
        action,
        Outcome::Success,
        Actor::service("job"),
    )
}

async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "timed out waiting: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn an_outage_only_makes_a_follower_fall_behind_and_it_catches_up_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::default();
    let audit = AuditTrail::builder()
        .sink(JsonlFileSink::new(dir.path()))
        .follower(store.clone())
        .build()
        .unwrap();
    for _ in 0..10 {
        audit.record(event("before.outage")).await.unwrap();
    }
    audit.flush().await.unwrap();
    eventually("the first events shipped", || store.seqs().len() >= 11).await;

    store.down.store(true, Ordering::SeqCst);
    let start = Instant::now();
    for _ in 0..2_000 {
        audit.record(event("during.outage")).await.unwrap();
    }
    audit.flush().await.unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "recording waited for the store: {:?}",
        start.elapsed()
    );
    eventually(
        "the trail degraded",
        || matches!(audit.health(), Health::Degraded { ref reason } if reason.contains("memory")),
    )
    .await;
    eventually("the lag is visible", || {
        let status = &audit.followers()[0];
        status.behind_events >= 2_000
            && status.behind > Duration::ZERO
            && matches!(status.state, FollowerState::Retrying { .. })
    })
    .await;
    let on_disk = read_follower_statuses(dir.path()).unwrap();
    assert_eq!(on_disk.len(), 1, "{on_disk:?}");
    assert_eq!(on_disk[0].name, "memory");

    store.down.store(false, Ordering::SeqCst);
    eventually("caught up", || store.seqs().len() >= 2_011).await;
    eventually("healthy again", || audit.health() == Health::Healthy).await;
    audit.shutdown().await.unwrap();

    // audit.start, the events, audit.stop: everything once, in order.
    let seqs = store.seqs();
    assert_eq!(seqs, (0..seqs.len() as u64).collect::<Vec<_>>());
    let actions = store.actions();
    assert_eq!(actions.first().map(String::as_str), Some("audit.start"));
    assert_eq!(actions.last().map(String::as_str), Some("audit.stop"));
    assert_eq!(
        actions.iter().filter(|a| *a == "during.outage").count(),
        2_000
    );
    let status = read_follower_statuses(dir.path()).unwrap().remove(0);
    assert_eq!(status.state, FollowerState::Closed);
    assert_eq!(status.behind_events, 0);
}

#[tokio::test]
async fn a_follower_resumes_from_its_stored_cursor_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::default();
    store.down.store(true, Ordering::SeqCst);
    let audit = AuditTrail::builder()
        .sink(JsonlFileSink::new(dir.path()))
        .follower(store.clone())
        .follower_drain(Duration::from_millis(200))
        .build()
        .unwrap();
    for _ in 0..100 {
        audit.record(event("while.down")).await.unwrap();
    }
    audit.shutdown().await.unwrap();
    assert!(store.seqs().is_empty());

    store.down.store(false, Ordering::SeqCst);
    let audit = AuditTrail::builder()
        .sink(JsonlFileSink::new(dir.path()))
        .follower(store.clone())
        .build()
        .unwrap();
    audit.record(event("after.restart")).await.unwrap();
    audit.shutdown().await.unwrap();
    let seqs = store.seqs();
    assert_eq!(seqs, (0..seqs.len() as u64).collect::<Vec<_>>());
    let actions = store.actions();
    assert_eq!(actions.iter().filter(|a| *a == "while.down").count(), 100);
    assert_eq!(actions.iter().filter(|a| *a == "after.restart").count(), 1);
    assert_eq!(actions.iter().filter(|a| *a == "audit.start").count(), 2);
}

#[tokio::test]
async fn a_follower_stops_at_a_line_that_does_not_verify_and_raises_an_alert() {
    let dir = tempfile::tempdir().unwrap();
    let audit = AuditTrail::builder()
        .sink(JsonlFileSink::new(dir.path()))
        .build()
        .unwrap();
    for _ in 0..20 {
        audit.record(event("original")).await.unwrap();
    }
    audit.shutdown().await.unwrap();
    // An insider rewrites one line's action (seq 5) without fixing the chain.
    let file = &trail_files(dir.path()).unwrap()[0];
    let text = fs::read_to_string(file).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    lines[5] = lines[5].replace("\"original\"", "\"rewritten\"");
    fs::write(file, lines.join("\n") + "\n").unwrap();

    let store = Store::default();
    let audit = AuditTrail::builder()
        .sink(JsonlFileSink::new(dir.path()))
        .follower(store.clone())
        .build()
        .unwrap();
    eventually("the follower stopped", || {
        matches!(audit.followers()[0].state, FollowerState::Stopped { .. })
    })
    .await;
    assert_eq!(
        store.seqs(),
        (0..5).collect::<Vec<_>>(),
        "nothing past the fault"
    );
    let Health::Degraded { reason } = audit.health() else {
        panic!("{:?}", audit.health());
    };
    assert!(
        reason.contains("does not verify") && reason.contains("seq 5"),
        "{reason}"
    );
    audit.shutdown().await.unwrap();

    let mut alerts = Vec::new();
    for_each_event(dir.path(), |_, event| {
        if event["action"] == "audit.follower.stopped" {
            alerts.push(event.clone());
        }
        ControlFlow::Continue(())
    })
    .unwrap();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0]["category"], "alert");
    assert_eq!(alerts[0]["details"]["seq"], 5);
}

#[tokio::test]
async fn followers_need_a_file_trail_and_names_of_their_own() {
    let error = AuditTrail::builder()
        .sink(audit_layer::sink::MemorySink::new())
        .follower(Store::default())
        .build()
        .unwrap_err();
    assert!(error.to_string().contains("no `JsonlFileSink`"), "{error}");
    let dir = tempfile::tempdir().unwrap();
    let error = AuditTrail::builder()
        .sink(JsonlFileSink::new(dir.path()))
        .follower(Store::default())
        .follower(Store::default())
        .build()
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("two followers are named `memory`"),
        "{error}"
    );
}

#[tokio::test]
async fn a_store_that_holds_another_trail_under_the_same_id_stops_the_follower() {
    let store = Store::default();
    for round in 0..2 {
        // Two directories, one id: the second trail's lines are not the first's.
        let dir = tempfile::tempdir().unwrap();
        let audit = AuditTrail::builder()
            .sink(JsonlFileSink::builder(dir.path()).trail_id("web-1").build())
            .follower(store.clone())
            .build()
            .unwrap();
        for _ in 0..5 {
            audit.record(event("work")).await.unwrap();
        }
        audit.flush().await.unwrap();
        if round == 0 {
            eventually("shipped", || store.seqs().len() >= 6).await;
        } else {
            eventually("the follower stopped", || {
                matches!(&audit.followers()[0].state, FollowerState::Stopped { fault } if fault.contains("forked"))
            })
            .await;
        }
        audit.shutdown().await.unwrap();
    }
    assert_eq!(store.seqs().len(), 7, "nothing of the second trail shipped");
}

/// A trail whose retention would delete files faster than a follower that is down ships
/// them.
fn small_trail(dir: &std::path::Path, spare: bool) -> JsonlFileSink {
    JsonlFileSink::builder(dir)
        .rotate_bytes(2_000)
        .retention_bytes(Some(4_000))
        .retention_spares_followers(spare)
        .build()
}

fn events_in(dir: &std::path::Path, action: &str) -> Vec<serde_json::Value> {
    let mut found = Vec::new();
    for_each_event(dir, |_, event| {
        if event["action"] == action {
            found.push(event.clone());
        }
        ControlFlow::Continue(())
    })
    .unwrap();
    found
}

#[tokio::test]
async fn retention_spares_what_a_follower_has_not_shipped() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::default();
    store.down.store(true, Ordering::SeqCst);
    let audit = AuditTrail::builder()
        .sink(small_trail(dir.path(), true))
        .follower(store.clone())
        .build()
        .unwrap();
    for _ in 0..200 {
        audit.record(event("while.down")).await.unwrap();
        audit.flush().await.unwrap();
    }
    assert!(
        events_in(dir.path(), "audit.retention.purge").is_empty(),
        "nothing purged"
    );
    assert!(trail_files(dir.path()).unwrap().len() > 10);

    store.down.store(false, Ordering::SeqCst);
    eventually("caught up", || store.seqs().len() >= 201).await;
    // Now that the follower has them, retention deletes the old files at the next rotation.
    for _ in 0..20 {
        audit.record(event("after")).await.unwrap();
        audit.flush().await.unwrap();
    }
    audit.shutdown().await.unwrap();
    let seqs = store.seqs();
    assert_eq!(
        seqs,
        (0..seqs.len() as u64).collect::<Vec<_>>(),
        "every line, once"
    );
    assert!(!events_in(dir.path(), "audit.retention.purge").is_empty());
}

#[tokio::test]
async fn retention_told_not_to_spare_followers_purges_and_the_follower_records_the_gap() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::default();
    store.down.store(true, Ordering::SeqCst);
    let audit = AuditTrail::builder()
        .sink(small_trail(dir.path(), false))
        .follower(store.clone())
        .build()
        .unwrap();
    for _ in 0..200 {
        audit.record(event("while.down")).await.unwrap();
        audit.flush().await.unwrap();
    }
    assert!(!events_in(dir.path(), "audit.retention.purge").is_empty());

    store.down.store(false, Ordering::SeqCst);
    eventually("a gap recorded", || {
        !events_in(dir.path(), "audit.gap").is_empty() && !store.seqs().is_empty()
    })
    .await;
    audit.shutdown().await.unwrap();
    let gap = &events_in(dir.path(), "audit.gap")[0];
    assert_eq!(gap["details"]["follower"], "memory");
    assert_eq!(gap["details"]["seq_from"], 0);
    let first = store.seqs()[0];
    assert!(first > 0);
    assert_eq!(gap["details"]["seq_to"], first - 1, "{gap}");
    let seqs = store.seqs();
    assert_eq!(seqs, (first..first + seqs.len() as u64).collect::<Vec<_>>());
}

/// Panics at its first batch.
struct Panicking;

impl Follower for Panicking {
    fn name(&self) -> &str {
        "panicking"
    }

    fn cursor<'a>(&'a mut self, _trail: &'a str) -> BoxFuture<'a, Result<Cursor, SinkError>> {
        Box::pin(async { Ok(Cursor::empty()) })
    }

    fn ship<'a>(
        &'a mut self,
        _trail: &'a str,
        _lines: &'a [TrailLine],
    ) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async { panic!("a bug in the follower") })
    }
}

#[tokio::test]
async fn a_follower_that_panics_is_reported_stopped_and_the_others_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::default();
    let audit = AuditTrail::builder()
        .sink(JsonlFileSink::new(dir.path()))
        .follower(Panicking)
        .follower(store.clone())
        .build()
        .unwrap();
    audit.record(event("work")).await.unwrap();
    eventually("the panic reported", || {
        matches!(&audit.followers()[0].state, FollowerState::Stopped { fault } if fault.contains("a bug in the follower"))
    })
    .await;
    assert!(
        matches!(audit.health(), Health::Degraded { ref reason } if reason.contains("panicking"))
    );
    audit.record(event("more")).await.unwrap();
    eventually("the other follower ships", || store.seqs().len() >= 3).await;
    audit.shutdown().await.unwrap();
    let alerts = events_in(dir.path(), "audit.follower.stopped");
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0]["details"]["follower"], "panicking");
}

/// Takes each batch, slowly.
struct Slow(Store);

impl Follower for Slow {
    fn name(&self) -> &str {
        "slow"
    }

    fn cursor<'a>(&'a mut self, trail: &'a str) -> BoxFuture<'a, Result<Cursor, SinkError>> {
        self.0.cursor(trail)
    }

    fn ship<'a>(
        &'a mut self,
        trail: &'a str,
        lines: &'a [TrailLine],
    ) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(400)).await;
            self.0.ship(trail, lines).await
        })
    }
}

#[tokio::test]
async fn a_follower_further_behind_than_the_threshold_degrades_the_health_without_failing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::default();
    let audit = AuditTrail::builder()
        .sink(JsonlFileSink::new(dir.path()))
        .follower(Slow(store.clone()))
        .follower_lag_threshold(Duration::from_millis(100))
        .build()
        .unwrap();
    audit.record(event("work")).await.unwrap();
    eventually("degraded by lag", || {
        matches!(audit.health(), Health::Degraded { ref reason } if reason.contains("`slow` is") && reason.contains("behind"))
    })
    .await;
    assert!(matches!(
        audit.followers()[0].state,
        FollowerState::Following
    ));
    eventually("caught up and healthy", || {
        store.seqs().len() >= 2 && audit.health() == Health::Healthy
    })
    .await;
    audit.shutdown().await.unwrap();
}
