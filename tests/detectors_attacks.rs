//! The attack detectors over generated streams, driven through `Detector::observe` as the
//! trail's writer drives them: credential stuffing, password spraying, denial bursts, mass
//! exports and revoked roles, each with its burst rule and its memory bound.

mod common;

use std::net::IpAddr;
use std::time::Duration;

use audit_layer::detect::{
    BRUTEFORCE, CREDENTIAL_STUFFING, CredentialStuffing, DENIAL_BURST, DenialBurst, Detector,
    MASS_EXPORT, MassExport, PASSWORD_SPRAYING, PasswordSpraying, RECORD_COUNT, REVOKED_ROLE,
    RevokedRole,
};
use audit_layer::event::{Change, Source, Timestamp};
use audit_layer::file::JsonlFileSink;
use audit_layer::{Actor, AuditEvent, AuditTrail, Category, Outcome};
use common::demo::audit_binary;
use serde_json::{Value, json};

const START: u64 = 1_800_000_000_000_000;

fn at(seconds: u64) -> Timestamp {
    Timestamp::from_unix_micros(START + seconds * 1_000_000)
}

fn from(mut event: AuditEvent, ip: &str) -> AuditEvent {
    let mut source = Source::default();
    source.ip = Some(ip.parse::<IpAddr>().expect("ip"));
    event.source = Some(source);
    event
}

/// A failed login for `username` at `seconds`, as `AuditContext::login_failed` records it.
fn failed_login(seconds: u64, username: &str, ip: &str) -> AuditEvent {
    let event = AuditEvent::at(
        at(seconds),
        Category::Auth,
        audit_layer::auth::LOGIN,
        Outcome::Failure,
        Actor::anonymous(),
    )
    .with_detail(audit_layer::auth::USERNAME, username);
    from(event, ip)
}

fn denied(seconds: u64, actor: &str) -> AuditEvent {
    AuditEvent::at(
        at(seconds),
        Category::Request,
        "http.request",
        Outcome::Denied,
        Actor::user(actor),
    )
}

fn export(seconds: u64, actor: &str, records: u64) -> AuditEvent {
    AuditEvent::at(
        at(seconds),
        Category::Sensitive,
        "user.export",
        Outcome::Success,
        Actor::user(actor),
    )
    .with_detail(RECORD_COUNT, records)
}

/// Feeds `events` to `detector`; returns the alerts, each with the index of its trigger.
fn run(detector: &mut impl Detector, events: &[AuditEvent]) -> Vec<(usize, AuditEvent)> {
    let mut found = Vec::new();
    for (n, event) in events.iter().enumerate() {
        let mut alerts = Vec::new();
        detector.observe(event, &mut alerts);
        found.extend(alerts.into_iter().map(|alert| (n, alert)));
    }
    found
}

fn details(alert: &AuditEvent) -> &serde_json::Map<String, Value> {
    alert.details.as_ref().expect("details")
}

fn ids(events: &[AuditEvent]) -> Value {
    Value::Array(events.iter().map(|e| json!(e.id.to_string())).collect())
}

#[test]
fn ten_usernames_failing_from_one_ip_within_a_minute_are_credential_stuffing() {
    let mut detector = CredentialStuffing::logins();
    // Nine names, one of them tried thrice: nine distinct, no alert.
    let mut events: Vec<_> = (0..9)
        .map(|n| failed_login(n, &format!("user{n}"), "203.0.113.5"))
        .collect();
    events.push(failed_login(9, "USER3", "203.0.113.5"));
    events.push(failed_login(10, "user3", "203.0.113.5"));
    // Another IP's failures do not add to it.
    events.push(failed_login(11, "elsewhere", "203.0.113.6"));
    assert!(run(&mut detector, &events).is_empty());

    events.push(failed_login(12, "user9", "203.0.113.5"));
    let mut detector = CredentialStuffing::logins();
    let found = run(&mut detector, &events);
    assert_eq!(found.len(), 1, "{found:#?}");
    let (trigger, alert) = &found[0];
    assert_eq!(*trigger, events.len() - 1);
    assert_eq!(alert.action, CREDENTIAL_STUFFING);
    assert_eq!(alert.target.as_deref(), Some("ip:203.0.113.5"));
    assert_eq!(alert.time, events[*trigger].time);
    let d = details(alert);
    assert_eq!(d["rule"], "credential_stuffing");
    assert_eq!(d["key"], "ip:203.0.113.5");
    assert_eq!(d["count"], 10);
    assert_eq!(d["window_seconds"], 60.0);
    // One event per username (its latest), the other IP's left out.
    let counted: Vec<_> = events
        .iter()
        .enumerate()
        .filter(|(n, _)| ![3, 9, 11].contains(n))
        .map(|(_, e)| e.clone())
        .collect();
    assert_eq!(d["events"].as_array().map(Vec::len), Some(10));
    for id in ids(&counted).as_array().expect("ids") {
        assert!(d["events"].as_array().expect("events").contains(id), "{id}");
    }
}

