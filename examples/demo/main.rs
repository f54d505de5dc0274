//! The demo server: a small admin application that shows what `audit-layer` records.
//!
//! ```text
//! cargo run --example demo            # http://127.0.0.1:3000, trail in ./audit-log
//! curl -s localhost:3000/hello
//! curl -s -XPOST localhost:3000/login -H 'content-type: application/json' \
//!      -d '{"username":"alice","password":"alice-password"}'
//! tail -f audit-log/*.jsonl
//! ```
//!
//! The admin routes (`admin.rs`) are `#[sensitive]` handlers: their events carry the state
//! of what they changed, before and after. The record types (`store.rs`) derive `Auditable`.
//!
//! Settings (see `../shared/DEMO.md` for the whole contract):
//! - `DEMO_ADDR` or `--addr`: where to listen (`127.0.0.1:3000`);
//! - `AUDIT_DIR`: the trail's directory (`./audit-log`);
//! - `AUDIT_POSTGRES_URL`: also copy every event to PostgreSQL, table `audit_events` (a
//!   follower of the trail: an outage never stalls the demo);
//! - `AUDIT_NATS_URL`: also copy every event to NATS JetStream, stream `AUDIT`, subjects
//!   `audit.<trail id>.<category>.<action>` (a follower too; the trail id is in
//!   `AUDIT_DIR/trail.id`); `AUDIT_NATS_STREAM` names another stream (its subjects: the
//!   name in lower case), for instances that `audit collect` gathers apart from others;
//! - `AUDIT_SYSLOG_URL` (`tcp://host:port`), `AUDIT_WEBHOOK_URL` (+ `AUDIT_WEBHOOK_SECRET`,
//!   which signs each batch): also ship every event to a SIEM's syslog receiver or webhook
//!   (followers too), in the format `AUDIT_SIEM_FORMAT` names (`ocsf`, `ecs`, `cef`, `audit`);
//! - `DEMO_TRUSTED_PROXIES`: comma-separated CIDRs allowed to set `X-Forwarded-For` (none);
//! - `AUDIT_SIGNING_KEY`, `AUDIT_CHAIN_KEY`: hex keys for checkpoints and the chain
//!   (a demo signing key is generated in the trail directory otherwise);
//! - `AUDIT_PREALLOCATE`: bytes to zero-fill the trail file ahead of its last line, for
//!   faster syncs (`0`, off).

/// glibc's malloc keeps a freed block of Argon2's size in its arena for the next one (its
/// mmap threshold rises to the largest block freed), and with a few threads hashing, a
/// burst of logins left hundreds of MiB resident for good; mimalloc gives them back.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod admin;
mod auth;
mod coverage;
mod hashing;
#[path = "../shared/shutdown.rs"]
mod shutdown;
mod store;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use audit_layer::coverage::{CoverageReport, CoverageRules, Router, delete, get, post, put};
use audit_layer::detect::{
    BruteForce, CredentialStuffing, DenialBurst, MassExport, PrivilegeGrant,
};
use audit_layer::file::{ChainKey, CheckpointKey, JsonlFileSink};
use audit_layer::follow::Follower;
use audit_layer::format::Format;
use audit_layer::merkle::TreeFollower;
use audit_layer::siem::{SyslogFollower, WebhookFollower};
use audit_layer::sink::nats::NatsSink;
use audit_layer::sink::postgres::PostgresSink;
use audit_layer::{AuditContext, AuditTrail, Category, ConfigError, Health};
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::{Json, middleware};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde::Deserialize;

use crate::auth::{CurrentUser, SESSION_COOKIE};
use crate::hashing::Hashers;
use crate::shutdown::shutdown_signal;
use crate::store::{SEEDED_USERS, Store};

/// The alert thresholds (DEMO.md, "Alerts"), each raising one alert per burst: failed
/// logins per username or per source IP within the window raise `security.bruteforce`, and
/// for many distinct usernames from one IP `security.credential_stuffing`; denials for one
/// actor raise `security.denial_burst`; a large export, or many exports by one actor,
/// `security.mass_export`; a role change to a privileged role `security.privilege.grant`.
const FAILED_LOGINS_PER_USERNAME: u32 = 5;
const FAILED_LOGINS_PER_SOURCE_IP: u32 = 10;
const DISTINCT_USERNAMES_PER_SOURCE_IP: u32 = 10;
const FAILED_LOGIN_WINDOW: Duration = Duration::from_secs(60);
const DENIALS_PER_ACTOR: u32 = 10;
const DENIAL_WINDOW: Duration = Duration::from_secs(60);
const EXPORTED_RECORDS: u64 = 1_000;
const EXPORTS_PER_ACTOR: u32 = 10;
const EXPORT_WINDOW: Duration = Duration::from_secs(600);
const PRIVILEGED_ROLES: [&str; 1] = ["admin"];
/// How long requests in flight may take to finish after SIGINT or SIGTERM.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// How long the trail may take, at shutdown, to deliver what it holds to a failing sink
/// before it writes those events to standard error.
const AUDIT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);
/// The log's name in the Merkle tree heads it signs (and in `audit verify-receipt`).
const MERKLE_ORIGIN: &str = "audit-demo.localhost/trail";
/// Threads that hash passwords: each holds Argon2's 19 MiB while it runs.
const HASHING_THREADS: usize = 2;
/// Logins and password changes waiting for a hashing thread; more wait to enter the queue.
const HASHING_QUEUE: usize = 64;

