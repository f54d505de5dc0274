//! The SIEM formats: every event the layer, the handlers and the detectors make, written as
//! OCSF, ECS and CEF, checked against the published schemas (vendored in `tests/data/`),
//! with the trail's redaction kept and hostile values escaped.

mod common;

use std::collections::BTreeSet;

use audit_layer::detect::{BruteForce, PrivilegeGrant};
use audit_layer::event::Change;
use audit_layer::file::{JsonlFileSink, TrailReader};
use audit_layer::format::{Format, FormatError};
use audit_layer::{Actor, AuditContext, AuditEvent, AuditTrail, Category, Outcome};
use axum::Router;
use axum::body::Body;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use common::demo::run_audit;
use common::siem::{Ecs, Ocsf, parse_cef};
use common::{memory_trail, request_from};
use serde_json::{Value, json};
use tower::ServiceExt;

/// A username an attacker picks to break records: markup, CEF's separators, a line break.
const HOSTILE: &str = "<script>alert(1)</script>|a=b\\c\nCEF:0|forged";
const SECRETS: [&str; 4] = [
    "SECRET-QUERY",
    "SECRET-HEADER",
    "SECRET-LABEL",
    "SECRET-AFTER",
];

async fn login(audit: AuditContext, body: String) -> StatusCode {
    let username: Value = serde_json::from_str(&body).unwrap_or_default();
    audit.set_action("auth.login");
    audit.set_category(Category::Auth);
    audit.detail(
        "username",
        username["username"].as_str().unwrap_or_default(),
    );
    audit.set_outcome(Outcome::Failure);
    audit.set_reason("bad password");
    StatusCode::UNAUTHORIZED
}

async fn logout(audit: AuditContext) -> StatusCode {
    audit.set_action("auth.logout");
    audit.set_category(Category::Auth);
    audit.set_actor(Actor::user("7").with_name("alice").with_role("viewer"));
    StatusCode::NO_CONTENT
}

async fn delete_user(audit: AuditContext, Path(id): Path<u32>) -> StatusCode {
    audit.set_action("user.delete");
    audit.set_category(Category::Sensitive);
    audit.set_actor(Actor::user("1").with_role("admin"));
    audit.set_target(format!("user:{id}"));
    audit.label("session_token", "SECRET-LABEL");
    StatusCode::NO_CONTENT
}

/// Every kind of event: requests, auth, account changes, a role grant and its alert,
/// brute-force alerts, the trail's own start, from the layer and from application code.
async fn sample_events() -> Vec<AuditEvent> {
    let (builder, sink) = memory_trail();
    let trail = builder
        .detector(BruteForce::new("auth.login").per_username(3))
        .detector(PrivilegeGrant::new(["admin"]))
        .build()
        .expect("trail");
    let app = Router::new()
        .route("/users/{id}", get(|| async { "user" }))
        .route("/users/{id}", delete(delete_user))
        .route("/login", post(login))
        .route("/logout", post(logout))
        .route(
            "/boom",
            post(|| async { StatusCode::INTERNAL_SERVER_ERROR }),
        )
        .layer(trail.layer());
    let requests = [
        request_from(
            "192.0.2.10:50000",
            "GET",
            "/users/2?token=SECRET-QUERY&page=1",
        )
        .header("user-agent", "curl/8")
        .header("authorization", "Bearer SECRET-HEADER")
        .header("x-forwarded-for", "203.0.113.9"),
        request_from("[2001:db8::1]:443", "DELETE", "/users/3"),
        request_from("192.0.2.11:1234", "POST", "/logout"),
        request_from("192.0.2.12:1234", "POST", "/boom"),
    ];
    for request in requests {
        app.clone()
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap();
    }
    for _ in 0..3 {
        let body = json!({ "username": HOSTILE }).to_string();
        let request = request_from("198.51.100.7:4000", "POST", "/login")
            .body(Body::from(body))
            .unwrap();
        app.clone().oneshot(request).await.unwrap();
    }
    let mut grant = AuditEvent::new(
        Category::Sensitive,
        "user.role.change",
        Outcome::Success,
        Actor::user("1").with_name("root").with_role("admin"),
    )
    .with_target("user:2");
    grant.changes = Some(vec![Change::value(
        "role",
        Some("viewer".into()),
        Some("admin".into()),
    )]);
    grant.before = Some(json!({ "role": "viewer" }));
    grant.after = Some(json!({ "role": "admin", "password": "SECRET-AFTER" }));
    let created = AuditEvent::new(
        Category::Sensitive,
        "user.create",
        Outcome::Success,
        Actor::user("1"),
    )
    .with_target("user:9");
    let password = AuditEvent::new(
        Category::Auth,
        "auth.password.change",
        Outcome::Success,
        Actor::user("7"),
    );
    let mfa = AuditEvent::new(
        Category::Auth,
        "auth.mfa.verify",
        Outcome::Denied,
        Actor::user("7"),
    );
    let config = AuditEvent::new(
        Category::Sensitive,
        "config.update",
        Outcome::Success,
        Actor::service("deployer"),
    )
    .with_target("config:site")
    .with_label("tenant", "acme");
    for event in [grant, created, password, mfa, config] {
        trail.record(event).await.unwrap();
    }
    trail.shutdown().await.unwrap();
    sink.events()
}

