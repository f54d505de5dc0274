//! The trail's own throughput: serializing and chaining events, each sink, and
//! verification.
//!
//! `cargo bench --bench pipeline`

use std::time::Duration;

use audit_layer::chain::{GENESIS, link_hash};
use audit_layer::verify::{VerifyOptions, verify_trail};
use audit_layer::{
    Actor, AuditEvent, Category, JsonlFileSink, MemorySink, Outcome, Sink, TracingSink,
};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn event() -> AuditEvent {
    AuditEvent::new(
        Category::Request,
        "http.request",
        Outcome::Success,
        Actor::user("1").with_name("alice").with_role("admin"),
    )
    .with_target("user:7")
    .with_label("service", "bench")
}

fn pipeline(c: &mut Criterion) {
    let event = event();
    let mut group = c.benchmark_group("event");
    group.throughput(Throughput::Elements(1));
    group.bench_function("serialize", |b| {
        let mut buf = Vec::with_capacity(1024);
        b.iter(|| {
            buf.clear();
            serde_json::to_writer(&mut buf, &event).expect("json");
        })
    });
    group.bench_function("serialize_and_chain", |b| {
        let mut buf = Vec::with_capacity(1024);
        b.iter(|| {
            buf.clear();
            serde_json::to_writer(&mut buf, &event).expect("json");
            link_hash(None, GENESIS, 12_345, &buf)
        })
    });
    group.finish();

    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let batch: Vec<_> = (0..512).map(|_| event.clone()).collect();
    let mut group = c.benchmark_group("file_sink");
    group.throughput(Throughput::Elements(batch.len() as u64));
    group.bench_function("write_batch_512_chained", |b| {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut sink = JsonlFileSink::builder(dir.path())
            .checkpoint_every(10_000, Duration::from_secs(60))
            .open()
            .expect("sink");
        b.iter(|| runtime.block_on(sink.write_batch(&batch)).expect("write"));
        runtime.block_on(sink.close()).expect("close");
    });
    group.finish();

    let mut group = c.benchmark_group("other_sinks");
    group.throughput(Throughput::Elements(batch.len() as u64));
    group.bench_function("memory_write_batch_512", |b| {
        // A fresh sink per sample keeps its memory bounded.
        b.iter_batched(
            MemorySink::new,
            |mut sink| runtime.block_on(sink.write_batch(&batch)).expect("write"),
            criterion::BatchSize::SmallInput,
        )
    });
    group.bench_function("tracing_json_write_batch_512", |b| {
        // What a team shipping tracing output pays: one JSON line per event, formatted by
        // tracing-subscriber (written to nowhere, so only the formatting is measured).
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_writer(std::io::sink)
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        let mut sink = TracingSink::new();
        b.iter(|| runtime.block_on(sink.write_batch(&batch)).expect("write"));
    });
    group.finish();

    // A trail of 100,000 events to verify.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut sink = JsonlFileSink::new(dir.path()).expect("sink");
    runtime.block_on(async {
        for _ in 0..(100_000 / batch.len()) {
            sink.write_batch(&batch).await.expect("write");
        }
        sink.close().await.expect("close");
    });
    let events = verify_trail(dir.path(), &VerifyOptions::default())
        .expect("verifies")
        .events;
    let mut group = c.benchmark_group("verify");
    group.throughput(Throughput::Elements(events));
    group.sample_size(10);
    group.bench_function("trail_100k", |b| {
        b.iter(|| verify_trail(dir.path(), &VerifyOptions::default()).expect("verifies"))
    });
    group.finish();
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
