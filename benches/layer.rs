//! The audit layer's per-request cost, in process, through `tower::ServiceExt::oneshot`:
//!
//! - `get_hello`: a bare router against the same router with the layer and a file trail
//!   (hash chain, checkpoints) on the writer thread;
//! - `post_sensitive`: a `#[sensitive]` update (state loaded before and after, diffed, the
//!   event "synced" before the response) against the same handler unaudited. The trail's
//!   sink keeps nothing, so this is the CPU cost of the sensitive machinery, not of
//!   `fdatasync` nor of a sink.
//!
//! `cargo bench --bench layer`

use audit_layer::AuditTrail;

use audit_layer::layer::AuditLayer;

use audit_layer::file::JsonlFileSink;
use axum::Router;
use axum::body::Body;
use axum::routing::get;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{Method, Request};
use tower::ServiceExt;

mod common;
#[path = "common/settings.rs"]
mod settings;

/// `GET /hello`, with `layer` if any, as `axum::serve` serves it: `with_state` turns the
/// handler into a route once, where a layered handler would otherwise be cloned and layered
/// for each request.
fn router(layer: Option<AuditLayer>) -> Router {
    let router = Router::new().route("/hello", get(|| async { "hello" }));
    match layer {
        Some(layer) => router.layer(layer).with_state(()),
        None => router.with_state(()),
    }
}

fn get_request() -> Request<Body> {
    common::request(Method::GET, "/hello?page=2")
}

fn post_request() -> Request<Body> {
    common::request(Method::POST, "/settings/7")
}

fn layer(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let file_trail = AuditTrail::builder()
        .sink(JsonlFileSink::new(dir.path()))
        .build()
        .expect("trail");

    let mut group = c.benchmark_group("get_hello");
    let bare = router(None);
    group.bench_function("bare", |b| {
        b.to_async(&runtime)
            .iter(|| async { bare.clone().oneshot(get_request()).await })
    });
    let audited = router(Some(file_trail.layer()));
    group.bench_function("audited_file_trail", |b| {
        b.to_async(&runtime)
            .iter(|| async { audited.clone().oneshot(get_request()).await })
    });
    group.finish();
    runtime.block_on(file_trail.shutdown()).expect("shutdown");

    let sensitive_trail = AuditTrail::builder()
        .sink(settings::Discard)
        .build()
        .expect("trail");
    let mut group = c.benchmark_group("post_sensitive");
    let bare = settings::router(None);
    group.bench_function("bare", |b| {
        b.to_async(&runtime)
            .iter(|| async { bare.clone().oneshot(post_request()).await })
    });
    let audited = settings::router(Some(&sensitive_trail));
    group.bench_function("audited_discarding_sink", |b| {
        b.to_async(&runtime)
            .iter(|| async { audited.clone().oneshot(post_request()).await })
    });
    group.finish();
    runtime
        .block_on(sensitive_trail.shutdown())
        .expect("shutdown");
}

criterion_group!(benches, layer);
criterion_main!(benches);