fn encode(format: Format, event: &AuditEvent) -> String {
    let mut out = Vec::new();
    format.encode(event, &mut out).expect("encodes");
    String::from_utf8(out).expect("UTF-8")
}

#[tokio::test]
async fn every_ocsf_event_we_emit_is_valid_against_the_published_schema() {
    let schema = Ocsf::load();
    let events = sample_events().await;
    let mut classes = BTreeSet::new();
    for event in &events {
        let text = encode(Format::Ocsf, event);
        assert!(!text.contains('\n'), "one line: {text}");
        let ocsf: Value = serde_json::from_str(&text).unwrap();
        let faults = schema.check(&ocsf);
        assert!(
            faults.is_empty(),
            "{}:\n{}\n{text}",
            event.action,
            faults.join("\n")
        );
        assert_eq!(ocsf["metadata"]["uid"], event.id.to_string());
        assert_eq!(ocsf["metadata"]["product"]["name"], "audit-layer");
        assert_eq!(ocsf["unmapped"]["action"], event.action.as_ref());
        classes.insert(ocsf["class_uid"].as_u64().unwrap());
    }
    // API Activity, Application Lifecycle, Authentication, Account Change, User Access
    // Management, Detection Finding: every class the mapping uses.
    assert_eq!(
        classes,
        BTreeSet::from([2004, 3001, 3002, 3005, 6002, 6003]),
        "classes emitted"
    );
}

#[tokio::test]
async fn ocsf_maps_the_fields_an_investigator_filters_on() {
    let events = sample_events().await;
    let of = |action: &str| {
        let event = events.iter().find(|e| e.action == action).expect(action);
        serde_json::from_str::<Value>(&encode(Format::Ocsf, event)).unwrap()
    };
    let read = events
        .iter()
        .find(|e| e.request.as_ref().is_some_and(|r| r.method == "GET"))
        .unwrap();
    let ocsf: Value = serde_json::from_str(&encode(Format::Ocsf, read)).unwrap();
    assert_eq!(ocsf["class_uid"], 6003);
    assert_eq!(ocsf["activity_id"], 2);
    assert_eq!(ocsf["src_endpoint"]["ip"], "192.0.2.10");
    assert_eq!(ocsf["http_request"]["url"]["path"], "/users/2");
    assert_eq!(ocsf["http_response"]["code"], 200);
    assert_eq!(ocsf["api"]["operation"], "GET /users/{id}");
    assert_eq!(ocsf["time"], read.time.unix_micros() / 1000);

    let login = of("auth.login");
    assert_eq!(
        (login["class_uid"].clone(), login["activity_id"].clone()),
        (json!(3002), json!(1))
    );
    assert_eq!(login["status_id"], 2);
    assert_eq!(login["user"]["name"], HOSTILE);
    assert_eq!(login["status_detail"], "bad password");

    let grant = of("user.role.change");
    assert_eq!(grant["class_uid"], 3005);
    assert_eq!(grant["privileges"], json!(["admin"]));
    assert_eq!(grant["user"]["uid"], "2");
    assert_eq!(grant["unmapped"]["changes"][0]["new"], "admin");

    let delete = of("user.delete");
    assert_eq!(
        (delete["class_uid"].clone(), delete["activity_id"].clone()),
        (json!(3001), json!(6))
    );
    assert_eq!(of("auth.password.change")["activity_id"], 3);
    assert_eq!(of("user.create")["activity_id"], 1);

    let alert = events
        .iter()
        .find(|e| e.category == Category::Alert)
        .unwrap();
    let finding: Value = serde_json::from_str(&encode(Format::Ocsf, alert)).unwrap();
    assert_eq!(finding["class_uid"], 2004);
    assert_eq!(finding["finding_info"]["uid"], alert.id.to_string());
    assert!(finding["finding_info"]["analytic"]["name"].is_string());
}

