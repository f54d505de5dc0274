//! Helpers shared by the integration tests.
#![allow(dead_code, unreachable_pub)]

pub mod browser;
pub mod demo;
pub mod proxy;
pub mod rsyslog;
pub mod services;
pub mod siem;
pub mod trail;
pub mod tsa;

use std::net::SocketAddr;
use std::time::Duration;

use audit_layer::{AuditEvent, AuditTrail, AuditTrailBuilder};

use audit_layer::sink::MemorySink;
use axum::body::Body;
use axum::extract::ConnectInfo;
use http::Request;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A builder with a memory sink, and the sink.
pub fn memory_trail() -> (AuditTrailBuilder, MemorySink) {
    let sink = MemorySink::new();
    (AuditTrail::builder().sink(sink.clone()), sink)
}

/// A request from `peer`, as axum's `into_make_service_with_connect_info` would deliver it.
pub fn request_from(peer: &str, method: &str, uri: &str) -> http::request::Builder {
    let peer: SocketAddr = peer.parse().expect("peer address");
    Request::builder()
        .method(method)
        .uri(uri)
        .extension(ConnectInfo(peer))
}

/// A GET from 192.0.2.10:50000 with an empty body.
pub fn get(uri: &str) -> Request<Body> {
    request_from("192.0.2.10:50000", "GET", uri)
        .body(Body::empty())
        .expect("request")
}

/// The only request event the sink holds.
pub fn only_event(sink: &MemorySink) -> AuditEvent {
    let events = sink.request_events();
    assert_eq!(
        events.len(),
        1,
        "expected exactly one event, got {events:#?}"
    );
    events.into_iter().next().expect("one event")
}

/// Sends a raw HTTP/1.1 request and returns the whole response text (the server closes).
pub async fn raw_http(addr: SocketAddr, request: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response))
        .await
        .expect("response in time")
        .expect("read");
    String::from_utf8_lossy(&response).into_owned()
}

/// The event files of a trail directory, in trail order (day, then part).
pub fn trail_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    audit_layer::file::trail_files(dir).expect("trail directory")
}

/// Polls `condition` until it holds, for at most five seconds.
pub async fn eventually(mut condition: impl FnMut() -> bool) {
    for _ in 0..500 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition not met within 5 s");
}

/// Waits (at most ten seconds) until the trail reports a failing sink, and returns why.
pub async fn failing_reason(audit: &AuditTrail) -> String {
    for _ in 0..1000 {
        if let audit_layer::Health::Failing { reason } = audit.health() {
            return reason;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!(
        "the trail did not report a failing sink within 10 s: {:?}",
        audit.health()
    );
}

/// Flushes once the trail has recovered: a flush answers at once with an error while a sink
/// is failing, so this retries it for at most twenty seconds.
pub async fn flushed_once_healthy(audit: &AuditTrail) {
    for _ in 0..200 {
        if audit.flush().await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "the trail did not recover within 20 s: {:?}",
        audit.health()
    );
}

/// Serves `count` `GET /hello` requests through `audit`'s layer, each answered `hello`.
pub async fn serve_hellos(audit: &AuditTrail, count: usize) {
    use tower::ServiceExt as _;
    let app = axum::Router::new()
        .route("/hello", axum::routing::get(|| async { "hello" }))
        .layer(audit.layer());
    for _ in 0..count {
        let response = app
            .clone()
            .oneshot(get("/hello"))
            .await
            .expect("infallible");
        assert_eq!(response.status(), 200);
    }
}
