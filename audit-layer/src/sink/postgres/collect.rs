//! [`PostgresSink`] as the collector's central store: each instance's lines in the events
//! table (as a follower stores them), its checkpoints in a table of checkpoints, and what
//! the store knows of it in a table of instances, one row each, locked while a collector
//! stores, so that collectors running side by side take turns per instance.

use std::borrow::Cow;
use std::collections::HashMap;
use std::time::SystemTime;

use tokio_postgres::Client;

use super::table::{TableName, serialized_ddl};
use super::{PostgresSink, describe};
use crate::collect::InstanceReport;
use crate::collect::tree::{HeadVerdict, decide_head};
use crate::collect::verdict::{ArrivedLine, Decision, InstanceState, Rules, decide};
use crate::event::Timestamp;
use crate::file::{Checkpoint, Fault, TrailLine};
use crate::follow::fields::LineFields;
use crate::sink::SinkError;
use crate::sink::nats::PublishedHead;

/// The tables besides the events table.
#[derive(Clone, Debug)]
pub(crate) struct CollectTables {
    instances: TableName,
    checkpoints: TableName,
    /// Lines and checkpoints that arrived ahead of a missing line, waiting for it.
    pending: TableName,
}

impl CollectTables {
    /// `<events>_instances`, `<events>_pending`, and `checkpoints` (the checkpoint
    /// mirror's table by default).
    pub(crate) fn new(sink: &PostgresSink, checkpoints: &str) -> Result<Self, String> {
        Ok(Self {
            instances: TableName::parse(&format!("{}_instances", sink.table.display))?,
            checkpoints: TableName::parse(checkpoints)?,
            pending: TableName::parse(&format!("{}_pending", sink.table.display))?,
        })
    }
}

impl PostgresSink {
    /// Stores what arrived for `trail` as [`decide`] says, in one transaction that holds the
    /// instance's row: what must wait for a missing line waits in the pending table, so
    /// that every arrival is done with once this returns. `sweep` looks at what waits even
    /// if nothing arrived (its grace may be over). Gives the faults found, once committed.
    pub(crate) async fn collect(
        &mut self,
        tables: &CollectTables,
        trail: &str,
        lines: &[ArrivedLine],
        checkpoints: &[Checkpoint],
        rules: &Rules,
        sweep: bool,
    ) -> Result<Vec<Fault>, SinkError> {
        if !self.following {
            self.following = true;
            self.connections.clear();
        }
        self.ensure_connected().await?;
        let (client, follow) = self.follower_connection()?;
        let storing = store_in_transaction(
            client,
            &follow.copy,
            &follow.types,
            self,
            tables,
            trail,
            lines,
            checkpoints,
            rules,
            sweep,
        );
        let what = format!("storing {} line(s)", lines.len());
        let result = in_transaction(client, self.timeout, &what, storing).await;
        result.map_err(|error| {
            self.connections.clear();
            SinkError::new(error.to_string())
        })
    }

    /// Checks `heads` of `trail` against the instance's state and the lines stored, in one
    /// transaction holding the instance's row; a verdict for each, in their order.
    pub(crate) async fn collect_tree_heads(
        &mut self,
        tables: &CollectTables,
        trail: &str,
        heads: &[PublishedHead],
        rules: &Rules,
    ) -> Result<Vec<HeadVerdict>, SinkError> {
        self.ensure_connected().await?;
        let (client, _) = self.follower_connection()?;
        let checking = heads_in_transaction(client, self, tables, trail, heads, rules);
        let what = format!("checking {} tree head(s)", heads.len());
        let result = in_transaction(client, self.timeout, &what, checking).await;
        result.map_err(|error| {
            self.connections.clear();
            SinkError::new(error.to_string())
        })
    }

    /// Creates the collector's tables if the sink creates its table.
    pub(crate) async fn prepare_collect(
        &mut self,
        tables: &CollectTables,
    ) -> Result<(), SinkError> {
        self.ensure_connected().await?;
        if !self.create_table {
            return Ok(());
        }
        let client = self.client()?;
        let sql = serialized_ddl(&format!(
            "{};\n{};\n{};",
            tables.instances.create_instances_sql(),
            tables.checkpoints.create_checkpoints_sql(),
            tables.pending.create_pending_sql()
        ));
        tokio::time::timeout(self.timeout, client.batch_execute(&sql))
            .await
            .map_err(|_| SinkError::new(format!("setup took over {:?}", self.timeout)))?
            .map_err(|error| SinkError::new(describe(&error)))
    }

