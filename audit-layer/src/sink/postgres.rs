//! A sink that stores each audit event as a row of a PostgreSQL table (feature `postgres`).
//!
//! Each batch is one `INSERT ... SELECT FROM unnest(...) ON CONFLICT (id) DO NOTHING`: a
//! single statement, so a batch is stored whole or not at all, and a batch offered again
//! after an ambiguous failure (the commit went through, the answer was lost) stores nothing
//! twice. A write returns once PostgreSQL has committed it, so the sink needs no separate
//! sync.
//!
//! The sink connects on its first write, on the trail's writer thread, and reconnects after
//! any error; the writer retries the failed batch with backoff meanwhile, so a database that
//! is down at start or restarts later loses nothing. Building the sink does no I/O: it only
//! checks the settings.
//!
//! # The table
//!
//! The main fields get columns of their own for indexing and queries; the whole event is in
//! `event` (`jsonb`). The sink creates the table if it is missing, unless told not to
//! ([`PostgresSinkBuilder::create_table`]); [`PostgresSink::create_table_sql`] gives the
//! statements for a migration of your own.
//!
//! ```sql
//! CREATE TABLE IF NOT EXISTS audit_events (
//!     id uuid PRIMARY KEY,
//!     time timestamptz NOT NULL,
//!     category text NOT NULL,
//!     action text NOT NULL,
//!     outcome text NOT NULL,
//!     actor_id text NOT NULL,
//!     source_ip inet,
//!     request_id text,
//!     target text,
//!     status integer,
//!     event jsonb NOT NULL
//! );
//! CREATE INDEX IF NOT EXISTS audit_events_time_idx ON audit_events (time);
//! ```
//!
//! The table is a copy of the trail for queries, not the tamper-evident record: keep a
//! [`JsonlFileSink`](crate::JsonlFileSink) beside it, whose hash chain `audit verify` checks.
//! Rows carry the event `id`, so any row can be checked against the trail.
//!
//! Connections are plain TCP or Unix sockets: this build has no TLS for PostgreSQL, and a URL
//! that requires it (`sslmode=require`) is refused when the sink is built, not silently
//! downgraded. Reach a remote database through a local TLS proxy or an SSH tunnel.
//!
//! # Example
//!
//! ```no_run
//! use audit_layer::{AuditTrail, JsonlFileSink, PostgresSink};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let audit = AuditTrail::builder()
//!     .sink(JsonlFileSink::new("./audit-log")?)
//!     .sink(PostgresSink::builder("postgres://audit@127.0.0.1/app").table("audit.events").build()?)
//!     .build()?;
//! # Ok(()) }
//! ```

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use tokio::task::JoinHandle;
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres::{Client, NoTls, Statement};
use uuid::Uuid;

use super::{BoxFuture, Sink, SinkError};
use crate::error::ConfigError;
use crate::event::AuditEvent;

/// The table used when none is given.
pub const DEFAULT_TABLE: &str = "audit_events";

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Stores audit events as rows of a PostgreSQL table. See the [module docs](self).
pub struct PostgresSink {
    config: tokio_postgres::Config,
    table: TableName,
    create_table: bool,
    timeout: Duration,
    name: String,
    connection: Option<Connection>,
    /// Every event of the batch as JSON, back to back; `ends` splits it.
    json: Vec<u8>,
    ends: Vec<usize>,
}

impl fmt::Debug for PostgresSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `Config`'s own Debug hides the password.
        f.debug_struct("PostgresSink")
            .field("config", &self.config)
            .field("table", &self.table.quoted)
            .field("create_table", &self.create_table)
            .field("timeout", &self.timeout)
            .field("connected", &self.connection.is_some())
            .finish()
    }
}

/// Settings of a [`PostgresSink`], from [`PostgresSink::builder`].
#[derive(Clone, Debug)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct PostgresSinkBuilder {
    url: String,
    table: String,
    create_table: bool,
    timeout: Duration,
}

