//! The trail's own throughput: serializing and chaining events, the SIEM formats' encoders,
//! each sink, verification, a follower's catch-up (PostgreSQL, NATS, syslog, webhook), the
//! collector, and the detectors.
//!
//! `cargo bench --bench pipeline`
//!
//! The PostgreSQL and NATS sinks are measured against `AUDIT_TEST_POSTGRES_URL` /
//! `AUDIT_TEST_NATS_URL` (default: the loopback servers), in a table and a stream of their
//! own that are dropped afterwards; when a server is unreachable its bench prints SKIPPED.

use std::time::Duration;

use audit_layer::collect::Collector;
use audit_layer::detect::{
    BruteForce, CredentialStuffing, DenialBurst, Detector, MassExport, PrivilegeGrant,
};
use audit_layer::file::{
    GENESIS, JsonlFileSink, PublicKey, VerifyOptions, link_hash, verify_trail,
};
use audit_layer::format::Format;
use audit_layer::siem::{SyslogFollower, WebhookFollower};
use audit_layer::sink::nats::NatsSink;
use audit_layer::sink::postgres::PostgresSink;
use audit_layer::sink::{MemorySink, Sink, TracingSink};
use audit_layer::{Actor, AuditEvent, AuditTrail, AuditTrailBuilder, Category, Outcome};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

#[path = "common/events.rs"]
mod events;

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
    formats(c, &event);

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
            .build();
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

    service_sinks(c, &batch);

    // A trail of 100,000 events to verify and to follow.
    let dir = write_trail(&runtime, &batch, 100_000);
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

    follower_catch_up(c, dir.path(), events);
    if std::env::args().any(|arg| arg == "--bench") {
        collector_end_to_end(c, dir.path(), events);
    } else {
        // Under `cargo test --benches` (unoptimized, each bench once) 100,000 lines would
        // take the collector minutes: a small trail of its own.
        let small = write_trail(&runtime, &batch, 4_096);
        let lines = verify_trail(small.path(), &VerifyOptions::default())
            .expect("verifies")
            .events;
        collector_end_to_end(c, small.path(), lines);
    }
}

/// Each SIEM format's encoder against `audit/1`'s on the same events: a request, and a
/// role change with its before, after and changes (the target: within 2x of `audit/1`).
fn formats(c: &mut Criterion, request: &AuditEvent) {
    let role_change = events::role_change();
    for (name, event) in [("request", request), ("role_change", &role_change)] {
        let mut group = c.benchmark_group(format!("format_{name}"));
        group.throughput(Throughput::Elements(1));
        for format in Format::ALL {
            group.bench_function(format.name(), |b| {
                let mut buf = Vec::with_capacity(2048);
                b.iter(|| {
                    buf.clear();
                    format.encode(event, &mut buf).expect("encodes");
                })
            });
        }
        group.finish();
    }
}

/// A closed trail of `events` events (`batch`, with ids of their own, over and over).
fn write_trail(
    runtime: &tokio::runtime::Runtime,
    batch: &[AuditEvent],
    events: usize,
) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut sink = JsonlFileSink::new(dir.path());
    runtime.block_on(async {
        for _ in 0..events.div_ceil(batch.len()) {
            let fresh: Vec<AuditEvent> = batch
                .iter()
                .map(|event| {
                    let mut event = event.clone();
                    event.id = uuid::Uuid::now_v7();
                    event
                })
                .collect();
            sink.write_batch(&fresh).await.expect("write");
        }
        sink.close().await.expect("close");
    });
    // The sink and its lock go here: the follower benches open the trail again.
    dir
}