#[test]
fn a_stuffing_burst_alerts_once_and_again_after_quiet() {
    let mut detector = CredentialStuffing::logins().distinct_usernames(3);
    // A login every 20 s for ten minutes, a new name each time: one burst.
    let mut events: Vec<_> = (0..30)
        .map(|n| failed_login(n * 20, &format!("u{n}"), "198.51.100.1"))
        .collect();
    assert_eq!(run(&mut detector, &events).len(), 1);
    // 61 s after the last one, three more names: a second burst.
    let last = 29 * 20;
    events = (0..3)
        .map(|n| failed_login(last + 61 + n, &format!("v{n}"), "198.51.100.1"))
        .collect();
    assert_eq!(run(&mut detector, &events).len(), 1);
}

#[test]
fn few_tries_each_across_many_accounts_from_one_network_over_an_hour_is_spraying() {
    let mut detector = PasswordSpraying::logins().accounts(20);
    // Twenty accounts tried in turn, twice round, every 90 s from addresses across one
    // /24: too slow for credential stuffing, exactly spraying, and one burst.
    let events: Vec<_> = (0..40)
        .map(|n| {
            failed_login(
                n * 90,
                &format!("account{}", n % 20),
                &format!("203.0.113.{}", n % 7 + 1),
            )
        })
        .collect();
    let found = run(&mut detector, &events);
    assert_eq!(found.len(), 1, "{found:#?}");
    let (trigger, alert) = &found[0];
    assert_eq!(*trigger, 19, "the 20th account's first try");
    assert_eq!(alert.action, PASSWORD_SPRAYING);
    assert_eq!(alert.target.as_deref(), Some("network:203.0.113.0/24"));
    assert_eq!(details(alert)["count"], 20);
    assert_eq!(details(alert)["window_seconds"], 3600.0);
    let mut stuffing = CredentialStuffing::logins();
    assert!(run(&mut stuffing, &events).is_empty());
}

#[test]
fn accounts_hammered_more_than_twice_are_brute_force_not_spraying() {
    let mut detector = PasswordSpraying::logins().accounts(5);
    // Five accounts, three tries each in turn: each is over the limit of two.
    let events: Vec<_> = (0..15)
        .map(|n| failed_login(n * 60, &format!("a{}", n / 3), "192.0.2.1"))
        .collect();
    assert!(run(&mut detector, &events).is_empty());
    // Per address, not per network: another address's accounts do not add up.
    let mut per_ip = PasswordSpraying::logins().accounts(3).prefix(32, 128);
    let events: Vec<_> = (0..6)
        .map(|n| failed_login(n, &format!("b{n}"), &format!("192.0.2.{}", n % 2 + 1)))
        .collect();
    let found = run(&mut per_ip, &events);
    assert_eq!(found.len(), 2);
    assert_eq!(found[0].1.target.as_deref(), Some("ip:192.0.2.1"));
}

