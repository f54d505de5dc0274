//! A sink that stores each audit event as a row of a PostgreSQL table (feature `postgres`).
//!
//! Each batch is one binary `COPY ... FROM STDIN`: a single statement, so a batch is stored
//! whole or not at all. A batch offered again after an ambiguous failure (the commit went
//! through, the answer was lost) meets the primary key; the sink then looks up which of its
//! events are stored and copies only the others, so nothing is stored twice. A write returns
//! once PostgreSQL has committed it, so the sink needs no separate sync.
//!
//! The sink connects on its first write, on the trail's writer thread, and reconnects after
//! any error; the writer retries the failed batch with backoff meanwhile, so a database that
//! is down at start or restarts later loses nothing. Building the sink does no I/O: it only
//! checks the settings.
//!
//! # The table
//!
//! The main fields get columns of their own for indexing and queries; the whole event is in
//! `event`. The sink creates the table if it is missing, unless told not to
//! ([`PostgresSinkBuilder::create_table`]); [`PostgresSink::create_table_sql`] gives the
//! statements for a migration of your own.
//!
//! `event` is `json` by default: it keeps each event byte for byte as the trail's files hold
//! it, `->` and `->>` work on it, and it costs PostgreSQL about half the CPU per row of
//! `jsonb`, which parses and rebuilds every document. Make the column `jsonb` in your own
//! migration if you want GIN indexes: the sink reads the table's column types when it
//! connects and writes either.
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
//!     event json NOT NULL
//! );
//! CREATE INDEX IF NOT EXISTS audit_events_time_idx ON audit_events (time);
//! ```
//!
//! The table is a copy of the trail for queries, not the tamper-evident record: keep a
//! [`JsonlFileSink`](crate::file::JsonlFileSink) beside it, whose hash chain `audit verify` checks.
//! Rows carry the event `id`, so any row can be checked against the trail.
//!
//! # TLS
//!
//! With `sslmode=require` in the URL the sink connects over TLS (rustls) and verifies the
//! server's certificate and host name against Mozilla's roots, plus any given with
//! [`PostgresSinkBuilder::tls_root_certificates_pem`] (a private CA, a cloud provider's
//! bundle): libpq's `verify-full`, which tokio-postgres spells `require`. Without it
//! (`disable`, or the default `prefer`) the connection is plain TCP or a Unix socket: the
//! sink never tries TLS it would not verify.
//!
//! # Example
//!
//! ```no_run
//! use audit_layer::AuditTrail;
//! use audit_layer::sink::postgres::PostgresSink;
//! use audit_layer::file::JsonlFileSink;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let audit = AuditTrail::builder()
//!     .sink(JsonlFileSink::new("./audit-log"))
//!     .sink(PostgresSink::builder("postgres://audit@127.0.0.1/app").table("audit.events").build()?)
//!     .build()?;
//! # Ok(()) }
//! ```

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres::types::Type;
use tokio_postgres::{Client, NoTls, Statement};
use tokio_postgres_rustls::MakeRustlsConnect;

#[cfg(feature = "collector")]
pub(crate) mod collect;
mod copy;
mod follow;
mod mirror;
mod search;
mod table;
mod tls;

pub use self::mirror::{DEFAULT_CHECKPOINT_TABLE, PostgresCheckpointMirror};

use self::copy::{split_at, storable_json, store};
use self::follow::FollowStatements;
use self::table::{TableName, serialized_ddl};
use self::tls::{open, tls_connector};
use crate::error::ConfigError;
use crate::event::{AuditEvent, write_event};
use crate::sink::{BoxFuture, Sink, SinkError};

/// The table used when none is given.
pub const DEFAULT_TABLE: &str = "audit_events";

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_CONNECTIONS: usize = 16;
/// The smallest part of a batch worth a connection of its own.
const MIN_ROWS_PER_CONNECTION: usize = 128;

