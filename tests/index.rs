//! The trail's index: kept by a follower, rebuilt from the files, and answering every filter
//! with exactly what a scan of the files finds.

mod common;

use std::net::IpAddr;
use std::ops::ControlFlow;
use std::path::Path;
use std::time::{Duration, Instant};

use audit_layer::event::{Source, Timestamp};
use audit_layer::file::{Filter, JsonlFileSink, Page, parse_ip, parse_time};
use audit_layer::index::{Answered, IndexFollower, TrailIndex, index_path, search, search_page};
use audit_layer::sink::postgres::PostgresSink;
use audit_layer::{Actor, AuditEvent, AuditTrail, Category, Outcome};
use common::demo::{read_trail, run_audit};

const START: u64 = 1_800_000_000_000_000;

/// Event `n` of a varied stream: five actors (id and name), actions and targets by kind,
/// two networks, request ids, and words in reasons.
fn event(n: u64) -> AuditEvent {
    let actors = ["alice", "bob", "carol", "dave", "Eve Ünïcode"];
    let actor = actors[(n % 5) as usize];
    let actions = [
        "user.role.change",
        "user.export",
        "config.update",
        "auth.login",
    ];
    let outcomes = [Outcome::Success, Outcome::Denied, Outcome::Failure];
    let categories = [Category::Sensitive, Category::Request, Category::Auth];
    let mut event = AuditEvent::at(
        Timestamp::from_unix_micros(START + n * 1_000_000),
        categories[(n % 3) as usize],
        actions[(n % 4) as usize],
        outcomes[(n % 3) as usize],
        Actor::user((n % 5).to_string()).with_name(actor),
    )
    .with_target(format!("user:{}", n % 7))
    .with_reason(format!("case {n}: quarterly-report for ACME {}", n % 11));
    let mut source = Source::default();
    source.ip = Some(
        if n.is_multiple_of(2) {
            format!("203.0.113.{}", n % 200)
        } else {
            format!("2001:db8::{:x}", n % 300)
        }
        .parse::<IpAddr>()
        .expect("ip"),
    );
    event.source = Some(source);
    event
}

