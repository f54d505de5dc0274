//! The audit layer's per-request cost, in process: a bare router against the same router
//! with the layer and a file trail (hash chain, checkpoints) on the writer thread.
//!
//! `cargo bench --bench layer`

use std::net::SocketAddr;

use audit_layer::{AuditTrail, JsonlFileSink};
use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::routing::get;
use criterion::{Criterion, criterion_group, criterion_main};
use http::Request;
use tower::ServiceExt;

fn router() -> Router {
    Router::new().route("/hello", get(|| async { "hello" }))
}

fn request() -> Request<Body> {
    let peer: SocketAddr = "192.0.2.10:50000".parse().expect("address");
    Request::get("/hello?page=2")
        .header("user-agent", "bench/1.0")
        .extension(ConnectInfo(peer))
        .body(Body::empty())
        .expect("request")
}

fn layer(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let file_trail = AuditTrail::builder()
        .sink(JsonlFileSink::new(dir.path()).expect("sink"))
        .build()
        .expect("trail");

    let mut group = c.benchmark_group("get_hello");
    let bare = router();
    group.bench_function("bare", |b| {
        b.to_async(&runtime)
            .iter(|| async { bare.clone().oneshot(request()).await })
    });
    let audited = router().layer(file_trail.layer());
    group.bench_function("audited_file_trail", |b| {
        b.to_async(&runtime)
            .iter(|| async { audited.clone().oneshot(request()).await })
    });
    group.finish();
    runtime.block_on(file_trail.shutdown()).expect("shutdown");
}

criterion_group!(benches, layer);
criterion_main!(benches);
