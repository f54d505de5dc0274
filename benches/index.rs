//! The trail's index against the scan, on a trail written here: how fast a new index is
//! built, how fast new lines are added to it (events/s: what its follower keeps up with),
//! one actor's newest page through the index and by reading every file, a free-text page,
//! the viewer's pages, and the index's size against the trail's.
//!
//! ```sh
//! cargo bench --bench index                                   # 1,000,000 events
//! AUDIT_BENCH_INDEX_EVENTS=10000000 cargo bench --bench index # the targets' 10,000,000
//! ```
//!
//! Under `cargo test --benches` it runs once on 20,000 events, unoptimized.

use std::net::IpAddr;
use std::ops::ControlFlow;
use std::path::Path;
use std::time::{Duration, Instant};

use audit_layer::event::{RequestInfo, ResponseInfo, Source, Timestamp};
use audit_layer::file::{Filter, JsonlFileSink, Page, for_each_event};
use audit_layer::index::TrailIndex;
use audit_layer::sink::Sink;
use audit_layer::{Actor, AuditEvent, Category, Outcome};

/// Distinct actors in the trail: one actor's history is about 1 / ACTORS of it.
const ACTORS: u64 = 10_000;
/// Events per write, as the trail's writer batches them.
const BATCH: u64 = 512;

fn main() {
    let measured = std::env::args().any(|arg| arg == "--bench");
    let events: u64 = match std::env::var("AUDIT_BENCH_INDEX_EVENTS") {
        Ok(text) => text.parse().expect("AUDIT_BENCH_INDEX_EVENTS: a number"),
        Err(_) if measured => 1_000_000,
        Err(_) => 20_000,
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let started = Instant::now();
    write_trail(dir.path(), 0, events);
    let trail_bytes = dir_bytes(dir.path());
    println!(
        "trail: {events} events, {:.1} MiB, written in {:.1} s",
        trail_bytes as f64 / 1048576.0,
        started.elapsed().as_secs_f64()
    );

    let started = Instant::now();
    let mut index = TrailIndex::open(dir.path()).expect("open the index");
    let indexed = index.catch_up(dir.path(), None).expect("index the trail");
    let took = started.elapsed();
    println!(
        "index/build: {indexed} events in {:.1} s: {:.0} events/s (target 300,000)",
        took.as_secs_f64(),
        indexed as f64 / took.as_secs_f64()
    );
    // What the follower does: add new lines to an index that holds the rest.
    let more = (events / 10).min(100_000);
    write_trail(dir.path(), events, events + more);
    let started = Instant::now();
    let added = index.catch_up(dir.path(), None).expect("follow the trail");
    let took = started.elapsed();
    assert_eq!(added, more);
    println!(
        "index/follow: {added} events added to {indexed} in {:.1} s: {:.0} events/s (target 300,000)",
        took.as_secs_f64(),
        added as f64 / took.as_secs_f64()
    );
    let events = events + more;
    let (_, index_bytes) = index.stats().expect("stats");
    let trail_bytes = dir_bytes(dir.path());
    println!(
        "index/size: {:.1} MiB, {:.2}x the trail's files",
        index_bytes as f64 / 1048576.0,
        index_bytes as f64 / trail_bytes as f64
    );

    // One actor's newest 50 events: through the index (several actors, best and p95), and
    // by reading every file, as `audit query` does without an index.
    let actor = |n: u64| Filter {
        actor: Some(format!("user{n}")),
        ..Filter::default()
    };
    let mut times: Vec<Duration> = (0..40)
        .map(|n| {
            let started = Instant::now();
            let page = index
                .query(&actor(n * 97 % ACTORS), &Page::newest(50))
                .expect("query");
            // Each actor has `events / ACTORS` events, or one more.
            let least = 50.min((events / ACTORS) as usize);
            assert!((least..=50).contains(&page.len()), "{}", page.len());
            started.elapsed()
        })
        .collect();
    times.sort();
    println!(
        "query/actor_first_page/index: median {:.2} ms, p95 {:.2} ms (target 50 ms)",
        ms(times[times.len() / 2]),
        ms(times[times.len() * 95 / 100])
    );
    let started = Instant::now();
    let filter = actor(7);
    let mut newest = std::collections::VecDeque::new();
    for_each_event(dir.path(), |_, event| {
        if filter.matches(event) {
            if newest.len() == 50 {
                newest.pop_front();
            }
            newest.push_back(event["seq"].as_u64());
        }
        ControlFlow::Continue(())
    })
    .expect("scan");
    println!(
        "query/actor_first_page/scan: {:.0} ms",
        ms(started.elapsed())
    );

    viewer_pages(dir.path());

    let text = Filter {
        text: Some("quarterly ACME".into()),
        ..Filter::default()
    };
    let started = Instant::now();
    let page = index.query(&text, &Page::newest(50)).expect("query");
    assert!(!page.is_empty());
    println!(
        "query/text_first_page/index: {:.2} ms",
        ms(started.elapsed())
    );
}

/// The viewer's pages through its router, behind an audit layer as an application nests
/// it: the newest events, one actor's, and a denied-only page (an unindexed column), each
/// 20 times; p95 of all (target 100 ms).
fn viewer_pages(dir: &Path) {
    use tower::ServiceExt as _;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let trail = audit_layer::AuditTrail::builder()
            .sink(audit_layer::sink::MemorySink::new())
            .build()
            .expect("trail");
        let app: axum::Router = axum::Router::new()
            .nest("/audit", audit_layer::viewer::Viewer::new(dir).router())
            .layer(trail.layer());
        let mut times = Vec::new();
        for n in 0..20u64 {
            for uri in [
                "/audit".to_owned(),
                format!("/audit?actor=user{}", n * 131 % ACTORS),
                "/audit?outcome=denied".to_owned(),
            ] {
                let request = http::Request::get(&uri)
                    .body(axum::body::Body::empty())
                    .expect("request");
                let started = Instant::now();
                let response = app.clone().oneshot(request).await.expect("infallible");
                assert_eq!(response.status(), 200, "{uri}");
                let body = axum::body::to_bytes(response.into_body(), usize::MAX)
                    .await
                    .expect("body");
                assert!(body.len() > 1000);
                times.push(started.elapsed());
            }
        }
        times.sort();
        println!(
            "viewer/page: median {:.1} ms, p95 {:.1} ms over {} pages (target 100 ms)",
            ms(times[times.len() / 2]),
            ms(times[times.len() * 95 / 100]),
            times.len()
        );
        trail.shutdown().await.expect("shutdown");
    });
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