/// What handlers share.
#[derive(Debug)]
pub(crate) struct AppState {
    store: Store,
    /// Where passwords are hashed and checked.
    hashers: Hashers,
    audit: Arc<AuditTrail>,
    metrics: Option<PrometheusHandle>,
    /// The routes' audit status, served at /admin/audit/coverage.
    coverage: OnceLock<CoverageReport>,
}

/// The demo's settings, from the environment and the command line.
struct Settings {
    addr: SocketAddr,
    audit_dir: PathBuf,
    postgres_url: Option<String>,
    nats_url: Option<String>,
    nats_stream: Option<String>,
    syslog_url: Option<String>,
    webhook_url: Option<String>,
    webhook_secret: Option<String>,
    siem_format: Format,
    trusted_proxies: Vec<String>,
}

impl Settings {
    fn from_env() -> Result<Self, String> {
        let mut addr = std::env::var("DEMO_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--addr" => {
                    addr = args
                        .next()
                        .ok_or("--addr needs a value, like 127.0.0.1:3000")?
                }
                other => match other.strip_prefix("--addr=") {
                    Some(value) => addr = value.to_owned(),
                    None => {
                        return Err(format!(
                            "unknown argument `{other}` (expected --addr HOST:PORT)"
                        ));
                    }
                },
            }
        }
        let addr = addr
            .parse()
            .map_err(|_| format!("`{addr}` is not a socket address like 127.0.0.1:3000"))?;
        let audit_dir = std::env::var_os("AUDIT_DIR")
            .map_or_else(|| PathBuf::from("./audit-log"), PathBuf::from);
        let trusted_proxies = std::env::var("DEMO_TRUSTED_PROXIES")
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        let set = |name: &str| {
            std::env::var(name)
                .ok()
                .filter(|value| !value.trim().is_empty())
        };
        Ok(Self {
            addr,
            audit_dir,
            postgres_url: set("AUDIT_POSTGRES_URL"),
            nats_url: set("AUDIT_NATS_URL"),
            nats_stream: set("AUDIT_NATS_STREAM"),
            syslog_url: set("AUDIT_SYSLOG_URL"),
            webhook_url: set("AUDIT_WEBHOOK_URL"),
            webhook_secret: set("AUDIT_WEBHOOK_SECRET"),
            siem_format: match set("AUDIT_SIEM_FORMAT") {
                Some(name) => name
                    .parse()
                    .map_err(|e| format!("AUDIT_SIEM_FORMAT: {e}"))?,
                None => Format::Ocsf,
            },
            trusted_proxies,
        })
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,audit=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("demo: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), String> {
    let settings = Settings::from_env()?;

    // 1. The trail: JSON Lines files in AUDIT_DIR, client IPs from trusted proxies only.
    // Metrics through the `metrics` facade, served in Prometheus format at /metrics.
    let metrics = match PrometheusBuilder::new().install_recorder() {
        Ok(handle) => Some(handle),
        Err(error) => {
            eprintln!("demo: metrics disabled: {error}");
            None
        }
    };

    // The key that signs the trail's checkpoints signs its Merkle tree's heads too, so that
    // one event's receipt (`audit prove`) is checked with `signing.pub` alone.
    let signing_key = match CheckpointKey::from_env("AUDIT_SIGNING_KEY")
        .map_err(|e| format!("AUDIT_SIGNING_KEY: {e}"))?
    {
        Some(key) => key,
        None => CheckpointKey::load_or_generate(&settings.audit_dir)
            .map_err(|e| format!("AUDIT_DIR: {e}"))?,
    };
    let mut builder = AuditTrail::builder()
        .sink(file_sink(&settings.audit_dir, signing_key.clone())?)
        .follower(TreeFollower::new(MERKLE_ORIGIN, signing_key).map_err(|e| e.to_string())?);
    // Copies for queries and consumers, as followers of the file trail: each ships from its
    // own cursor on its own thread, so a server that is down only makes its copy fall
    // behind (/health says so) and never holds back a request; it catches up when the
    // server returns, after a restart too. The file trail stays the tamper-evident record.
    let mut copies = Vec::new();
    if let Some(url) = &settings.postgres_url {
        let follower = PostgresSink::new(url).map_err(|e| format!("AUDIT_POSTGRES_URL: {e}"))?;
        copies.push(Follower::name(&follower).to_owned());
        builder = builder.follower(follower);
    }
    if let Some(url) = &settings.nats_url {
        let mut follower = NatsSink::builder(url);
        if let Some(stream) = &settings.nats_stream {
            follower = follower.stream(stream);
        }
        let follower = follower
            .build()
            .map_err(|e| format!("AUDIT_NATS_URL, AUDIT_NATS_STREAM: {e}"))?;
        copies.push(Follower::name(&follower).to_owned());
        builder = builder.follower(follower);
    }
    // The SIEM's copies, in the format it reads: syslog and a signed webhook, followers too.
    if let Some(url) = &settings.syslog_url {
        let follower = SyslogFollower::builder(url)
            .format(settings.siem_format)
            .app_name("audit-demo")
            .build()
            .map_err(|e| format!("AUDIT_SYSLOG_URL: {e}"))?;
        copies.push(format!(
            "{} ({})",
            Follower::name(&follower),
            settings.siem_format
        ));
        builder = builder.follower(follower);
    }
    if settings.webhook_secret.is_some() && settings.webhook_url.is_none() {
        return Err("AUDIT_WEBHOOK_SECRET is set but AUDIT_WEBHOOK_URL is not".to_owned());
    }
    if let Some(url) = &settings.webhook_url {
        let mut follower = WebhookFollower::builder(url).format(settings.siem_format);
        if let Some(secret) = &settings.webhook_secret {
            follower = follower.secret(secret.as_bytes());
        }
        let follower = follower
            .build()
            .map_err(|e| format!("AUDIT_WEBHOOK_URL: {e}"))?;
        copies.push(format!(
            "{} ({})",
            Follower::name(&follower),
            settings.siem_format
        ));
        builder = builder.follower(follower);
    }
    let audit = builder
        .trusted_proxies(&settings.trusted_proxies)
        .skip_paths(["/health", "/metrics"])
        .label("service", "audit-demo")
        .detector(
            BruteForce::logins()
                .per_username(FAILED_LOGINS_PER_USERNAME)
                .per_source_ip(FAILED_LOGINS_PER_SOURCE_IP)
                .within(FAILED_LOGIN_WINDOW),
        )
        .detector(
            CredentialStuffing::logins()
                .distinct_usernames(DISTINCT_USERNAMES_PER_SOURCE_IP)
                .within(FAILED_LOGIN_WINDOW),
        )
        .detector(
            DenialBurst::new()
                .denials(DENIALS_PER_ACTOR)
                .within(DENIAL_WINDOW),
        )
        .detector(
            MassExport::new()
                .records(EXPORTED_RECORDS)
                .exports(EXPORTS_PER_ACTOR)
                .within(EXPORT_WINDOW),
        )
        .detector(PrivilegeGrant::new(PRIVILEGED_ROLES))
        .shutdown_timeout(AUDIT_SHUTDOWN_TIMEOUT)
        // Opens the trail directory first: a directory that cannot be used fails the start
        // with its reason, rather than holding back the first requests.
        .build_checked()
        .await
        .map_err(|e| configuration_errors(&e))?;
    let audit = Arc::new(audit);

    let state = Arc::new(AppState {
        audit: Arc::clone(&audit),
        metrics,
        store: Store::seeded()?,
        hashers: Hashers::start(HASHING_THREADS, HASHING_QUEUE)?,
        coverage: OnceLock::new(),
    });

    // 2. The routes, the audit layer around them, and authentication around that, so the
    //    layer finds the caller's `Actor` in the request extensions. `audit_layer::coverage`'s
    //    router is axum's with an inventory: it reports each route's audit status, warns at
    //    start-up of any sensitive-looking route that records only its request, and the
    //    report is served at /admin/audit/coverage.
    let routes = Router::new()
        .route("/hello", get(|| async { "hello" }))
        .route("/health", get(health))
        .route("/metrics", get(metrics_page))
        .route("/login", get(login_form).post(login))
        .route("/logout", post(logout))
        .route("/me", get(me))
        .route("/password", post(admin::change_password))
        .route("/admin/users", post(admin::create_user))
        .route("/admin/users/{id}/role", put(admin::change_role))
        .route("/admin/users/{id}", delete(admin::delete_user))
        // `{name}`, not `{key}`: a parameter named `key` counts as a secret (as `?key=` does)
        // and its segment would be recorded as `[REDACTED]`.
        .route("/admin/config/{name}", put(admin::update_config))
        .route("/admin/export-users", get(admin::export_users))
        .route("/update-balance", post(admin::update_balance))
        .route("/admin/audit/coverage", get(coverage::coverage_report));
    // 3. The library's viewer at /admin/audit, for administrators: the events, alerts,
    //    timelines, histories, exports and the chain's status, each view itself audited.
    let viewer = audit
        .viewer()
        .map_err(|e| e.to_string())?
        .coverage(routes.coverage())
        .router()
        .route_layer(middleware::from_fn(auth::admin_only));
    let routes =
        routes
            .nest_service("/admin/audit", viewer)
            .rules(CoverageRules::default().exempt_path(
                "/admin/audit/{*rest}",
                "the audit viewer: pages that change nothing, each view recorded as audit.view",
            ));
    // Set before the first request: the handler reads it.
    let _ = state.coverage.set(routes.coverage());
    let app = routes
        .layer(audit.layer())
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ))
        .with_state(state)
        .into_router();

    let listener = tokio::net::TcpListener::bind(settings.addr)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", settings.addr))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    // Before the banner: see `shutdown_signal`.
    let shutdown = shutdown_signal();
    println!(
        "audit trail: {} (JSON Lines, one file per UTC day)",
        settings.audit_dir.display()
    );
    for copy in &copies {
        println!("audit copy: {copy}");
    }
    println!("users (name / password / role):");
    for (_, name, role, password) in SEEDED_USERS {
        println!("  {name} / {password} / {}", role.as_str());
    }
    println!(
        "alerts: {FAILED_LOGINS_PER_USERNAME} failed logins for one username or \
         {FAILED_LOGINS_PER_SOURCE_IP} from one IP within {} s -> security.bruteforce; \
         {DISTINCT_USERNAMES_PER_SOURCE_IP} usernames from one IP -> \
         security.credential_stuffing; {DENIALS_PER_ACTOR} denials for one actor within {} s \
         -> security.denial_burst; an export of over {EXPORTED_RECORDS} records or \
         {EXPORTS_PER_ACTOR} exports within {} s -> security.mass_export; a grant of {} -> \
         security.privilege.grant",
        FAILED_LOGIN_WINDOW.as_secs(),
        DENIAL_WINDOW.as_secs(),
        EXPORT_WINDOW.as_secs(),
        PRIVILEGED_ROLES.join(", ")
    );
    println!(
        "verify the trail: cargo run --bin audit -- verify {}",
        settings.audit_dir.display()
    );
    // Last, so that a script reading this line knows the server is ready.
    println!("audit demo listening on http://{local}");

    // 3. Serve with connection info (the peer address), until SIGINT or SIGTERM; then let
    //    requests in flight finish, for a while: one waiting on an audit sink that is down
    //    must not keep the process up.
    let (stopping, mut stop_seen) = tokio::sync::watch::channel(false);
    let mut grace_seen = stop_seen.clone();
    tokio::spawn(async move {
        shutdown.await;
        let _ = stopping.send(true);
    });
    let server = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        let _ = stop_seen.wait_for(|stop| *stop).await;
    });
    let served = tokio::select! {
        served = server => served.map_err(|e| format!("server error: {e}")),
        () = async {
            let _ = grace_seen.wait_for(|stop| *stop).await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } => {
            eprintln!(
                "demo: requests still in flight {} s after the signal; stopping without them",
                SHUTDOWN_GRACE.as_secs()
            );
            Ok(())
        }
    };

    // 4. Every answered request's event reaches the disk before the process exits; what a
    //    sink could not take within the trail's shutdown timeout is on standard error.
    let drained = audit
        .shutdown()
        .await
        .map_err(|e| format!("audit shutdown: {e}"));
    match &drained {
        Ok(()) => println!("audit demo stopped; trail flushed"),
        Err(_) => println!("audit demo stopped; NOT every event reached every sink (see above)"),
    }
    served.and(drained)
}

