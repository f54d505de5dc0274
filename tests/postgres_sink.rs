//! The PostgreSQL sink against a real server (`AUDIT_TEST_POSTGRES_URL`, default the loopback
//! one): rows and columns, secrets, idempotent retries, and a table that appears late.
//!
//! Each test uses a table of its own and drops it at the end.

mod common;

use std::time::Duration;

use audit_layer::{Actor, AuditEvent, AuditTrail, Category, Health, Outcome};

use audit_layer::sink::postgres::PostgresSink;

use audit_layer::sink::Sink;
use axum::{Router, routing::get};
use tower::ServiceExt;

use common::services;

#[tokio::test]
async fn each_request_becomes_one_row_with_its_columns_and_no_secret() {
    let Some((url, client)) = services::postgres().await else {
        return;
    };
    // In a schema of its own, which the sink creates too.
    let schema = services::unique_name("audit_test");
    let table = format!("{schema}.events");
    let audit = AuditTrail::builder()
        .sink(PostgresSink::builder(&url).table(&table).build().unwrap())
        .build()
        .unwrap();
    let app = Router::new()
        .route("/hello", get(|| async { "hello" }))
        .route("/items/{id}", get(|| async { "item" }))
        .layer(audit.layer());
    let request = common::request_from(
        "203.0.113.7:4000",
        "GET",
        "/items/42?token=s3cr3t-t0ken&page=2",
    )
    .header("authorization", "Bearer b3arer-secret")
    .header("cookie", "session=c00kie-secret")
    .header("x-request-id", "req-pg-1")
    .body(axum::body::Body::empty())
    .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), 200);
    for _ in 0..9 {
        app.clone().oneshot(common::get("/hello")).await.unwrap();
    }
    audit.flush().await.unwrap();

    let rows = client
        .query(
            &format!(
                "SELECT id, category, action, outcome, actor_id, host(source_ip), request_id, status, \
                 event->'request'->>'route', event::text FROM {table} WHERE request_id = 'req-pg-1'"
            ),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!(row.get::<_, &str>(1), "request");
    assert_eq!(row.get::<_, &str>(2), "http.request");
    assert_eq!(row.get::<_, &str>(3), "success");
    assert_eq!(row.get::<_, &str>(4), "anonymous");
    assert_eq!(row.get::<_, &str>(5), "203.0.113.7");
    assert_eq!(row.get::<_, Option<i32>>(7), Some(200));
    assert_eq!(row.get::<_, Option<&str>>(8), Some("/items/{id}"));
    let json: &str = row.get(9);
    let id: uuid::Uuid = row.get(0);
    assert!(json.contains(&id.to_string()), "{json}");
    for secret in ["s3cr3t-t0ken", "b3arer-secret", "c00kie-secret"] {
        assert!(!json.contains(secret), "{secret} reached the table: {json}");
    }

    let count = request_rows(&client, &table).await;
    assert_eq!(count, 10);
    audit.shutdown().await.unwrap();
    let system = query_count(
        &client,
        &format!("SELECT count(*) FROM {table} WHERE action IN ('audit.start', 'audit.stop')"),
    )
    .await;
    assert_eq!(system, 2, "audit.start and audit.stop are rows too");
    client
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await
        .unwrap();
}

fn events(count: usize) -> Vec<AuditEvent> {
    services::sample_events(count, Category::Sensitive, "config.update")
}

/// The one number a query returns.
async fn query_count(client: &tokio_postgres::Client, sql: &str) -> i64 {
    client.query_one(sql, &[]).await.unwrap().get(0)
}

/// The rows of `table` recorded for HTTP requests (`http.request`).
async fn request_rows(client: &tokio_postgres::Client, table: &str) -> i64 {
    query_count(
        client,
        &format!("SELECT count(*) FROM {table} WHERE action = 'http.request'"),
    )
    .await
}

