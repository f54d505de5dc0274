//! The syslog follower against Debian's rsyslog, started by the test on a loopback port:
//! RFC 5424 frames rsyslog parses, every event stored, nothing lost when rsyslog is killed
//! and comes back, and CEF that survives hostile values.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use audit_layer::file::JsonlFileSink;
use audit_layer::format::Format;
use audit_layer::siem::SyslogFollower;
use audit_layer::{Actor, AuditEvent, AuditTrail, Category, Outcome};
use common::rsyslog::Rsyslog;
use common::siem::{Ocsf, parse_cef};
use serde_json::Value;

/// The `id="..."` of a stored line's structured data.
fn sd_id(line: &str) -> String {
    let start = line.find("id=\"").expect("structured data") + 4;
    line[start..start + 36].to_owned()
}

fn event(i: usize) -> AuditEvent {
    AuditEvent::new(
        Category::Request,
        "http.request",
        if i.is_multiple_of(7) {
            Outcome::Denied
        } else {
            Outcome::Success
        },
        Actor::user(format!("user-{}", i % 13)),
    )
    .with_target(format!("order:{i}"))
}

fn trail(dir: &std::path::Path, follower: SyslogFollower) -> AuditTrail {
    AuditTrail::builder()
        .sink(JsonlFileSink::builder(dir).trail_id("shop-1").build())
        .follower(follower)
        .build()
        .expect("trail")
}

