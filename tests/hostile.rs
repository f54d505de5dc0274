//! Our own hostile-input campaign against the demo, over real TCP: thousands of requests
//! with broken encodings, huge and countless headers, control, bidi and zero-width
//! characters in every field, markup, absurd request ids, and invalid or huge bodies on a
//! route that captures its body. The server keeps serving, without a panic; every request
//! that reached the layer has exactly one event; every line of the trail is one bounded JSON
//! object; memory stays bounded.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use common::demo::{Demo, read_trail, rss_mib};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How many requests the campaign sends.
const REQUESTS: usize = 2_000;
/// The most bytes one line of the trail may take, whatever a request held.
const MAX_LINE: usize = 96 * 1024;

/// A small deterministic generator: the same campaign on every run.
struct Dice(u64);

impl Dice {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[(self.next() % items.len() as u64) as usize]
    }
}

/// Text that a client can put where text goes, hostile in one way each.
const NASTY: &[&str] = &[
    "<script>alert(1)</script>",
    "\u{202E}gnp.exe",
    "a\u{2028}b\u{2029}c",
    "zero\u{200B}width\u{FEFF}",
    "\u{0085}next-line",
    "'; DROP TABLE users; --",
    "{{7*7}}${7*7}",
    "..%2f..%2fetc%2fpasswd",
    "%00%0d%0a",
    "ümlaut-ß-日本",
    "",
];