async fn drop_table(client: &tokio_postgres::Client, table: &str) {
    client
        .batch_execute(&format!("DROP TABLE {table}"))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_batch_offered_again_is_stored_once() {
    let Some((url, client)) = services::postgres().await else {
        return;
    };
    let table = services::unique_name("audit_test");
    // Three connections, each copying a part of a large batch.
    let mut sink = PostgresSink::builder(&url)
        .table(&table)
        .connections(3)
        .build()
        .unwrap();
    let batch = events(700);
    sink.write_batch(&batch).await.unwrap();
    // The writer offers a batch again when it could not tell whether the commit went through.
    sink.write_batch(&batch).await.unwrap();
    sink.write_batch(&batch[100..300]).await.unwrap();
    // A retry whose first part was stored and whose last part was not.
    let mut mixed = batch[600..].to_vec();
    mixed.extend(events(300));
    sink.write_batch(&mixed).await.unwrap();
    sink.close().await.unwrap();

    let rows = client
        .query(
            &format!("SELECT id, actor_id, target FROM {table} ORDER BY time, actor_id"),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 1000);
    let mut ids: Vec<uuid::Uuid> = rows.iter().map(|row| row.get(0)).collect();
    ids.sort();
    let mut expected: Vec<uuid::Uuid> = batch.iter().chain(&mixed).map(|event| event.id).collect();
    expected.sort();
    expected.dedup();
    assert_eq!(ids, expected);
    let targets = query_count(
        &client,
        &format!("SELECT count(DISTINCT target) FROM {table} WHERE target LIKE 'item:%'"),
    )
    .await;
    assert_eq!(
        targets, 700,
        "the 300 new events reuse the first 300 targets"
    );
    drop_table(&client, &table).await;
}

/// With `create_table(false)` and no table, the sink fails with PostgreSQL's own message,
/// the trail keeps the events, and once the table exists (from `create_table_sql`, as a
/// migration would create it) every event arrives, once.
#[tokio::test]
async fn a_missing_table_holds_events_back_until_it_exists() {
    let Some((url, client)) = services::postgres().await else {
        return;
    };
    let table = services::unique_name("audit_test");
    let sink = PostgresSink::builder(&url)
        .table(&table)
        .create_table(false)
        .build()
        .unwrap();
    let create_sql = sink.create_table_sql();
    let audit = AuditTrail::builder()
        .sink(sink)
        .retry_backoff(Duration::from_millis(20), Duration::from_millis(100))
        .build()
        .unwrap();
    common::serve_hellos(&audit, 25).await;
    let reason = common::failing_reason(&audit).await;
    assert!(
        reason.contains("does not exist") && reason.contains(&table),
        "the error names the problem: {reason}"
    );

    client.batch_execute(&create_sql).await.unwrap();
    common::flushed_once_healthy(&audit).await;
    let count = request_rows(&client, &table).await;
    assert_eq!(count, 25);
    assert_eq!(audit.health(), Health::Healthy);
    audit.shutdown().await.unwrap();
    drop_table(&client, &table).await;
}

/// The sink survives its connection being killed: the next batch reconnects.
#[tokio::test]
async fn a_killed_connection_is_replaced_and_nothing_is_lost() {
    let Some((url, client)) = services::postgres().await else {
        return;
    };
    let table = services::unique_name("audit_test");
    let audit = AuditTrail::builder()
        .sink(PostgresSink::builder(&url).table(&table).build().unwrap())
        .retry_backoff(Duration::from_millis(20), Duration::from_millis(100))
        .build()
        .unwrap();
    common::serve_hellos(&audit, 5).await;
    audit.flush().await.unwrap();
    let killed: i64 = client
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE application_name = 'audit-layer' AND pid <> pg_backend_pid() AND query LIKE '%' || $1 || '%'",
            &[&table],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(killed, 1, "the sink's connection was found and terminated");
    common::serve_hellos(&audit, 5).await;
    common::flushed_once_healthy(&audit).await;
    let count = request_rows(&client, &table).await;
    assert_eq!(count, 10);
    audit.shutdown().await.unwrap();
    drop_table(&client, &table).await;
}

#[test]
fn a_url_that_is_not_postgres_is_refused_when_built() {
    let error = PostgresSink::new("mysql//nope:::").unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("invalid postgres sink settings"),
        "{error}"
    );
}