/// A trail of `count` events, indexed by a follower while it is written.
async fn indexed_trail(dir: &Path, count: u64) {
    let trail = AuditTrail::builder()
        .sink(JsonlFileSink::new(dir))
        .follower(IndexFollower::new())
        .build()
        .expect("trail");
    for n in 0..count {
        trail.record(event(n)).await.expect("record");
    }
    trail.flush().await.expect("flush");
    let last = read_trail(dir).last().and_then(|e| e["seq"].as_u64());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let cursor = TrailIndex::open_existing(dir)
            .expect("open")
            .and_then(|index| index.cursor().expect("cursor"))
            .map(|(_, seq, _)| seq);
        if cursor.is_some() && cursor == last {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the index follower did not catch up: {cursor:?} of {last:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    trail.shutdown().await.expect("shutdown");
}

/// The seqs of the events `filter` matches, reading every file.
fn scanned(dir: &Path, filter: &Filter) -> Vec<u64> {
    read_trail(dir)
        .into_iter()
        .filter(|event| filter.matches(event))
        .filter_map(|event| event["seq"].as_u64())
        .collect()
}

fn filters() -> Vec<Filter> {
    let f = Filter::default;
    vec![
        f(),
        Filter {
            actor: Some("bob".into()),
            ..f()
        },
        Filter {
            actor: Some("3".into()),
            ..f()
        },
        Filter {
            actor: Some("Eve Ünïcode".into()),
            ..f()
        },
        Filter {
            action: Some("user.*".into()),
            ..f()
        },
        Filter {
            action: Some("config.update".into()),
            ..f()
        },
        Filter {
            action: Some("*".into()),
            ..f()
        },
        Filter {
            target: Some("user:3".into()),
            ..f()
        },
        Filter {
            target: Some("user:*".into()),
            ..f()
        },
        Filter {
            outcome: Some("denied".into()),
            ..f()
        },
        Filter {
            category: Some("auth".into()),
            ..f()
        },
        Filter {
            ip: Some(parse_ip("203.0.113.0/28").expect("net")),
            ..f()
        },
        Filter {
            ip: Some(parse_ip("2001:db8::10").expect("ip")),
            ..f()
        },
        Filter {
            ip: Some(parse_ip("0.0.0.0/0").expect("net")),
            ..f()
        },
        Filter {
            since: Some(Timestamp::from_unix_micros(START + 100_000_000)),
            until: Some(parse_time("2027-01-16T08:02:00Z").expect("time")),
            ..f()
        },
        Filter {
            text: Some("ACME 7".into()),
            ..f()
        },
        Filter {
            text: Some("acme QUARTERLY report".into()),
            ..f()
        },
        Filter {
            text: Some("ünïcode".into()),
            ..f()
        },
        Filter {
            text: Some("\" OR NEAR( * -- ".into()),
            ..f()
        },
        Filter {
            text: Some("nowhere".into()),
            ..f()
        },
        Filter {
            actor: Some("alice".into()),
            action: Some("user.*".into()),
            outcome: Some("success".into()),
            text: Some("acme".into()),
            ..f()
        },
    ]
}

#[tokio::test]
async fn every_filter_finds_through_the_index_what_a_scan_finds() {
    let dir = tempfile::tempdir().expect("tempdir");
    indexed_trail(dir.path(), 600).await;
    let followed = TrailIndex::open_existing(dir.path())
        .expect("open")
        .expect("the follower made the index");
    assert_index_matches_the_scan(dir.path(), &followed);
    // Built anew from the files, its column indexes made after its rows: the same answers.
    drop(followed);
    std::fs::remove_dir_all(dir.path().join("index")).expect("delete the index");
    let mut built = TrailIndex::open(dir.path()).expect("open");
    assert!(built.catch_up(dir.path(), None).expect("build") >= 600);
    assert_index_matches_the_scan(dir.path(), &built);
}

/// Every filter's answer through `index`, oldest first and in pages newest first, is the
/// scan's.
fn assert_index_matches_the_scan(dir: &Path, index: &TrailIndex) {
    for filter in filters() {
        let expected = scanned(dir, &filter);
        let oldest_first: Vec<u64> = index
            .query(&filter, &Page::all_oldest_first())
            .expect("query")
            .iter()
            .map(|line| line.seq)
            .collect();
        assert_eq!(oldest_first, expected, "{filter:?}");

        // Newest first, a page of 7 at a time: every event once, in order.
        let mut pages = Vec::new();
        let mut page = Page::newest(7);
        loop {
            let lines = index.query(&filter, &page).expect("query");
            let Some(last) = lines.last() else { break };
            page = Page::newest(7).before(last.seq);
            pages.extend(lines.iter().map(|line| line.seq));
        }
        let mut reversed = expected.clone();
        reversed.reverse();
        assert_eq!(pages, reversed, "{filter:?}");
    }
}

#[tokio::test]
async fn audit_query_answers_the_same_with_the_index_and_without() {
    let dir = tempfile::tempdir().expect("tempdir");
    indexed_trail(dir.path(), 300).await;
    let dir_arg = dir.path().to_str().expect("utf-8");
    let runs: [&[&str]; 5] = [
        &["--actor", "carol"],
        &["--action", "user.*", "--outcome", "denied"],
        &["--text", "ACME 3", "--format", "table"],
        &["--ip", "203.0.113.0/24", "--category", "sensitive"],
        &["--since", "2027-01-15", "--format", "ocsf"],
    ];
    let with_index: Vec<_> = runs
        .iter()
        .map(|args| run_audit([&["query", dir_arg][..], args].concat()))
        .collect();
    std::fs::remove_dir_all(dir.path().join("index")).expect("delete the index");
    for (args, indexed) in runs.iter().zip(with_index) {
        let scanned = run_audit([&["query", dir_arg][..], args].concat());
        assert_eq!(indexed.0, Some(0), "{args:?}: {}", indexed.2);
        assert!(
            !indexed.1.is_empty() || args.contains(&"--since"),
            "{args:?}"
        );
        assert_eq!(indexed, scanned, "{args:?}");
    }

    // Rebuilt from the files alone.
    let (code, _, err) = run_audit(["index", dir_arg]);
    assert_eq!(code, Some(0), "{err}");
    let all = read_trail(dir.path()).len();
    assert!(
        err.contains(&format!("indexed {all} new event(s)")),
        "{err}"
    );
    assert!(err.contains(&format!("holds {all} event(s)")), "{err}");
    let (_, again, err) = run_audit(["index", dir_arg]);
    assert!(err.contains("indexed 0 new event(s)"), "{again}{err}");
    let (_, again, err) = run_audit(["index", dir_arg, "--rebuild"]);
    assert!(
        err.contains(&format!("indexed {all} new event(s)")),
        "{again}{err}"
    );
    let (code, _, err) = run_audit(["index", "/nonexistent/audit-log"]);
    assert_eq!(code, Some(2));
    assert!(err.starts_with("audit: /nonexistent/audit-log"), "{err}");
}

#[tokio::test]
async fn events_after_the_cursor_come_from_the_files_and_the_follower_resumes() {
    let dir = tempfile::tempdir().expect("tempdir");
    indexed_trail(dir.path(), 100).await;
    // More events while no follower runs: the index stops at 100.
    let trail = AuditTrail::builder()
        .sink(JsonlFileSink::new(dir.path()))
        .build()
        .expect("trail");
    for n in 100..150 {
        trail.record(event(n)).await.expect("record");
    }
    trail.shutdown().await.expect("shutdown");
    let filter = Filter {
        actor: Some("alice".into()),
        ..Filter::default()
    };
    let mut found = Vec::new();
    let answered = search(dir.path(), &filter, |_, event| {
        found.push(event["seq"].as_u64().expect("seq"));
        ControlFlow::Continue(())
    })
    .expect("search");
    assert_eq!(found, scanned(dir.path(), &filter));
    assert!(
        matches!(answered, Answered::Index { read_after } if read_after >= 50),
        "{answered:?}"
    );

    // Pages across the cursor, both ways, with and without the index.
    assert_pages_match_the_scan(dir.path());
    let moved = tempfile::tempdir().expect("tempdir");
    std::fs::rename(dir.path().join("index"), moved.path().join("index")).expect("move");
    assert_pages_match_the_scan(dir.path());
    std::fs::rename(moved.path().join("index"), dir.path().join("index")).expect("move back");

    // The follower, started again, goes on from its cursor: every event once.
    indexed_trail(dir.path(), 0).await;
    let index = TrailIndex::open_existing(dir.path())
        .expect("open")
        .expect("index");
    let (events, bytes) = index.stats().expect("stats");
    assert_eq!(events as usize, read_trail(dir.path()).len());
    assert!(bytes > 0);
}

#[test]
fn a_new_index_opened_by_many_at_once_is_made_once() {
    for _ in 0..200 {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().to_path_buf();
        let openers: Vec<_> = (0..8)
            .map(|_| {
                let path = path.clone();
                std::thread::spawn(move || TrailIndex::open(&path).map(|_| ()))
            })
            .collect();
        for opener in openers {
            opener.join().expect("no panic").expect("opened");
        }
    }
}

/// `search_page`, newest first with `before` and oldest first with `after`, pages of 7,
/// gives every event the scan finds, once, in order.
fn assert_pages_match_the_scan(dir: &Path) {
    for filter in filters() {
        let expected = scanned(dir, &filter);
        let mut newest = Vec::new();
        let mut page = Page::newest(7);
        loop {
            let lines = search_page(dir, &filter, &page).expect("page");
            let Some(last) = lines.last() else { break };
            page = Page::newest(7).before(last.seq);
            newest.extend(lines.iter().map(|line| line.seq));
        }
        let mut reversed = expected.clone();
        reversed.reverse();
        assert_eq!(newest, reversed, "{filter:?}");
        let mut oldest = Vec::new();
        let mut page = Page {
            oldest_first: true,
            limit: Some(7),
            ..Page::default()
        };
        loop {
            let lines = search_page(dir, &filter, &page).expect("page");
            let Some(last) = lines.last() else { break };
            page.after = Some(last.seq);
            oldest.extend(lines.iter().map(|line| line.seq));
        }
        assert_eq!(oldest, expected, "{filter:?}");
    }
}

#[tokio::test]
async fn the_index_of_another_trail_is_refused_and_deleted_files_leave_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    indexed_trail(dir.path(), 20).await;
    let other = tempfile::tempdir().expect("tempdir");
    indexed_trail(other.path(), 5).await;
    std::fs::copy(index_path(other.path()), index_path(dir.path())).expect("copy");
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", index_path(dir.path()).display()));
    }
    let mut index = TrailIndex::open(dir.path()).expect("open");
    let err = index.catch_up(dir.path(), None).expect_err("another trail");
    assert!(err.to_string().contains("delete it to rebuild it"), "{err}");
    assert_eq!(
        index_path(dir.path()),
        dir.path().join("index").join("events.sqlite")
    );

    // A trail of several files, the oldest then deleted as retention deletes it.
    let rotated = tempfile::tempdir().expect("tempdir");
    let sink = JsonlFileSink::builder(rotated.path())
        .rotate_bytes(8 * 1024)
        .build();
    let trail = AuditTrail::builder().sink(sink).build().expect("trail");
    for n in 0..100 {
        trail.record(event(n)).await.expect("record");
        // Batches of ten: a file is rotated between batches.
        if n % 10 == 9 {
            trail.flush().await.expect("flush");
        }
    }
    trail.shutdown().await.expect("shutdown");
    let mut index = TrailIndex::open(rotated.path()).expect("open");
    index.catch_up(rotated.path(), None).expect("catch up");
    let files = audit_layer::file::trail_files(rotated.path()).expect("files");
    assert!(files.len() >= 2, "{files:?}");
    std::fs::remove_file(&files[0]).expect("delete the oldest file");
    let all = Filter::default();
    let mut found = Vec::new();
    search(rotated.path(), &all, |_, event| {
        found.push(event["seq"].as_u64().expect("seq"));
        ControlFlow::Continue(())
    })
    .expect("search");
    assert_eq!(
        found,
        scanned(rotated.path(), &all),
        "not the deleted file's events"
    );
    index.catch_up(rotated.path(), None).expect("catch up");
    let (events, _) = index.stats().expect("stats");
    assert_eq!(events as usize, found.len(), "they left the index");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_followers_table_answers_every_filter_as_the_index_does() {
    let Some((url, client)) = common::services::postgres().await else {
        return;
    };
    let table = common::services::unique_name("audit_search");
    let dir = tempfile::tempdir().expect("tempdir");
    let follower = PostgresSink::builder(&url)
        .table(&table)
        .build()
        .expect("sink");
    let trail = AuditTrail::builder()
        .sink(JsonlFileSink::new(dir.path()))
        .follower(IndexFollower::new())
        .follower(follower)
        .build()
        .expect("trail");
    for n in 0..400 {
        trail.record(event(n)).await.expect("record");
    }
    trail.flush().await.expect("flush");
    let lines = read_trail(dir.path()).len();
    let deadline = Instant::now() + Duration::from_secs(30);
    while trail.followers().iter().any(|f| f.shipped < lines as u64) {
        assert!(Instant::now() < deadline, "{:?}", trail.followers());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    trail.shutdown().await.expect("shutdown");

    let trail_id = std::fs::read_to_string(dir.path().join("trail.id")).expect("trail id");
    let trail_id = trail_id.trim();
    let mut copy = PostgresSink::builder(&url)
        .table(&table)
        .build()
        .expect("sink");
    let index = TrailIndex::open_existing(dir.path())
        .expect("open")
        .expect("index");
    for filter in filters() {
        let seqs = |lines: Vec<audit_layer::file::TrailLine>| -> Vec<u64> {
            lines.iter().map(|line| line.seq).collect()
        };
        let all = copy
            .search(trail_id, &filter, &Page::all_oldest_first())
            .await
            .expect("search");
        assert_eq!(seqs(all), scanned(dir.path(), &filter), "{filter:?}");
        let mut page = Page::newest(7);
        for _ in 0..3 {
            let from_postgres = seqs(copy.search(trail_id, &filter, &page).await.expect("search"));
            let from_index: Vec<u64> = index
                .query(&filter, &page)
                .expect("query")
                .iter()
                .map(|line| line.seq)
                .collect();
            assert_eq!(from_postgres, from_index, "{filter:?} {page:?}");
            let Some(last) = from_index.last() else { break };
            page = Page::newest(7).before(*last);
        }
    }
    client
        .execute(&format!("DROP TABLE {table}"), &[])
        .await
        .expect("drop");
}