/// A follower catching up after an outage: a trail of 100,000 events opened with a
/// follower whose store is empty, timed until the store holds every line. Each round ships
/// into a table or stream of its own, made and dropped untimed.
fn follower_catch_up(c: &mut Criterion, dir: &std::path::Path, lines: u64) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("follower_catch_up");
    group.throughput(Throughput::Elements(lines));
    group.sample_size(10);
    // `store(round)` makes a follower for a store of its own; `drop_store(round)` removes it.
    let mut run =
        |name: &str,
         store: &dyn Fn(u32) -> Box<dyn FnOnce(AuditTrailBuilder) -> AuditTrailBuilder>,
         drop_store: &dyn Fn(u32)| {
            let mut round = 0;
            group.bench_function(name, |b| {
                b.iter_custom(|iterations| {
                    let mut took = Duration::ZERO;
                    for _ in 0..iterations {
                        round += 1;
                        let with_follower = store(round);
                        let started = std::time::Instant::now();
                        let audit =
                            with_follower(AuditTrail::builder().sink(JsonlFileSink::new(dir)))
                                .build()
                                .expect("trail");
                        loop {
                            let status = audit.followers().remove(0);
                            if status.synced >= lines && status.behind_events == 0 {
                                break;
                            }
                            assert!(
                                started.elapsed() < Duration::from_secs(120),
                                "{name} did not catch up: {status:?}"
                            );
                            std::thread::sleep(Duration::from_millis(2));
                        }
                        took += started.elapsed();
                        runtime.block_on(audit.shutdown()).expect("shutdown");
                        drop_store(round);
                    }
                    took
                })
            });
        };

    let postgres_url = std::env::var("AUDIT_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let admin = runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(&postgres_url, tokio_postgres::NoTls)
            .await
            .ok()?;
        tokio::spawn(connection);
        Some(client)
    });
    let bench = uuid::Uuid::new_v4().simple().to_string();
    match &admin {
        Some(admin) => run(
            "postgres",
            &|round| {
                let follower = PostgresSink::builder(&postgres_url)
                    .table(format!("audit_bench_{bench}_{round}"))
                    .build()
                    .expect("postgres follower");
                Box::new(move |builder: AuditTrailBuilder| builder.follower(follower))
            },
            &|round| {
                runtime
                    .block_on(
                        admin.batch_execute(&format!("DROP TABLE audit_bench_{bench}_{round}")),
                    )
                    .expect("drop the bench table");
            },
        ),
        None => eprintln!("*** SKIPPED postgres follower bench: {postgres_url} is unreachable"),
    }

    let nats_url =
        std::env::var("AUDIT_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned());
    let jetstream = runtime.block_on(async {
        async_nats::connect(nats_url.as_str())
            .await
            .ok()
            .map(async_nats::jetstream::new)
    });
    match &jetstream {
        Some(jetstream) => run(
            "nats",
            &|round| {
                let follower = NatsSink::builder(&nats_url)
                    .stream(format!("AUDIT_BENCH_{bench}_{round}"))
                    .build()
                    .expect("nats follower");
                Box::new(move |builder: AuditTrailBuilder| builder.follower(follower))
            },
            &|round| {
                runtime
                    .block_on(jetstream.delete_stream(format!("AUDIT_BENCH_{bench}_{round}")))
                    .expect("delete the bench stream");
            },
        ),
        None => eprintln!("*** SKIPPED nats follower bench: {nats_url} is unreachable"),
    }

    // The SIEM followers, each to a receiver of the bench's own on loopback (a syslog
    // listener that reads and drops, an HTTP server that answers 200), from a cursor
    // removed after each round.
    let receivers = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("receivers' runtime");
    let syslog = receivers.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut stream, &mut tokio::io::sink()).await;
                });
            }
        });
        addr
    });
    let webhook = receivers.block_on(async {
        let app = axum::Router::new()
            .route(
                "/hook",
                axum::routing::post(
                    |body: axum::body::Bytes| async move { body.len().to_string() },
                ),
            )
            .layer(axum::extract::DefaultBodyLimit::disable());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        addr
    });
    let forget_cursors = |_round| {
        for entry in std::fs::read_dir(dir.join("followers"))
            .expect("followers")
            .flatten()
        {
            if entry.path().extension().is_some_and(|ext| ext == "cursor") {
                std::fs::remove_file(entry.path()).expect("remove the cursor");
            }
        }
    };
    run(
        "syslog_ocsf",
        &|_round| {
            let follower = SyslogFollower::builder(format!("tcp://{syslog}"))
                .build()
                .expect("syslog follower");
            Box::new(move |builder: AuditTrailBuilder| builder.follower(follower))
        },
        &forget_cursors,
    );
    run(
        "webhook_ocsf",
        &|_round| {
            let follower = WebhookFollower::builder(format!("http://{webhook}/hook"))
                .secret(b"bench".to_vec())
                .build()
                .expect("webhook follower");
            Box::new(move |builder: AuditTrailBuilder| builder.follower(follower))
        },
        &forget_cursors,
    );
    group.finish();
}

