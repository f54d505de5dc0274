//! The server that `benches/load.sh` and `benches/ab.sh` drive: one hello-world axum app,
//! served several ways.
//!
//! ```text
//! cargo run --release --example load_server -- \
//!     <bare|trace|audit|audit-discard|audit-services|audit-followers|audit-followers-down|
//!      floor-layer|floor-handoff>
//!     [--addr HOST:PORT] [--dir DIR] [--preallocate BYTES] [--write-delay MICROS]
//!     [--busy-ns NANOS]
//! ```
//!
//! - `bare`: the router alone;
//! - `trace`: what teams use today for access logs: tower-http's `TraceLayer` (spans and
//!   responses at INFO, so every request writes a line) with a JSON `tracing-subscriber`
//!   writing to a file through `tracing-appender::non_blocking`;
//! - `audit`: the audit layer with a chained, checkpointed JSON Lines trail (with
//!   `--preallocate BYTES`, its file zero-filled that far ahead:
//!   `JsonlFileSinkBuilder::preallocate`; with `--write-delay MICROS`, the trail's
//!   `AuditTrailBuilder::write_delay` instead of its default);
//! - `audit-discard`: a measuring aid, not a setup to run: the audit layer, queue and writer
//!   with a sink that stores nothing, so that what the file sink adds is the difference from
//!   `audit` (`OLD_MODE=audit-discard NEW_MODE=audit benches/ab.sh BIN BIN`);
//! - `--busy-ns NANOS`, with any mode, another measuring aid: `GET /hello` first spins for
//!   that long, so that a known cost of the application's own code can be compared, end to
//!   end, with what a layer adds (`OLD_ARGS="--busy-ns 1500" OLD_MODE=bare NEW_MODE=audit
//!   benches/ab.sh BIN BIN`);
//! - `floor-layer` and `floor-handoff`, measuring aids too (`shared/floor.rs`): the router
//!   with a layer that does nothing, and with one that hands a small record of each request
//!   to a thread that drops it: the least any layer, and any per-request record kept off the
//!   request's thread, costs here;
//! - `audit-services`: the same trail plus the PostgreSQL and NATS sinks, at
//!   `AUDIT_TEST_POSTGRES_URL` / `AUDIT_TEST_NATS_URL` (default: the loopback servers), in a
//!   table and a stream of the run's own, removed at exit;
//! - `audit-followers`: the trail with PostgreSQL and NATS as its followers (a table and a
//!   stream of the run's own, removed at exit), and `audit-followers-down`: the same
//!   followers pointed at a closed port, their servers down for the whole run, so that
//!   what an outage costs the application is the difference
//!   (`OLD_MODE=audit-followers NEW_MODE=audit-followers-down benches/ab.sh BIN BIN`).
//!
//! Routes: `GET /hello`, and `POST /settings/{id}` with `{"value": N}`, which in `audit`
//! mode is a `#[sensitive]` handler: its event, with the setting's state before and after,
//! is synced to disk before the response leaves (group commit).
//!
//! The server prints `listening on ADDR` once it accepts connections, and on SIGTERM or
//! Ctrl-C drains what it recorded before it exits.

#[path = "shared/floor.rs"]
mod floor;
#[path = "shared/shutdown.rs"]
mod shutdown;

// `cargo build --release --example load_server --features mimalloc` (`ALLOCATOR=mimalloc
// benches/load.sh`): the same servers on the allocator many production servers pick.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use audit_layer::{AuditEvent, AuditTrail, AuditTrailBuilder, Auditable, BoxError, sensitive};

use audit_layer::sink::nats::NatsSink;

use audit_layer::sink::postgres::PostgresSink;

use audit_layer::sink::{BoxFuture, Sink, SinkError};

use audit_layer::file::JsonlFileSink;

use audit_layer::sensitive::Snapshot;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tower_http::trace::{DefaultMakeSpan, DefaultOnResponse, TraceLayer};
use tracing::Level;

use crate::floor::FloorLayer;
use crate::shutdown::shutdown_signal;