/// `AUDIT_CHAIN_KEY`: the HMAC key of the chain, if set.
fn chain_key() -> Result<Option<ChainKey>, String> {
    std::env::var("AUDIT_CHAIN_KEY")
        .ok()
        .map(|hex| ChainKey::from_hex(&hex).map_err(|e| format!("AUDIT_CHAIN_KEY: {e}")))
        .transpose()
}

/// The tamper-evident file trail, its checkpoints signed with `signing_key` (from
/// `AUDIT_SIGNING_KEY`, an Ed25519 seed in hex, or generated in the trail directory) and its
/// chain keyed with `AUDIT_CHAIN_KEY` (HMAC key, hex) when set, plain SHA-256 otherwise.
fn file_sink(dir: &std::path::Path, signing_key: CheckpointKey) -> Result<JsonlFileSink, String> {
    let mut sink = JsonlFileSink::builder(dir).signing_key(signing_key);
    if let Some(key) = chain_key()? {
        sink = sink.chain_key(key);
    }
    if let Ok(bytes) = std::env::var("AUDIT_PREALLOCATE") {
        sink =
            sink.preallocate(bytes.parse().map_err(|e| {
                format!("AUDIT_PREALLOCATE: `{bytes}` is not a number of bytes: {e}")
            })?);
    }
    // Opened by `build_checked` below: a directory that cannot be used fails the start.
    Ok(sink.build())
}

