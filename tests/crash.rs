//! A crash (SIGKILL) under load loses no sensitive event whose response was sent, and the
//! trail verifies after a restart; a disk too small for preallocation loses nothing either.

mod common;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::demo::{Demo, audit_binary, demo_binary, read_trail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One request; `None` when the server is gone (the point of this test).
async fn try_send(addr: SocketAddr, request: String) -> Option<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut response))
        .await
        .ok()?
        .ok()?;
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text.get(9..12)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
    Some((status, body))
}

/// `audit verify DIR` passes.
fn assert_verifies(dir: &std::path::Path) {
    let output = std::process::Command::new(audit_binary())
        .args(["verify", dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn request(method: &str, path: &str, headers: &[String], body: &str) -> String {
    let mut text = format!("{method} {path} HTTP/1.1\r\nHost: demo\r\nConnection: close\r\n");
    for header in headers {
        text.push_str(header);
        text.push_str("\r\n");
    }
    if !body.is_empty() {
        text.push_str("Content-Type: application/json\r\n");
    }
    text.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_load_loses_no_answered_sensitive_event() {
    sigkill_under_load(&[]).await;
}

/// The same with the file zero-filled ahead of its last line: the crash leaves the zeros,
/// which the restart cuts off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_load_with_a_preallocated_file_loses_no_answered_sensitive_event() {
    sigkill_under_load(&[("AUDIT_PREALLOCATE", "1048576")]).await;
}

async fn sigkill_under_load(env: &[(&str, &str)]) {
    let dir = tempfile::tempdir().unwrap();
    let mut demo = Demo::start(dir.path(), env);
    let addr = demo.addr;
    let (status, body) = try_send(
        addr,
        request(
            "POST",
            "/login",
            &[],
            r#"{"username":"alice","password":"alice-password"}"#,
        ),
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{body}");
    let token: serde_json::Value = serde_json::from_str(&body).unwrap();
    let bearer = format!("Authorization: Bearer {}", token["token"].as_str().unwrap());

    // Eight clients, half of them making sensitive changes, until the server dies.
    let answered = Arc::new(Mutex::new(HashSet::new()));
    let mut clients = Vec::new();
    for client in 0..8 {
        let (answered, bearer) = (Arc::clone(&answered), bearer.clone());
        clients.push(tokio::spawn(async move {
            for i in 0.. {
                let id = format!("crash-{client}-{i}");
                let id_header = format!("X-Request-Id: {id}");
                let sensitive = client % 2 == 0;
                let text = if sensitive {
                    request(
                        "PUT",
                        "/admin/config/max_upload_mb",
                        &[bearer.clone(), id_header],
                        &format!(r#"{{"value":{i}}}"#),
                    )
                } else {
                    request("GET", "/hello", &[id_header], "")
                };
                match try_send(addr, text).await {
                    Some((status, _)) if sensitive && (200..300).contains(&status) => {
                        answered.lock().unwrap().insert(id);
                    }
                    Some(_) => {}
                    None => return,
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(750)).await;
    // A second server on the same trail is refused, and says who holds it.
    let second = std::process::Command::new(demo_binary())
        .env("DEMO_ADDR", "127.0.0.1:0")
        .env("AUDIT_DIR", dir.path())
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "audit.lock is held (by process {})",
            demo.child.id()
        )),
        "{stderr}"
    );
    tokio::time::sleep(Duration::from_millis(750)).await;
    demo.child.kill().unwrap(); // SIGKILL
    demo.child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    for client in clients {
        tokio::time::timeout_at(deadline.into(), client)
            .await
            .unwrap()
            .unwrap();
    }
    let answered = answered.lock().unwrap().clone();
    assert!(
        answered.len() > 20,
        "the load was real: {} sensitive answers",
        answered.len()
    );

    if !env.is_empty() {
        // The killed server's file was zero-filled ahead: at least the preallocated MiB.
        let files = common::trail_files(dir.path());
        let size = std::fs::metadata(files.last().unwrap()).unwrap().len();
        assert!(size >= 1 << 20, "{size} bytes");
    }

    // Restart on the same trail: it recovers, continues the chain and stops cleanly.
    let demo = Demo::start(dir.path(), env);
    assert!(demo.terminate().success());

    let recorded: HashSet<String> = read_trail(dir.path())
        .iter()
        .filter(|e| e["action"] == "config.update")
        .filter_map(|e| e["request"]["id"].as_str().map(str::to_owned))
        .collect();
    let missing: Vec<_> = answered.difference(&recorded).collect();
    assert!(
        missing.is_empty(),
        "answered 2xx but not in the trail: {missing:?}"
    );

    assert_verifies(dir.path());
}

/// A disk with no room for the preallocated zeros (here, a file size limit of 512 KiB
/// against 1 MiB of preallocation): the sink writes the file without them, and every
/// request is recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_that_cannot_be_zero_filled_is_written_without_the_zeros() {
    let dir = tempfile::tempdir().unwrap();
    // Beyond the limit a write fails with EFBIG; ignored, SIGXFSZ would kill the process.
    let mut command = std::process::Command::new("bash");
    command.args([
        "-c",
        "trap '' XFSZ; ulimit -f 512; exec \"$0\"",
        demo_binary().to_str().unwrap(),
    ]);
    let demo = Demo::start_command(command, dir.path(), &[("AUDIT_PREALLOCATE", "1048576")]);
    for i in 0..20 {
        let id_header = format!("X-Request-Id: small-disk-{i}");
        let (status, _) = try_send(demo.addr, request("GET", "/hello", &[id_header], ""))
            .await
            .unwrap();
        assert_eq!(status, 200);
    }
    // While the demo runs, the file holds its lines and no zeros (once the writer, which
    // gathers events for a few milliseconds, has written the last request's).
    let deadline = Instant::now() + Duration::from_secs(10);
    let bytes = loop {
        let written = common::trail_files(dir.path())
            .pop()
            .map(|file| std::fs::read(file).unwrap());
        match written {
            Some(bytes) if String::from_utf8_lossy(&bytes).contains("small-disk-19") => {
                break bytes;
            }
            _ if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(20)).await,
            _ => panic!("the last request's event was not written within 10 s"),
        }
    };
    assert!(bytes.len() < 512 * 1024, "{} bytes", bytes.len());
    assert_eq!(bytes.last(), Some(&b'\n'), "no zeros after the last line");
    assert!(demo.terminate().success());

    let recorded = read_trail(dir.path())
        .iter()
        .filter(|e| {
            e["request"]["id"]
                .as_str()
                .is_some_and(|id| id.starts_with("small-disk-"))
        })
        .count();
    assert_eq!(recorded, 20);
    assert_verifies(dir.path());
}