/// How the router is wrapped.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Bare,
    Trace,
    Audit,
    AuditDiscard,
    AuditServices,
    AuditFollowers,
    AuditFollowersDown,
    FloorLayer,
    FloorHandoff,
}

/// The sink of `audit-discard`: takes every batch and keeps none of it.
struct DiscardSink;

impl Sink for DiscardSink {
    fn name(&self) -> &str {
        "discard"
    }

    fn write_batch<'a>(
        &'a mut self,
        events: &'a [AuditEvent],
    ) -> BoxFuture<'a, Result<(), SinkError>> {
        // Looked at, so that the optimizer cannot leave out what builds the events.
        std::hint::black_box(events);
        Box::pin(async { Ok(()) })
    }
}

/// Where `audit-services` delivers, named for this run only.
struct Services {
    postgres_url: String,
    table: String,
    nats_url: String,
    stream: String,
}

impl Services {
    fn for_this_run() -> Self {
        let run = uuid::Uuid::new_v4().simple().to_string();
        Self {
            postgres_url: std::env::var("AUDIT_TEST_POSTGRES_URL")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned()),
            table: format!("audit_load_{run}"),
            nats_url: std::env::var("AUDIT_TEST_NATS_URL")
                .unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned()),
            stream: format!("AUDIT_LOAD_{run}"),
        }
    }

    fn add_sinks(&self, builder: AuditTrailBuilder) -> Result<AuditTrailBuilder, String> {
        let postgres = PostgresSink::builder(&self.postgres_url)
            .table(&self.table)
            .build()
            .map_err(|e| e.to_string())?;
        let nats = NatsSink::builder(&self.nats_url)
            .stream(&self.stream)
            .subject_prefix(self.stream.to_lowercase())
            .build()
            .map_err(|e| e.to_string())?;
        Ok(builder.sink(postgres).sink(nats))
    }

    /// The same stores as followers of the trail; `down`: at a closed port.
    fn add_followers(
        &self,
        builder: AuditTrailBuilder,
        down: bool,
    ) -> Result<AuditTrailBuilder, String> {
        let (postgres_url, nats_url) = if down {
            (
                "postgres://postgres@127.0.0.1:9/test".to_owned(),
                "nats://127.0.0.1:9".to_owned(),
            )
        } else {
            (self.postgres_url.clone(), self.nats_url.clone())
        };
        let postgres = PostgresSink::builder(&postgres_url)
            .table(&self.table)
            .build()
            .map_err(|e| e.to_string())?;
        let nats = NatsSink::builder(&nats_url)
            .stream(&self.stream)
            .subject_prefix(self.stream.to_lowercase())
            .build()
            .map_err(|e| e.to_string())?;
        Ok(builder.follower(postgres).follower(nats))
    }

    /// Drops the run's table and stream.
    async fn remove(&self) -> Result<(), String> {
        let (client, connection) =
            tokio_postgres::connect(&self.postgres_url, tokio_postgres::NoTls)
                .await
                .map_err(|e| format!("postgres: {e}"))?;
        tokio::spawn(connection);
        client
            .batch_execute(&format!("DROP TABLE IF EXISTS {}", self.table))
            .await
            .map_err(|e| format!("postgres: {e}"))?;
        let nats = async_nats::connect(self.nats_url.as_str())
            .await
            .map_err(|e| format!("nats: {e}"))?;
        async_nats::jetstream::new(nats)
            .delete_stream(&self.stream)
            .await
            .map_err(|e| format!("nats: {e}"))?;
        Ok(())
    }
}

/// A value that admins change: the sensitive route's resource.
#[derive(Clone, Serialize, Auditable)]
#[audit(resource = "setting")]
struct Setting {
    #[audit(id)]
    id: u64,
    value: u64,
}

#[derive(Deserialize)]
struct NewValue {
    value: u64,
}

#[derive(Clone, Default)]
struct Settings(Arc<RwLock<HashMap<u64, Setting>>>);

