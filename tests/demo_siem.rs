//! The demo shipping to a SIEM, as `../shared/DEMO.md` says: `AUDIT_SYSLOG_URL` to Debian's
//! rsyslog and `AUDIT_WEBHOOK_URL` (signed with `AUDIT_WEBHOOK_SECRET`) to a receiver in
//! the test, in the format `AUDIT_SIEM_FORMAT` names.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use audit_layer::siem::{SIGNATURE_HEADER, verify_webhook};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use common::demo::{Demo, read_trail};
use common::rsyslog::Rsyslog;
use common::siem::Ecs;
use serde_json::Value;

const SECRET: &str = "demo webhook secret";

type Documents = Arc<Mutex<Vec<Value>>>;

async fn hook(State(documents): State<Documents>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let signature = headers
        .get(SIGNATURE_HEADER)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    if verify_webhook(SECRET.as_bytes(), signature, &body, Duration::from_secs(60)).is_err() {
        return StatusCode::UNAUTHORIZED;
    }
    let mut documents = documents.lock().unwrap();
    for line in std::str::from_utf8(&body).unwrap().lines() {
        documents.push(serde_json::from_str(line).unwrap());
    }
    StatusCode::OK
}

#[tokio::test(flavor = "multi_thread")]
async fn the_demo_ships_ecs_to_rsyslog_and_a_signed_webhook() {
    let Some(rsyslog) = Rsyslog::start() else {
        return;
    };
    let documents: Documents = Arc::default();
    let app = Router::new()
        .route("/hook", post(hook))
        .with_state(Arc::clone(&documents));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let receiver = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let dir = tempfile::tempdir().unwrap();
    let syslog_url = format!("tcp://127.0.0.1:{}", rsyslog.port);
    let webhook_url = format!("http://{receiver}/hook");
    let demo = Demo::start(
        dir.path(),
        &[
            ("AUDIT_SYSLOG_URL", &syslog_url),
            ("AUDIT_WEBHOOK_URL", &webhook_url),
            ("AUDIT_WEBHOOK_SECRET", SECRET),
            ("AUDIT_SIEM_FORMAT", "ecs"),
        ],
    );
    let banner = demo.banner.join("\n");
    assert!(
        banner.contains(&format!("syslog:{syslog_url} (ecs)")),
        "{banner}"
    );
    let addr = demo.addr;
    let body = r#"{"username":"bob","password":"not-bobs-password"}"#;
    let request = format!(
        "POST /login HTTP/1.1\r\nHost: demo\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let response = common::raw_http(addr, &request).await;
    assert!(response.starts_with("HTTP/1.1 401"), "{response}");
    assert!(demo.terminate().success());

    let trail = read_trail(dir.path());
    let ids: Vec<&str> = trail.iter().map(|e| e["id"].as_str().unwrap()).collect();
    let lines = rsyslog
        .wait_for(Duration::from_secs(30), |lines| {
            ids.iter()
                .all(|id| lines.iter().any(|line| line.contains(id)))
        })
        .await;
    let schema = Ecs::load();
    let from_syslog: Vec<Value> = lines
        .iter()
        .map(|line| serde_json::from_str(&line[line.find("] {").unwrap() + 2..]).unwrap())
        .collect();
    let from_webhook = documents.lock().unwrap().clone();
    for copy in [&from_syslog, &from_webhook] {
        let mut copied: Vec<&str> = copy
            .iter()
            .map(|d| d["event"]["id"].as_str().unwrap())
            .collect();
        copied.sort_unstable();
        let mut expected = ids.clone();
        expected.sort_unstable();
        assert_eq!(copied, expected, "every event of the trail, once");
        for document in copy.iter() {
            assert!(schema.check(document).is_empty(), "{document}");
            assert!(!document.to_string().contains("not-bobs-password"));
        }
        let login = copy
            .iter()
            .find(|d| d["event"]["action"] == "auth.login")
            .expect("the failed login");
        assert_eq!(login["user"]["name"], "bob");
        assert_eq!(login["event"]["outcome"], "failure");
        assert_eq!(
            login["event"]["category"],
            serde_json::json!(["authentication"])
        );
    }
}
