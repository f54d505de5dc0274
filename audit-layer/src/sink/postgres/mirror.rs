//! [`PostgresCheckpointMirror`]: the file trail's checkpoints, also kept in a PostgreSQL
//! table that the application's own database user need not be able to change.

use std::str::FromStr;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

use tokio_postgres::NoTls;
use tokio_postgres::config::SslMode;

use super::table::TableName;
use super::tls::{open, tls_connector};
use crate::error::ConfigError;
use crate::file::{Checkpoint, CheckpointMirror};

/// The table used when none is given.
pub const DEFAULT_CHECKPOINT_TABLE: &str = "audit_checkpoints";

/// How long a publication, or the last one at shutdown, may take.
const TIMEOUT: Duration = Duration::from_secs(10);
/// How long after a failed publication the next try comes.
const RETRY: Duration = Duration::from_secs(5);

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
    name: String,
    shared: Arc<Shared>,
    /// Told when the thread has stopped.
    stopped: std::sync::mpsc::Receiver<()>,
}

/// What the trail's writer and the publishing thread share.
struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

#[derive(Default)]
struct State {
    /// The newest checkpoint not yet published.
    newest: Option<Checkpoint>,
    /// The trail is closing: publish what is left and stop.
    closing: bool,
}

/// Where rows go.
struct Target {
    config: tokio_postgres::Config,
    tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
    table: TableName,
    trail: String,
    name: String,
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
        let name = target.name.clone();
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
        });
        let (done, stopped) = std::sync::mpsc::channel();
        let thread_shared = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("audit-checkpoint-mirror".into())
            .spawn(move || {
                publish_until_closed(&target, &thread_shared);
                let _ = done.send(());
            })
            .map_err(ConfigError::Writer)?;
        Ok(Self {
            name,
            shared,
            stopped,
        })
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
        let (client, task) = target.connect().await.map_err(unreachable)?;
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
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl CheckpointMirror for PostgresCheckpointMirror {
    fn name(&self) -> &str {
        &self.name
    }

    fn publish(&mut self, checkpoint: &Checkpoint) -> std::io::Result<()> {
        let mut state = self
            .shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        state.newest = Some(checkpoint.clone());
        self.shared.wake.notify_one();
        Ok(())
    }
}

impl Drop for PostgresCheckpointMirror {
    fn drop(&mut self) {
        self.shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .closing = true;
        self.shared.wake.notify_one();
        // The trail's last checkpoint, written at its close, is published before it ends.
        if self
            .stopped
            .recv_timeout(TIMEOUT + Duration::from_secs(1))
            .is_err()
        {
            tracing::error!(
                target: "audit",
                mirror = %self.name,
                "the checkpoint mirror did not publish the trail's last checkpoint in time"
            );
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
        })
    }

    async fn connect(
        &self,
    ) -> Result<(tokio_postgres::Client, tokio::task::JoinHandle<()>), String> {
        let connecting = async {
            match &self.tls {
                Some(tls) => open(&self.config, tls.clone(), &self.name).await,
                None => open(&self.config, NoTls, &self.name).await,
            }
        };
        match tokio::time::timeout(TIMEOUT, connecting).await {
            Ok(connected) => connected.map_err(|e| e.to_string()),
            Err(_) => Err(format!("no connection within {} s", TIMEOUT.as_secs())),
        }
    }

    /// Creates the table if need be, and inserts `checkpoint` (once: a retry is a no-op).
    async fn insert(
        &self,
        client: &tokio_postgres::Client,
        checkpoint: &Checkpoint,
    ) -> Result<(), String> {
        let schema = match &self.table.schema {
            Some(schema) => format!("CREATE SCHEMA IF NOT EXISTS {schema}; "),
            None => String::new(),
        };
        let create = format!(
            "{schema}CREATE TABLE IF NOT EXISTS {} (trail text NOT NULL, seq_to bigint NOT NULL, \
             checkpoint json NOT NULL, stored timestamptz NOT NULL DEFAULT now(), \
             PRIMARY KEY (trail, seq_to))",
            self.table.quoted
        );
        let insert = format!(
            "INSERT INTO {} (trail, seq_to, checkpoint) VALUES ($1, $2, $3::text::json) \
             ON CONFLICT DO NOTHING",
            self.table.quoted
        );
        let json = serde_json::to_string(checkpoint).map_err(|e| e.to_string())?;
        let seq_to = i64::try_from(checkpoint.seq_to).map_err(|e| e.to_string())?;
        let work = async {
            client.batch_execute(&create).await?;
            client
                .execute(&insert, &[&self.trail, &seq_to, &json])
                .await
        };
        match tokio::time::timeout(TIMEOUT, work).await {
            Ok(done) => done.map(drop).map_err(|e| e.to_string()),
            Err(_) => Err(format!("no answer within {} s", TIMEOUT.as_secs())),
        }
    }
}

/// The publishing thread: waits for a checkpoint, publishes the newest, retries with the
/// next after a failure; after `closing`, publishes what is left once and returns.
fn publish_until_closed(target: &Target, shared: &Shared) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(target: "audit", mirror = %target.name, %error, "cannot start the checkpoint mirror");
            return;
        }
    };
    let mut connection = None;
    loop {
        let (checkpoint, closing) = {
            let mut state = shared.state.lock().unwrap_or_else(PoisonError::into_inner);
            while state.newest.is_none() && !state.closing {
                state = shared
                    .wake
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            (state.newest.take(), state.closing)
        };
        if let Some(checkpoint) = checkpoint {
            let published = runtime.block_on(async {
                if connection.is_none() {
                    connection = Some(target.connect().await?);
                }
                let Some((client, _)) = &connection else {
                    return Err("not connected".to_owned());
                };
                target.insert(client, &checkpoint).await
            });
            if let Err(error) = published {
                if let Some((_, task)) = connection.take() {
                    task.abort();
                }
                metrics::counter!("audit_checkpoint_mirror_errors_total").increment(1);
                tracing::error!(
                    target: "audit",
                    mirror = %target.name,
                    seq_to = checkpoint.seq_to,
                    %error,
                    "could not publish a checkpoint to the mirror; the next one will be"
                );
                if !closing {
                    // Tried again in a while, unless a newer one came meanwhile.
                    shared
                        .state
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .newest
                        .get_or_insert(checkpoint);
                    std::thread::sleep(RETRY);
                }
            }
        }
        if closing {
            let left = shared
                .state
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .newest
                .is_some();
            if !left {
                return;
            }
        }
    }
}
