//! PostgreSQL and NATS as followers of the file trail, with the server taken away by a TCP
//! proxy of the test's own and given back: requests are answered as usual during the cut,
//! the trail's health says the copy is behind, and afterwards the copy holds every line of
//! the trail exactly once, in order, with its seq and hash.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;

use audit_layer::file::{JsonlFileSink, TRAIL_ID, TrailReader};
use audit_layer::follow::{Follower, FollowerState};
use audit_layer::sink::nats::{CHECKPOINT_HEADER, HASH_HEADER, NatsSink, SEQ_HEADER};
use audit_layer::sink::postgres::PostgresSink;
use audit_layer::{AuditTrail, Durability, Health};
use axum::Router;
use axum::body::Body;
use axum::routing::{get, post};
use common::proxy::Proxy;
use tower::ServiceExt;

/// `url` with its `host:port` replaced by a proxy's, and the proxy.
async fn proxied(url: &str) -> (Proxy, String) {
    let (scheme, rest) = url.split_once("://").expect("a URL");
    let (credentials, rest) = match rest.rsplit_once('@') {
        Some((credentials, rest)) => (format!("{credentials}@"), rest),
        None => (String::new(), rest),
    };
    let (host_port, tail) = match rest.split_once('/') {
        Some((host_port, tail)) => (host_port, format!("/{tail}")),
        None => (rest, String::new()),
    };
    let upstream: SocketAddr = tokio::net::lookup_host(host_port)
        .await
        .unwrap()
        .next()
        .unwrap();
    let proxy = Proxy::start(upstream).await;
    let url = format!("{scheme}://{credentials}{}{tail}", proxy.addr);
    (proxy, url)
}

/// A unique suffix for the test's own table or stream.
fn unique() -> String {
    format!(
        "{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    )
}

/// The trail's (seq, hash) pairs, read back and checked.
fn trail_lines(dir: &std::path::Path) -> Vec<(u64, String)> {
    TrailReader::new(dir, 0, None)
        .read(usize::MAX)
        .unwrap()
        .into_iter()
        .map(|line| (line.seq, line.hash))
        .collect()
}

/// Requests through the layer: ordinary GETs, and POSTs whose response waits for their
/// event's sync, as a sensitive handler's does. Each must be answered without waiting
/// for the copy's server.
async fn serve_requests(app: &Router, count: usize) {
    for index in 0..count {
        let request = if index % 10 == 0 {
            http::Request::post("/admin/change").body(Body::from("{}"))
        } else {
            http::Request::get("/hello").body(Body::empty())
        };
        let started = Instant::now();
        let response = app.clone().oneshot(request.unwrap()).await.unwrap();
        assert!(response.status().is_success());
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "request {index} waited {:?}",
            started.elapsed()
        );
    }
}

/// Requests before, during and after a cut of the copy's server: they are answered as
/// usual, the trail says the copy `name` is behind while it is cut, and the copy holds
/// every line of the trail once the server is back (`copied` counts its lines).
async fn ride_out_a_cut(
    audit: &AuditTrail,
    dir: &std::path::Path,
    proxy: &Proxy,
    name: &str,
    mut copied: impl AsyncFnMut() -> usize,
) {
    let app = app(audit);
    serve_requests(&app, 50).await;
    within(
        Duration::from_secs(20),
        "the first lines copied",
        async || copied().await >= 50,
    )
    .await;

    proxy.cut();
    serve_requests(&app, 500).await;
    within(
        Duration::from_secs(20),
        "the trail says the copy is behind",
        async || {
            let status = audit.followers().remove(0);
            matches!(audit.health(), Health::Degraded { ref reason } if reason.contains(name))
                && matches!(status.state, FollowerState::Retrying { .. })
                && status.behind_events >= 500
        },
    )
    .await;

    proxy.restore();
    within(Duration::from_secs(60), "caught up", async || {
        copied().await >= trail_lines(dir).len() && audit.health() == Health::Healthy
    })
    .await;
}

fn app(audit: &AuditTrail) -> Router {
    Router::new()
        .route("/hello", get(|| async { "hello" }))
        .route("/admin/change", post(|| async { "changed" }))
        .layer(audit.layer())
}

