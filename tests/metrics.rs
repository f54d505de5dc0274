//! The trail's metrics, read back through a Prometheus recorder.
//!
//! Its own test binary: a metrics recorder is global to the process.

mod common;

use std::time::Duration;

use audit_layer::AuditTrail;
use audit_layer::sink::MemorySink;
use audit_layer::testing::FaultySink;
use metrics_exporter_prometheus::PrometheusBuilder;

/// The value of `audit_sink_pending_events` for the sink named `sink`, if rendered.
fn pending_events(rendered: &str, sink: &str) -> Option<f64> {
    let prefix = format!("audit_sink_pending_events{{sink=\"{sink}\"}} ");
    rendered
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|value| value.trim().parse().ok())
}

/// A sink that cannot take events shows how far behind it is, and shows zero once it has
/// caught up.
#[tokio::test]
async fn each_sink_reports_how_many_events_it_is_behind() {
    let metrics = PrometheusBuilder::new()
        .install_recorder()
        .expect("the only recorder of this test binary");
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
