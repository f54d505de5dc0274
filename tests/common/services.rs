//! PostgreSQL and NATS for the tests that need them.
//!
//! The addresses come from `AUDIT_TEST_POSTGRES_URL` / `AUDIT_TEST_NATS_URL` (defaults: the
//! loopback services). When a service is unreachable the test prints a loud `SKIPPED` line
//! and passes, unless `AUDIT_REQUIRE_SERVICES=1`, when it fails.

use std::time::Duration;

pub const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
pub const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";

/// Says loudly that a test is skipped, on the process's standard error itself: the test
/// harness captures `eprintln!` of passing tests, and a skip must be seen.
pub fn skipped(message: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "\n*** SKIPPED: {message}\n");
}

fn unavailable(service: &str, variable: &str, url: &str, error: &dyn std::fmt::Display) {
    let required = std::env::var("AUDIT_REQUIRE_SERVICES").is_ok_and(|value| value == "1");
    if required {
        panic!("{service} at {url} ({variable}) is required (AUDIT_REQUIRE_SERVICES=1): {error}");
    }
    skipped(&format!(
        "{service} is unreachable at {url} ({variable}): {error}\n\
         *** set {variable}, or start the service; AUDIT_REQUIRE_SERVICES=1 makes this a failure"
    ));
}

/// The PostgreSQL URL, and a client for the test's own queries; `None` (after a SKIPPED
/// line) when the server is unreachable.
pub async fn postgres() -> Option<(String, tokio_postgres::Client)> {
    let url = std::env::var("AUDIT_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| DEFAULT_POSTGRES_URL.to_owned());
    let connect = tokio_postgres::connect(&url, tokio_postgres::NoTls);
    match tokio::time::timeout(Duration::from_secs(5), connect).await {
        Ok(Ok((client, connection))) => {
            tokio::spawn(connection);
            Some((url, client))
        }
        Ok(Err(error)) => {
            unavailable("PostgreSQL", "AUDIT_TEST_POSTGRES_URL", &url, &error);
            None
        }
        Err(_) => {
            unavailable("PostgreSQL", "AUDIT_TEST_POSTGRES_URL", &url, &"timed out");
            None
        }
    }
}

/// The NATS URL, and a JetStream context for the test's own reads; `None` (after a SKIPPED
/// line) when the server is unreachable.
pub async fn nats() -> Option<(String, async_nats::jetstream::Context)> {
    let url = std::env::var("AUDIT_TEST_NATS_URL").unwrap_or_else(|_| DEFAULT_NATS_URL.to_owned());
    let connect = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(5))
        .connect(url.as_str());
    match tokio::time::timeout(Duration::from_secs(10), connect).await {
        Ok(Ok(client)) => Some((url, async_nats::jetstream::new(client))),
        Ok(Err(error)) => {
            unavailable("NATS", "AUDIT_TEST_NATS_URL", &url, &error);
            None
        }
        Err(_) => {
            unavailable("NATS", "AUDIT_TEST_NATS_URL", &url, &"timed out");
            None
        }
    }
}

/// `count` events of one kind, by actors `user-0`, `user-1`, ..., on targets `item:0`,
/// `item:1`, ...
pub fn sample_events(
    count: usize,
    category: audit_layer::Category,
    action: &'static str,
) -> Vec<audit_layer::AuditEvent> {
    (0..count)
        .map(|index| {
            audit_layer::AuditEvent::new(
                category,
                action,
                audit_layer::Outcome::Success,
                audit_layer::Actor::user(format!("user-{index}")),
            )
            .with_target(format!("item:{index}"))
        })
        .collect()
}

/// A name no other test run uses: `prefix` and a random suffix.
pub fn unique_name(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

/// The path of a program the test needs (`rsyslogd`), from `PATH` or `/usr/sbin`; `None`
/// (after a SKIPPED line) when it is not installed, a failure under
/// `AUDIT_REQUIRE_SERVICES=1`.
pub fn program(name: &str, package: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file());
    if found.is_none() {
        let required = std::env::var("AUDIT_REQUIRE_SERVICES").is_ok_and(|value| value == "1");
        if required {
            panic!(
                "{name} is required (AUDIT_REQUIRE_SERVICES=1) and not installed: apt-get install {package}"
            );
        }
        skipped(&format!(
            "{name} is not installed (apt-get install {package})\n\
             *** AUDIT_REQUIRE_SERVICES=1 makes this a failure"
        ));
    }
    found
}
