//! The demo server end to end, over HTTP, as a separate process.

mod common;

use common::demo::{Demo, read_trail};
use common::raw_http;

/// Sends one request; returns the status code and the body.
async fn send(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[&str],
    body: &str,
) -> (u16, String) {
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: demo\r\nConnection: close\r\n");
    for header in headers {
        request.push_str(header);
        request.push_str("\r\n");
    }
    if !body.is_empty() {
        request.push_str("Content-Type: application/json\r\n");
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    let response = raw_http(addr, &request).await;
    let status = response[9..12].parse().expect("status code");
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test]
async fn demo_records_requests_logins_and_flushes_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let demo = Demo::start(dir.path(), &[]);
    let banner = demo.banner.join("\n");
    assert!(
        banner.contains("alice / alice-password / admin"),
        "{banner}"
    );
    let addr = demo.addr;

    assert_eq!(
        send(addr, "GET", "/hello", &[], "").await,
        (200, "hello".into())
    );
    let (status, body) = send(
        addr,
        "POST",
        "/login",
        &[],
        r#"{"username":"alice","password":"alice-password"}"#,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let token = serde_json::from_str::<serde_json::Value>(&body).unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, _) = send(
        addr,
        "POST",
        "/login",
        &["X-Forwarded-For: 6.6.6.6"],
        r#"{"username":"bob","password":"wrong-password"}"#,
    )
    .await;
    assert_eq!(status, 401);
    let bearer = format!("Authorization: Bearer {token}");
    let (status, me) = send(addr, "GET", "/me", &[&bearer], "").await;
    assert_eq!(status, 200);
    assert!(me.contains(r#""name":"alice""#), "{me}");
    assert_eq!(send(addr, "GET", "/me", &[], "").await.0, 401);

    let status = demo.terminate();
    assert!(
        status.success(),
        "the demo exits cleanly on SIGTERM: {status:?}"
    );

    let events = read_trail(dir.path());
    let summary: Vec<_> = events
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_owned(),
                e["outcome"].as_str().unwrap().to_owned(),
                e["actor"]["id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expect = |a: &str, o: &str, id: &str| (a.to_owned(), o.to_owned(), id.to_owned());
    assert_eq!(
        summary,
        [
            expect("http.request", "success", "anonymous"),
            expect("auth.login", "success", "1"),
            expect("auth.login", "failure", "anonymous"),
            expect("http.request", "success", "1"),
            expect("http.request", "denied", "anonymous"),
        ]
    );
    assert_eq!(
        events[1]["actor"],
        serde_json::json!({"id": "1", "kind": "user", "name": "alice", "roles": ["admin"]})
    );
    // No trusted proxies by default: the forged header does not change the address.
    assert_eq!(events[2]["source"]["ip"], "127.0.0.1");
    assert_eq!(
        events[2]["source"]["forwarded"],
        serde_json::json!(["6.6.6.6"])
    );
    // Neither passwords nor the session token reach the trail.
    let text = serde_json::to_string(&events).unwrap();
    for secret in ["alice-password", "wrong-password", token.as_str()] {
        assert!(!text.contains(secret), "{secret} leaked into the trail");
    }
}

#[test]
fn bad_settings_are_one_clear_line_and_a_failure_exit() {
    let dir = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(common::demo::demo_binary())
        .env("DEMO_ADDR", "not-an-address")
        .env("AUDIT_DIR", dir.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("`not-an-address` is not a socket address"),
        "{stderr}"
    );

    let output = std::process::Command::new(common::demo::demo_binary())
        .env("DEMO_ADDR", "127.0.0.1:0")
        .env("AUDIT_DIR", dir.path())
        .env("DEMO_TRUSTED_PROXIES", "10.0.0.0/8, bogus")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("DEMO_TRUSTED_PROXIES: `bogus`"), "{stderr}");
}