#[test]
fn ten_denials_for_one_actor_within_a_minute_are_a_burst() {
    let mut detector = DenialBurst::new();
    let mut events: Vec<_> = (0..9).map(|n| denied(n * 5, "7")).collect();
    // Other actors' denials, an anonymous one and actor 7's successes do not count.
    events.push(denied(46, "8"));
    let mut anonymous = denied(47, "x");
    anonymous.actor = Actor::anonymous();
    events.push(anonymous);
    let mut allowed = denied(48, "7");
    allowed.outcome = Outcome::Success;
    events.push(allowed);
    assert!(run(&mut detector, &events).is_empty());

    events.push(denied(50, "7"));
    // More denials in the same burst: still one alert.
    events.extend((0..20).map(|n| denied(51 + n, "7")));
    let mut detector = DenialBurst::new();
    let found = run(&mut detector, &events);
    assert_eq!(found.len(), 1, "{found:#?}");
    let alert = &found[0].1;
    assert_eq!(alert.action, DENIAL_BURST);
    assert_eq!(alert.target.as_deref(), Some("actor:7"));
    assert_eq!(details(alert)["count"], 10);
    assert_eq!(details(alert)["events"].as_array().map(Vec::len), Some(10));
}

#[test]
fn an_export_of_over_a_thousand_records_or_ten_exports_in_ten_minutes_alert() {
    let mut detector = MassExport::new();
    let found = run(
        &mut detector,
        &[
            export(0, "3", 1_000),
            export(1, "3", 1_001),
            // Same actor, still large, same burst.
            export(2, "3", 5_000),
        ],
    );
    assert_eq!(found.len(), 1, "{found:#?}");
    let (trigger, alert) = &found[0];
    assert_eq!(*trigger, 1);
    assert_eq!(alert.action, MASS_EXPORT);
    assert_eq!(alert.target.as_deref(), Some("actor:3"));
    assert_eq!(details(alert)["records"], 1_001);

    let mut detector = MassExport::new();
    let mut events: Vec<_> = (0..9).map(|n| export(n * 60, "4", 10)).collect();
    // Not exports: another action, a failed export.
    let mut other = export(541, "4", 10);
    other.action = "user.read".into();
    events.push(other);
    let mut failed = export(542, "4", 10);
    failed.outcome = Outcome::Failure;
    events.push(failed);
    assert!(run(&mut detector, &events).is_empty());
    events.push(export(599, "4", 10));
    let mut detector = MassExport::new();
    let found = run(&mut detector, &events);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(details(&found[0].1)["count"], 10);
    assert_eq!(details(&found[0].1)["window_seconds"], 600.0);

    // Actions of the application's own.
    let mut detector = MassExport::new().actions(["report.download"]).exports(2);
    let mut download = export(0, "5", 1);
    download.action = "report.download".into();
    let mut again = download.clone();
    again.id = export(1, "5", 1).id;
    assert_eq!(run(&mut detector, &[download, again]).len(), 1);
}

fn role_change(seconds: u64, target: &str, old: &str, new: &str) -> AuditEvent {
    let mut event = AuditEvent::at(
        at(seconds),
        Category::Sensitive,
        "user.role.change",
        Outcome::Success,
        Actor::user("1"),
    )
    .with_target(format!("user:{target}"));
    event.changes = Some(vec![Change::value(
        "role",
        Some(json!(old)),
        Some(json!(new)),
    )]);
    event
}

fn request_as(seconds: u64, actor: &str, role: &str) -> AuditEvent {
    AuditEvent::at(
        at(seconds),
        Category::Request,
        "http.request",
        Outcome::Success,
        Actor::user(actor).with_roles([role]),
    )
}

#[test]
fn a_request_still_carrying_a_revoked_role_alerts_once_per_burst() {
    let mut detector = RevokedRole::new();
    let revocation = role_change(10, "2", "admin", "viewer");
    let events = [
        // Before the revocation: fine.
        request_as(5, "2", "admin"),
        revocation.clone(),
        // The new role, or another actor with the old one: fine.
        request_as(20, "2", "viewer"),
        request_as(21, "3", "admin"),
        // A session that still says admin: alert; its next requests are the same burst.
        request_as(30, "2", "admin"),
        request_as(31, "2", "admin"),
    ];
    let found = run(&mut detector, &events);
    assert_eq!(found.len(), 1, "{found:#?}");
    let (trigger, alert) = &found[0];
    assert_eq!(*trigger, 4);
    assert_eq!(alert.action, REVOKED_ROLE);
    assert_eq!(alert.target.as_deref(), Some("actor:2"));
    assert_eq!(details(alert)["role"], "admin");
    assert_eq!(
        details(alert)["events"],
        json!([revocation.id.to_string(), events[4].id.to_string()])
    );

    // Granted back: forgotten.
    let mut detector = RevokedRole::new();
    let events = [
        role_change(10, "2", "admin", "viewer"),
        role_change(20, "2", "viewer", "admin"),
        request_as(30, "2", "admin"),
    ];
    assert!(run(&mut detector, &events).is_empty());
    // Remembered for a while only.
    let mut detector = RevokedRole::new().remember(Duration::from_secs(60));
    let events = [
        role_change(10, "2", "admin", "viewer"),
        request_as(100, "2", "admin"),
    ];
    assert!(run(&mut detector, &events).is_empty());
}

