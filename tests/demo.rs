//! The demo server end to end, over HTTP, as a separate process.

mod common;

use common::demo::{Demo, login, read_trail, rss_mib, send};

#[tokio::test]
async fn demo_records_requests_logins_and_flushes_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let demo = Demo::start(dir.path(), &[]);
    let banner = demo.banner.join("\n");
    assert!(
        banner.contains("alice / alice-password / admin"),
        "{banner}"
    );
    assert!(
        banner.contains("alerts: 5 failed logins for one username or 10 from one IP within 60 s"),
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
    // Health and metrics: served, and not recorded (skip list).
    let (status, health) = send(addr, "GET", "/health", &[], "").await;
    assert_eq!(status, 200, "{health}");
    let health: serde_json::Value = serde_json::from_str(&health).expect("health JSON");
    assert_eq!(health["status"], "healthy", "{health}");
    // The Merkle tree's follower, which signs the tree heads receipts are checked against.
    assert_eq!(health["followers"][0]["name"], "merkle", "{health}");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let (status, metrics) = send(addr, "GET", "/metrics", &[], "").await;
    assert_eq!(status, 200);
    assert!(metrics.contains("audit_events_written_total"), "{metrics}");
    assert!(metrics.contains("audit_sync_seconds"), "{metrics}");
    assert!(
        metrics.contains("audit_sink_pending_events{sink=\"jsonl:"),
        "{metrics}"
    );

    let status = demo.terminate();
    assert!(
        status.success(),
        "the demo exits cleanly on SIGTERM: {status:?}"
    );

    let trail = read_trail(dir.path());
    // Audit start and stop are events too.
    assert_eq!(trail.first().unwrap()["action"], "audit.start");
    assert_eq!(trail.last().unwrap()["action"], "audit.stop");
    let events: Vec<_> = trail
        .into_iter()
        .filter(|e| e.get("request").is_some())
        .collect();
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
    // The failed login says whose and why, in the details the detectors read.
    assert_eq!(events[2]["details"]["username"], "bob");
    assert_eq!(events[2]["details"]["failure"], "bad_password");
    assert_eq!(events[2]["category"], "auth");
    assert_eq!(events[1]["target"], "user:1");
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

    for (name, value, expected) in [
        (
            "AUDIT_SIEM_FORMAT",
            "leef",
            "AUDIT_SIEM_FORMAT: unknown event format `leef`",
        ),
        (
            "AUDIT_SYSLOG_URL",
            "udp://127.0.0.1:514",
            "AUDIT_SYSLOG_URL: invalid syslog",
        ),
        (
            "AUDIT_WEBHOOK_URL",
            "hook",
            "AUDIT_WEBHOOK_URL: invalid webhook",
        ),
        (
            "AUDIT_WEBHOOK_SECRET",
            "s3cret",
            "AUDIT_WEBHOOK_SECRET is set but AUDIT_WEBHOOK_URL is not",
        ),
    ] {
        let output = std::process::Command::new(common::demo::demo_binary())
            .env("DEMO_ADDR", "127.0.0.1:0")
            .env("AUDIT_DIR", dir.path())
            .env(name, value)
            .output()
            .unwrap();
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{stderr}");
    }
}