impl Settings {
    fn set(&self, id: u64, value: u64) -> Setting {
        let setting = Setting { id, value };
        let mut settings = self
            .0
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        settings.insert(id, setting.clone());
        setting
    }

    fn get(&self, id: u64) -> Option<Setting> {
        let settings = self
            .0
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        settings.get(&id).cloned()
    }
}

impl Snapshot<Settings> for Setting {
    type Key = u64;

    async fn load(settings: &Settings, id: &u64) -> Result<Option<Self>, BoxError> {
        Ok(settings.get(*id))
    }
}

/// `--busy-ns`: how long `GET /hello` spins before it answers (0: not at all).
static BUSY_NS: AtomicU64 = AtomicU64::new(0);

async fn hello() -> &'static str {
    let busy = BUSY_NS.load(Ordering::Relaxed);
    if busy > 0 {
        // Spins rather than sleeps: the point is CPU spent on the request's thread.
        let start = Instant::now();
        while start.elapsed() < Duration::from_nanos(busy) {
            std::hint::spin_loop();
        }
    }
    "hello"
}

/// The unaudited update, for `bare` and `trace`.
async fn set_value(
    State(settings): State<Settings>,
    Path(id): Path<u64>,
    Json(body): Json<NewValue>,
) -> Json<Setting> {
    Json(settings.set(id, body.value))
}

/// The same update as a sensitive handler.
#[sensitive(action = "setting.update", resource = Setting, key = id)]
async fn set_value_audited(
    State(settings): State<Settings>,
    Path(id): Path<u64>,
    Json(body): Json<NewValue>,
) -> Json<Setting> {
    Json(settings.set(id, body.value))
}

/// What the command line asks for.
struct Args {
    mode: Mode,
    addr: SocketAddr,
    dir: PathBuf,
    preallocate: u64,
    write_delay: Option<Duration>,
    busy_ns: u64,
}