#[tokio::test]
async fn every_ecs_document_uses_only_published_fields_and_allowed_values() {
    let schema = Ecs::load();
    for event in sample_events().await {
        let text = encode(Format::Ecs, &event);
        let ecs: Value = serde_json::from_str(&text).unwrap();
        let faults = schema.check(&ecs);
        assert!(
            faults.is_empty(),
            "{}:\n{}\n{text}",
            event.action,
            faults.join("\n")
        );
        assert_eq!(ecs["event"]["id"], event.id.to_string());
        assert_eq!(ecs["event"]["action"], event.action.as_ref());
        if let Some(response) = &event.response {
            assert_eq!(ecs["event"]["duration"], response.duration_us * 1000);
        }
        if event.category == Category::Alert {
            assert_eq!(ecs["event"]["kind"], "alert");
        }
        if event.action == "user.role.change" {
            assert_eq!(ecs["user"]["target"]["id"], "2");
            assert_eq!(ecs["user"]["changes"]["roles"], json!(["admin"]));
            assert_eq!(ecs["user"]["roles"], json!(["admin"]));
        }
        if event.action == "auth.login" && event.category == Category::Auth {
            assert_eq!(ecs["user"]["name"], HOSTILE);
            assert_eq!(ecs["source"]["ip"], "198.51.100.7");
            assert_eq!(ecs["event"]["category"], json!(["authentication"]));
        }
    }
}