#[test]
fn a_flood_of_distinct_keys_keeps_every_detector_bounded_and_working() {
    // 200,000 distinct IPs, actors and usernames, each seen once; then a real attack.
    const FLOOD: u32 = 200_000;
    let mut stuffing = CredentialStuffing::logins().max_tracked(1_000);
    let mut spraying = PasswordSpraying::logins()
        .prefix(32, 128)
        .max_tracked(1_000);
    let mut denials = DenialBurst::new().max_tracked(1_000);
    let mut exports = MassExport::new().max_tracked(1_000);
    let mut revoked = RevokedRole::new().max_tracked(1_000);
    let mut alerts = Vec::new();
    for n in 0..FLOOD {
        let ip = IpAddr::from((0x0a00_0000_u32 + n).to_be_bytes()).to_string();
        let name = format!("flood{n}");
        let login = failed_login(u64::from(n / 1000), &name, &ip);
        stuffing.observe(&login, &mut alerts);
        spraying.observe(&login, &mut alerts);
        denials.observe(&denied(u64::from(n / 1000), &name), &mut alerts);
        exports.observe(&export(u64::from(n / 1000), &name, 1), &mut alerts);
        revoked.observe(
            &role_change(u64::from(n / 1000), &name, "admin", "viewer"),
            &mut alerts,
        );
    }
    assert!(alerts.is_empty(), "{} alerts from a flood", alerts.len());
    let attack: Vec<_> = (0..10)
        .map(|n| failed_login(300 + n, &format!("victim{n}"), "192.0.2.99"))
        .collect();
    assert_eq!(run(&mut stuffing, &attack).len(), 1);
    let denial_burst: Vec<_> = (0..10).map(|n| denied(300 + n, "mallory")).collect();
    assert_eq!(run(&mut denials, &denial_burst).len(), 1);
}

#[tokio::test]
async fn audit_detect_replays_the_attack_detectors_with_their_thresholds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let trail = AuditTrail::builder()
        .sink(JsonlFileSink::new(dir.path()))
        .build()
        .expect("trail");
    for n in 0..10 {
        let login = failed_login(n, &format!("user{n}"), "203.0.113.5");
        trail.record(login).await.expect("record");
        trail.record(denied(n, "7")).await.expect("record");
    }
    trail.record(export(20, "3", 5_000)).await.expect("record");
    trail.shutdown().await.expect("shutdown");

    let detect = |extra: &[&str]| {
        let output = std::process::Command::new(audit_binary())
            .arg("detect")
            .arg(dir.path())
            .args(extra)
            .output()
            .expect("run audit");
        assert!(output.status.success(), "{output:?}");
        let actions: Vec<String> = String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(|line| {
                let alert: Value = serde_json::from_str(line).expect("an alert per line");
                alert["action"].as_str().expect("action").to_owned()
            })
            .collect();
        actions
    };
    assert_eq!(
        detect(&[]),
        [BRUTEFORCE, CREDENTIAL_STUFFING, DENIAL_BURST, MASS_EXPORT],
        "ten failures from one IP are brute force too"
    );
    assert_eq!(
        detect(&[
            "--distinct-usernames",
            "0",
            "--per-ip",
            "0",
            "--denials",
            "11"
        ]),
        [MASS_EXPORT]
    );
    assert!(
        detect(&[
            "--export-records",
            "5000",
            "--per-ip",
            "0",
            "--distinct-usernames",
            "0",
            "--denials",
            "0"
        ])
        .is_empty()
    );
}