    /// The instances whose waiting lines have waited `grace` or longer: a sweep may give
    /// their gap up, with nothing new arriving for them.
    pub(crate) async fn waiting_trails(
        &mut self,
        tables: &CollectTables,
        grace: std::time::Duration,
    ) -> Result<Vec<String>, SinkError> {
        self.ensure_connected().await?;
        let client = self.client()?;
        let sql = format!(
            "SELECT DISTINCT trail FROM {} WHERE arrived <= now() - make_interval(secs => $1)",
            tables.pending.quoted
        );
        let rows = tokio::time::timeout(self.timeout, client.query(&sql, &[&grace.as_secs_f64()]))
            .await
            .map_err(|_| SinkError::new(format!("no answer within {:?}", self.timeout)))?
            .map_err(|error| SinkError::new(describe(&error)))?;
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }

    /// What a collector stored into this table of each instance's trail (its table of
    /// instances is `<table>_instances`), in the order of the instances' ids.
    pub async fn instances(&mut self) -> Result<Vec<InstanceReport>, SinkError> {
        self.ensure_connected().await?;
        let instances = TableName::parse(&format!("{}_instances", self.table.display))
            .map_err(SinkError::new)?;
        let client = self.client()?;
        let sql = format!(
            "SELECT trail, state::text, updated FROM {} ORDER BY trail",
            instances.quoted
        );
        let rows = tokio::time::timeout(self.timeout, client.query(&sql, &[]))
            .await
            .map_err(|_| SinkError::new(format!("no instances within {:?}", self.timeout)))?
            .map_err(|error| SinkError::new(describe(&error)))?;
        rows.iter()
            .map(|row| {
                let trail: String = row.get(0);
                let state: InstanceState = serde_json::from_str(row.get(1)).map_err(|error| {
                    SinkError::new(format!("the state of instance `{trail}`: {error}"))
                })?;
                let updated: SystemTime = row.get(2);
                Ok(InstanceReport::new(trail, state, updated))
            })
            .collect()
    }
}

