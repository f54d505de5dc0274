//! [`PostgresCheckpointMirror`]: the file trail's checkpoints, also kept in a PostgreSQL
//! table that the application's own database user need not be able to change.

use std::str::FromStr;

use tokio_postgres::NoTls;
use tokio_postgres::config::SslMode;

use super::table::{TableName, serialized_ddl};
use super::tls::{open, tls_connector};
use crate::error::ConfigError;
use crate::file::mirror::{MIRROR_TIMEOUT, Publish, PublishingThread};
use crate::file::{Checkpoint, CheckpointMirror};

/// The table used when none is given.
pub const DEFAULT_CHECKPOINT_TABLE: &str = "audit_checkpoints";

/// Publishes each checkpoint of a file trail as a row of a PostgreSQL table: `(trail,
/// seq_to, checkpoint)`, keyed by the trail's name and the last seq it covers.
///
/// A thread of its own does the I/O: the trail's writer hands it the newest checkpoint
/// and goes on. A checkpoint that cannot be published is logged and replaced by the next
/// (the newest is what a verifier needs), or tried again 5 s later; the last one is waited for, up to 10 s, when the
/// trail closes. Give the application a database user that can insert into the table but
/// not update or delete (`GRANT INSERT, SELECT`), and the rows are out of the reach of
/// whoever holds the trail directory. `audit verify DIR --against-checkpoint URL
/// --mirror-trail NAME` checks the trail against the newest row.
///
/// ```no_run
/// use audit_layer::file::JsonlFileSink;
/// use audit_layer::sink::postgres::PostgresCheckpointMirror;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mirror = PostgresCheckpointMirror::new("postgres://audit@db/audit", "billing-eu-1")?;
/// let sink = JsonlFileSink::builder("./audit-log").checkpoint_mirror(mirror).build();
/// # Ok(()) }
/// ```
pub struct PostgresCheckpointMirror {
    thread: PublishingThread,
}

/// Where rows go, and the connection once made.
struct Target {
    config: tokio_postgres::Config,
    tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
    table: TableName,
    trail: String,
    name: String,
    connection: Option<(tokio_postgres::Client, tokio::task::JoinHandle<()>)>,
}

impl PostgresCheckpointMirror {
    /// A mirror into [`DEFAULT_CHECKPOINT_TABLE`] at `url` for the trail named `trail`
    /// (one table can hold the checkpoints of many trails). Checks the settings; connects
    /// on the first checkpoint.
    pub fn new(url: &str, trail: &str) -> Result<Self, ConfigError> {
        Self::with_table(url, trail, DEFAULT_CHECKPOINT_TABLE)
    }

    /// The same, into `table` (`schema.table` allowed).
    pub fn with_table(url: &str, trail: &str, table: &str) -> Result<Self, ConfigError> {
        let target = Target::parse(url, trail, table)?;
        let thread =
            PublishingThread::start(target.name.clone(), target).map_err(ConfigError::Writer)?;
        Ok(Self { thread })
    }

    /// The newest checkpoint of `trail` in `table` at `url`, if any: what `audit verify
    /// --against-checkpoint` checks a trail against.
    pub async fn newest(
        url: &str,
        trail: &str,
        table: &str,
    ) -> Result<Option<Checkpoint>, ConfigError> {
        let target = Target::parse(url, trail, table)?;
        let unreachable = |reason: String| ConfigError::Unreachable {
            sink: target.name.clone(),
            reason,
        };
        let (client, task) = target.open().await.map_err(unreachable)?;
        let sql = format!(
            "SELECT checkpoint::text FROM {} WHERE trail = $1 ORDER BY seq_to DESC LIMIT 1",
            target.table.quoted
        );
        let row = client
            .query_opt(&sql, &[&target.trail])
            .await
            .map_err(|e| unreachable(e.to_string()));
        task.abort();
        match row? {
            None => Ok(None),
            Some(row) => serde_json::from_str(row.get::<_, &str>(0))
                .map(Some)
                .map_err(|e| unreachable(format!("a row that is not a checkpoint: {e}"))),
        }
    }
}

impl std::fmt::Debug for PostgresCheckpointMirror {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresCheckpointMirror")
            .field("name", &self.thread.name())
            .finish_non_exhaustive()
    }
}

impl CheckpointMirror for PostgresCheckpointMirror {
    fn name(&self) -> &str {
        self.thread.name()
    }

    fn publish(&mut self, checkpoint: &Checkpoint) -> std::io::Result<()> {
        self.thread.hand_over(checkpoint);
        Ok(())
    }
}

impl Publish for Target {
    async fn publish(&mut self, checkpoint: &Checkpoint) -> Result<(), String> {
        if self.connection.is_none() {
            self.connection = Some(self.open().await?);
        }
        let Some((client, _)) = &self.connection else {
            return Err("not connected".to_owned());
        };
        self.insert(client, checkpoint).await
    }

    fn disconnect(&mut self) {
        if let Some((_, task)) = self.connection.take() {
            task.abort();
        }
    }
}

impl Target {
    fn parse(url: &str, trail: &str, table: &str) -> Result<Self, ConfigError> {
        let invalid = |reason: String| ConfigError::Sink {
            sink: "postgres checkpoint mirror",
            reason,
        };
        let config = tokio_postgres::Config::from_str(url)
            .map_err(|error| invalid(format!("not a PostgreSQL connection string: {error}")))?;
        let tls = match config.get_ssl_mode() {
            SslMode::Require => Some(tls_connector(&[]).map_err(invalid)?),
            _ => None,
        };
        if trail.is_empty() || trail.len() > 256 || trail.chars().any(char::is_control) {
            return Err(invalid(format!(
                "`{trail}` is not a trail name: 1 to 256 bytes, no control characters"
            )));
        }
        let table = TableName::parse(table).map_err(invalid)?;
        Ok(Self {
            name: format!(
                "postgres:{}/{}",
                super::describe_hosts(&config),
                table.display
            ),
            config,
            tls,
            table,
            trail: trail.to_owned(),
            connection: None,
        })
    }

    /// A connection of its own.
    async fn open(&self) -> Result<(tokio_postgres::Client, tokio::task::JoinHandle<()>), String> {
        let connecting = async {
            match &self.tls {
                Some(tls) => open(&self.config, tls.clone(), &self.name).await,
                None => open(&self.config, NoTls, &self.name).await,
            }
        };
        match tokio::time::timeout(MIRROR_TIMEOUT, connecting).await {
            Ok(connected) => connected.map_err(|e| e.to_string()),
            Err(_) => Err(format!(
                "no connection within {} s",
                MIRROR_TIMEOUT.as_secs()
            )),
        }
    }

    /// Creates the table if need be, and inserts `checkpoint` (once: a retry is a no-op).
    async fn insert(
        &self,
        client: &tokio_postgres::Client,
        checkpoint: &Checkpoint,
    ) -> Result<(), String> {
        let create = serialized_ddl(&self.table.create_checkpoints_sql());
        let insert = self.table.insert_checkpoint_sql();
        let json = serde_json::to_string(checkpoint).map_err(|e| e.to_string())?;
        let seq_to = i64::try_from(checkpoint.seq_to).map_err(|e| e.to_string())?;
        client
            .batch_execute(&create)
            .await
            .map_err(|e| e.to_string())?;
        client
            .execute(&insert, &[&self.trail, &seq_to, &json])
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    }
}