impl PostgresSink {
    /// A sink for the database at `url`: a URL (`postgres://user@host:5432/db`) or a
    /// key-value string (`host=127.0.0.1 user=postgres dbname=app`), as libpq takes them.
    pub fn builder(url: impl Into<String>) -> PostgresSinkBuilder {
        PostgresSinkBuilder {
            url: url.into(),
            table: DEFAULT_TABLE.to_owned(),
            create_table: true,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// A sink for the database at `url`, with the default settings.
    pub fn new(url: impl Into<String>) -> Result<Self, ConfigError> {
        Self::builder(url).build()
    }

    /// The statements that create the sink's table and its index, if missing.
    pub fn create_table_sql(&self) -> String {
        self.table.create_sql()
    }
}

impl PostgresSinkBuilder {
    /// The table, optionally schema-qualified (`audit.events`); default `audit_events`.
    /// Names are letters, digits and underscores, not starting with a digit.
    pub fn table(mut self, table: impl Into<String>) -> Self {
        self.table = table.into();
        self
    }

    /// Whether the sink creates its table (and index) if missing, on each connection.
    /// Default `true`; turn it off when migrations own the schema (see
    /// [`PostgresSink::create_table_sql`]) or the role may not create tables.
    pub fn create_table(mut self, create: bool) -> Self {
        self.create_table = create;
        self
    }

    /// How long a connection attempt or a batch insert may take before it counts as failed
    /// and is retried; default 10 s.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Checks the settings and returns the sink; it connects on its first write.
    pub fn build(self) -> Result<PostgresSink, ConfigError> {
        let invalid = |reason: String| ConfigError::Sink {
            sink: "postgres",
            reason,
        };
        let mut config = tokio_postgres::Config::from_str(&self.url)
            .map_err(|error| invalid(format!("not a PostgreSQL connection string: {error}")))?;
        // Shows who holds the connection in `pg_stat_activity`.
        if config.get_application_name().is_none() {
            config.application_name("audit-layer");
        }
        if config.get_ssl_mode() == SslMode::Require {
            return Err(invalid(
                "the URL requires TLS (sslmode=require), which this sink does not support; \
                 connect through a local TLS proxy or tunnel"
                    .to_owned(),
            ));
        }
        if self.timeout.is_zero() {
            return Err(invalid("the timeout must be more than zero".to_owned()));
        }
        let table = TableName::parse(&self.table).map_err(invalid)?;
        let name = format!("postgres:{}/{}", describe_hosts(&config), table.display);
        Ok(PostgresSink {
            config,
            table,
            create_table: self.create_table,
            timeout: self.timeout,
            name,
            connection: None,
            json: Vec::new(),
            ends: Vec::new(),
        })
    }
}

/// `host:port,...` and the database, without the user or password.
fn describe_hosts(config: &tokio_postgres::Config) -> String {
    let ports = config.get_ports();
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(index, host)| {
            let port = ports.get(index).or(ports.first()).copied().unwrap_or(5432);
            match host {
                Host::Tcp(name) => format!("{name}:{port}"),
                #[cfg(unix)]
                Host::Unix(path) => path.display().to_string(),
            }
        })
        .collect();
    let hosts = if hosts.is_empty() {
        "localhost".to_owned()
    } else {
        hosts.join(",")
    };
    match config.get_dbname() {
        Some(db) => format!("{hosts}/{db}"),
        None => hosts,
    }
}

/// A validated, optionally schema-qualified table name.
#[derive(Clone, Debug)]
struct TableName {
    /// As given: `audit.events`.
    display: String,
    /// Quoted for SQL: `"audit"."events"`.
    quoted: String,
    /// The index name, quoted, unqualified: an index lives in its table's schema.
    time_index: String,
}

impl TableName {
    fn parse(text: &str) -> Result<Self, String> {
        let parts: Vec<&str> = text.split('.').collect();
        if parts.len() > 2 || parts.iter().any(|part| !is_identifier(part)) {
            return Err(format!(
                "`{text}` is not a table name: use letters, digits and underscores, not \
                 starting with a digit, at most 63 bytes, optionally `schema.table`"
            ));
        }
        let quoted = parts
            .iter()
            .map(|part| format!("\"{part}\""))
            .collect::<Vec<_>>()
            .join(".");
        let table = parts[parts.len() - 1];
        let mut index = format!("{table}_time_idx");
        // PostgreSQL would truncate a longer name itself; do it here so it stays valid UTF-8
        // (identifiers are ASCII here).
        index.truncate(63);
        Ok(Self {
            display: text.to_owned(),
            quoted,
            time_index: format!("\"{index}\""),
        })
    }