#[derive(Debug, thiserror::Error)]
enum StoreError {
    #[error("{}", describe(.0))]
    Postgres(#[from] tokio_postgres::Error),
    #[error("{0}")]
    Other(String),
}

/// Pending lines taken at once when a gap closes: what waited is stored a chunk at a time.
const PENDING_CHUNK: i64 = 8192;
const PENDING_LINE: i16 = 0;
const PENDING_CHECKPOINT: i16 = 1;

/// The work inside the transaction: lock and read the instance's state; decide over what
/// arrived, with what waits in the pending table when it may move on; store; keep what must
/// still wait in the pending table; save the state. Gives the faults found.
#[allow(clippy::too_many_arguments)]
async fn store_in_transaction(
    client: &Client,
    copy: &tokio_postgres::Statement,
    types: &[tokio_postgres::types::Type],
    sink: &PostgresSink,
    tables: &CollectTables,
    trail: &str,
    lines: &[ArrivedLine],
    checkpoints: &[Checkpoint],
    rules: &Rules,
    sweep: bool,
) -> Result<Vec<Fault>, StoreError> {
    let mut state = locked_state(client, tables, trail).await?;
    // One clock for the whole transaction: what is loaded and what `decide` gives up on agree.
    let now = Timestamp::now();
    let expected = state.last_seq.map_or(0, |last| last + 1);
    let grace_over = state.waiting_since.is_some_and(|since| {
        now.unix_micros().saturating_sub(since.unix_micros()) >= rules.gap_grace.as_micros() as u64
    });
    // What waits can only move when the line it waits for came, or the grace is over.
    let mut load = sweep || grace_over || lines.iter().any(|line| line.seq == expected);
    let mut arrived = Some((lines, checkpoints));
    let mut faults = Vec::new();
    loop {
        let (waiting_lines, waiting_checkpoints) = match load {
            true => load_pending(client, tables, trail, state.last_seq).await?,
            false => (Vec::new(), Vec::new()),
        };
        let full = waiting_lines.len() as i64 >= PENDING_CHUNK;
        let (new_lines, new_checkpoints) = arrived.take().unwrap_or((&[], &[]));
        let from_pending = (waiting_lines.len(), waiting_checkpoints.len());
        let all_lines = joined(waiting_lines, new_lines);
        let all_checkpoints = joined(waiting_checkpoints, new_checkpoints);
        let stored =
            stored_hashes(client, sink, trail, &state, &all_lines, &all_checkpoints).await?;
        let decision = decide(
            trail,
            &mut state,
            &all_lines,
            &all_checkpoints,
            &stored,
            rules,
            now,
        );
        store_decided(
            client,
            copy,
            types,
            tables,
            trail,
            &all_lines,
            &all_checkpoints,
            &decision,
        )
        .await?;
        keep_pending(
            client,
            tables,
            trail,
            &all_lines,
            &all_checkpoints,
            from_pending,
            &decision,
        )
        .await?;
        let moved = !decision.store.is_empty();
        faults.extend(decision.faults);
        if !(full && moved) {
            break;
        }
        load = true;
    }
    save_state(client, tables, trail, &state).await?;
    Ok(faults)
}

/// Runs `work` (not started yet) between `BEGIN` and `COMMIT`, rolled back if it fails or
/// takes over `timeout`.
async fn in_transaction<T>(
    client: &Client,
    timeout: std::time::Duration,
    what: &str,
    work: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    let running = async {
        client.batch_execute("BEGIN").await?;
        match work.await {
            Ok(done) => {
                client.batch_execute("COMMIT").await?;
                Ok(done)
            }
            Err(error) => {
                let _ = client.batch_execute("ROLLBACK").await;
                Err(error)
            }
        }
    };
    tokio::time::timeout(timeout, running)
        .await
        .unwrap_or_else(|_| Err(StoreError::Other(format!("{what} took over {timeout:?}"))))
}

/// Locks and reads the instance's state, decides over each head (smallest tree first) with
/// the hash the store keeps for its last line, and saves the state.
async fn heads_in_transaction(
    client: &Client,
    sink: &PostgresSink,
    tables: &CollectTables,
    trail: &str,
    heads: &[PublishedHead],
    rules: &Rules,
) -> Result<Vec<HeadVerdict>, StoreError> {
    let mut state = locked_state(client, tables, trail).await?;
    let wanted: Vec<i64> = heads
        .iter()
        .filter_map(|head| i64::try_from(head.seq_to).ok())
        .collect();
    let mut stored = HashMap::new();
    for row in client
        .query(&sink.table.hashes_sql(), &[&trail, &wanted])
        .await?
    {
        let seq: i64 = row.get(0);
        let hash: Option<String> = row.get(1);
        if let (Ok(seq), Some(hash)) = (u64::try_from(seq), hash) {
            stored.insert(seq, hash);
        }
    }
    let size_of = |head: &PublishedHead| {
        crate::merkle::TreeHead::parse(&head.note).map_or(0, |tree| tree.size)
    };
    let mut order: Vec<usize> = (0..heads.len()).collect();
    order.sort_by_key(|&index| size_of(&heads[index]));
    let mut verdicts: Vec<Option<HeadVerdict>> = (0..heads.len()).map(|_| None).collect();
    for index in order {
        let head = &heads[index];
        let stored_hash = stored.get(&head.seq_to).map(String::as_str);
        verdicts[index] = Some(decide_head(trail, &mut state, head, stored_hash, rules));
    }
    save_state(client, tables, trail, &state).await?;
    Ok(verdicts.into_iter().flatten().collect())
}

/// The instance's row, created if need be and locked for the transaction: its state.
async fn locked_state(
    client: &Client,
    tables: &CollectTables,
    trail: &str,
) -> Result<InstanceState, StoreError> {
    let instances = &tables.instances.quoted;
    client
        .execute(
            &format!(
                "INSERT INTO {instances} (trail, state) VALUES ($1, '{{}}') ON CONFLICT DO NOTHING"
            ),
            &[&trail],
        )
        .await?;
    let row = client
        .query_one(
            &format!("SELECT state::text FROM {instances} WHERE trail = $1 FOR UPDATE"),
            &[&trail],
        )
        .await?;
    serde_json::from_str(row.get(0))
        .map_err(|error| StoreError::Other(format!("the state of instance `{trail}`: {error}")))
}

async fn save_state(
    client: &Client,
    tables: &CollectTables,
    trail: &str,
    state: &InstanceState,
) -> Result<(), StoreError> {
    let json =
        serde_json::to_string(state).map_err(|error| StoreError::Other(error.to_string()))?;
    client
        .execute(
            &format!(
                "UPDATE {} SET state = $2::text::jsonb, updated = now() WHERE trail = $1",
                tables.instances.quoted
            ),
            &[&trail, &json],
        )
        .await?;
    Ok(())
}

/// `waiting` then `arrived`, borrowed when nothing waits.
fn joined<'a, T: Clone>(waiting: Vec<T>, arrived: &'a [T]) -> Cow<'a, [T]> {
    if waiting.is_empty() {
        Cow::Borrowed(arrived)
    } else {
        let mut all = waiting;
        all.extend_from_slice(arrived);
        Cow::Owned(all)
    }
}