#[tokio::test]
async fn demo_admin_routes_are_sensitive_handlers() {
    let dir = tempfile::tempdir().unwrap();
    let demo = Demo::start(dir.path(), &[]);
    let addr = demo.addr;
    let alice = login(addr, "alice", "alice-password").await;
    let bob = login(addr, "bob", "bob-password").await;

    // A viewer is refused; the handler does not run.
    let (status, _) = send(
        addr,
        "PUT",
        "/admin/users/3/role",
        &[&bob],
        r#"{"role":"viewer"}"#,
    )
    .await;
    assert_eq!(status, 403);
    let (status, body) = send(
        addr,
        "PUT",
        "/admin/users/2/role",
        &[&alice],
        r#"{"role":"admin"}"#,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = send(
        addr,
        "POST",
        "/admin/users",
        &[&alice],
        r#"{"name":"dave","role":"editor","password":"dave-password-1"}"#,
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        send(addr, "DELETE", "/admin/users/4", &[&alice], "")
            .await
            .0,
        204
    );
    let (status, body) = send(
        addr,
        "PUT",
        "/admin/config/max_upload_mb",
        &[&alice],
        r#"{"value":25}"#,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = send(
        addr,
        "POST",
        "/update-balance",
        &[&alice],
        r#"{"user":"bob","balance":250}"#,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, csv) = send(addr, "GET", "/admin/export-users", &[&alice], "").await;
    assert_eq!(status, 200);
    assert!(csv.starts_with("id,name,role\n"), "{csv}");
    let (status, _) = send(
        addr,
        "POST",
        "/password",
        &[&bob],
        r#"{"old_password":"bob-password","new_password":"bob-new-password"}"#,
    )
    .await;
    assert_eq!(status, 204);
    // The viewer page: admins only, and what clients sent is escaped.
    // (bob is an admin by now; carol is an editor.)
    let carol = login(addr, "carol", "carol-password").await;
    assert_eq!(
        send(addr, "GET", "/admin/audit", &[&carol], "").await.0,
        403
    );
    // The library's viewer, nested at /admin/audit.
    let (status, page) = send(addr, "GET", "/admin/audit", &[&alice], "").await;
    assert_eq!(status, 200);
    assert!(page.contains("user.role.change"), "{page}");
    assert!(page.contains("security.privilege.grant"), "{page}");
    // bob's promotion raised an alert, on the alerts page.
    let (status, alerts) = send(addr, "GET", "/admin/audit/alerts", &[&alice], "").await;
    assert_eq!(status, 200);
    assert_eq!(alerts.matches("<tr><td>").count(), 1, "{alerts}");
    assert!(alerts.contains("security.privilege.grant"), "{alerts}");
    let (status, history) = send(addr, "GET", "/admin/audit/targets/user%3A2", &[&alice], "").await;
    assert_eq!(status, 200);
    assert!(
        history.contains("&quot;role&quot;: &quot;admin&quot;"),
        "{history}"
    );
    let (_, status_page) = send(addr, "GET", "/admin/audit/status", &[&alice], "").await;
    assert!(
        status_page.contains("Each line links to the one before it"),
        "{status_page}"
    );
    assert!(status_page.contains("0 gap(s)"), "{status_page}");
    assert!(demo.terminate().success());

    let events = read_trail(dir.path());
    let public_key =
        audit_layer::file::PublicKey::from_file(dir.path().join("signing.pub")).unwrap();
    let options = audit_layer::file::VerifyOptions {
        public_key: Some(public_key),
        ..Default::default()
    };
    let report = audit_layer::file::verify_trail(dir.path(), &options).unwrap();
    assert_eq!(report.events as usize, events.len());
    assert_eq!(report.unsealed, 0, "shutdown seals the trail");
    let find = |action: &str| -> Vec<&serde_json::Value> {
        events.iter().filter(|e| e["action"] == action).collect()
    };
    let role_changes = find("user.role.change");
    assert_eq!(role_changes.len(), 2);
    let denied = role_changes[0];
    assert_eq!(denied["outcome"], "denied");
    assert_eq!(denied["category"], "sensitive");
    assert_eq!(denied["actor"]["name"], "bob");
    assert!(denied.get("before").is_none(), "the handler did not run");
    let change = role_changes[1];
    assert_eq!(change["outcome"], "success");
    assert_eq!(change["target"], "user:2");
    assert_eq!(change["actor"]["name"], "alice");
    assert_eq!(change["before"]["role"], "viewer");
    assert_eq!(change["after"]["role"], "admin");
    assert_eq!(change["before"]["password_hash"], "[REDACTED]");
    assert_eq!(
        change["changes"],
        serde_json::json!([{"field": "role", "old": "viewer", "new": "admin"}])
    );

    // The role change to admin raised one alert, right after it; dave's creation as an
    // editor raised none.
    let grants = find("security.privilege.grant");
    assert_eq!(grants.len(), 1, "{grants:#?}");
    assert_eq!(grants[0]["category"], "alert");
    assert_eq!(grants[0]["target"], "user:2");
    assert_eq!(grants[0]["actor"]["name"], "alice");
    assert_eq!(grants[0]["details"]["role"], "admin");
    assert_eq!(
        grants[0]["details"]["events"],
        serde_json::json!([change["id"]])
    );
    let after_change = events.iter().position(|e| e["id"] == change["id"]).unwrap();
    assert_eq!(events[after_change + 1]["id"], grants[0]["id"]);

    let create = find("user.create")[0];
    assert_eq!(create["target"], "user:4");
    assert!(create.get("before").is_none());
    assert_eq!(create["after"]["name"], "dave");
    assert_eq!(create["details"]["request_body"]["password"], "[REDACTED]");
    let delete = find("user.delete")[0];
    assert_eq!(delete["before"]["name"], "dave");
    assert!(delete.get("after").is_none());
    let config = find("config.update")[0];
    assert_eq!(config["target"], "config:max_upload_mb");
    assert_eq!(
        config["changes"],
        serde_json::json!([{"field": "value", "old": 10, "new": 25}])
    );
    let balance = find("balance.update")[0];
    assert_eq!(balance["target"], "account:bob");
    assert_eq!(
        balance["changes"],
        serde_json::json!([{"field": "balance", "old": 100, "new": 250}])
    );
    let export = find("user.export")[0];
    assert_eq!(export["category"], "sensitive");
    assert_eq!(
        export["details"],
        serde_json::json!({"format": "csv", "record_count": 3})
    );
    let password = find("auth.password.change")[0];
    assert_eq!(password["target"], "user:2");
    assert_eq!(
        password["changes"],
        serde_json::json!([{"field": "password_hash", "redacted": true}])
    );
    let text = serde_json::to_string(&events).unwrap();
    for secret in ["bob-new-password", "dave-password-1", "$argon2"] {
        assert!(!text.contains(secret), "{secret} leaked into the trail");
    }
}

#[tokio::test]
async fn demo_serves_its_route_coverage_to_admins() {
    let dir = tempfile::tempdir().unwrap();
    let demo = Demo::start(dir.path(), &[]);
    let addr = demo.addr;
    let bob = login(addr, "bob", "bob-password").await;
    assert_eq!(
        send(addr, "GET", "/admin/audit/coverage", &[&bob], "")
            .await
            .0,
        403
    );
    let alice = login(addr, "alice", "alice-password").await;
    let (status, body) = send(addr, "GET", "/admin/audit/coverage", &[&alice], "").await;
    assert_eq!(status, 200, "{body}");
    let report: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(report["gaps"], serde_json::json!([]), "{report:#}");
    let routes = report["routes"].as_array().unwrap();
    let status_of = |method: &str, path: &str| {
        routes
            .iter()
            .find(|r| r["method"] == method && r["path"] == path)
            .map(|r| r["status"].as_str().unwrap().to_owned())
            .unwrap_or_else(|| panic!("{method} {path} not in {report:#}"))
    };
    assert_eq!(status_of("PUT", "/admin/users/{id}/role"), "sensitive");
    assert_eq!(status_of("POST", "/update-balance"), "sensitive");
    assert_eq!(status_of("POST", "/password"), "sensitive");
    assert_eq!(status_of("GET", "/admin/export-users"), "manual");
    assert_eq!(status_of("POST", "/login"), "manual");
    assert_eq!(status_of("GET", "/hello"), "request_only");
    assert!(demo.terminate().success());
    // The view itself is in the trail, as the admin's request.
    let events = read_trail(dir.path());
    assert!(
        events
            .iter()
            .any(|e| e["request"]["route"] == "/admin/audit/coverage" && e["actor"]["id"] == "1")
    );
}

#[tokio::test]
async fn demo_raises_stuffing_denial_and_export_alerts_at_its_thresholds() {
    let dir = tempfile::tempdir().unwrap();
    let demo = Demo::start(dir.path(), &[]);
    let addr = demo.addr;
    // Ten usernames nobody has, once each, from one address.
    for n in 0..10 {
        let body = format!(r#"{{"username":"stuffed{n}","password":"guess"}}"#);
        assert_eq!(send(addr, "POST", "/login", &[], &body).await.0, 401);
    }
    // Bob, a viewer, knocks on an admin route twelve times: one burst.
    let bob = login(addr, "bob", "bob-password").await;
    for _ in 0..12 {
        assert_eq!(
            send(addr, "GET", "/admin/export-users", &[&bob], "")
                .await
                .0,
            403
        );
    }
    // Alice exports ten times within ten minutes.
    let alice = login(addr, "alice", "alice-password").await;
    for _ in 0..10 {
        assert_eq!(
            send(addr, "GET", "/admin/export-users", &[&alice], "")
                .await
                .0,
            200
        );
    }
    assert!(demo.terminate().success());

    let events = read_trail(dir.path());
    let alerts = |action: &str| -> Vec<&serde_json::Value> {
        events.iter().filter(|e| e["action"] == action).collect()
    };
    let stuffing = alerts("security.credential_stuffing");
    assert_eq!(stuffing.len(), 1, "{stuffing:#?}");
    assert_eq!(stuffing[0]["target"], "ip:127.0.0.1");
    assert_eq!(stuffing[0]["details"]["count"], 10);
    assert_eq!(
        stuffing[0]["details"]["events"].as_array().unwrap().len(),
        10
    );
    let denials = alerts("security.denial_burst");
    assert_eq!(denials.len(), 1, "{denials:#?}");
    assert_eq!(denials[0]["target"], "actor:2");
    assert_eq!(denials[0]["details"]["rule"], "denial_burst");
    let exports = alerts("security.mass_export");
    assert_eq!(exports.len(), 1, "{exports:#?}");
    assert_eq!(exports[0]["target"], "actor:1");
    assert_eq!(exports[0]["details"]["window_seconds"], 600.0);
    // Each alert names events that are in the trail.
    for alert in stuffing.iter().chain(&denials).chain(&exports) {
        for id in alert["details"]["events"].as_array().unwrap() {
            assert!(events.iter().any(|e| &e["id"] == id), "{id}");
        }
    }
}

#[tokio::test]
async fn demo_raises_bruteforce_alerts_for_failed_logins() {
    let dir = tempfile::tempdir().unwrap();
    let demo = Demo::start(dir.path(), &[]);
    let addr = demo.addr;
    // Five failures for carol: one alert for her username. Five more, for names nobody
    // has, from the same address: ten from it, one alert for the address.
    let usernames = ["carol"; 5].into_iter().map(str::to_owned);
    for username in usernames.chain((0..5).map(|n| format!("nobody{n}"))) {
        let body = format!(r#"{{"username":"{username}","password":"guess"}}"#);
        assert_eq!(send(addr, "POST", "/login", &[], &body).await.0, 401);
    }
    assert!(demo.terminate().success());

    let events = read_trail(dir.path());
    let alerts: Vec<_> = events
        .iter()
        .filter(|e| e["action"] == "security.bruteforce")
        .collect();
    assert_eq!(alerts.len(), 2, "{alerts:#?}");
    assert_eq!(alerts[0]["category"], "alert");
    assert_eq!(alerts[0]["target"], "username:carol");
    assert_eq!(alerts[0]["details"]["count"], 5);
    assert_eq!(alerts[1]["target"], "ip:127.0.0.1");
    assert_eq!(alerts[1]["details"]["count"], 10);
    assert!(!serde_json::to_string(&events).unwrap().contains("guess"));
}

#[test]
fn sigterm_right_after_the_listening_line_stops_the_demo_gracefully() {
    // Scripts (and these tests) send signals as soon as the "listening on" line appears; the
    // handlers must already be installed by then, or the signal kills the process.
    for _ in 0..3 {
        let dir = tempfile::tempdir().unwrap();
        let demo = Demo::start(dir.path(), &[]);
        let status = demo.terminate();
        assert!(status.success(), "{status:?}");
        let trail = read_trail(dir.path());
        assert_eq!(trail.last().unwrap()["action"], "audit.stop");
    }
}

/// With `AUDIT_POSTGRES_URL` and `AUDIT_NATS_URL` set, the demo delivers each event to the
/// `audit_events` table and the `AUDIT` stream as well as to its files.
#[tokio::test]
async fn demo_also_delivers_to_postgres_and_nats_when_asked() {
    let Some((postgres_url, client)) = common::services::postgres().await else {
        return;
    };
    let Some((nats_url, jetstream)) = common::services::nats().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let demo = Demo::start(
        dir.path(),
        &[
            ("AUDIT_POSTGRES_URL", &postgres_url),
            ("AUDIT_NATS_URL", &nats_url),
        ],
    );
    let banner = demo.banner.join("\n");
    assert!(banner.contains("audit copy: postgres:"), "{banner}");
    assert!(banner.contains("audit copy: nats:"), "{banner}");
    let addr = demo.addr;
    let alice = login(addr, "alice", "alice-password").await;
    let request_id = uuid::Uuid::new_v4().to_string();
    let (status, body) = send(
        addr,
        "PUT",
        "/admin/config/session_ttl_minutes",
        &[&alice, &format!("X-Request-Id: {request_id}")],
        r#"{"value":45}"#,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(demo.terminate().success());

    let in_file: Vec<_> = read_trail(dir.path())
        .into_iter()
        .filter(|event| event["request"]["id"] == request_id.as_str())
        .collect();
    assert_eq!(in_file.len(), 1);
    // The route names its parameter so that the path keeps it (see the demo's router).
    assert_eq!(
        in_file[0]["request"]["path"],
        "/admin/config/session_ttl_minutes"
    );
    let id = in_file[0]["id"].as_str().unwrap().to_owned();

    // The copies follow the file trail: the event reaches them within moments.
    let trail = std::fs::read_to_string(dir.path().join(audit_layer::file::TRAIL_ID)).unwrap();
    let trail = trail.trim();
    let mut rows = Vec::new();
    for _ in 0..200 {
        rows = client
            .query(
                "SELECT id::text, category, action, target, event->'after'->>'value', trail \
                 FROM audit_events WHERE request_id = $1",
                &[&request_id],
            )
            .await
            .unwrap();
        if !rows.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<_, &str>(0), id);
    assert_eq!(rows[0].get::<_, &str>(1), "sensitive");
    assert_eq!(rows[0].get::<_, &str>(2), "config.update");
    assert_eq!(
        rows[0].get::<_, Option<&str>>(3),
        Some("config:session_ttl_minutes")
    );
    assert_eq!(rows[0].get::<_, Option<&str>>(4), Some("45"));
    assert_eq!(rows[0].get::<_, &str>(5), trail);

    let stream = jetstream.get_stream("AUDIT").await.unwrap();
    let subject = format!("audit.{trail}.sensitive.config.update");
    let mut message = None;
    for _ in 0..200 {
        if let Ok(found) = stream.get_last_raw_message_by_subject(&subject).await {
            message = Some(found);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let message = message.expect("the event on NATS");
    let event: serde_json::Value = serde_json::from_slice(&message.payload).unwrap();
    assert_eq!(event["id"], id.as_str());
    assert_eq!(event["request"]["id"], request_id.as_str());
}

/// Failed logins from anyone (each one an Argon2 check holding 19 MiB) leave the demo's
/// memory bounded: 200 of them, 16 at a time, once took it from 66 MB to 3.6 GB.
#[tokio::test]
async fn a_burst_of_failed_logins_leaves_the_demo_s_memory_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let demo = Demo::start(dir.path(), &[]);
    let addr = demo.addr;
    let pid = demo.child.id();
    let body = r#"{"username":"x","password":"y"}"#;
    assert_eq!(send(addr, "POST", "/login", &[], body).await.0, 401);
    let before = rss_mib(pid);
    let mut peak = before;
    let attempts = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let workers: Vec<_> = (0..16)
        .map(|_| {
            let attempts = attempts.clone();
            tokio::spawn(async move {
                while attempts.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < 200 {
                    assert_eq!(send(addr, "POST", "/login", &[], body).await.0, 401);
                }
            })
        })
        .collect();
    while !workers.iter().all(|w| w.is_finished()) {
        peak = peak.max(rss_mib(pid));
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    for worker in workers {
        worker.await.unwrap();
    }
    let after = rss_mib(pid);
    println!(
        "demo RSS: {before} MiB before, {peak} MiB at most, {after} MiB after 200 failed logins"
    );
    assert!(
        peak < before + 100,
        "RSS grew from {before} MiB to {peak} MiB under 200 failed logins"
    );
    assert!(demo.terminate().success());
}

/// With PostgreSQL gone (a proxy of the test's own, cut), the demo answers ordinary and
/// sensitive requests as usual and `/health` says the copy is behind; killed (SIGKILL)
/// during the cut and started again, it ships every event exactly once, in order, when the
/// server returns.
// Multi-threaded: the proxy's tasks run while the demo's start blocks this thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_outage_never_stalls_the_demo_and_a_kill_during_it_loses_nothing() {
    let Some((postgres_url, client)) = common::services::postgres().await else {
        return;
    };
    let (head, rest) = postgres_url.split_once('@').expect("a URL with a user");
    let (host_port, tail) = rest.split_once('/').unwrap_or((rest, ""));
    let upstream = tokio::net::lookup_host(host_port)
        .await
        .unwrap()
        .next()
        .unwrap();
    let proxy = common::proxy::Proxy::start(upstream).await;
    let proxied_url = format!("{head}@{}/{tail}", proxy.addr);
    let env = [("AUDIT_POSTGRES_URL", proxied_url.as_str())];
    let dir = tempfile::tempdir().unwrap();

    proxy.cut();
    let mut demo = Demo::start(dir.path(), &env);
    for round in 0..2 {
        let addr = demo.addr;
        let alice = login(addr, "alice", "alice-password").await;
        for index in 0..10 {
            let started = std::time::Instant::now();
            let (status, body) = send(
                addr,
                "PUT",
                "/admin/config/session_ttl_minutes",
                &[&alice],
                &format!(r#"{{"value":{index}}}"#),
            )
            .await;
            assert_eq!(status, 200, "{body}");
            let (status, _) = send(addr, "GET", "/hello", &[], "").await;
            assert_eq!(status, 200);
            assert!(
                started.elapsed() < std::time::Duration::from_secs(2),
                "round {round}: requests waited {:?} for PostgreSQL",
                started.elapsed()
            );
        }
        let mut health = String::new();
        for _ in 0..100 {
            health = send(addr, "GET", "/health", &[], "").await.1;
            if health.contains("degraded") {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert!(
            health.contains("degraded") && health.contains("behind_events"),
            "{health}"
        );
        if round == 0 {
            // Killed mid-outage: the answered events are in the trail, not yet copied.
            demo.child.kill().unwrap();
            demo.child.wait().unwrap();
            demo = Demo::start(dir.path(), &env);
        }
    }

    proxy.restore();
    let trail = std::fs::read_to_string(dir.path().join(audit_layer::file::TRAIL_ID)).unwrap();
    let trail = trail.trim().to_owned();
    let expected = || -> Vec<(u64, String)> {
        audit_layer::file::TrailReader::new(dir.path(), 0, None)
            .read(usize::MAX)
            .unwrap()
            .into_iter()
            .map(|line| (line.seq, line.hash))
            .collect()
    };
    let mut stored = Vec::new();
    for _ in 0..300 {
        // Until the follower reconnects, on a fresh database the table may not exist yet.
        stored = client
            .query(
                "SELECT seq, hash FROM audit_events WHERE trail = $1 ORDER BY seq",
                &[&trail],
            )
            .await
            .map(|rows| {
                rows.iter()
                    .map(|row| (row.get::<_, i64>(0) as u64, row.get::<_, String>(1)))
                    .collect()
            })
            .unwrap_or_default();
        if stored.len() >= expected().len() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(stored, expected(), "every event once, in order");
    let changes = read_trail(dir.path())
        .into_iter()
        .filter(|event| event["action"] == "config.update")
        .count();
    assert_eq!(changes, 20);
    assert!(demo.terminate().success());
}

#[tokio::test]
async fn one_demo_event_is_proven_to_an_outsider_with_the_public_key_alone() {
    use common::demo::run_audit;
    let dir = tempfile::tempdir().unwrap();
    let demo = Demo::start(dir.path(), &[]);
    let alice = login(demo.addr, "alice", "alice-password").await;
    let (status, _) = send(
        demo.addr,
        "PUT",
        "/admin/users/2/role",
        &[&alice],
        r#"{"role":"editor"}"#,
    )
    .await;
    assert_eq!(status, 200);
    // Stopping seals the trail with a checkpoint, and the tree's head is signed with it.
    assert!(demo.terminate().success());
    let change = read_trail(dir.path())
        .into_iter()
        .find(|event| event["action"] == "user.role.change")
        .expect("the role change");
    let receipt = dir.path().join("receipt.json");
    let dir_arg = dir.path().to_str().unwrap();
    let id = change["id"].as_str().unwrap();
    let (code, _, stderr) = run_audit(["prove", dir_arg, id, "--out", receipt.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{stderr}");
    let text = std::fs::read_to_string(&receipt).unwrap();
    assert!(
        text.contains("user.role.change") && !text.contains("auth.login"),
        "{text}"
    );
    let public = dir.path().join("signing.pub");
    let (code, stdout, stderr) = run_audit([
        "verify-receipt",
        receipt.to_str().unwrap(),
        "--public-key",
        public.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("signed by audit-demo.localhost/trail"),
        "{stdout}"
    );
}