#[tokio::test]
async fn cef_records_parse_back_to_the_values_whatever_they_hold() {
    for event in sample_events().await {
        let text = encode(Format::Cef, &event);
        let (header, pairs) = parse_cef(&text).unwrap_or_else(|err| panic!("{err}: {text}"));
        assert_eq!(header[1], "audit-layer");
        assert_eq!(header[4], event.action.as_ref());
        let value = |key: &str| {
            pairs
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(value("externalId"), Some(event.id.to_string().as_str()));
        assert_eq!(value("act"), Some(event.action.as_ref()));
        assert_eq!(
            value("rt"),
            Some((event.time.unix_micros() / 1000).to_string().as_str())
        );
        if event.action == "auth.login" && event.category == Category::Auth {
            // The line break, pipes, equals signs and backslashes come back as they were,
            // and forge no record of their own.
            assert_eq!(value("suser"), Some(HOSTILE));
            assert_eq!(value("src"), Some("198.51.100.7"));
            assert_eq!(header[6], "3");
        }
        if event.request.as_ref().is_some_and(|r| r.method == "DELETE") {
            assert_eq!(value("c6a2"), Some("2001:db8::1"));
        }
        if event.category == Category::Alert {
            assert_eq!(header[6], "8");
        }
    }
}

#[tokio::test]
async fn no_format_carries_a_secret_the_trail_redacted() {
    let events = sample_events().await;
    for format in Format::ALL {
        for event in &events {
            let text = encode(format, event);
            for secret in SECRETS {
                assert!(!text.contains(secret), "{format} leaked {secret}: {text}");
            }
        }
    }
    // The redacted values are there as redacted, not dropped.
    let grant = events
        .iter()
        .find(|e| e.action == "user.role.change")
        .unwrap();
    assert!(encode(Format::Ocsf, grant).contains(audit_layer::redact::REDACTED));
}

#[tokio::test]
async fn stored_lines_carry_their_trail_and_seq() {
    let dir = tempfile::tempdir().unwrap();
    let trail = AuditTrail::builder()
        .sink(
            JsonlFileSink::builder(dir.path())
                .trail_id("shop-1")
                .build(),
        )
        .build()
        .unwrap();
    trail
        .record(AuditEvent::new(
            Category::System,
            "backup.done",
            Outcome::Success,
            Actor::service("cron"),
        ))
        .await
        .unwrap();
    trail.shutdown().await.unwrap();
    let mut reader = TrailReader::new(dir.path(), 0, None);
    let lines = reader.read(100).unwrap();
    assert!(lines.len() >= 2, "start event and ours");
    for line in &lines {
        let mut out = Vec::new();
        Format::Audit
            .encode_line("shop-1", line.seq, &line.json, &mut out)
            .unwrap();
        assert_eq!(out, line.json.as_bytes(), "audit: the line as stored");
        out.clear();
        Format::Ocsf
            .encode_line("shop-1", line.seq, &line.json, &mut out)
            .unwrap();
        let ocsf: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(ocsf["metadata"]["sequence"], line.seq);
        assert_eq!(ocsf["metadata"]["log_name"], "shop-1");
        out.clear();
        Format::Ecs
            .encode_line("shop-1", line.seq, &line.json, &mut out)
            .unwrap();
        let ecs: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(ecs["event"]["sequence"], line.seq);
        assert_eq!(ecs["audit_layer"]["trail"], "shop-1");
    }
}

#[test]
fn format_names_parse_and_bad_ones_are_a_clear_error() {
    for format in Format::ALL {
        assert_eq!(format.name().parse::<Format>().unwrap(), format);
    }
    assert_eq!(" OCSF ".parse::<Format>().unwrap(), Format::Ocsf);
    let err = "leef".parse::<Format>().unwrap_err();
    assert!(matches!(err, FormatError::Unknown(_)));
    assert_eq!(
        err.to_string(),
        "unknown event format `leef`: expected audit, ocsf, ecs or cef"
    );
}

#[tokio::test]
async fn the_schema_checks_catch_what_the_schemas_forbid() {
    let events = sample_events().await;
    let login = events.iter().find(|e| e.action == "auth.login").unwrap();
    let mut ocsf: Value = serde_json::from_str(&encode(Format::Ocsf, login)).unwrap();
    ocsf["user"] = json!({});
    ocsf["src_endpoint"]["ip"] = json!("not-an-ip");
    ocsf["activity_id"] = json!(42);
    ocsf["severity"] = json!(3);
    ocsf["made_up"] = json!(1);
    let faults = Ocsf::load().check(&ocsf).join("\n");
    for fault in [
        "user: needs at least one of",
        "src_endpoint.ip: \"not-an-ip\" is not a ip_t",
        "activity_id: 42 not among",
        "severity: 3 is not a string_t",
        "made_up: not an attribute here",
        "type_uid: 300201, the schema says 300242",
    ] {
        assert!(faults.contains(fault), "{fault} not in:\n{faults}");
    }
    let mut ecs: Value = serde_json::from_str(&encode(Format::Ecs, login)).unwrap();
    ecs["event"]["type"] = json!(["deletion"]);
    ecs["source"]["port"] = json!("80");
    ecs["user"]["made_up"] = json!("x");
    let faults = Ecs::load().check(&ecs).join("\n");
    for fault in [
        "event.type deletion not expected with category \"authentication\"",
        "source.port: \"80\" is not a long",
        "user.made_up: not an ECS field",
    ] {
        assert!(faults.contains(fault), "{fault} not in:\n{faults}");
    }
    assert!(parse_cef("CEF:0|a|b|c|d|e|1|msg=line\nbreak").is_err());
    assert!(parse_cef("CEF:0|a|b|c|d|e").is_err());
}

/// A file trail holding the sample events, written with trail id `shop-1`.
async fn stored_trail() -> (tempfile::TempDir, Vec<AuditEvent>) {
    let dir = tempfile::tempdir().unwrap();
    let trail = AuditTrail::builder()
        .sink(
            JsonlFileSink::builder(dir.path())
                .trail_id("shop-1")
                .build(),
        )
        .build()
        .unwrap();
    let events = sample_events().await;
    for event in events.iter().filter(|e| e.category != Category::Alert) {
        trail.record(event.clone()).await.unwrap();
    }
    trail.shutdown().await.unwrap();
    (dir, events)
}

#[tokio::test]
async fn audit_export_writes_a_stored_trail_in_each_format() {
    let (dir, _) = stored_trail().await;
    let stored = common::demo::read_trail(dir.path());
    let schema = Ocsf::load();
    let (status, ocsf, stderr) =
        run_audit([std::ffi::OsStr::new("export"), dir.path().as_os_str()]);
    assert_eq!(status, Some(0), "{stderr}");
    let lines: Vec<Value> = ocsf
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines.len(),
        stored.len(),
        "one OCSF event per stored event (ocsf is the default)"
    );
    for (ocsf, stored) in lines.iter().zip(&stored) {
        assert!(schema.check(ocsf).is_empty(), "{ocsf}");
        assert_eq!(ocsf["metadata"]["uid"], stored["id"]);
        assert_eq!(ocsf["metadata"]["sequence"], stored["seq"]);
        assert_eq!(ocsf["metadata"]["log_name"], "shop-1");
    }

    let out = dir.path().join("export.cef");
    let (status, _, stderr) = run_audit([
        "export".as_ref(),
        dir.path().as_os_str(),
        "--format".as_ref(),
        "cef".as_ref(),
        "--output".as_ref(),
        out.as_os_str(),
    ]);
    assert_eq!(status, Some(0), "{stderr}");
    let cef = std::fs::read_to_string(&out).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&out).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "an export is as private as the trail");
    }
    assert_eq!(cef.lines().count(), stored.len());
    assert!(cef.lines().all(|line| parse_cef(line).is_ok()));

    let (status, audit, _) = run_audit([
        "export".as_ref(),
        dir.path().as_os_str(),
        "--format".as_ref(),
        "audit".as_ref(),
    ]);
    assert_eq!(status, Some(0));
    let back: Vec<Value> = audit
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(back, stored, "audit: the lines as stored");

    // `audit query` takes the same formats, after its filters.
    let (status, ecs, stderr) = run_audit([
        "query".as_ref(),
        dir.path().as_os_str(),
        "--action".as_ref(),
        "auth.*".as_ref(),
        "--format".as_ref(),
        "ecs".as_ref(),
    ]);
    assert_eq!(status, Some(0), "{stderr}");
    let ecs: Vec<Value> = ecs
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(ecs.len() >= 5, "logins, logout, password, mfa: {ecs:?}");
    let checker = Ecs::load();
    for document in &ecs {
        assert!(
            document["event"]["action"]
                .as_str()
                .unwrap()
                .starts_with("auth.")
        );
        assert!(checker.check(document).is_empty(), "{document}");
    }
}

#[tokio::test]
async fn audit_export_reports_a_line_that_holds_no_event_and_goes_on() {
    let (dir, _) = stored_trail().await;
    let stored = common::demo::read_trail(dir.path()).len();
    let file = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|entry| entry.path())
        .find(|path| path.extension().is_some_and(|ext| ext == "jsonl"))
        .unwrap();
    let mut text = std::fs::read_to_string(&file).unwrap();
    let second = text.find('\n').unwrap() + 1;
    text.insert_str(second, "{\"seq\":\"garbage\"}\n");
    std::fs::write(&file, text).unwrap();
    let (status, out, stderr) = run_audit([
        "export".as_ref(),
        dir.path().as_os_str(),
        "--format".as_ref(),
        "ecs".as_ref(),
    ]);
    assert_eq!(status, Some(1), "a skipped line is exit status 1");
    assert!(
        stderr.contains(r#"skipped a line with no seq: {"seq":"garbage"}"#),
        "{stderr}"
    );
    assert!(
        stderr.contains("1 line(s) held no audit/1 event"),
        "{stderr}"
    );
    assert_eq!(out.lines().count(), stored, "every event is still exported");
}