/// One hostile request, as bytes, and whether it carries the admin's session.
fn hostile_request(dice: &mut Dice, n: usize, admin: &str) -> Vec<u8> {
    let nasty = *dice.pick(NASTY);
    let encoded: String = nasty
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    let mut head = Vec::new();
    let mut body = Vec::new();
    let (method, target) = match dice.next() % 12 {
        0 => ("GET", format!("/hello%ff%fe%c0%af/{encoded}")),
        1 => (
            "GET",
            format!("/hello?q={encoded}&token=SECRET{n}&{encoded}={encoded}"),
        ),
        2 => ("GET", format!("/{}", "a/".repeat(1_500))),
        3 => ("GET", format!("/admin/config/{encoded}")),
        4 => ("POST", "/login".to_owned()),
        5 | 6 => ("POST", "/admin/users".to_owned()),
        7 => ("GET", "/hello?".to_owned() + &"x=1&".repeat(2_000)),
        _ => ("GET", format!("/hello/{encoded}")),
    };
    head.extend_from_slice(format!("{method} {target} HTTP/1.1\r\nHost: demo\r\n").as_bytes());
    // Header values: visible ASCII and any UTF-8 byte reach the server; CR, LF and NUL
    // cannot be sent inside one without ending it.
    match dice.next() % 8 {
        0 => head.extend_from_slice(format!("User-Agent: {nasty}\r\n").as_bytes()),
        1 => head.extend_from_slice(format!("User-Agent: {}\r\n", "A".repeat(30_000)).as_bytes()),
        2 => {
            let chain = vec!["6.6.6.6"; 3_000].join(", ");
            head.extend_from_slice(
                format!("X-Forwarded-For: {chain}, 198.51.100.7\r\n").as_bytes(),
            );
        }
        3 => head.extend_from_slice(b"X-Forwarded-For: \xff\xfe, 198.51.100.7\r\n"),
        4 => head.extend_from_slice(format!("X-Request-Id: {}\r\n", "r".repeat(10_000)).as_bytes()),
        5 => head.extend_from_slice(format!("X-Request-Id: {nasty}\r\n").as_bytes()),
        6 => {
            for i in 0..90 {
                head.extend_from_slice(format!("X-Filler-{i}: {nasty}\r\n").as_bytes());
            }
        }
        // Refused by the HTTP server before any layer runs: no event (SECURITY.md).
        _ => head.extend_from_slice(b"X-Nul: a\x00b\r\n"),
    }
    if method == "POST" {
        head.extend_from_slice(format!("{admin}\r\n").as_bytes());
        body = match dice.next() % 5 {
            0 => b"{not json".to_vec(),
            1 => format!(
                r#"{{"name":"{}","role":"viewer","password":"PWSECRET{n}"}}"#,
                "n".repeat(200_000)
            )
            .into_bytes(),
            2 => ("[".repeat(10_000) + &"]".repeat(10_000)).into_bytes(),
            3 => format!(r#"{{"username":"{nasty}","password":"PWSECRET{n}"}}"#).into_bytes(),
            _ => vec![0xff, 0xfe, 0x00, 0x01],
        };
        head.extend_from_slice(b"Content-Type: application/json\r\n");
    }
    head.extend_from_slice(
        format!(
            "Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    head.extend_from_slice(&body);
    head
}

/// Sends raw bytes; the response's status and its `x-request-id`, if it has one.
async fn send_raw(addr: SocketAddr, bytes: &[u8]) -> (Option<u16>, Option<String>) {
    let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await else {
        return (None, None);
    };
    // The server may answer (and close) before reading a body it refuses.
    let _ = stream.write_all(bytes).await;
    let mut response = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut response));
    let _ = read.await;
    let text = String::from_utf8_lossy(&response);
    let status = text.get(9..12).and_then(|s| s.parse().ok());
    let request_id = text
        .split("\r\n\r\n")
        .next()
        .unwrap_or("")
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("x-request-id")
                .then(|| value.trim().to_owned())
        });
    (status, request_id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_hostile_requests_leave_the_demo_serving_and_its_trail_sound() {
    let dir = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let stderr_path = logs.path().join("stderr");
    let demo = Demo::start_with_stderr_in(
        dir.path(),
        &stderr_path,
        &[("DEMO_TRUSTED_PROXIES", "127.0.0.1/32")],
    );
    let addr = demo.addr;
    let pid = demo.child.id();
    let login = br#"{"username":"alice","password":"alice-password"}"#;
    let request = [
        format!(
            "POST /login HTTP/1.1\r\nHost: demo\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            login.len()
        )
        .into_bytes(),
        login.to_vec(),
    ]
    .concat();
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(&request).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let token = response
        .split(r#""token":""#)
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    let admin = format!("Authorization: Bearer {token}");
    let rss_before = rss_mib(pid);

    let mut dice = Dice(0x5eed_1234_abcd_0042);
    let requests: Vec<Vec<u8>> = (0..REQUESTS)
        .map(|n| hostile_request(&mut dice, n, &admin))
        .collect();
    let mut answered: HashMap<String, u16> = HashMap::new();
    let mut rejected_before_the_layer = 0;
    for chunk in requests.chunks(8) {
        let sent = chunk.iter().map(|bytes| {
            let bytes = bytes.clone();
            async move { send_raw(addr, &bytes).await }
        });
        for (status, request_id) in futures_join(sent).await {
            match (status, request_id) {
                (Some(status), Some(id)) => {
                    assert!(
                        answered.insert(id.clone(), status).is_none(),
                        "request id {id} twice"
                    );
                }
                (Some(_), None) => rejected_before_the_layer += 1,
                (None, _) => panic!("a request got no response: the server stopped serving"),
            }
        }
    }
    let rss_after = rss_mib(pid);
    assert!(
        rejected_before_the_layer > 0,
        "the campaign reaches the server's own checks too"
    );
    // Still serving, as usual.
    let (status, _) = send_raw(
        addr,
        b"GET /hello HTTP/1.1\r\nHost: demo\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, Some(200));
    assert!(demo.terminate().success());

    // Every line: one JSON object, within its bound.
    let mut lines = 0;
    for file in common::trail_files(dir.path()) {
        let text = std::fs::read_to_string(&file).unwrap();
        for line in text.lines() {
            lines += 1;
            assert!(line.len() <= MAX_LINE, "a line of {} bytes", line.len());
            let event: serde_json::Value = serde_json::from_str(line).expect("one JSON object");
            assert!(event.is_object());
            assert!(!line.contains("SECRET"), "a secret was recorded: {line}");
        }
    }
    // One event per request that reached the layer (it stamps `x-request-id` on each).
    let events = read_trail(dir.path());
    let mut recorded: HashMap<String, usize> = HashMap::new();
    for event in &events {
        if let Some(id) = event["request"]["id"].as_str() {
            *recorded.entry(id.to_owned()).or_default() += 1;
        }
    }
    for id in answered.keys() {
        assert_eq!(recorded.get(id), Some(&1), "request {id}: one event");
    }
    let stderr = std::fs::read_to_string(&stderr_path).unwrap();
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        rss_after < rss_before + 150,
        "RSS grew from {rss_before} MiB to {rss_after} MiB"
    );
    println!(
        "hostile campaign: {REQUESTS} requests, {} reached the layer, {rejected_before_the_layer} \
         rejected by the HTTP server, {lines} trail lines, RSS {rss_before} -> {rss_after} MiB",
        answered.len()
    );
}

/// Awaits every future, concurrently, in order.
async fn futures_join<F>(futures: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for handle in handles {
        out.push(handle.await.unwrap());
    }
    out
}