#[tokio::test(flavor = "multi_thread")]
async fn rsyslog_stores_every_event_across_a_kill_of_rsyslog() {
    let Some(mut rsyslog) = Rsyslog::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let follower = SyslogFollower::builder(format!("tcp://127.0.0.1:{}", rsyslog.port))
        .app_name("shop")
        .hostname("web-1")
        .build()
        .unwrap();
    let audit = trail(dir.path(), follower);
    let mut ids = Vec::new();
    for i in 0..3_000 {
        let event = event(i);
        ids.push(event.id.to_string());
        audit.record(event).await.unwrap();
    }
    audit.flush().await.unwrap();
    rsyslog
        .wait_for(Duration::from_secs(60), |lines| {
            let stored: BTreeSet<_> = lines.iter().map(|l| sd_id(l)).collect();
            ids.iter().all(|id| stored.contains(id))
        })
        .await;

    // Killed after a quiet second (the follower has had what it sent confirmed), then
    // events recorded while it is down wait in the trail.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    rsyslog.kill();
    for i in 3_000..6_000 {
        let event = event(i);
        ids.push(event.id.to_string());
        audit.record(event).await.unwrap();
    }
    audit.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let down = audit.followers();
    assert!(
        down[0].behind_events > 0,
        "behind while rsyslog is down: {down:?}"
    );
    rsyslog.run();
    let all_stored = |ids: &[String]| {
        let ids = ids.to_vec();
        move |lines: &[String]| {
            let stored: BTreeSet<_> = lines.iter().map(|l| sd_id(l)).collect();
            ids.iter().all(|id| stored.contains(id))
        }
    };
    rsyslog
        .wait_for(Duration::from_secs(60), all_stored(&ids))
        .await;
    let quiet_copies = rsyslog.lines().len() - ids.len() - 1;

    // Killed while events flow: what it had not read is sent again.
    for i in 6_000..9_000 {
        if i == 7_500 {
            rsyslog.kill();
            rsyslog.run();
        }
        let event = event(i);
        ids.push(event.id.to_string());
        audit.record(event).await.unwrap();
    }
    audit.shutdown().await.unwrap();
    let lines = rsyslog
        .wait_for(Duration::from_secs(60), |lines| {
            let stored: BTreeSet<_> = lines.iter().map(|l| sd_id(l)).collect();
            ids.iter().all(|id| stored.contains(id))
        })
        .await;

    let schema = Ocsf::load();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for line in &lines {
        // facility severity hostname app-name msgid [sd] msg: as rsyslog parsed them.
        let mut fields = line.splitn(6, ' ');
        assert_eq!(fields.next(), Some("13"), "facility log audit: {line}");
        let severity = fields.next().unwrap();
        assert!(severity == "6" || severity == "5", "{line}");
        assert_eq!(fields.next(), Some("web-1"));
        assert_eq!(fields.next(), Some("shop"));
        let msgid = fields.next().unwrap();
        let rest = fields.next().unwrap();
        let message = &rest[rest.find("] ").unwrap() + 2..];
        let ocsf: Value = serde_json::from_str(message).unwrap_or_else(|e| panic!("{e}: {line}"));
        let id = sd_id(line);
        assert_eq!(ocsf["metadata"]["uid"], id.as_str());
        assert_eq!(ocsf["metadata"]["log_name"], "shop-1");
        assert!(rest.contains("trail=\"shop-1\""));
        assert_eq!(msgid, ocsf["unmapped"]["action"].as_str().unwrap());
        assert!(schema.check(&ocsf).is_empty(), "{message}");
        *seen.entry(id).or_default() += 1;
    }
    let lost: Vec<_> = ids.iter().filter(|id| !seen.contains_key(*id)).collect();
    assert!(lost.is_empty(), "{} events lost", lost.len());
    // Copies come only from a resend after the kill, each with its event id.
    let copies: usize = seen.values().map(|n| n - 1).sum();
    eprintln!(
        "rsyslog: {} events, {copies} stored twice after the kill under load",
        ids.len()
    );
    assert_eq!(
        quiet_copies, 0,
        "the first kill came after a quiet second: nothing was in doubt"
    );
    // Only what was unconfirmed at the kill under load is sent twice: never an event the
    // receiver confirmed in a quiet second.
    let confirmed = &ids[..3_000];
    assert!(
        confirmed.iter().all(|id| seen[id] == 1),
        "a confirmed event was sent again"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn cef_over_syslog_keeps_hostile_values_in_their_field() {
    let Some(rsyslog) = Rsyslog::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let follower = SyslogFollower::builder(format!("tcp://127.0.0.1:{}", rsyslog.port))
        .format(Format::Cef)
        .build()
        .unwrap();
    let audit = trail(dir.path(), follower);
    let hostile =
        "<script>x</script>|a=b\\c\n<13>1 2026-01-01T00:00:00Z forged - - - - CEF:0|forged";
    let login = AuditEvent::new(
        Category::Auth,
        "auth.login",
        Outcome::Failure,
        Actor::anonymous(),
    )
    .with_detail("username", hostile);
    let id = login.id.to_string();
    audit.record(login).await.unwrap();
    audit.shutdown().await.unwrap();
    let lines = rsyslog
        .wait_for(Duration::from_secs(30), |lines| {
            lines.iter().any(|l| l.contains(&id))
        })
        .await;
    let line = lines.iter().find(|l| l.contains(&id)).unwrap();
    assert_eq!(
        lines.iter().filter(|l| l.contains("forged")).count(),
        1,
        "{lines:?}"
    );
    let cef = &line[line.find("CEF:0|").unwrap()..];
    let (header, pairs) = parse_cef(cef).unwrap_or_else(|e| panic!("{e}: {cef}"));
    assert_eq!(header[4], "auth.login");
    let suser = pairs
        .iter()
        .find(|(k, _)| k == "suser")
        .map(|(_, v)| v.as_str());
    assert_eq!(suser, Some(hostile));
}

#[test]
fn bad_syslog_settings_are_clear_errors() {
    for (url, expected) in [
        (
            "udp://127.0.0.1:514",
            "expected tcp://host:port or tls://host:port",
        ),
        ("tcp://127.0.0.1", "has no port"),
        ("tcp://127.0.0.1:99999", "is not a port"),
    ] {
        let err = SyslogFollower::builder(url).build().unwrap_err();
        assert!(err.to_string().contains(expected), "{url}: {err}");
    }
    let err = SyslogFollower::builder("tcp://h:514")
        .app_name("my app")
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("app name `my app`"), "{err}");
    let err = SyslogFollower::builder("tls://h:514")
        .root_certificate("not pem")
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("PEM"), "{err}");
}