fn builder(dir: &std::path::Path) -> audit_layer::AuditTrailBuilder {
    AuditTrail::builder()
        .sink(JsonlFileSink::new(dir))
        .route_durability("/admin/change", Durability::Synced)
        .follower_lag_threshold(Duration::from_secs(60))
}

/// Waits for `done`, polling every 50 ms, for at most `limit`.
async fn within(limit: Duration, what: &str, mut done: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    while !done().await {
        assert!(start.elapsed() < limit, "timed out waiting: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_follower_rides_out_a_cut_and_then_holds_every_line_once_in_order() {
    let Some((url, client)) = common::services::postgres().await else {
        return;
    };
    let (proxy, proxied_url) = proxied(&url).await;
    let table = format!("follow_{}", unique());
    let dir = tempfile::tempdir().unwrap();
    let follower = PostgresSink::builder(&proxied_url)
        .table(&table)
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let name = Follower::name(&follower).to_owned();
    let audit = builder(dir.path()).follower(follower).build().unwrap();
    let count_rows = async || -> usize {
        let sql = format!("SELECT count(*) FROM {table}");
        match client.query_one(&sql, &[]).await {
            Ok(row) => usize::try_from(row.get::<_, i64>(0)).unwrap(),
            Err(_) => 0,
        }
    };

    ride_out_a_cut(&audit, dir.path(), &proxy, &name, count_rows).await;
    audit.shutdown().await.unwrap();

    let trail = std::fs::read_to_string(dir.path().join(TRAIL_ID)).unwrap();
    let rows = client
        .query(
            &format!("SELECT seq, hash, trail FROM {table} ORDER BY seq"),
            &[],
        )
        .await
        .unwrap();
    let stored: Vec<(u64, String)> = rows
        .iter()
        .map(|row| {
            assert_eq!(row.get::<_, String>(2), trail.trim());
            (row.get::<_, i64>(0) as u64, row.get(1))
        })
        .collect();
    assert_eq!(stored, trail_lines(dir.path()), "every line once, in order");

    // `audit followers` shows where the follower stopped; `audit verify --against` proves
    // the copy whole, and catches a row altered or deleted in it.
    let followers = common::demo::run_audit(["followers", dir.path().to_str().unwrap()]);
    assert!(
        followers.0 == Some(0) && followers.1.contains("closed"),
        "{followers:?}"
    );
    assert!(
        followers.1.contains("0 event(s) and 0.0 s behind"),
        "{followers:?}"
    );
    let verify = |client_url: &str| {
        common::demo::run_audit([
            "verify",
            dir.path().to_str().unwrap(),
            "--against",
            client_url,
            "--copy-table",
            &table,
        ])
    };
    let whole = verify(&url);
    assert_eq!(whole.0, Some(0), "{whole:?}");
    assert!(
        whole.1.contains(&format!("{} line(s)", stored.len())),
        "{whole:?}"
    );
    // Without the trail's files, the copy's own chain still shows the altered row.
    let check_copy = || {
        common::demo::run_audit([
            "check-copy",
            &url,
            "--trail",
            trail.trim(),
            "--copy-table",
            &table,
        ])
    };
    let whole = check_copy();
    assert!(
        whole.0 == Some(0) && whole.1.contains("own chain verified"),
        "{whole:?}"
    );
    client
        .batch_execute(&format!(
            "UPDATE {table} SET event = replace(event::text, '\"/hello\"', '\"/bye\"')::json \
             WHERE seq = 20"
        ))
        .await
        .unwrap();
    let altered = verify(&url);
    assert_eq!(altered.0, Some(1), "{altered:?}");
    assert!(
        altered.2.contains("FAULT") && altered.2.contains("seq 20"),
        "{altered:?}"
    );
    let altered_alone = check_copy();
    assert_eq!(altered_alone.0, Some(1), "{altered_alone:?}");
    assert!(altered_alone.2.contains("seq 20"), "{altered_alone:?}");
    client
        .batch_execute(&format!("DELETE FROM {table} WHERE seq = 20"))
        .await
        .unwrap();
    let deleted = verify(&url);
    assert_eq!(deleted.0, Some(1), "{deleted:?}");
    assert!(
        deleted.2.contains("deleted") && deleted.2.contains("seq 20"),
        "{deleted:?}"
    );
    client
        .batch_execute(&format!("DROP TABLE {table}"))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_follower_rides_out_a_cut_and_then_holds_every_line_once_in_order() {
    let Some((url, jetstream)) = common::services::nats().await else {
        return;
    };
    let (proxy, proxied_url) = proxied(&url).await;
    let stream = format!("FOLLOW_{}", unique());
    let dir = tempfile::tempdir().unwrap();
    let follower = NatsSink::builder(&proxied_url)
        .stream(&stream)
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let name = Follower::name(&follower).to_owned();
    let audit = builder(dir.path()).follower(follower).build().unwrap();
    // The lines' messages: `<prefix>.<trail>.<category>.<action>`, not the checkpoints'
    // (`<prefix>.<trail>`).
    let count_messages = async || -> usize {
        let Ok(stream) = jetstream.get_stream(&stream).await else {
            return 0;
        };
        let filter = format!("{}.*.>", stream.cached_info().config.name.to_lowercase());
        let Ok(mut subjects) = stream.info_with_subjects(filter).await else {
            return 0;
        };
        let mut count = 0;
        while let Some(Ok((_, messages))) = subjects.next().await {
            count += messages;
        }
        count
    };

    ride_out_a_cut(&audit, dir.path(), &proxy, &name, count_messages).await;
    audit.shutdown().await.unwrap();

    let trail = std::fs::read_to_string(dir.path().join(TRAIL_ID)).unwrap();
    let stream = jetstream.get_stream(&stream).await.unwrap();
    let expected = trail_lines(dir.path());
    let mut stored = Vec::new();
    let mut sequence_of_seq_20 = None;
    let mut last_checkpoint = None;
    let last_sequence = stream.cached_info().state.last_sequence;
    for sequence in 1..=last_sequence {
        let message = stream.get_raw_message(sequence).await.unwrap();
        if let Some(seq_to) = message.headers.get(CHECKPOINT_HEADER) {
            last_checkpoint = Some(seq_to.as_str().parse::<u64>().unwrap());
            continue;
        }
        assert!(
            message.subject.starts_with(&format!(
                "{}.{}.",
                stream.cached_info().config.name.to_lowercase(),
                trail.trim()
            )),
            "{}",
            message.subject
        );
        let header = |name: &str| message.headers.get(name).unwrap().as_str().to_owned();
        let seq = header(SEQ_HEADER).parse::<u64>().unwrap();
        if seq == 20 {
            sequence_of_seq_20 = Some(sequence);
        }
        stored.push((seq, header(HASH_HEADER)));
    }
    assert_eq!(stored, expected, "every line once, in order");
    assert_eq!(
        last_checkpoint,
        Some(expected.len() as u64 - 1),
        "the checkpoints follow the lines, the shutdown's last one included"
    );
    // `audit verify --against nats://` proves the copy whole, and catches a message
    // deleted from the stream.
    let stream_name = stream.cached_info().config.name.clone();
    let verify = || {
        common::demo::run_audit([
            "verify",
            dir.path().to_str().unwrap(),
            "--against",
            &url,
            "--copy-stream",
            &stream_name,
        ])
    };
    let whole = verify();
    assert_eq!(whole.0, Some(0), "{whole:?}");
    assert!(
        whole.1.contains(&format!("{} line(s)", expected.len())),
        "{whole:?}"
    );
    stream
        .delete_message(sequence_of_seq_20.unwrap())
        .await
        .unwrap();
    let deleted = verify();
    assert_eq!(deleted.0, Some(1), "{deleted:?}");
    assert!(
        deleted.2.contains("deleted") && deleted.2.contains("seq 20"),
        "{deleted:?}"
    );
    jetstream
        .delete_stream(stream.cached_info().config.name.clone())
        .await
        .unwrap();
}
