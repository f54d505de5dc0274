//! CPU instructions per request, counted by callgrind, both threads (the request's and the
//! trail's writer) included. Instruction counts do not move with the host's noise, so a
//! change that adds work to a request shows up here even when wall-clock benches cannot
//! tell it from the noise.
//!
//! - `bare` / `audited`: `GET /hello` on a bare router, and on the same router with the
//!   layer and a chained file trail; `audited-detectors`: the same with the demo's two
//!   detectors (`BruteForce` and `PrivilegeGrant`), which look at each event;
//!   `audited-discard`: the layer, queue and writer with a sink that keeps nothing, so that
//!   the file sink's share is the difference from `audited`;
//! - `floor-layer` / `floor-handoff`: the load server's floors (`examples/shared/floor.rs`):
//!   a layer that does nothing, and one that hands a small record of each request to a
//!   thread that drops it: the least any layer, and any record kept off the request's
//!   thread, can add;
//! - `sensitive-bare` / `sensitive`: `POST /settings/{id}` unaudited, and as a
//!   `#[sensitive]` handler whose event is "synced" before the response, by a sink that
//!   keeps nothing: a sink that kept the events (`MemorySink`) would add a copy of each, and
//!   freeing them all at exit, or not, as the threads happen to end, would move the count.
//!
//! `benches/instructions.sh` builds this and runs it under callgrind; by hand:
//!
//! ```text
//! cargo bench --bench instructions --no-run
//! valgrind --tool=callgrind target/release/deps/instructions-<hash> audited 20000
//! ```
//!
//! Run without callgrind (as `cargo bench` does) it serves a few requests of each and exits.

use audit_layer::AuditTrail;
use audit_layer::detect::{BruteForce, PrivilegeGrant};
use audit_layer::file::JsonlFileSink;
use audit_layer::format::Format;
use axum::Router;
use axum::routing::get;
use http::Method;
use tower::ServiceExt;

mod common;
#[path = "common/events.rs"]
mod events;
#[path = "../examples/shared/floor.rs"]
mod floor;
#[path = "common/settings.rs"]
mod settings;

async fn serve(app: &Router, n: u64, method: Method, uri: &str) {
    // As `axum::serve` does for each connection: handlers become routes once, not once per
    // request (a layered handler would otherwise be cloned and layered for each).
    let app = app.clone().with_state(());
    for _ in 0..n {
        let request = common::request(method.clone(), uri);
        let response = app.clone().oneshot(request).await.expect("infallible");
        assert!(response.status().is_success());
    }
}

/// A trail whose sink keeps nothing (see [`settings::Discard`]).
fn discard_trail() -> AuditTrail {
    AuditTrail::builder()
        .sink(settings::Discard)
        .build()
        .expect("trail")
}

/// What can be measured, as the first argument.
const MODES: [&str; 12] = [
    "bare",
    "audited",
    "audited-detectors",
    "audited-discard",
    "floor-layer",
    "floor-handoff",
    "sensitive-bare",
    "sensitive",
    "format-audit",
    "format-ocsf",
    "format-ecs",
    "format-cef",
];

fn main() {
    let mut args = std::env::args().skip(1).filter(|a| !a.starts_with("--"));
    let (modes, n) = match (args.next(), args.next()) {
        (Some(mode), Some(n)) => (vec![mode], n.parse().expect("a request count")),
        // `cargo bench` (no arguments): a smoke run of both.
        _ => (MODES.iter().map(|&mode| mode.to_owned()).collect(), 100),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let router = Router::new().route("/hello", get(|| async { "hello" }));
    for mode in modes {
        runtime.block_on(async {
            let hello = (Method::GET, "/hello?page=2");
            let bump = (Method::POST, "/settings/7");
            match mode.as_str() {
                "bare" => serve(&router, n, hello.0, hello.1).await,
                "audited" | "audited-detectors" => {
                    let dir = tempfile::tempdir().expect("tempdir");
                    let mut builder = AuditTrail::builder().sink(JsonlFileSink::new(dir.path()));
                    if mode == "audited-detectors" {
                        // The demo's two: each GET is looked at, and raises nothing.
                        builder = builder
                            .detector(BruteForce::new("auth.login"))
                            .detector(PrivilegeGrant::new(["admin"]));
                    }
                    let trail = builder.build().expect("trail");
                    serve(&router.clone().layer(trail.layer()), n, hello.0, hello.1).await;
                    trail.shutdown().await.expect("shutdown");
                }
                "audited-discard" => {
                    let trail = discard_trail();
                    serve(&router.clone().layer(trail.layer()), n, hello.0, hello.1).await;
                    trail.shutdown().await.expect("shutdown");
                }
                "floor-layer" => {
                    let layer = floor::FloorLayer::identity();
                    serve(&router.clone().layer(layer), n, hello.0, hello.1).await;
                }
                "floor-handoff" => {
                    let (layer, drain) = floor::FloorLayer::handoff();
                    serve(&router.clone().layer(layer), n, hello.0, hello.1).await;
                    let counts = drain.finish();
                    assert_eq!(
                        (counts.drained, counts.dropped),
                        (n, 0),
                        "every record taken"
                    );
                }
                "sensitive-bare" => serve(&settings::router(None), n, bump.0, bump.1).await,
                "sensitive" => {
                    let trail = discard_trail();
                    serve(&settings::router(Some(&trail)), n, bump.0, bump.1).await;
                    trail.shutdown().await.expect("shutdown");
                }
                format if format.starts_with("format-") => {
                    let format: Format = format["format-".len()..].parse().expect("a format");
                    encode(format, n);
                }
                other => panic!("unknown mode `{other}`: one of {MODES:?}"),
            }
        });
    }
}

/// Encodes `n` events in `format`: a request's event and a role change's (with its before,
/// after and changes) in turn, as the demo records them.
fn encode(format: Format, n: u64) {
    use audit_layer::event::{RequestInfo, ResponseInfo, Source};
    use audit_layer::{Actor, AuditEvent, Category, Outcome};

    let mut request = AuditEvent::new(
        Category::Request,
        "http.request",
        Outcome::Success,
        Actor::user("1").with_name("alice").with_role("admin"),
    )
    .with_label("service", "bench");
    let mut source = Source::default();
    source.ip = Some([192, 0, 2, 10].into());
    source.port = Some(50_000);
    source.user_agent = Some("bench/1.0".into());
    request.source = Some(source);
    let mut info = RequestInfo::default();
    info.id = "01J9ZC6W7R8Q2N4V5T3X1Y0B7D".into();
    info.method = "GET".into();
    info.path = "/users/7".into();
    info.route = Some("/users/{id}".into());
    request.request = Some(info);
    let mut response = ResponseInfo::default();
    response.status = Some(200);
    response.duration_us = 180;
    request.response = Some(response);
    let role_change = events::role_change();
    let events = [request, role_change];
    let mut buf = Vec::with_capacity(4096);
    for i in 0..n {
        buf.clear();
        format
            .encode(&events[(i % 2) as usize], &mut buf)
            .expect("encodes");
        std::hint::black_box(&buf);
    }
}
