//! Three demo instances, each following its own trail into one NATS stream, behind the
//! `audit collect` command: the central PostgreSQL store holds every event of each exactly
//! once and verifies against each instance's files; a tampered copy of one instance's
//! event is named by the collector's report and by an alert in its central trail.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use audit_layer::file::{TRAIL_ID, TrailReader};
use audit_layer::sink::nats::{HASH_HEADER, SEQ_HEADER};
use audit_layer::sink::postgres::PostgresSink;
use common::demo::{Demo, audit_binary, read_trail, run_audit};
use common::raw_http;

/// The `audit collect` process; killed when dropped.
struct CollectProcess(Child);

impl CollectProcess {
    fn terminate(mut self) -> std::process::ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
        self.0.wait().expect("wait for audit collect")
    }
}

impl Drop for CollectProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn request(addr: std::net::SocketAddr, head: &str, body: &str) -> String {
    let request = format!(
        "{head}\r\nHost: demo\r\nConnection: close\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    raw_http(addr, &request).await
}

/// Some ordinary and some sensitive requests.
async fn use_demo(addr: std::net::SocketAddr) {
    let login = request(
        addr,
        "POST /login HTTP/1.1",
        r#"{"username":"alice","password":"alice-password"}"#,
    )
    .await;
    assert!(login.starts_with("HTTP/1.1 200"), "{login}");
    let body = login.split_once("\r\n\r\n").unwrap().1;
    let token = serde_json::from_str::<serde_json::Value>(body).unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    for index in 0..5 {
        let response = request(
            addr,
            &format!(
                "PUT /admin/config/session_ttl_minutes HTTP/1.1\r\nAuthorization: Bearer {token}"
            ),
            &format!(r#"{{"value":{index}}}"#),
        )
        .await;
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    }
    for _ in 0..30 {
        let response = request(addr, "GET /hello HTTP/1.1", "").await;
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    }
}

fn trail_id(dir: &Path) -> String {
    std::fs::read_to_string(dir.join(TRAIL_ID))
        .unwrap()
        .trim()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_demo_instances_behind_audit_collect_are_stored_once_each_and_verify() {
    let Some((store, client)) = common::services::postgres().await else {
        return;
    };
    let Some((nats_url, jetstream)) = common::services::nats().await else {
        return;
    };
    let name = common::services::unique_name("collectcmd");
    let stream = name.to_uppercase();
    let table = name.clone();
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let central = tempfile::tempdir().unwrap();
    let env = [
        ("AUDIT_NATS_URL", nats_url.as_str()),
        ("AUDIT_NATS_STREAM", &stream),
    ];

    let demos: Vec<Demo> = dirs
        .iter()
        .map(|dir| Demo::start(dir.path(), &env))
        .collect();
    for demo in &demos {
        use_demo(demo.addr).await;
    }
    // Each demo made its own signing key; the collector trusts the three.
    let mut command = Command::new(audit_binary());
    command.args([
        "collect",
        "--nats",
        &nats_url,
        "--postgres",
        &store,
        "--stream",
        &stream,
        "--table",
        &table,
        "--checkpoint-table",
        &format!("{table}_checkpoints"),
        "--consumer",
        &table,
        "--gap-grace",
        "3s",
        "--dir",
        central.path().to_str().unwrap(),
    ]);
    for dir in &dirs {
        command
            .arg("--public-key")
            .arg(dir.path().join("signing.pub"));
    }
    let collector = CollectProcess(
        command
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start audit collect"),
    );
    // The instances go on while the collector runs, then stop (sealing their trails).
    for demo in &demos {
        use_demo(demo.addr).await;
    }
    for demo in demos {
        assert!(demo.terminate().success());
    }
    let trails: Vec<String> = dirs.iter().map(|dir| trail_id(dir.path())).collect();
    let lengths: Vec<u64> = dirs
        .iter()
        .map(|dir| read_trail(dir.path()).len() as u64)
        .collect();
    let mut sink = PostgresSink::builder(&store).table(&table).build().unwrap();
    let start = Instant::now();
    loop {
        let reports = sink.instances().await.unwrap_or_default();
        let done = trails.iter().zip(&lengths).all(|(trail, length)| {
            reports.iter().any(|report| {
                &report.trail == trail
                    && report.lines == *length
                    && report.sealed_to == report.last_seq
            })
        });
        if done {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "not every event collected and sealed: {reports:?}, expected {lengths:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Each instance's copy in the central store, checked against its files.
    for dir in &dirs {
        let (code, out, err) = run_audit([
            "verify".as_ref(),
            dir.path().as_os_str(),
            "--against".as_ref(),
            store.as_ref(),
            "--copy-table".as_ref(),
            table.as_ref(),
        ]);
        assert_eq!(code, Some(0), "{out}{err}");
        assert!(out.contains("0 not yet copied"), "{out}");
    }
    let row = client
        .query_one(
            &format!("SELECT count(*), count(DISTINCT (trail, seq)) FROM {table}"),
            &[],
        )
        .await
        .unwrap();
    let total: u64 = lengths.iter().sum();
    assert_eq!(
        (row.get::<_, i64>(0) as u64, row.get::<_, i64>(1) as u64),
        (total, total)
    );
    let report_args = [
        "collect",
        "--postgres",
        &store,
        "--table",
        &table,
        "--report",
    ];
    let (code, out, err) = run_audit(report_args);
    assert_eq!(code, Some(0), "{out}{err}");
    for (trail, length) in trails.iter().zip(&lengths) {
        assert!(
            out.contains(&format!(
                "{trail}: last seq {}, {length} line(s), 0 missing, 0 fault(s)",
                length - 1
            )),
            "{out}"
        );
    }

    // A tampered copy of an event of the second instance, published as if by it.
    let original = TrailReader::new(dirs[1].path(), 3, None)
        .read(1)
        .unwrap()
        .remove(0);
    let tampered = original.json.replace("\"alice\"", "\"mallory\"");
    assert_ne!(tampered, original.json);
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(SEQ_HEADER, "3");
    headers.insert(HASH_HEADER, original.hash.as_str());
    headers.insert("Nats-Msg-Id", "forged-3");
    jetstream
        .publish_with_headers(
            format!("{name}.{}.auth.login", trails[1]),
            headers,
            tampered.into(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    let start = Instant::now();
    let out = loop {
        let (code, out, err) = run_audit(report_args);
        if code == Some(1) {
            break out;
        }
        assert_eq!(code, Some(0), "{out}{err}");
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the tampered copy not reported: {out}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        out.contains(&format!("{}: last seq", trails[1]))
            && out.contains("1 fault(s)")
            && out.contains("last fault: modified at seq 3: its hash does not match"),
        "{out}"
    );
    assert!(collector.terminate().success());

    let alerts: Vec<serde_json::Value> = read_trail(central.path())
        .into_iter()
        .filter(|event| event["category"] == "alert")
        .collect();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0]["action"], "audit.collect.tampered");
    assert_eq!(alerts[0]["details"]["trail"], trails[1].as_str());
    assert_eq!(alerts[0]["details"]["seq"], 3);
    let (code, out, err) = run_audit(["verify".as_ref(), central.path().as_os_str()]);
    assert_eq!(code, Some(0), "the central trail verifies: {out}{err}");
}