/// A table created by the user's own migration with `event jsonb` (for GIN indexes) works as
/// well as the default `json` one.
#[tokio::test]
async fn a_table_made_with_jsonb_is_written_too() {
    let Some((url, client)) = services::postgres().await else {
        return;
    };
    let table = services::unique_name("audit_test");
    let mut sink = PostgresSink::builder(&url)
        .table(&table)
        .create_table(false)
        .build()
        .unwrap();
    let migration = sink.create_table_sql().replace("event json", "event jsonb");
    assert_ne!(migration, sink.create_table_sql());
    client.batch_execute(&migration).await.unwrap();
    let batch = events(3);
    sink.write_batch(&batch).await.unwrap();
    sink.write_batch(&batch).await.unwrap();
    sink.close().await.unwrap();
    let rows = client
        .query(
            &format!(
                "SELECT pg_typeof(event)::text, event->'actor'->>'id' FROM {table} ORDER BY event->'actor'->>'id'"
            ),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0].get::<_, &str>(0), "jsonb");
    assert_eq!(rows[0].get::<_, &str>(1), "user-0");
    drop_table(&client, &table).await;
}

/// PostgreSQL text cannot hold a NUL character, nor `jsonb` a `\u0000` escape. An event
/// carrying one (a username typed by an attacker, say) must still be stored: refused, it
/// would be retried forever and hold back every event after it.
#[tokio::test]
async fn an_event_with_a_nul_character_is_stored_not_stuck() {
    let Some((url, client)) = services::postgres().await else {
        return;
    };
    for column in ["json", "jsonb"] {
        let table = services::unique_name("audit_test");
        let mut sink = PostgresSink::builder(&url)
            .table(&table)
            .create_table(false)
            .build()
            .unwrap();
        let migration = sink
            .create_table_sql()
            .replace("event json", &format!("event {column}"));
        client.batch_execute(&migration).await.unwrap();
        let event = AuditEvent::new(
            Category::Auth,
            "auth.login",
            Outcome::Failure,
            Actor::user("mallory\0"),
        )
        .with_target("user:\0root")
        .with_detail("username", "root\0\\u0000");
        let id = event.id;
        tokio::time::timeout(Duration::from_secs(10), sink.write_batch(&[event]))
            .await
            .expect("answered")
            .expect("stored");
        let row = client
            .query_one(
                &format!(
                    "SELECT actor_id, target, event->'details'->>'username' FROM {table} WHERE id = $1"
                ),
                &[&id],
            )
            .await
            .unwrap();
        assert_eq!(row.get::<_, &str>(0), "mallory\u{fffd}", "{column}");
        assert_eq!(row.get::<_, &str>(1), "user:\u{fffd}root", "{column}");
        assert_eq!(
            row.get::<_, &str>(2),
            "root\u{fffd}\\u0000",
            "{column}: only the NUL is replaced, not the escaped text that looks like one"
        );
        sink.close().await.unwrap();
        drop_table(&client, &table).await;
    }
}

/// With `sslmode=require` the sink talks TLS and verifies the server: it connects when the
/// server's certificate is trusted (here the local server's own self-signed one, for
/// `localhost`), and refuses, saying why, when it is not.
///
/// `AUDIT_TEST_POSTGRES_TLS_URL` (default: the loopback server as `localhost`) and
/// `AUDIT_TEST_POSTGRES_TLS_ROOT` (default: Debian's `ssl-cert-snakeoil.pem`, which
/// PostgreSQL serves with `ssl = on`) name the server and its certificate.
#[tokio::test]
async fn tls_is_used_and_verified_when_the_url_requires_it() {
    let Some((_, client)) = services::postgres().await else {
        return;
    };
    let url = std::env::var("AUDIT_TEST_POSTGRES_TLS_URL")
        .unwrap_or_else(|_| "postgres://postgres@localhost:5432/test?sslmode=require".to_owned());
    let root_path = std::env::var("AUDIT_TEST_POSTGRES_TLS_ROOT")
        .unwrap_or_else(|_| "/etc/ssl/certs/ssl-cert-snakeoil.pem".to_owned());
    let ssl_on: String = client.query_one("SHOW ssl", &[]).await.unwrap().get(0);
    let Ok(root) = std::fs::read(&root_path) else {
        common::services::skipped(&format!(
            "no server certificate at {root_path} (AUDIT_TEST_POSTGRES_TLS_ROOT)"
        ));
        return;
    };
    if ssl_on != "on" {
        common::services::skipped(&format!("the PostgreSQL server has ssl = {ssl_on}"));
        return;
    }

    let table = services::unique_name("audit_test");
    let mut sink = PostgresSink::builder(&url)
        .table(&table)
        .tls_root_certificates_pem(root)
        .build()
        .unwrap();
    let batch = events(2);
    sink.write_batch(&batch).await.unwrap();
    let over_tls: bool = client
        .query_one(
            "SELECT bool_and(ssl) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) \
             WHERE application_name = 'audit-layer' AND query LIKE '%' || $1 || '%'",
            &[&table],
        )
        .await
        .unwrap()
        .get(0);
    assert!(over_tls, "the sink's connection is encrypted");
    sink.close().await.unwrap();
    let count = query_count(&client, &format!("SELECT count(*) FROM {table}")).await;
    assert_eq!(count, 2);

    // The same server, not trusted: Mozilla's roots do not vouch for a self-signed cert.
    let mut untrusted = PostgresSink::builder(&url).table(&table).build().unwrap();
    let error = untrusted.write_batch(&batch).await.unwrap_err().to_string();
    assert!(
        error.contains("cannot connect") && error.contains("certificate"),
        "{error}"
    );
    drop_table(&client, &table).await;
}

