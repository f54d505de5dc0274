//! Heap allocations per request: a bare router against the same router with the audit layer
//! and a chained file trail, counted by a global allocator.
//!
//! `cargo bench --bench allocations`
//!
//! Counts are of the whole process: for the audited router they include the trail's writer
//! thread. The file sink's own share is measured apart (a batch of events written directly),
//! so the layer's share on the request path is the difference.

use audit_layer::{AuditEvent, AuditTrail, Outcome};

use audit_layer::file::JsonlFileSink;

use audit_layer::sink::Sink;
use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::{Method, Request};
use tower::ServiceExt;

mod common;

// dhat's allocator counts every allocation of the process (the workspace forbids the
// `unsafe` a hand-written counting allocator would need).
#[global_allocator]
static ALLOCATOR: dhat::Alloc = dhat::Alloc;

fn allocations() -> u64 {
    dhat::HeapStats::get().total_blocks
}

fn request() -> Request<Body> {
    common::request(Method::GET, "/hello?page=2")
}

/// Allocations per request over `n` requests, once warm.
async fn measure(app: &Router, n: u64, flush: Option<&AuditTrail>) -> f64 {
    // As `axum::serve` does for each connection: handlers become routes once, not once per
    // request (a layered handler would otherwise be cloned and layered for each).
    let app = &app.clone().with_state(());
    for _ in 0..100 {
        app.clone().oneshot(request()).await.expect("infallible");
    }
    if let Some(trail) = flush {
        trail.flush().await.expect("flush");
    }
    let before = allocations();
    for _ in 0..n {
        app.clone().oneshot(request()).await.expect("infallible");
    }
    if let Some(trail) = flush {
        trail.flush().await.expect("flush");
    }
    (allocations() - before) as f64 / n as f64
}

fn main() {
    const N: u64 = 20_000;
    let _profiler = dhat::Profiler::builder().testing().build();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let router = Router::new().route("/hello", get(|| async { "hello" }));
        let bare = measure(&router, N, None).await;

        let dir = tempfile::tempdir().expect("tempdir");
        let trail = AuditTrail::builder()
            .sink(JsonlFileSink::new(dir.path()))
            .build()
            .expect("trail");
        let audited = measure(&router.clone().layer(trail.layer()), N, Some(&trail)).await;
        trail.shutdown().await.expect("shutdown");

        // The file sink alone: serializing, chaining and writing a batch of events.
        let dir = tempfile::tempdir().expect("tempdir");
        let mut sink = JsonlFileSink::new(dir.path());
        let event = AuditEvent::new(
            audit_layer::Category::Request,
            "http.request",
            Outcome::Success,
            audit_layer::Actor::anonymous(),
        );
        let batch: Vec<_> = (0..512).map(|_| event.clone()).collect();
        sink.write_batch(&batch).await.expect("write");
        let before = allocations();
        for _ in 0..20 {
            sink.write_batch(&batch).await.expect("write");
        }
        let sink_per_event = (allocations() - before) as f64 / (20.0 * 512.0);
        sink.close().await.expect("close");

        println!("heap allocations per GET /hello ({N} requests through tower's oneshot)");
        println!("  bare router:                          {bare:6.1}");
        println!("  audited router, file trail, in all:   {audited:6.1}");
        println!(
            "  added by auditing:                    {:6.1}",
            audited - bare
        );
        println!("  of which the file sink (per event):   {sink_per_event:6.1}");
    });
}