/// The lines waiting for `trail` past `last_seq` (a chunk, in seq order), and its waiting
/// checkpoints.
async fn load_pending(
    client: &Client,
    tables: &CollectTables,
    trail: &str,
    last_seq: Option<u64>,
) -> Result<(Vec<ArrivedLine>, Vec<Checkpoint>), StoreError> {
    let pending = &tables.pending.quoted;
    let after = last_seq.map_or(-1, |last| i64::try_from(last).unwrap_or(i64::MAX));
    let rows = client
        .query(
            &format!(
                "SELECT seq, hash, body FROM {pending} WHERE trail = $1 AND kind = $2 \
                 AND seq > $3 ORDER BY seq LIMIT {PENDING_CHUNK}"
            ),
            &[&trail, &PENDING_LINE, &after],
        )
        .await?;
    let lines = rows
        .iter()
        .map(|row| ArrivedLine {
            seq: u64::try_from(row.get::<_, i64>(0)).unwrap_or(0),
            hash: row.get(1),
            json: row.get(2),
        })
        .collect();
    let rows = client
        .query(
            &format!("SELECT body FROM {pending} WHERE trail = $1 AND kind = $2 ORDER BY seq"),
            &[&trail, &PENDING_CHECKPOINT],
        )
        .await?;
    let checkpoints = rows
        .iter()
        .map(|row| {
            serde_json::from_str(row.get(0)).map_err(|error| {
                StoreError::Other(format!("a waiting checkpoint of `{trail}`: {error}"))
            })
        })
        .collect::<Result<_, _>>()?;
    Ok((lines, checkpoints))
}

/// The hashes the store keeps for the seqs that arrived again, and for checkpoints' ends.
async fn stored_hashes(
    client: &Client,
    sink: &PostgresSink,
    trail: &str,
    state: &InstanceState,
    lines: &[ArrivedLine],
    checkpoints: &[Checkpoint],
) -> Result<HashMap<u64, String>, StoreError> {
    let last = state.last_seq;
    let wanted: Vec<i64> = lines
        .iter()
        .map(|line| line.seq)
        .chain(checkpoints.iter().map(|checkpoint| checkpoint.seq_to))
        .filter(|seq| last.is_some_and(|last| *seq <= last))
        .filter_map(|seq| i64::try_from(seq).ok())
        .collect();
    let mut stored = HashMap::new();
    if !wanted.is_empty() {
        for row in client
            .query(&sink.table.hashes_sql(), &[&trail, &wanted])
            .await?
        {
            let seq: i64 = row.get(0);
            let hash: Option<String> = row.get(1);
            if let (Ok(seq), Some(hash)) = (u64::try_from(seq), hash) {
                stored.insert(seq, hash);
            }
        }
    }
    Ok(stored)
}

