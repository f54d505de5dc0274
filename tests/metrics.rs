//! The trail's metrics, read back through a Prometheus recorder.
//!
//! Its own test binary: a metrics recorder is global to the process.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use audit_layer::AuditTrail;
use audit_layer::file::{JsonlFileSink, TrailLine};
use audit_layer::follow::{Cursor, Follower};
use audit_layer::sink::{BoxFuture, MemorySink, SinkError};
use audit_layer::testing::FaultySink;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// The recorder of this test binary, installed once.
fn recorder() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        PrometheusBuilder::new()
            .install_recorder()
            .expect("the only recorder of this test binary")
    })
}

/// The value of the metric line that starts with `prefix` (name and labels), if rendered.
fn value(rendered: &str, prefix: &str) -> Option<f64> {
    rendered
        .lines()
        .find_map(|line| line.strip_prefix(prefix))
        .and_then(|value| value.trim().parse().ok())
}

/// The value of `audit_sink_pending_events` for the sink named `sink`, if rendered.
fn pending_events(rendered: &str, sink: &str) -> Option<f64> {
    value(
        rendered,
        &format!("audit_sink_pending_events{{sink=\"{sink}\"}} "),
    )
}

/// A sink that cannot take events shows how far behind it is, and shows zero once it has
/// caught up.
#[tokio::test]
async fn each_sink_reports_how_many_events_it_is_behind() {
    let metrics = recorder();
    let (sink, faults) = FaultySink::new(MemorySink::new());
    faults.fail_writes(u64::MAX);
    let audit = AuditTrail::builder()
        .sink(sink)
        .retry_backoff(Duration::from_millis(10), Duration::from_millis(50))
        .build()
        .unwrap();
    common::serve_hellos(&audit, 7).await;
    // audit.start and the seven requests wait for the failing sink.
    let mut behind = None;
    for _ in 0..500 {
        behind = pending_events(&metrics.render(), "faulty:memory");
        if behind == Some(8.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(behind, Some(8.0), "{}", metrics.render());

    faults.heal();
    common::flushed_once_healthy(&audit).await;
    assert_eq!(
        pending_events(&metrics.render(), "faulty:memory"),
        Some(0.0),
        "{}",
        metrics.render()
    );
    audit.shutdown().await.unwrap();
}

/// A store in memory that can be taken down.
#[derive(Clone, Default)]
struct Store {
    lines: Arc<Mutex<Vec<TrailLine>>>,
    down: Arc<AtomicBool>,
}

impl Follower for Store {
    fn name(&self) -> &str {
        "store"
    }

    fn cursor<'a>(&'a mut self, _trail: &'a str) -> BoxFuture<'a, Result<Cursor, SinkError>> {
        Box::pin(async move {
            if self.down.load(Ordering::SeqCst) {
                return Err(SinkError::new("down"));
            }
            Ok(match self.lines.lock().unwrap().last() {
                Some(last) => Cursor::after(last.seq, last.hash.clone()),
                None => Cursor::empty(),
            })
        })
    }

    fn ship<'a>(
        &'a mut self,
        _trail: &'a str,
        lines: &'a [TrailLine],
    ) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            if self.down.load(Ordering::SeqCst) {
                return Err(SinkError::new("down"));
            }
            self.lines.lock().unwrap().extend_from_slice(lines);
            Ok(())
        })
    }
}

/// A follower whose store is down shows how far behind it is and counts its errors; once
/// the store is back, it shows zero behind and counts what it shipped.
#[tokio::test]
async fn each_follower_reports_its_lag_its_errors_and_what_it_shipped() {
    let metrics = recorder();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::default();
    store.down.store(true, Ordering::SeqCst);
    let audit = AuditTrail::builder()
        .sink(JsonlFileSink::new(dir.path()))
        .follower(store.clone())
        .build()
        .unwrap();
    common::serve_hellos(&audit, 7).await;
    audit.flush().await.unwrap();
    let behind = |rendered: &str| {
        value(
            rendered,
            "audit_follower_behind_events{follower=\"store\"} ",
        )
    };
    let mut rendered = String::new();
    for _ in 0..500 {
        rendered = metrics.render();
        if behind(&rendered) == Some(8.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(behind(&rendered), Some(8.0), "{rendered}");
    assert!(
        value(
            &rendered,
            "audit_follower_errors_total{follower=\"store\"} "
        )
        .is_some_and(|n| n >= 1.0),
        "{rendered}"
    );

    store.down.store(false, Ordering::SeqCst);
    for _ in 0..1000 {
        rendered = metrics.render();
        if behind(&rendered) == Some(0.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(behind(&rendered), Some(0.0), "{rendered}");
    assert_eq!(
        value(
            &rendered,
            "audit_follower_shipped_total{follower=\"store\"} "
        ),
        Some(8.0),
        "{rendered}"
    );
    audit.shutdown().await.unwrap();
}
