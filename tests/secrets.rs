//! A scripted session against the demo plants unique secrets everywhere a client or an
//! admin can put one (passwords, tokens, cookies, API keys, query secrets under many names,
//! URL credentials, card numbers, secrets inside configuration values), then scans every
//! byte the demo wrote: the trail's files, its standard error, the PostgreSQL rows and NATS
//! messages of the session, and the viewer's page. None is found.

mod common;

use std::net::SocketAddr;

use common::demo::{Demo, read_trail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Sends one request; the status and the body.
async fn send(addr: SocketAddr, head: &str, body: &str) -> (u16, String) {
    let mut request = format!("{head}\r\nHost: demo\r\nConnection: close\r\n");
    if !body.is_empty() {
        request.push_str("Content-Type: application/json\r\n");
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        stream.read_to_end(&mut response),
    )
    .await
    .expect("response in time")
    .unwrap();
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text[9..12].parse().unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    (status, body)
}

fn token_of(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body).unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_planted_secret_reaches_any_record_copy_or_page() {
    let Some((postgres_url, postgres)) = common::services::postgres().await else {
        return;
    };
    let Some((nats_url, jetstream)) = common::services::nats().await else {
        return;
    };
    let run = uuid::Uuid::new_v4().simple().to_string();
    let marker = |what: &str| format!("MK{run}{what}");
    let planted = std::cell::RefCell::new(Vec::<String>::new());
    let plant = |what: &str| {
        let secret = marker(what);
        planted.borrow_mut().push(secret.clone());
        secret
    };
    let nats_before = match jetstream.get_stream("AUDIT").await {
        Ok(mut stream) => stream.info().await.unwrap().state.last_sequence,
        Err(_) => 0,
    };

    let dir = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let stderr_path = logs.path().join("stderr");
    let demo = Demo::start_with_stderr_in(
        dir.path(),
        &stderr_path,
        &[
            ("AUDIT_POSTGRES_URL", &postgres_url),
            ("AUDIT_NATS_URL", &nats_url),
            ("RUST_LOG", "debug"),
        ],
    );
    let addr = demo.addr;
    let session = format!("X-Request-Id: {run}");

    // Logins: a failed one with a planted password, then alice's, whose token is a secret.
    let wrong = plant("login-password");
    let (status, _) = send(
        addr,
        &format!("POST /login HTTP/1.1\r\n{session}-1"),
        &format!(r#"{{"username":"alice","password":"{wrong}"}}"#),
    )
    .await;
    assert_eq!(status, 401);
    let (status, body) = send(
        addr,
        &format!("POST /login HTTP/1.1\r\n{session}-2"),
        r#"{"username":"alice","password":"alice-password"}"#,
    )
    .await;
    assert_eq!(status, 200);
    let token = token_of(&body);
    planted.borrow_mut().push(token.clone());
    let admin = format!("Authorization: Bearer {token}");

    // Credentials headers, a user agent quoting some, and query secrets under many names.
    let query: Vec<String> = [
        "password",
        "access_token",
        "api_key",
        "jwt",
        "code",
        "X-Amz-Signature",
        "SAMLResponse",
        "client_secret",
        "passphrase",
        "otp",
        "sig",
        "refresh_token",
    ]
    .iter()
    .map(|name| format!("{name}={}", plant(name)))
    .collect();
    let head = format!(
        "GET /me?{} HTTP/1.1\r\n{session}-3\r\n{admin}\r\nCookie: session={token}\r\n\
         X-Api-Key: {}\r\nUser-Agent: curl/8 Authorization: Bearer {}\r\n\
         Referer: https://user:{}@example.com/?token={}",
        query.join("&"),
        plant("api-key-header"),
        plant("ua-bearer"),
        plant("referer-password"),
        plant("referer-token"),
    );
    let (status, _) = send(addr, &head, "").await;
    assert_eq!(status, 200);

    // Secrets inside a configuration value, and a card number.
    let value = format!(
        "postgres://app:{}@db/app api_key={} Bearer {}x card 4111111111111111",
        plant("config-url"),
        plant("config-api-key"),
        plant("config-bearer"),
    );
    let (status, body) = send(
        addr,
        &format!("PUT /admin/config/max_upload_mb HTTP/1.1\r\n{session}-4\r\n{admin}"),
        &serde_json::json!({ "value": value }).to_string(),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // A user created with a password (the body is captured), and a password change.
    let (status, body) = send(
        addr,
        &format!("POST /admin/users HTTP/1.1\r\n{session}-5\r\n{admin}"),
        &format!(
            r#"{{"name":"dave","role":"viewer","password":"{}"}}"#,
            plant("new-user-password")
        ),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = send(
        addr,
        &format!("POST /password HTTP/1.1\r\n{session}-6\r\n{admin}"),
        &format!(
            r#"{{"old_password":"alice-password","new_password":"{}"}}"#,
            plant("changed-password")
        ),
    )
    .await;
    assert_eq!(status, 204, "{body}");

    // The viewer's page, as an admin reads it.
    let (status, page) = send(
        addr,
        &format!("GET /admin/audit HTTP/1.1\r\n{session}-7\r\n{admin}"),
        "",
    )
    .await;
    assert_eq!(status, 200);
    let banner = demo.banner.join("\n");
    assert!(demo.terminate().success());

    // Everything the demo wrote.
    let mut written: Vec<(String, String)> = Vec::new();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            let bytes = std::fs::read(&path).unwrap();
            written.push((
                path.display().to_string(),
                String::from_utf8_lossy(&bytes).into(),
            ));
        }
    }
    written.push((
        "stderr".into(),
        std::fs::read_to_string(&stderr_path).unwrap(),
    ));
    written.push(("stdout".into(), banner));
    written.push(("viewer".into(), page));
    let session_events = read_trail(dir.path())
        .into_iter()
        .filter(|e| {
            e["request"]["id"]
                .as_str()
                .is_some_and(|id| id.starts_with(&run))
        })
        .count();
    assert_eq!(session_events, 7, "the session's requests are in the trail");
    let rows = postgres
        .query(
            "SELECT event::text FROM audit_events WHERE request_id LIKE $1",
            &[&format!("{run}%")],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 7, "and in PostgreSQL");
    for row in rows {
        written.push(("postgres".into(), row.get::<_, String>(0)));
    }
    let mut stream = jetstream.get_stream("AUDIT").await.unwrap();
    let last = stream.info().await.unwrap().state.last_sequence;
    let mut in_nats = 0;
    for sequence in nats_before + 1..=last {
        if let Ok(message) = stream.get_raw_message(sequence).await {
            let payload = String::from_utf8_lossy(&message.payload).into_owned();
            if payload.contains(&run) {
                in_nats += 1;
            }
            written.push(("nats".into(), payload));
        }
    }
    assert_eq!(in_nats, 7, "and in NATS");

    let planted = planted.into_inner();
    let mut found = Vec::new();
    for secret in planted.iter().chain([&"4111111111111111".to_owned()]) {
        for (place, text) in &written {
            if text.contains(secret.as_str()) {
                found.push(format!("{secret} in {place}"));
            }
        }
    }
    assert!(found.is_empty(), "secrets found: {found:#?}");
    println!(
        "secrets: {} planted, {} places scanned, 0 found",
        planted.len() + 1,
        written.len()
    );
}
