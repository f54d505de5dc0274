//! The tracing sink: one `tracing` event per audit event, target `audit`.
//!
//! Its own test binary: the writer thread logs through the global subscriber.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use audit_layer::AuditTrail;

use audit_layer::sink::TracingSink;
use axum::http::StatusCode;
use axum::{Router, routing::get};
use tower::ServiceExt;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn emits_one_tracing_event_per_audit_event_warn_for_denied() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .init();

    let audit = AuditTrail::builder()
        .sink(TracingSink::new())
        .build()
        .unwrap();
    let app = Router::new()
        .route("/hello", get(|| async { "hello" }))
        .route("/admin", get(|| async { StatusCode::FORBIDDEN }))
        .layer(audit.layer());
    app.clone().oneshot(common::get("/hello")).await.unwrap();
    app.oneshot(common::get("/admin")).await.unwrap();
    audit.shutdown().await.unwrap();

    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<_> = text
        .lines()
        .filter(|l| l.contains("audit event") && l.contains("http.request"))
        .collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(
        text.contains("audit.start") && text.contains("audit.stop"),
        "{text}"
    );
    assert!(
        lines[0].contains(" INFO ") && lines[0].contains("audit:"),
        "{}",
        lines[0]
    );
    assert!(lines[0].contains(r#"path=Some("/hello")"#), "{}", lines[0]);
    assert!(lines[0].contains(r#""schema":"audit/1""#), "{}", lines[0]);
    assert!(
        lines[1].contains(" WARN ") && lines[1].contains("outcome=\"denied\""),
        "{}",
        lines[1]
    );
}