/// Copies the lines and inserts the checkpoints that `decision` stores.
#[allow(clippy::too_many_arguments)]
async fn store_decided(
    client: &Client,
    copy: &tokio_postgres::Statement,
    types: &[tokio_postgres::types::Type],
    tables: &CollectTables,
    trail: &str,
    lines: &[ArrivedLine],
    checkpoints: &[Checkpoint],
    decision: &Decision,
) -> Result<(), StoreError> {
    if !decision.store.is_empty() {
        let batch: Vec<TrailLine> = decision
            .store
            .iter()
            .map(|&index| TrailLine {
                seq: lines[index].seq,
                hash: lines[index].hash.clone(),
                json: lines[index].json.clone(),
            })
            .collect();
        let rows = batch
            .iter()
            .map(|line| LineFields::of(line).map(|fields| (line, fields)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| StoreError::Other(format!("a line that is not an event: {error}")))?;
        super::follow::copy_lines(client, copy, types, &rows, trail).await?;
    }
    if !decision.store_checkpoints.is_empty() {
        let insert = tables.checkpoints.insert_checkpoint_sql();
        for &index in &decision.store_checkpoints {
            let checkpoint = &checkpoints[index];
            let json = serde_json::to_string(checkpoint)
                .map_err(|error| StoreError::Other(error.to_string()))?;
            let seq_to = i64::try_from(checkpoint.seq_to).unwrap_or(i64::MAX);
            client.execute(&insert, &[&trail, &seq_to, &json]).await?;
        }
    }
    Ok(())
}

/// Keeps in the pending table what must still wait and arrived now, and takes out what
/// waited and is done with (stored, a duplicate, or refused). `from_pending` counts the
/// lines and checkpoints at the start of `lines` and `checkpoints` that came from it.
async fn keep_pending(
    client: &Client,
    tables: &CollectTables,
    trail: &str,
    lines: &[ArrivedLine],
    checkpoints: &[Checkpoint],
    from_pending: (usize, usize),
    decision: &Decision,
) -> Result<(), StoreError> {
    let pending = &tables.pending.quoted;
    let seq = |seq: u64| i64::try_from(seq).unwrap_or(i64::MAX);
    let done = |count: usize, later: &[usize]| -> Vec<usize> {
        let mut waits = vec![false; count];
        for &index in later.iter().filter(|&&index| index < count) {
            waits[index] = true;
        }
        (0..count).filter(|&index| !waits[index]).collect()
    };
    let done_lines: Vec<i64> = done(from_pending.0, &decision.later)
        .into_iter()
        .map(|index| seq(lines[index].seq))
        .collect();
    let done_checkpoints: Vec<i64> = done(from_pending.1, &decision.later_checkpoints)
        .into_iter()
        .map(|index| seq(checkpoints[index].seq_to))
        .collect();
    let delete = format!("DELETE FROM {pending} WHERE trail = $1 AND kind = $2 AND seq = ANY($3)");
    for (kind, seqs) in [
        (PENDING_LINE, &done_lines),
        (PENDING_CHECKPOINT, &done_checkpoints),
    ] {
        if !seqs.is_empty() {
            client.execute(&delete, &[&trail, &kind, seqs]).await?;
        }
    }
    let insert = format!(
        "INSERT INTO {pending} (trail, kind, seq, hash, body) \
         SELECT $1, $2, * FROM unnest($3::bigint[], $4::text[], $5::text[]) \
         ON CONFLICT DO NOTHING"
    );
    let new_lines: Vec<&ArrivedLine> = decision
        .later
        .iter()
        .filter(|&&index| index >= from_pending.0)
        .map(|&index| &lines[index])
        .collect();
    if !new_lines.is_empty() {
        let seqs: Vec<i64> = new_lines.iter().map(|line| seq(line.seq)).collect();
        let hashes: Vec<&str> = new_lines.iter().map(|line| line.hash.as_str()).collect();
        let bodies: Vec<&str> = new_lines.iter().map(|line| line.json.as_str()).collect();
        client
            .execute(&insert, &[&trail, &PENDING_LINE, &seqs, &hashes, &bodies])
            .await?;
    }
    let new_checkpoints: Vec<&Checkpoint> = decision
        .later_checkpoints
        .iter()
        .filter(|&&index| index >= from_pending.1)
        .map(|&index| &checkpoints[index])
        .collect();
    if !new_checkpoints.is_empty() {
        let seqs: Vec<i64> = new_checkpoints.iter().map(|cp| seq(cp.seq_to)).collect();
        let hashes: Vec<&str> = new_checkpoints.iter().map(|_| "").collect();
        let bodies = new_checkpoints
            .iter()
            .map(serde_json::to_string)
            .collect::<Result<Vec<String>, _>>()
            .map_err(|error| StoreError::Other(error.to_string()))?;
        client
            .execute(
                &insert,
                &[&trail, &PENDING_CHECKPOINT, &seqs, &hashes, &bodies],
            )
            .await?;
    }
    Ok(())
}