fn parse_args() -> Result<Args, String> {
    const USAGE: &str = "usage: load_server \
         <bare|trace|audit|audit-discard|audit-services|audit-followers|audit-followers-down|\
         floor-layer|floor-handoff> \
         [--addr HOST:PORT] [--dir DIR] [--preallocate BYTES] [--write-delay MICROS] \
         [--busy-ns NANOS]";
    let mut args = std::env::args().skip(1);
    let mode = match args.next().as_deref() {
        Some("bare") => Mode::Bare,
        Some("trace") => Mode::Trace,
        Some("audit") => Mode::Audit,
        Some("audit-discard") => Mode::AuditDiscard,
        Some("audit-services") => Mode::AuditServices,
        Some("audit-followers") => Mode::AuditFollowers,
        Some("audit-followers-down") => Mode::AuditFollowersDown,
        Some("floor-layer") => Mode::FloorLayer,
        Some("floor-handoff") => Mode::FloorHandoff,
        _ => return Err(USAGE.to_owned()),
    };
    let mut addr = "127.0.0.1:3100".to_owned();
    let mut dir = PathBuf::from("./load-server-out");
    let mut preallocate = 0;
    let mut write_delay = None;
    let mut busy_ns = 0;
    while let Some(arg) = args.next() {
        let value = args
            .next()
            .ok_or_else(|| format!("{arg} needs a value; {USAGE}"))?;
        match arg.as_str() {
            "--addr" => addr = value,
            "--dir" => dir = PathBuf::from(value),
            "--preallocate" => {
                preallocate = value
                    .parse()
                    .map_err(|e| format!("--preallocate `{value}`: {e}"))?;
            }
            "--write-delay" => {
                let micros = value
                    .parse()
                    .map_err(|e| format!("--write-delay `{value}`: {e}"))?;
                write_delay = Some(Duration::from_micros(micros));
            }
            "--busy-ns" => {
                busy_ns = value
                    .parse()
                    .map_err(|e| format!("--busy-ns `{value}`: {e}"))?;
            }
            _ => return Err(format!("unknown argument `{arg}`; {USAGE}")),
        }
    }
    let addr = addr.parse().map_err(|e| format!("--addr `{addr}`: {e}"))?;
    Ok(Args {
        mode,
        addr,
        dir,
        preallocate,
        write_delay,
        busy_ns,
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("load_server: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), String> {
    let Args {
        mode,
        addr,
        dir,
        preallocate,
        write_delay,
        busy_ns,
    } = parse_args()?;
    BUSY_NS.store(busy_ns, Ordering::Relaxed);
    let settings = Settings::default();
    let plain = Router::new().route("/hello", get(hello));

    // Kept alive until the end: dropping the guard flushes the tracing file.
    let mut tracing_guard = None;
    let mut audit = None;
    let mut drain = None;
    let services = matches!(
        mode,
        Mode::AuditServices | Mode::AuditFollowers | Mode::AuditFollowersDown
    )
    .then(Services::for_this_run);
    let app = match mode {
        Mode::Bare => plain
            .route("/settings/{id}", post(set_value))
            .with_state(settings),
        Mode::FloorLayer | Mode::FloorHandoff => {
            let layer = if mode == Mode::FloorLayer {
                FloorLayer::identity()
            } else {
                let (layer, thread) = FloorLayer::handoff();
                drain = Some(thread);
                layer
            };
            plain
                .route("/settings/{id}", post(set_value))
                .with_state(settings)
                .layer(layer)
        }
        Mode::Trace => {
            std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            let appender = tracing_appender::rolling::never(&dir, "access.jsonl");
            let (writer, guard) = tracing_appender::non_blocking(appender);
            tracing_guard = Some(guard);
            tracing_subscriber::fmt()
                .json()
                .with_writer(writer)
                .with_max_level(Level::INFO)
                .init();
            plain
                .route("/settings/{id}", post(set_value))
                .with_state(settings)
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(DefaultMakeSpan::new().level(Level::INFO))
                        .on_response(DefaultOnResponse::new().level(Level::INFO)),
                )
        }
        Mode::Audit
        | Mode::AuditDiscard
        | Mode::AuditServices
        | Mode::AuditFollowers
        | Mode::AuditFollowersDown => {
            let mut builder = AuditTrail::builder();
            builder = if mode == Mode::AuditDiscard {
                builder.sink(DiscardSink)
            } else {
                builder.sink(
                    JsonlFileSink::builder(&dir)
                        .preallocate(preallocate)
                        .build(),
                )
            };
            if let Some(delay) = write_delay {
                builder = builder.write_delay(delay);
            }
            if let Some(services) = &services {
                builder = match mode {
                    Mode::AuditServices => services.add_sinks(builder)?,
                    _ => services.add_followers(builder, mode == Mode::AuditFollowersDown)?,
                };
            }
            let trail = builder.build().map_err(|e| format!("audit trail: {e}"))?;
            let app = plain
                .route("/settings/{id}", post(set_value_audited))
                .with_state(settings)
                .layer(trail.layer());
            audit = Some(trail);
            app
        }
    };

    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("bind {addr}: {e}"))?;
    // Before the line scripts wait for: see `shutdown_signal`.
    let shutdown = shutdown_signal();
    println!("listening on {addr}");
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
    .map_err(|e| format!("server error: {e}"))?;

    if let Some(trail) = audit {
        trail
            .shutdown()
            .await
            .map_err(|e| format!("audit shutdown: {e}"))?;
        let stats = trail.stats();
        println!(
            "audit accepted={} written={} lost={} syncs={} queue_full={}",
            stats.accepted, stats.written, stats.lost, stats.syncs, stats.queue_full
        );
    }
    if let Some(drain) = drain {
        let counts = drain.finish();
        println!(
            "floor drained={} dropped={}",
            counts.drained, counts.dropped
        );
    }
    // With its followers down, the run made no table or stream.
    if let Some(services) = services.filter(|_| mode != Mode::AuditFollowersDown) {
        services.remove().await?;
    }
    drop(tracing_guard);
    Ok(())
}