/// A syslog receiver over TLS with a certificate of its own for `localhost`: the frames it
/// reads, split by their octet counts.
async fn tls_receiver() -> (u16, String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use std::sync::{Arc, Mutex};
    use tokio::io::AsyncReadExt;

    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let pem = certified.cert.pem();
    let key =
        rustls::pki_types::PrivateKeyDer::try_from(certified.signing_key.serialize_der()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![certified.cert.der().clone()], key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let frames: Arc<Mutex<Vec<String>>> = Arc::default();
    let kept = Arc::clone(&frames);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let kept = Arc::clone(&kept);
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut data = Vec::new();
                let _ = tls.read_to_end(&mut data).await;
                let mut rest = data.as_slice();
                while let Some(space) = rest.iter().position(|&b| b == b' ') {
                    let len: usize = std::str::from_utf8(&rest[..space])
                        .unwrap()
                        .parse()
                        .unwrap();
                    let frame = &rest[space + 1..space + 1 + len];
                    kept.lock()
                        .unwrap()
                        .push(String::from_utf8(frame.to_vec()).unwrap());
                    rest = &rest[space + 1 + len..];
                }
            });
        }
    });
    (port, pem, frames)
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_syslog_checks_the_receivers_certificate() {
    let (port, pem, frames) = tls_receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let follower = SyslogFollower::builder(format!("tls://localhost:{port}"))
        .root_certificate(pem)
        .format(Format::Ecs)
        .build()
        .unwrap();
    let audit = trail(dir.path(), follower);
    let mut ids = Vec::new();
    for i in 0..200 {
        let event = event(i);
        ids.push(event.id.to_string());
        audit.record(event).await.unwrap();
    }
    audit.shutdown().await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !ids.iter().all(|id| {
        frames
            .lock()
            .unwrap()
            .iter()
            .any(|f| f.contains(id.as_str()))
    }) {
        assert!(
            std::time::Instant::now() < deadline,
            "not every event arrived over TLS"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for frame in frames.lock().unwrap().iter() {
        assert!(frame.starts_with('<'), "{frame}");
        let document: Value =
            serde_json::from_str(&frame[frame.find("] {").unwrap() + 2..]).unwrap();
        assert_eq!(document["ecs"]["version"], "8.17.0");
    }

    // Without the receiver's certificate among its roots, the follower refuses it and sends
    // nothing.
    let (port, _pem, frames) = tls_receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let follower = SyslogFollower::builder(format!("tls://localhost:{port}"))
        .build()
        .unwrap();
    let audit = trail(dir.path(), follower);
    audit.record(event(0)).await.unwrap();
    audit.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let status = &audit.followers()[0];
    let audit_layer::follow::FollowerState::Retrying { error, .. } = &status.state else {
        panic!("the follower should be retrying: {status:?}");
    };
    assert!(error.contains("certificate"), "{error}");
    audit.shutdown().await.unwrap();
    assert!(frames.lock().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn under_a_flood_the_resend_window_confirms_without_a_close() {
    // A receiver that reads and drops; the follower never closes to confirm (an hour), so
    // only the window (1 byte: every batch as soon as another follows) moves its cursor.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut stream, &mut tokio::io::sink()).await;
            });
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let follower = SyslogFollower::builder(format!("tcp://127.0.0.1:{port}"))
        .resend_window(1)
        .confirm_after(Duration::from_secs(3600))
        .build()
        .unwrap();
    let audit = trail(dir.path(), follower);
    let cursor_seq = || -> u64 {
        std::fs::read_dir(dir.path().join("followers"))
            .into_iter()
            .flatten()
            .flatten()
            .filter(|entry| entry.path().extension().is_some_and(|ext| ext == "cursor"))
            .filter_map(|entry| std::fs::read(entry.path()).ok())
            .filter_map(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
            .filter_map(|cursor| cursor["next_seq"].as_u64())
            .max()
            .unwrap_or(0)
    };
    // Batches follow each other while events keep coming: the cursor moves while the
    // connection stays open, long before 16 MiB (the default window) were written.
    for round in 0..40 {
        for i in 0..50 {
            audit.record(event(round * 50 + i)).await.unwrap();
        }
        audit.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while cursor_seq() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the window confirmed nothing"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        audit.followers()[0].state == audit_layer::follow::FollowerState::Following,
        "confirmed while following, not by a close"
    );
    audit.shutdown().await.unwrap();
}