fn dir_bytes(dir: &Path) -> u64 {
    audit_layer::file::trail_files(dir)
        .expect("files")
        .iter()
        .map(|file| std::fs::metadata(file).expect("metadata").len())
        .sum()
}

/// Event `n`: a request of one of `ACTORS` users, from one of their addresses, one in ten a
/// sensitive change with a reason.
fn event(n: u64) -> AuditEvent {
    let user = n * 7919 % ACTORS;
    let sensitive = n.is_multiple_of(10);
    let (category, action) = if sensitive {
        (Category::Sensitive, "user.role.change")
    } else {
        (Category::Request, "http.request")
    };
    let outcome = if n.is_multiple_of(13) {
        Outcome::Denied
    } else {
        Outcome::Success
    };
    let mut event = AuditEvent::at(
        Timestamp::from_unix_micros(1_800_000_000_000_000 + n * 1_000),
        category,
        action,
        outcome,
        Actor::user(format!("user{user}")).with_name(format!("User {user}")),
    );
    if sensitive {
        event = event
            .with_target(format!("user:{}", n % 5000))
            .with_reason(format!("quarterly review {n} for ACME"));
    }
    let mut source = Source::default();
    source.ip = Some(IpAddr::from([
        10,
        (user >> 8) as u8,
        user as u8,
        (n % 4) as u8,
    ]));
    source.user_agent = Some("Mozilla/5.0 (X11; Linux x86_64)".to_owned());
    event.source = Some(source);
    let mut request = RequestInfo::default();
    request.id = format!("req-{n:016x}");
    request.method = "GET".into();
    request.path = format!("/api/items/{}", n % 1000);
    request.route = Some("/api/items/{id}".to_owned());
    event.request = Some(request);
    let mut response = ResponseInfo::default();
    response.status = Some(if outcome == Outcome::Denied { 403 } else { 200 });
    response.duration_us = 150 + n % 300;
    event.response = Some(response);
    event
}

/// Events `from..to`, appended to the trail in `dir` (made if new).
fn write_trail(dir: &Path, from: u64, to: u64) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let mut sink = JsonlFileSink::new(dir);
    runtime.block_on(async {
        let mut n = from;
        while n < to {
            let batch: Vec<AuditEvent> = (n..(n + BATCH).min(to)).map(event).collect();
            n += batch.len() as u64;
            sink.write_batch(&batch).await.expect("write");
        }
        sink.close().await.expect("close");
    });
}
