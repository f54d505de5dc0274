//! Runs the demo server as a child process, as a user or a script would.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

/// The demo's executable, built once per test binary with the same cargo.
pub fn demo_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| cargo_build(&["--example", "demo"], "demo"))
}

/// The `audit` command's executable, built once per test binary.
pub fn audit_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| cargo_build(&["--bin", "audit"], "audit"))
}

/// Builds a target of the workspace with the cargo running the tests, and returns the
/// executable cargo reports.
fn cargo_build(target: &[&str], name: &str) -> PathBuf {
    let output = Command::new(env!("CARGO"))
        .arg("build")
        .args(target)
        .args(["--message-format=json", "--quiet"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stderr(Stdio::inherit())
        .output()
        .expect("run cargo build");
    assert!(output.status.success(), "building {name} failed");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|msg| msg["reason"] == "compiler-artifact" && msg["target"]["name"] == name)
        .find_map(|msg| msg["executable"].as_str().map(PathBuf::from))
        .unwrap_or_else(|| panic!("cargo reported no executable for {name}"))
}

/// A running demo server; killed when dropped.
pub struct Demo {
    pub child: Child,
    pub addr: SocketAddr,
    /// What the demo printed before it started listening.
    pub banner: Vec<String>,
}

impl Demo {
    /// Starts the demo on a free loopback port with its trail in `audit_dir`.
    pub fn start(audit_dir: &Path, extra_env: &[(&str, &str)]) -> Self {
        Self::start_command(Command::new(demo_binary()), audit_dir, extra_env)
    }

    /// The same, run by `command`: the demo's binary, or a shell that sets limits and
    /// `exec`s it ([`demo_binary`]).
    pub fn start_command(
        mut command: Command,
        audit_dir: &Path,
        extra_env: &[(&str, &str)],
    ) -> Self {
        command
            .env("DEMO_ADDR", "127.0.0.1:0")
            .env("AUDIT_DIR", audit_dir)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (name, value) in extra_env {
            command.env(name, value);
        }
        let mut child = command.spawn().expect("start the demo");
        let stdout = child.stdout.take().expect("demo stdout");
        let mut lines = BufReader::new(stdout).lines();
        let mut banner = Vec::new();
        let addr = loop {
            let line = lines
                .next()
                .expect("the demo printed its address")
                .expect("read demo stdout");
            banner.push(line.clone());
            if let Some(rest) = line.strip_prefix("audit demo listening on http://") {
                break rest.trim().parse().expect("a socket address");
            }
        };
        // Keep draining stdout so the demo never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                banner_sink(line);
            }
        });
        Self {
            child,
            addr,
            banner,
        }
    }

    /// Starts the demo with its standard error written to the file `stderr`, to be read
    /// afterwards.
    pub fn start_with_stderr_in(
        audit_dir: &Path,
        stderr: &Path,
        extra_env: &[(&str, &str)],
    ) -> Self {
        let mut command = Command::new("sh");
        command.args([
            "-c",
            &format!("exec \"$0\" 2>'{}'", stderr.display()),
            demo_binary().to_str().expect("a UTF-8 path"),
        ]);
        Self::start_command(command, audit_dir, extra_env)
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
        self.child.wait().expect("wait for the demo")
    }
}

fn banner_sink(_line: String) {}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Resident memory of a process, in MiB (Linux).
pub fn rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kib / 1024
}

/// Every event of the trail in `dir`, in trail order (gzipped files included).
pub fn read_trail(dir: &Path) -> Vec<serde_json::Value> {
    let mut events = Vec::new();
    audit_layer::file::for_each_event(dir, |line, event| {
        assert!(!event.is_null(), "every line is JSON: {line}");
        events.push(event.clone());
        std::ops::ControlFlow::Continue(())
    })
    .expect("read the trail");
    events
}

/// Runs the `audit` command with `args`: its exit status, standard output and standard
/// error.
pub fn run_audit<I, S>(args: I) -> (Option<i32>, String, String)
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let output = Command::new(audit_binary()).args(args).output().unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Sends one request; returns the status code and the body.
pub async fn send(
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
    let response = super::raw_http(addr, &request).await;
    let status = response[9..12].parse().expect("status code");
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Logs `name` in through the JSON API: the `Authorization` header of its token.
pub async fn login(addr: std::net::SocketAddr, name: &str, password: &str) -> String {
    let (status, body) = send(
        addr,
        "POST",
        "/login",
        &[],
        &format!(r#"{{"username":"{name}","password":"{password}"}}"#),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let token = serde_json::from_str::<serde_json::Value>(&body).unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    format!("Authorization: Bearer {token}")
}
