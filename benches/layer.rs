//! The audit layer's per-request cost, in process, through `tower::ServiceExt::oneshot`:
//!
//! - `get_hello`: a bare router against the same router with the layer and a file trail
//!   (hash chain, checkpoints) on the writer thread;
//! - `post_sensitive`: a `#[sensitive]` update (state loaded before and after, diffed, the
//!   event synced before the response) against the same handler unaudited. The trail is in
//!   memory, so this is the CPU cost of the sensitive machinery, not of `fdatasync`.
//!
//! `cargo bench --bench layer`

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use audit_layer::{
    AuditTrail, Auditable, BoxError, JsonlFileSink, MemorySink, Snapshot, sensitive,
};
use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, State};
use axum::routing::{get, post};
use criterion::{Criterion, criterion_group, criterion_main};
use http::Request;
use serde::Serialize;
use tower::ServiceExt;

fn router() -> Router {
    Router::new().route("/hello", get(|| async { "hello" }))
}

fn get_request() -> Request<Body> {
    let peer: SocketAddr = "192.0.2.10:50000".parse().expect("address");
    Request::get("/hello?page=2")
        .header("user-agent", "bench/1.0")
        .extension(ConnectInfo(peer))
        .body(Body::empty())
        .expect("request")
}

#[derive(Clone, Serialize, Auditable)]
#[audit(resource = "setting")]
struct Setting {
    #[audit(id)]
    id: u64,
    value: u64,
    #[audit(redact)]
    secret: String,
}

#[derive(Clone, Default)]
struct Settings(Arc<RwLock<HashMap<u64, Setting>>>);

impl Settings {
    fn bump(&self, id: u64) -> u64 {
        let mut settings = self.0.write().unwrap_or_else(|e| e.into_inner());
        let setting = settings.entry(id).or_insert_with(|| Setting {
            id,
            value: 0,
            secret: "s3cret".to_owned(),
        });
        setting.value += 1;
        setting.value
    }
}

impl Snapshot<Settings> for Setting {
    type Key = u64;

    async fn load(settings: &Settings, id: &u64) -> Result<Option<Self>, BoxError> {
        let settings = settings.0.read().unwrap_or_else(|e| e.into_inner());
        Ok(settings.get(id).cloned())
    }
}

async fn bump(State(settings): State<Settings>, Path(id): Path<u64>) -> String {
    settings.bump(id).to_string()
}

#[sensitive(action = "setting.bump", resource = Setting, key = id)]
async fn bump_audited(State(settings): State<Settings>, Path(id): Path<u64>) -> String {
    settings.bump(id).to_string()
}

fn post_request() -> Request<Body> {
    let peer: SocketAddr = "192.0.2.10:50000".parse().expect("address");
    Request::post("/settings/7")
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
            .iter(|| async { bare.clone().oneshot(get_request()).await })
    });
    let audited = router().layer(file_trail.layer());
    group.bench_function("audited_file_trail", |b| {
        b.to_async(&runtime)
            .iter(|| async { audited.clone().oneshot(get_request()).await })
    });
    group.finish();
    runtime.block_on(file_trail.shutdown()).expect("shutdown");

    // The memory sink keeps every event; a fresh one per benchmark keeps that bounded by
    // criterion's iteration count.
    let memory_trail = AuditTrail::builder()
        .sink(MemorySink::new())
        .build()
        .expect("trail");
    let mut group = c.benchmark_group("post_sensitive");
    let bare = Router::new()
        .route("/settings/{id}", post(bump))
        .with_state(Settings::default());
    group.bench_function("bare", |b| {
        b.to_async(&runtime)
            .iter(|| async { bare.clone().oneshot(post_request()).await })
    });
    let audited = Router::new()
        .route("/settings/{id}", post(bump_audited))
        .with_state(Settings::default())
        .layer(memory_trail.layer());
    group.bench_function("audited_memory_trail", |b| {
        b.to_async(&runtime)
            .iter(|| async { audited.clone().oneshot(post_request()).await })
    });
    group.finish();
    runtime.block_on(memory_trail.shutdown()).expect("shutdown");
}

criterion_group!(benches, layer);
criterion_main!(benches);