/// Stores audit events as rows of a PostgreSQL table. See the [module docs](self).
pub struct PostgresSink {
    config: tokio_postgres::Config,
    table: TableName,
    create_table: bool,
    timeout: Duration,
    name: String,
    /// Set for `sslmode=require`.
    tls: Option<MakeRustlsConnect>,
    connections_wanted: usize,
    connections: Vec<Connection>,
    /// Set once it is used as a follower: its connections prepare the follower's
    /// statements too.
    following: bool,
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
            .field("tls", &self.tls.is_some())
            .field("connections", &self.connections_wanted)
            .field("connected", &self.connections.len())
            .finish()
    }
}

/// Settings of a [`PostgresSink`], from [`PostgresSink::builder`].
#[derive(Clone)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct PostgresSinkBuilder {
    url: String,
    table: String,
    create_table: bool,
    timeout: Duration,
    connections: usize,
    /// PEM certificates to trust besides Mozilla's roots.
    root_certificates: Vec<Vec<u8>>,
}

impl fmt::Debug for PostgresSinkBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL may hold a password: show it parsed, as `Config` hides passwords.
        let url: &dyn fmt::Debug = match tokio_postgres::Config::from_str(&self.url) {
            Ok(ref config) => &format!("{config:?}"),
            Err(_) => &"(not a connection string)",
        };
        f.debug_struct("PostgresSinkBuilder")
            .field("url", url)
            .field("table", &self.table)
            .field("create_table", &self.create_table)
            .field("timeout", &self.timeout)
            .field("connections", &self.connections)
            .field("root_certificates", &self.root_certificates.len())
            .finish()
    }
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
            connections: 1,
            root_certificates: Vec::new(),
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

    /// How many connections share a large batch, each copying its part at the same time;
    /// default 1. On a database host with cores to spare, 2 to 4 can raise the sink's
    /// throughput; batches under 256 events use one connection. Larger batches help too:
    /// a trail built with `.batch_size(4096)` commits once per 4,096 events (see
    /// BENCHMARKS.md).
    pub fn connections(mut self, connections: usize) -> Self {
        self.connections = connections;
        self
    }

    /// Trusts the certificates of `pem` (one or more `BEGIN CERTIFICATE` blocks: a private
    /// CA, or your cloud provider's bundle) besides Mozilla's roots, for a URL with
    /// `sslmode=require`.
    pub fn tls_root_certificates_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.root_certificates.push(pem.into());
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
        let tls = match config.get_ssl_mode() {
            SslMode::Require => Some(tls_connector(&self.root_certificates).map_err(invalid)?),
            _ if !self.root_certificates.is_empty() => {
                return Err(invalid(
                    "root certificates were given but the URL does not ask for TLS: add \
                     sslmode=require"
                        .to_owned(),
                ));
            }
            _ => None,
        };
        if self.timeout.is_zero() {
            return Err(invalid("the timeout must be more than zero".to_owned()));
        }
        if !(1..=MAX_CONNECTIONS).contains(&self.connections) {
            return Err(invalid(format!(
                "connections must be from 1 to {MAX_CONNECTIONS}, not {}",
                self.connections
            )));
        }
        let table = TableName::parse(&self.table).map_err(invalid)?;
        let name = format!("postgres:{}/{}", describe_hosts(&config), table.display);
        Ok(PostgresSink {
            config,
            table,
            create_table: self.create_table,
            timeout: self.timeout,
            name,
            tls,
            connections_wanted: self.connections,
            connections: Vec::new(),
            following: false,
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

/// A live connection: the client, its prepared statements, the table's column types, and the
/// task that drives it.
struct Connection {
    client: Client,
    copy: Statement,
    existing_ids: Statement,
    types: Vec<Type>,
    /// Prepared once the sink is used as a follower.
    follow: Option<FollowStatements>,
    task: JoinHandle<()>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        // A connection stuck on a dead peer would otherwise linger until TCP gives up.
        self.task.abort();
    }
}

impl PostgresSink {
    /// Every connection wanted, open (a new one creates the table if asked to).
    /// The first connection's client, once [`ensure_connected`](Self::ensure_connected).
    fn client(&self) -> Result<&Client, SinkError> {
        self.connections
            .first()
            .map(|connection| &connection.client)
            .ok_or_else(|| SinkError::new("not connected"))
    }

    async fn ensure_connected(&mut self) -> Result<(), SinkError> {
        self.connections
            .retain(|connection| !connection.client.is_closed());
        while self.connections.len() < self.connections_wanted {
            let connection = self.connect().await?;
            self.connections.push(connection);
        }
        Ok(())
    }

    async fn connect(&self) -> Result<Connection, SinkError> {
        let connecting = async {
            match &self.tls {
                Some(tls) => open(&self.config, tls.clone(), &self.name).await,
                None => open(&self.config, NoTls, &self.name).await,
            }
        };
        let (client, task) = tokio::time::timeout(self.timeout, connecting)
            .await
            .map_err(|_| SinkError::new(format!("no connection within {:?}", self.timeout)))?
            .map_err(|error| SinkError::new(format!("cannot connect: {}", describe(&error))))?;
        let setup = async {
            if self.create_table {
                client
                    .batch_execute(&serialized_ddl(&self.table.create_sql()))
                    .await?;
            }
            let types = client.prepare(&self.table.types_sql()).await?;
            let types = types
                .columns()
                .iter()
                .map(|column| column.type_().clone())
                .collect();
            let copy = client.prepare(&self.table.copy_sql()).await?;
            let existing_ids = client.prepare(&self.table.existing_ids_sql()).await?;
            Ok::<_, tokio_postgres::Error>((types, copy, existing_ids))
        };
        let (types, copy, existing_ids) = tokio::time::timeout(self.timeout, setup)
            .await
            .map_err(|_| SinkError::new(format!("setup took over {:?}", self.timeout)))?
            .map_err(|error| SinkError::new(describe(&error)))?;
        let follow = match self.following {
            true => Some(
                tokio::time::timeout(self.timeout, FollowStatements::prepare(&client, self))
                    .await
                    .map_err(|_| SinkError::new(format!("setup took over {:?}", self.timeout)))?
                    .map_err(|error| SinkError::new(describe(&error)))?,
            ),
            false => None,
        };
        Ok(Connection {
            client,
            copy,
            existing_ids,
            types,
            follow,
            task,
        })
    }

    /// Copies the batch in, split between the connections.
    async fn insert(&mut self, events: &[AuditEvent]) -> Result<(), SinkError> {
        self.json.clear();
        self.ends.clear();
        for event in events {
            write_event(&mut self.json, event)?;
            self.ends.push(self.json.len());
        }
        // JSON is UTF-8, and each event ends on a character boundary.
        let json = std::str::from_utf8(&self.json).map_err(SinkError::new)?;
        let rows: Vec<(&AuditEvent, Cow<'_, str>)> = events
            .iter()
            .zip(split_at(json, &self.ends).map(storable_json))
            .collect();
        let parts = (rows.len() / MIN_ROWS_PER_CONNECTION).clamp(1, self.connections.len().max(1));
        let per_part = rows.len().div_ceil(parts).max(1);
        let work = futures_util::future::try_join_all(
            self.connections
                .iter()
                .zip(rows.chunks(per_part))
                .map(|(connection, part)| store(connection, part)),
        );
        tokio::time::timeout(self.timeout, work)
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
/// tokio-postgres's Display reduces to "db error"; otherwise the error and its causes
/// (`error performing TLS handshake: invalid peer certificate: UnknownIssuer`).
fn describe(error: &tokio_postgres::Error) -> String {
    if let Some(db) = error.as_db_error() {
        return format!("{}: {}", db.code().code(), db.message());
    }
    let mut text = error.to_string();
    let mut cause = std::error::Error::source(error);
    while let Some(error) = cause {
        let more = error.to_string();
        if !text.ends_with(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = error.source();
    }
    text
}

impl Sink for PostgresSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn open(&mut self) -> BoxFuture<'_, Result<(), SinkError>> {
        Box::pin(self.ensure_connected())
    }

    fn write_batch<'a>(
        &'a mut self,
        events: &'a [AuditEvent],
    ) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            self.ensure_connected().await?;
            let result = self.insert(events).await;
            if result.is_err() {
                // Start afresh on the retry: a connection may be broken or mid-statement.
                self.connections.clear();
            }
            result
        })
    }

    fn close(&mut self) -> BoxFuture<'_, Result<(), SinkError>> {
        Box::pin(async move {
            self.connections.clear();
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::postgres::copy::storable_text;

    #[test]
    fn table_names_are_checked_and_quoted() {
        let table = TableName::parse("audit.events").expect("valid");
        assert_eq!(table.quoted, r#""audit"."events""#);
        assert_eq!(table.time_index, r#""events_time_idx""#);
        assert!(
            table
                .create_sql()
                .starts_with("CREATE SCHEMA IF NOT EXISTS \"audit\";\nCREATE TABLE IF NOT EXISTS \"audit\".\"events\" (")
        );
        assert!(
            TableName::parse("events")
                .expect("valid")
                .create_sql()
                .starts_with("CREATE TABLE IF NOT EXISTS \"events\" (")
        );
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
    fn nul_characters_and_their_json_escapes_become_replacement_characters() {
        assert_eq!(storable_text("a\0b\0"), "a\u{fffd}b\u{fffd}");
        assert!(matches!(storable_text("plain"), Cow::Borrowed("plain")));
        let json = serde_json::to_string(&["a\0b", "\\u0000", "\\\0"]).expect("json");
        assert_eq!(json, r#"["a\u0000b","\\u0000","\\\u0000"]"#);
        assert_eq!(storable_json(&json), r#"["a\ufffdb","\\u0000","\\\ufffd"]"#);
        assert!(matches!(storable_json(r#"{"a":"b"}"#), Cow::Borrowed(_)));
    }

    #[test]
    fn the_name_never_shows_the_password() {
        let sink =
            PostgresSink::new("postgres://audit:hunter2@db.internal:6543/app").expect("valid URL");
        assert_eq!(sink.name(), "postgres:db.internal:6543/app/audit_events");
        assert!(!format!("{sink:?}").contains("hunter2"));
        let builder = PostgresSink::builder("postgres://audit:hunter2@db.internal/app");
        assert!(!format!("{builder:?}").contains("hunter2"), "{builder:?}");
        let builder = PostgresSink::builder("host=db password=hunter2 port=x");
        assert!(!format!("{builder:?}").contains("hunter2"), "{builder:?}");
    }

    #[test]
    fn bad_settings_are_refused_with_a_reason() {
        let error = PostgresSink::new("postgres://host:notaport/db").expect_err("bad port");
        assert!(
            error
                .to_string()
                .contains("not a PostgreSQL connection string")
        );
        let error = PostgresSink::builder("postgres://host/db")
            .tls_root_certificates_pem("not a certificate")
            .build()
            .expect_err("roots without sslmode=require");
        assert!(error.to_string().contains("sslmode=require"), "{error}");
        let error = PostgresSink::builder("postgres://host/db?sslmode=require")
            .tls_root_certificates_pem("not a certificate")
            .build()
            .expect_err("no certificate");
        assert!(error.to_string().contains("BEGIN CERTIFICATE"), "{error}");
        assert!(PostgresSink::new("postgres://host/db?sslmode=require").is_ok());
        let error = PostgresSink::builder("postgres://host/db")
            .timeout(Duration::ZERO)
            .build()
            .expect_err("zero timeout");
        assert!(error.to_string().contains("timeout"), "{error}");
        let error = PostgresSink::builder("postgres://host/db")
            .connections(0)
            .build()
            .expect_err("no connection");
        assert!(error.to_string().contains("connections"), "{error}");
    }
}