/// A checked start connects and creates the table before anything is recorded; a server
/// that cannot be reached fails the start at once, naming the sink, and records nothing.
#[tokio::test]
async fn a_checked_start_connects_first_and_fails_at_once_when_unreachable() {
    let Some((url, client)) = services::postgres().await else {
        return;
    };
    let table = services::unique_name("audit_test");
    // Writes are held: whatever exists once the start returns, the start made.
    let (sink, faults) = audit_layer::testing::FaultySink::new(
        PostgresSink::builder(&url).table(&table).build().unwrap(),
    );
    faults.stall();
    let audit = AuditTrail::builder()
        .sink(sink)
        .build_checked()
        .await
        .unwrap();
    assert_eq!(faults.writes(), 0);
    assert_eq!(
        query_count(
            &client,
            &format!("SELECT count(*) FROM information_schema.tables WHERE table_name = '{table}'"),
        )
        .await,
        1
    );
    assert_eq!(
        query_count(&client, &format!("SELECT count(*) FROM {table}")).await,
        0
    );
    faults.resume();
    audit.shutdown().await.unwrap();
    drop_table(&client, &table).await;

    // Nothing listens on port 9.
    let started = std::time::Instant::now();
    let error = AuditTrail::builder()
        .sink(
            PostgresSink::builder("postgres://postgres@127.0.0.1:9/test")
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap(),
        )
        .build_checked()
        .await
        .unwrap_err();
    assert!(
        matches!(&error, audit_layer::ConfigError::Unreachable { sink, .. } if sink.starts_with("postgres:")),
        "{error}"
    );
    assert!(error.to_string().contains("cannot start"), "{error}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

/// The file trail's checkpoints, also rows of a PostgreSQL table: `audit verify
/// --against-checkpoint postgres://...` passes on the trail as written, and calls a tail cut
/// together with its checkpoints `rolled back`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_checkpoint_mirror_makes_a_rolled_back_tail_a_fault() {
    use audit_layer::sink::postgres::PostgresCheckpointMirror;
    use common::trail::MirroredTrail;
    let Some((url, client)) = services::postgres().await else {
        return;
    };
    let trail_name = services::unique_name("trail");
    let trail = tokio::task::block_in_place(|| {
        MirroredTrail::write(|| PostgresCheckpointMirror::new(&url, &trail_name).unwrap())
    });
    let rows = client
        .query(
            "SELECT seq_to FROM audit_checkpoints WHERE trail = $1 ORDER BY seq_to",
            &[&trail_name],
        )
        .await
        .unwrap();
    assert!(rows.len() >= 2, "each close published its checkpoint");

    let against = ["--against-checkpoint", &url, "--mirror-trail", &trail_name];
    let verify = || trail.verify(&against);
    let (code, out, err) = tokio::task::block_in_place(verify);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("against the PostgreSQL mirror's audit_checkpoints"),
        "{out}"
    );
    assert!(!out.contains(&url), "the URL may hold a password: {out}");

    trail.roll_back();
    let (code, _, err) = tokio::task::block_in_place(verify);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.starts_with("FAULT: rolled back: "), "{err}");
}