    fn create_sql(&self) -> String {
        format!(
            "CREATE TABLE IF NOT EXISTS {table} (\n    \
                 id uuid PRIMARY KEY,\n    \
                 time timestamptz NOT NULL,\n    \
                 category text NOT NULL,\n    \
                 action text NOT NULL,\n    \
                 outcome text NOT NULL,\n    \
                 actor_id text NOT NULL,\n    \
                 source_ip inet,\n    \
                 request_id text,\n    \
                 target text,\n    \
                 status integer,\n    \
                 event jsonb NOT NULL\n\
             );\n\
             CREATE INDEX IF NOT EXISTS {index} ON {table} (time);\n",
            table = self.quoted,
            index = self.time_index,
        )
    }

    fn insert_sql(&self) -> String {
        format!(
            "INSERT INTO {} \
             (id, time, category, action, outcome, actor_id, source_ip, request_id, target, status, event) \
             SELECT * FROM unnest($1::uuid[], $2::timestamptz[], $3::text[], $4::text[], \
             $5::text[], $6::text[], $7::inet[], $8::text[], $9::text[], $10::int4[], \
             $11::text[]::jsonb[]) \
             ON CONFLICT (id) DO NOTHING",
            self.quoted
        )
    }
}

fn is_identifier(text: &str) -> bool {
    let mut chars = text.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && text.len() <= 63
}

/// A live connection: the client, its prepared insert, and the task that drives it.
struct Connection {
    client: Client,
    insert: Statement,
    task: JoinHandle<()>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        // A connection stuck on a dead peer would otherwise linger until TCP gives up.
        self.task.abort();
    }
}