#[derive(Deserialize)]
struct LoginRequest {
    username: String,
    password: String,
}

/// `POST /login`: `auth.login`, success or failure (and why); never the password.
async fn login(
    State(state): State<Arc<AppState>>,
    audit: AuditContext,
    Json(body): Json<LoginRequest>,
) -> Response {
    // Hashing is deliberately slow: on the hashing threads, off the async workers.
    let checked = {
        let store = state.clone();
        let username = body.username.clone();
        state
            .hashers
            .run(move || store.store.authenticate(&username, &body.password))
            .await
    };
    let user = match checked {
        Some(Ok(user)) => user,
        Some(Err(failure)) => {
            audit.login_failed(body.username, failure);
            return (StatusCode::UNAUTHORIZED, "invalid username or password").into_response();
        }
        None => {
            audit.set_category(Category::Auth);
            audit.set_action(audit_layer::auth::LOGIN);
            audit.set_reason("the password hashing threads are gone");
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
    };
    audit.login_succeeded(user.actor());
    let token = state.store.open_session(user.id);
    let cookie = format!("{SESSION_COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/");
    (
        [(header::SET_COOKIE, cookie)],
        Json(serde_json::json!({ "token": token })),
    )
        .into_response()
}

/// `POST /logout`: `auth.logout`.
async fn logout(
    State(state): State<Arc<AppState>>,
    audit: AuditContext,
    current: CurrentUser,
) -> Response {
    audit.logged_out(current.user.actor());
    state.store.close_session(&current.token);
    let expired = format!("{SESSION_COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0");
    ([(header::SET_COOKIE, expired)], StatusCode::NO_CONTENT).into_response()
}

/// `GET /me`: the caller's user record.
async fn me(current: CurrentUser) -> Json<store::User> {
    Json(current.user)
}

/// `GET /health`: the audit trail's health; 503 while it is failing.
async fn health(State(state): State<Arc<AppState>>) -> Response {
    let (status, mut body) = match state.audit.health() {
        Health::Healthy => (StatusCode::OK, serde_json::json!({"status": "healthy"})),
        Health::Degraded { reason } => (
            StatusCode::OK,
            serde_json::json!({"status": "degraded", "reason": reason}),
        ),
        Health::Failing { reason } => (
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({"status": "failing", "reason": reason}),
        ),
        other => (
            StatusCode::OK,
            serde_json::json!({"status": format!("{other:?}")}),
        ),
    };
    // Where each copy is: its cursor, how far behind, what it is doing.
    let followers = state.audit.followers();
    if !followers.is_empty() {
        body["followers"] = serde_json::json!(followers);
    }
    (status, Json(body)).into_response()
}

/// `GET /metrics`: Prometheus text format.
async fn metrics_page(State(state): State<Arc<AppState>>) -> Response {
    match &state.metrics {
        Some(handle) => {
            handle.run_upkeep();
            (
                [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                handle.render(),
            )
                .into_response()
        }
        None => (StatusCode::NOT_FOUND, "metrics are disabled").into_response(),
    }
}

/// `GET /login`: a login form for the browser.
async fn login_form() -> Html<&'static str> {
    Html(include_str!("login.html"))
}

/// Every mistake in the trail's configuration, each naming the setting it came from.
fn configuration_errors(error: &ConfigError) -> String {
    error
        .errors()
        .iter()
        .map(|error| match error {
            ConfigError::TrustedProxy(_) => format!("DEMO_TRUSTED_PROXIES: {error}"),
            other => other.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}