/// The collector end to end: a stream holding the 100,000-event trail and its checkpoints
/// (published once, untimed, by a NATS follower), taken by a collector with a consumer and
/// a table of their own per round, timed until the central store counts every line, each
/// checked against its instance's chain and the signed checkpoints.
fn collector_end_to_end(c: &mut Criterion, dir: &std::path::Path, lines: u64) {
    let postgres_url = std::env::var("AUDIT_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let nats_url =
        std::env::var("AUDIT_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned());
    // The collector on a worker thread of its own, as `audit collect` runs it.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let services = runtime.block_on(async {
        let (admin, connection) = tokio_postgres::connect(&postgres_url, tokio_postgres::NoTls)
            .await
            .ok()?;
        tokio::spawn(connection);
        let jetstream =
            async_nats::jetstream::new(async_nats::connect(nats_url.as_str()).await.ok()?);
        Some((admin, jetstream))
    });
    let Some((admin, jetstream)) = services else {
        eprintln!("*** SKIPPED collector bench: {postgres_url} or {nats_url} is unreachable");
        return;
    };
    // Short: the table's name and its suffixes stay within PostgreSQL's 63 bytes.
    let bench = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
    let stream = format!("AUDIT_BENCH_COLLECT_{bench}");
    let fill = AuditTrail::builder()
        .sink(JsonlFileSink::new(dir))
        .follower(
            NatsSink::builder(&nats_url)
                .stream(&stream)
                .build()
                .expect("nats follower"),
        )
        .build()
        .expect("trail");
    let started = std::time::Instant::now();
    while fill.followers()[0].synced < lines {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the stream did not fill"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    runtime.block_on(fill.shutdown()).expect("shutdown");
    let public_key = PublicKey::from_file(dir.join("signing.pub")).expect("the trail's key");

    let mut group = c.benchmark_group("collector");
    group.throughput(Throughput::Elements(lines));
    group.sample_size(10);
    let mut round = 0;
    group.bench_function("nats_to_postgres_verified", |b| {
        b.iter_custom(|iterations| {
            let mut took = Duration::ZERO;
            for _ in 0..iterations {
                round += 1;
                let table = format!("audit_bench_collect_{bench}_{round}");
                let store = || {
                    PostgresSink::builder(&postgres_url)
                        .table(&table)
                        .build()
                        .expect("postgres store")
                };
                let collector = Collector::builder(
                    NatsSink::builder(&nats_url)
                        .stream(&stream)
                        .build()
                        .expect("nats source"),
                    store(),
                )
                .consumer(format!("bench-{round}"))
                .checkpoint_table(format!("{table}_checkpoints"))
                .public_key(public_key.clone())
                .build()
                .expect("collector");
                let mut report = store();
                let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
                let started = std::time::Instant::now();
                let running = runtime.spawn(collector.run(async {
                    let _ = stopped.await;
                }));
                runtime.block_on(async {
                    loop {
                        let stored =
                            report.instances().await.ok().and_then(|instances| {
                                instances.first().map(|i| (i.lines, i.faults))
                            });
                        if let Some((stored, faults)) = stored {
                            assert_eq!(faults, 0, "the bench trail verifies");
                            if stored >= lines {
                                break;
                            }
                        }
                        assert!(
                            started.elapsed() < Duration::from_secs(120),
                            "the collector did not catch up: {stored:?}"
                        );
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                });
                took += started.elapsed();
                let _ = stop.send(());
                runtime
                    .block_on(running)
                    .expect("collector task")
                    .expect("collector");
                runtime.block_on(async {
                    for table in [
                        format!("{table}_checkpoints"),
                        format!("{table}_instances"),
                        format!("{table}_pending"),
                        table.clone(),
                    ] {
                        admin
                            .batch_execute(&format!("DROP TABLE IF EXISTS {table}"))
                            .await
                            .expect("drop a bench table");
                    }
                    let stream = jetstream.get_stream(&stream).await.expect("stream");
                    stream
                        .delete_consumer(&format!("bench-{round}"))
                        .await
                        .expect("delete the bench consumer");
                });
            }
            took
        })
    });
    group.finish();
    runtime
        .block_on(jetstream.delete_stream(&stream))
        .expect("delete the bench stream");
}

/// Batches of 512 events with fresh ids (both sinks skip an id they already hold).
fn service_sinks(c: &mut Criterion, batch: &[AuditEvent]) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let fresh_batch = |len: usize| -> Vec<AuditEvent> {
        batch
            .iter()
            .cycle()
            .take(len)
            .map(|event| {
                let mut event = event.clone();
                event.id = uuid::Uuid::now_v7();
                event
            })
            .collect()
    };
    let fresh = || fresh_batch(batch.len());
    let mut group = c.benchmark_group("service_sinks");
    group.throughput(Throughput::Elements(batch.len() as u64));
    group.sample_size(20);

    let postgres_url = std::env::var("AUDIT_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    // A trail built with `.batch_size(4096)` hands the sink batches of 4,096.
    for (len, connections) in [(512, 1), (512, 2), (4096, 1)] {
        let table = format!("audit_bench_{}", uuid::Uuid::new_v4().simple());
        let mut sink = PostgresSink::builder(&postgres_url)
            .table(&table)
            .connections(connections)
            .build()
            .expect("postgres sink");
        if let Err(error) = runtime.block_on(sink.write_batch(&fresh())) {
            eprintln!("*** SKIPPED postgres sink bench: {postgres_url}: {error}");
            break;
        }
        group.throughput(Throughput::Elements(len as u64));
        group.bench_function(
            format!("postgres_write_batch_{len}_{connections}_connections"),
            |b| {
                b.iter_batched(
                    || fresh_batch(len),
                    |events| runtime.block_on(sink.write_batch(&events)).expect("insert"),
                    criterion::BatchSize::PerIteration,
                )
            },
        );
        runtime.block_on(async {
            let (client, connection) =
                tokio_postgres::connect(&postgres_url, tokio_postgres::NoTls)
                    .await
                    .expect("connect");
            tokio::spawn(connection);
            client
                .batch_execute(&format!("DROP TABLE {table}"))
                .await
                .expect("drop the bench table");
        });
    }

    let nats_url =
        std::env::var("AUDIT_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned());
    group.throughput(Throughput::Elements(batch.len() as u64));
    let stream = format!("AUDIT_BENCH_{}", uuid::Uuid::new_v4().simple());
    let prefix = format!("audit_bench_{}", uuid::Uuid::new_v4().simple());
    let mut sink = NatsSink::builder(&nats_url)
        .stream(&stream)
        .subject_prefix(&prefix)
        .build()
        .expect("nats sink");
    match runtime.block_on(sink.write_batch(&fresh())) {
        Ok(()) => {
            group.bench_function("nats_write_batch_512", |b| {
                b.iter_batched(
                    fresh,
                    |events| {
                        runtime
                            .block_on(sink.write_batch(&events))
                            .expect("publish")
                    },
                    criterion::BatchSize::PerIteration,
                )
            });
            runtime.block_on(async {
                let client = async_nats::connect(nats_url.as_str())
                    .await
                    .expect("connect");
                async_nats::jetstream::new(client)
                    .delete_stream(&stream)
                    .await
                    .expect("delete the bench stream");
            });
        }
        Err(error) => eprintln!("*** SKIPPED nats sink bench: {nats_url}: {error}"),
    }
    group.finish();
}

/// What a detector costs the writer per event: the brute-force and privilege-grant pair, and
/// the demo's five, on ordinary requests; and the login detectors under a spray of failed
/// logins for usernames (or from addresses) that never repeat (their worst case: a key per
/// event, and the table filling up and starting over).
fn detectors(c: &mut Criterion) {
    let mut group = c.benchmark_group("detectors");
    group.throughput(Throughput::Elements(1));
    let request = event();
    let mut alerts = Vec::new();
    group.bench_function("demo_pair_on_a_request", |b| {
        let mut brute_force = BruteForce::new("auth.login");
        let mut grant = PrivilegeGrant::new(["admin"]);
        b.iter(|| {
            brute_force.observe(&request, &mut alerts);
            grant.observe(&request, &mut alerts);
        });
        assert!(alerts.is_empty());
    });
    group.bench_function("demo_five_on_a_request", |b| {
        let mut detectors: [Box<dyn Detector>; 5] = [
            Box::new(BruteForce::logins()),
            Box::new(CredentialStuffing::logins()),
            Box::new(DenialBurst::new()),
            Box::new(MassExport::new()),
            Box::new(PrivilegeGrant::new(["admin"])),
        ];
        b.iter(|| {
            for detector in &mut detectors {
                detector.observe(&request, &mut alerts);
            }
        });
        assert!(alerts.is_empty());
    });
    group.bench_function("credential_stuffing_spray_of_new_addresses", |b| {
        let mut detector = CredentialStuffing::logins().max_tracked(10_000);
        let mut failures = (0u32..).map(|n| {
            let mut failure = AuditEvent::new(
                Category::Auth,
                "auth.login",
                Outcome::Failure,
                Actor::anonymous(),
            )
            .with_detail("username", "alice");
            let mut source = audit_layer::event::Source::default();
            source.ip = Some(std::net::IpAddr::from(n.to_be_bytes()));
            failure.source = Some(source);
            failure
        });
        b.iter_batched(
            || failures.next().expect("endless"),
            |failure| {
                detector.observe(&failure, &mut alerts);
                failure
            },
            criterion::BatchSize::SmallInput,
        );
    });
    group.bench_function("bruteforce_spray_of_new_usernames", |b| {
        let mut detector = BruteForce::new("auth.login").max_tracked(10_000);
        let mut failures = (0u64..).map(|n| {
            AuditEvent::new(
                Category::Auth,
                "auth.login",
                Outcome::Failure,
                Actor::anonymous(),
            )
            .with_detail("username", format!("user{n}"))
        });
        b.iter_batched(
            || failures.next().expect("endless"),
            |failure| {
                detector.observe(&failure, &mut alerts);
                failure
            },
            criterion::BatchSize::SmallInput,
        );
    });
    group.finish();
}

criterion_group!(benches, pipeline, detectors);
criterion_main!(benches);