impl PostgresSink {
    async fn connect(&self) -> Result<Connection, SinkError> {
        let (client, connection) = tokio::time::timeout(self.timeout, self.config.connect(NoTls))
            .await
            .map_err(|_| SinkError::new(format!("no connection within {:?}", self.timeout)))?
            .map_err(|error| SinkError::new(format!("cannot connect: {error}")))?;
        let name = self.name.clone();
        let task = tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::warn!(target: "audit", sink = %name, %error, "PostgreSQL connection closed");
            }
        });
        let setup = async {
            if self.create_table {
                client.batch_execute(&self.table.create_sql()).await?;
            }
            client.prepare(&self.table.insert_sql()).await
        };
        let insert = tokio::time::timeout(self.timeout, setup)
            .await
            .map_err(|_| SinkError::new(format!("setup took over {:?}", self.timeout)))?
            .map_err(|error| SinkError::new(describe(&error)))?;
        Ok(Connection {
            client,
            insert,
            task,
        })
    }

    async fn insert(&mut self, events: &[AuditEvent]) -> Result<(), SinkError> {
        self.json.clear();
        self.ends.clear();
        for event in events {
            serde_json::to_writer(&mut self.json, event)?;
            self.ends.push(self.json.len());
        }
        // serde_json writes UTF-8, and each event ends on a character boundary.
        let json = std::str::from_utf8(&self.json).map_err(SinkError::new)?;
        let mut ids: Vec<Uuid> = Vec::with_capacity(events.len());
        let mut times: Vec<SystemTime> = Vec::with_capacity(events.len());
        let mut categories: Vec<&str> = Vec::with_capacity(events.len());
        let mut actions: Vec<&str> = Vec::with_capacity(events.len());
        let mut outcomes: Vec<&str> = Vec::with_capacity(events.len());
        let mut actors: Vec<&str> = Vec::with_capacity(events.len());
        let mut ips: Vec<Option<std::net::IpAddr>> = Vec::with_capacity(events.len());
        let mut request_ids: Vec<Option<&str>> = Vec::with_capacity(events.len());
        let mut targets: Vec<Option<&str>> = Vec::with_capacity(events.len());
        let mut statuses: Vec<Option<i32>> = Vec::with_capacity(events.len());
        let mut bodies: Vec<&str> = Vec::with_capacity(events.len());
        let mut start = 0;
        for (event, &end) in events.iter().zip(&self.ends) {
            ids.push(event.id);
            times.push(event.time.as_system_time());
            categories.push(event.category.as_str());
            actions.push(&event.action);
            outcomes.push(event.outcome.as_str());
            actors.push(&event.actor.id);
            ips.push(event.source.as_ref().and_then(|source| source.ip));
            request_ids.push(event.request_id());
            targets.push(event.target.as_deref());
            statuses.push(event.status().map(i32::from));
            bodies.push(&json[start..end]);
            start = end;
        }
        let Some(connection) = &self.connection else {
            return Err(SinkError::new("not connected"));
        };
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 11] = [
            &ids,
            &times,
            &categories,
            &actions,
            &outcomes,
            &actors,
            &ips,
            &request_ids,
            &targets,
            &statuses,
            &bodies,
        ];
        let insert = connection.client.execute(&connection.insert, &params);
        tokio::time::timeout(self.timeout, insert)
            .await
            .map_err(|_| {
                SinkError::new(format!(
                    "insert of {} event(s) took over {:?}",
                    events.len(),
                    self.timeout
                ))
            })?
            .map_err(|error| SinkError::new(describe(&error)))?;
        Ok(())
    }
}

/// The server's own message when there is one (`relation ... does not exist`), which
/// tokio-postgres's Display reduces to "db error".
fn describe(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => error.to_string(),
    }
}

impl Sink for PostgresSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn write_batch<'a>(
        &'a mut self,
        events: &'a [AuditEvent],
    ) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            if self
                .connection
                .as_ref()
                .is_none_or(|connection| connection.client.is_closed())
            {
                self.connection = None;
                self.connection = Some(self.connect().await?);
            }
            let result = self.insert(events).await;
            if result.is_err() {
                // Start afresh on the retry: the connection may be broken or mid-statement.
                self.connection = None;
            }
            result
        })
    }

    fn close(&mut self) -> BoxFuture<'_, Result<(), SinkError>> {
        Box::pin(async move {
            self.connection = None;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_are_checked_and_quoted() {
        let table = TableName::parse("audit.events").expect("valid");
        assert_eq!(table.quoted, r#""audit"."events""#);
        assert_eq!(table.time_index, r#""events_time_idx""#);
        for bad in [
            "",
            "1events",
            "a.b.c",
            "events; DROP TABLE users",
            "ev\"ents",
            "schema.",
            &"x".repeat(64),
        ] {
            assert!(TableName::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn the_name_never_shows_the_password() {
        let sink =
            PostgresSink::new("postgres://audit:hunter2@db.internal:6543/app").expect("valid URL");
        assert_eq!(sink.name(), "postgres:db.internal:6543/app/audit_events");
        assert!(!format!("{sink:?}").contains("hunter2"));
    }

    #[test]
    fn bad_settings_are_refused_with_a_reason() {
        let error = PostgresSink::new("postgres://host:notaport/db").expect_err("bad port");
        assert!(
            error
                .to_string()
                .contains("not a PostgreSQL connection string")
        );
        let error = PostgresSink::new("postgres://host/db?sslmode=require").expect_err("tls");
        assert!(error.to_string().contains("TLS"), "{error}");
        let error = PostgresSink::builder("postgres://host/db")
            .timeout(Duration::ZERO)
            .build()
            .expect_err("zero timeout");
        assert!(error.to_string().contains("timeout"), "{error}");
    }
}
