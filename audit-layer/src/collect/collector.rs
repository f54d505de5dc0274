//! [`Collector`]: the instances' lines and checkpoints, taken from a JetStream stream through
//! a durable consumer shared by every collector, checked, and stored centrally.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use async_nats::jetstream::consumer::PullConsumer;
use async_nats::jetstream::{AckKind, Message};
use futures_util::StreamExt as _;

use super::arrivals::{Arrival, classify};
use super::tree::HeadVerdict;
use super::verdict::{ArrivedLine, Rules};
use crate::delivery::AuditTrail;
use crate::error::ConfigError;
use crate::event::actor::Actor;
use crate::event::{AuditEvent, Category, Outcome};
use crate::file::{ChainKey, Checkpoint, Fault, FaultKind, PublicKey};
use crate::follow::Recorder;
use crate::sink::SinkError;
use crate::sink::nats::{NatsSink, PublishedHead};
use crate::sink::postgres::collect::CollectTables;
use crate::sink::postgres::{DEFAULT_CHECKPOINT_TABLE, PostgresSink};

/// The durable consumer's name when none is given.
pub const DEFAULT_CONSUMER: &str = "audit-collector";

const DEFAULT_BATCH_SIZE: usize = 4096;
/// A batch is held in memory and stored in one transaction.
const MAX_BATCH_SIZE: usize = 65_536;
const BACKOFF_INITIAL: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How often the instances whose lines wait for a missing one are looked at, when nothing
/// new arrives for them.
const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// A tree head that waits for its last line, or for the head it is proven from, is offered
/// again after this.
const HEAD_RETRY: Duration = Duration::from_millis(500);

/// Gathers the trails of many application instances into one central store, checking each
/// as it arrives. See the [module docs](super).
///
/// ```no_run
/// use audit_layer::collect::Collector;
/// use audit_layer::file::PublicKey;
/// use audit_layer::sink::nats::NatsSink;
/// use audit_layer::sink::postgres::PostgresSink;
///
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let collector = Collector::builder(
///     NatsSink::new("nats://127.0.0.1:4222")?,
///     PostgresSink::new("postgres://audit@db/audit")?,
/// )
/// .public_key(PublicKey::from_file("fleet-signing.pub")?)
/// .build()?;
/// collector.run(async { let _ = tokio::signal::ctrl_c().await; }).await?;
/// # Ok(()) }
/// ```
pub struct Collector {
    source: NatsSink,
    store: PostgresSink,
    tables: CollectTables,
    consumer: String,
    batch_size: usize,
    rules: Rules,
    alerts: Option<Recorder>,
}

impl std::fmt::Debug for Collector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Collector")
            .field("source", &self.source)
            .field("store", &self.store)
            .field("consumer", &self.consumer)
            .field("batch_size", &self.batch_size)
            .field("gap_grace", &self.rules.gap_grace)
            .field("public_keys", &self.rules.public_keys.len())
            .field("alerts", &self.alerts.is_some())
            .finish()
    }
}

/// Settings of a [`Collector`]; [`build`](Self::build) checks them.
#[must_use = "a builder does nothing until `build` is called"]
pub struct CollectorBuilder {
    source: NatsSink,
    store: PostgresSink,
    consumer: String,
    checkpoint_table: String,
    batch_size: usize,
    gap_grace: Duration,
    public_keys: Vec<PublicKey>,
    chain_key: Option<ChainKey>,
    alerts: Option<Recorder>,
}

impl std::fmt::Debug for CollectorBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CollectorBuilder")
            .field("source", &self.source)
            .field("store", &self.store)
            .field("consumer", &self.consumer)
            .field("checkpoint_table", &self.checkpoint_table)
            .field("batch_size", &self.batch_size)
            .field("gap_grace", &self.gap_grace)
            .field("public_keys", &self.public_keys.len())
            .field("chain_key", &self.chain_key)
            .field("alerts", &self.alerts.is_some())
            .finish()
    }
}

impl Collector {
    /// A collector of the trails that [`NatsSink`] followers publish to `source`'s stream
    /// (the same stream and subject prefix), into `store`'s table.
    pub fn builder(source: NatsSink, store: PostgresSink) -> CollectorBuilder {
        CollectorBuilder {
            source,
            store,
            consumer: DEFAULT_CONSUMER.to_owned(),
            checkpoint_table: DEFAULT_CHECKPOINT_TABLE.to_owned(),
            batch_size: DEFAULT_BATCH_SIZE,
            gap_grace: Duration::from_secs(30),
            public_keys: Vec::new(),
            chain_key: None,
            alerts: None,
        }
    }
}

impl CollectorBuilder {
    /// The durable consumer the collectors share; default [`DEFAULT_CONSUMER`]. Every
    /// collector of one central store uses the same: the stream hands each message to one
    /// of them.
    pub fn consumer(mut self, name: impl Into<String>) -> Self {
        self.consumer = name.into();
        self
    }

    /// The table the instances' checkpoints go to; default [`DEFAULT_CHECKPOINT_TABLE`],
    /// the one [`PostgresCheckpointMirror`](crate::sink::postgres::PostgresCheckpointMirror)
    /// writes.
    pub fn checkpoint_table(mut self, table: impl Into<String>) -> Self {
        self.checkpoint_table = table.into();
        self
    }

    /// The most messages taken and stored at once; default 4,096, at most 65,536. Larger
    /// batches take fewer turns between NATS, the collector and PostgreSQL (1,024: 0.75x the
    /// throughput of 4,096 in `cargo bench --bench pipeline -- collector`).
    pub fn batch_size(mut self, size: usize) -> Self {
        self.batch_size = size;
        self
    }

    /// How long lines that arrived after a gap wait for the missing ones before the gap is
    /// given up on (an alert) and they are stored; default 30 s. Collectors sharing the
    /// stream may take an instance's lines out of order for a moment: shorter than a few
    /// seconds raises false gaps.
    pub fn gap_grace(mut self, grace: Duration) -> Self {
        self.gap_grace = grace;
        self
    }

    /// Trusts `key` to sign the instances' checkpoints (call once per key). With no key,
    /// checkpoints are checked against the stored lines but their signatures are not.
    pub fn public_key(mut self, key: PublicKey) -> Self {
        self.public_keys.push(key);
        self
    }

    /// The instances' chain key, for trails built with
    /// [`JsonlFileSinkBuilder::chain_key`](crate::file::JsonlFileSinkBuilder::chain_key):
    /// without it their lines cannot be checked, and are refused.
    pub fn chain_key(mut self, key: ChainKey) -> Self {
        self.chain_key = Some(key);
        self
    }

    /// Records the collector's alerts (a gap, an altered line, a fork) into `trail`: the
    /// central trail. Without it, they are logged only.
    pub fn alerts(mut self, trail: &AuditTrail) -> Self {
        self.alerts = Some(trail.recorder());
        self
    }

    /// Checks the settings.
    pub fn build(self) -> Result<Collector, ConfigError> {
        let invalid = |reason: String| ConfigError::Sink {
            sink: "collector",
            reason,
        };
        if !(1..=MAX_BATCH_SIZE).contains(&self.batch_size) {
            return Err(invalid(format!(
                "the batch size must be from 1 to {MAX_BATCH_SIZE}, not {}",
                self.batch_size
            )));
        }
        if self.consumer.is_empty()
            || !self
                .consumer
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(invalid(format!(
                "`{}` is not a consumer name: letters, digits, `-` and `_`",
                self.consumer
            )));
        }
        let tables = CollectTables::new(&self.store, &self.checkpoint_table).map_err(invalid)?;
        Ok(Collector {
            source: self.source,
            store: self.store,
            tables,
            consumer: self.consumer,
            batch_size: self.batch_size,
            rules: Rules {
                chain_key: self.chain_key,
                public_keys: self.public_keys,
                gap_grace: self.gap_grace,
            },
            alerts: self.alerts,
        })
    }
}

/// What arrived for one instance in a batch, with the messages to acknowledge.
#[derive(Default)]
struct Group {
    lines: Vec<ArrivedLine>,
    line_messages: Vec<Message>,
    checkpoints: Vec<Checkpoint>,
    checkpoint_messages: Vec<Message>,
    heads: Vec<PublishedHead>,
    head_messages: Vec<Message>,
}

impl Collector {
    /// Collects until `shutdown` completes. Outages of NATS or PostgreSQL are waited out
    /// (with a backoff, the messages left on the stream); an error only if the stream or
    /// the tables cannot be set up at the start.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> Result<(), SinkError> {
        tokio::pin!(shutdown);
        let consumer = tokio::select! {
            () = &mut shutdown => return Ok(()),
            consumer = self.source.durable_consumer(&self.consumer, self.batch_size) => consumer?,
        };
        self.store.prepare_collect(&self.tables).await?;
        // The next batch is fetched while this one is stored; dropping the set stops it.
        let (batches, mut fetched) = tokio::sync::mpsc::channel(1);
        let mut fetcher = tokio::task::JoinSet::new();
        fetcher.spawn(fetch_batches(consumer, self.batch_size, batches));
        let mut backoff = BACKOFF_INITIAL;
        let mut last_sweep = tokio::time::Instant::now();
        loop {
            let messages = tokio::select! {
                () = &mut shutdown => return Ok(()),
                messages = fetched.recv() => messages,
            };
            let Some(messages) = messages else {
                return Err(SinkError::new("the collector's fetching task ended"));
            };
            let mut stored = self.take(messages).await;
            if stored.is_ok() && last_sweep.elapsed() >= SWEEP_EVERY {
                last_sweep = tokio::time::Instant::now();
                stored = self.sweep().await;
            }
            match stored {
                Ok(()) => backoff = BACKOFF_INITIAL,
                Err(error) => {
                    tracing::warn!(target: "audit", %error, retry_in = ?backoff, "audit collector: retrying");
                    tokio::select! {
                        () = &mut shutdown => return Ok(()),
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
    }

    /// Sorts a batch by instance and stores each instance's part.
    async fn take(&mut self, messages: Vec<Message>) -> Result<(), SinkError> {
        let prefix = self.source.prefix().to_owned();
        let mut groups: BTreeMap<String, Group> = BTreeMap::new();
        for message in messages {
            let arrival = classify(
                &prefix,
                &message.subject,
                message.headers.as_ref(),
                &message.payload,
            );
            match arrival {
                Arrival::Line { trail, line } => {
                    let group = groups.entry(trail).or_default();
                    group.lines.push(line);
                    group.line_messages.push(message);
                }
                Arrival::Checkpoint { trail, checkpoint } => {
                    let group = groups.entry(trail).or_default();
                    group.checkpoints.push(*checkpoint);
                    group.checkpoint_messages.push(message);
                }
                Arrival::TreeHead { trail, head } => {
                    let group = groups.entry(trail).or_default();
                    group.heads.push(*head);
                    group.head_messages.push(message);
                }
                Arrival::Unreadable { trail, detail } => {
                    let fault = Fault::new(FaultKind::Modified, detail).at(&trail, None, None);
                    self.alert(&trail, &fault);
                    ack(&message, AckKind::Ack).await;
                }
                Arrival::Foreign => ack(&message, AckKind::Ack).await,
            }
        }
        let mut failed = None;
        for (trail, group) in groups {
            if failed.is_some() {
                nak_all(&group, BACKOFF_INITIAL).await;
                continue;
            }
            let stored = self
                .store
                .collect(
                    &self.tables,
                    &trail,
                    &group.lines,
                    &group.checkpoints,
                    &self.rules,
                    false,
                )
                .await;
            match stored {
                Ok(faults) => {
                    // Stored, refused, or waiting in the store: done with, either way.
                    for fault in &faults {
                        self.alert(&trail, fault);
                    }
                    for message in group.line_messages.iter().chain(&group.checkpoint_messages) {
                        ack(message, AckKind::Ack).await;
                    }
                    if let Err(error) = self.take_heads(&trail, &group).await {
                        failed = Some(error);
                    }
                }
                Err(error) => {
                    // Offered again soon; the store's state is as before the batch.
                    nak_all(&group, BACKOFF_INITIAL).await;
                    failed = Some(error);
                }
            }
        }
        failed.map_or(Ok(()), Err)
    }

    /// Checks and keeps an instance's tree heads, once its lines are stored: each must hold
    /// the one accepted before it. One that must wait is offered again after a while.
    async fn take_heads(&mut self, trail: &str, group: &Group) -> Result<(), SinkError> {
        if group.heads.is_empty() {
            return Ok(());
        }
        let verdicts = match self
            .store
            .collect_tree_heads(&self.tables, trail, &group.heads, &self.rules)
            .await
        {
            Ok(verdicts) => verdicts,
            Err(error) => {
                for message in &group.head_messages {
                    ack(message, AckKind::Nak(Some(BACKOFF_INITIAL))).await;
                }
                return Err(error);
            }
        };
        for (message, verdict) in group.head_messages.iter().zip(verdicts) {
            match verdict {
                HeadVerdict::Accepted | HeadVerdict::Known => ack(message, AckKind::Ack).await,
                HeadVerdict::Later => ack(message, AckKind::Nak(Some(HEAD_RETRY))).await,
                HeadVerdict::Refused(fault) => {
                    self.alert(trail, &fault);
                    ack(message, AckKind::Ack).await;
                }
            }
        }
        Ok(())
    }

    /// Gives up the gaps whose grace is over for instances that nothing arrives for any more
    /// (their lines wait in the store's pending table).
    async fn sweep(&mut self) -> Result<(), SinkError> {
        let trails = self
            .store
            .waiting_trails(&self.tables, self.rules.gap_grace)
            .await?;
        for trail in trails {
            let faults = self
                .store
                .collect(&self.tables, &trail, &[], &[], &self.rules, true)
                .await?;
            for fault in &faults {
                self.alert(&trail, fault);
            }
        }
        Ok(())
    }

    /// An `alert` event into the central trail (and the log): `audit.collect.gap` for lines
    /// that never arrived, `audit.collect.tampered` for the rest.
    fn alert(&self, trail: &str, fault: &Fault) {
        tracing::error!(target: "audit", trail, %fault, "audit collector: an instance's trail does not verify");
        let Some(record) = &self.alerts else {
            return;
        };
        let action = match fault.kind {
            FaultKind::Deleted => "audit.collect.gap",
            _ => "audit.collect.tampered",
        };
        let mut event = AuditEvent::new(
            Category::Alert,
            action,
            Outcome::Failure,
            Actor::service("audit-collector"),
        )
        .with_target(format!("trail:{trail}"))
        .with_reason(fault.detail.clone())
        .with_detail("trail", trail)
        .with_detail("fault", fault.kind.to_string());
        if let Some(seq) = fault.seq {
            event = event.with_detail("seq", seq);
        }
        record(event);
    }
}

/// Fetches batches from the consumer into `batches` (an empty one when nothing came within
/// half a second, so that waiting instances are still swept) until the receiver is gone;
/// NATS's outages are waited out with a backoff.
async fn fetch_batches(
    consumer: PullConsumer,
    batch_size: usize,
    batches: tokio::sync::mpsc::Sender<Vec<Message>>,
) {
    let mut backoff = BACKOFF_INITIAL;
    loop {
        let fetched = async {
            let mut batch = consumer
                .fetch()
                .max_messages(batch_size)
                .expires(Duration::from_millis(500))
                .messages()
                .await?;
            let mut messages = Vec::new();
            while let Some(message) = batch.next().await {
                messages.push(message?);
            }
            Ok::<_, async_nats::Error>(messages)
        };
        match fetched.await {
            Ok(messages) => {
                backoff = BACKOFF_INITIAL;
                if batches.send(messages).await.is_err() {
                    return;
                }
            }
            Err(error) => {
                tracing::warn!(target: "audit", %error, retry_in = ?backoff, "audit collector: cannot fetch; retrying");
                tokio::select! {
                    () = batches.closed() => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
}

async fn ack(message: &Message, kind: AckKind) {
    if let Err(error) = message.ack_with(kind).await {
        // Unacknowledged, the message comes again after the consumer's wait: stored once
        // all the same (by its seq).
        tracing::warn!(target: "audit", %error, "audit collector: cannot acknowledge a message");
    }
}

async fn nak_all(group: &Group, delay: Duration) {
    let messages = group.line_messages.iter().chain(&group.checkpoint_messages);
    for message in messages.chain(&group.head_messages) {
        ack(message, AckKind::Nak(Some(delay))).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn builder() -> CollectorBuilder {
        Collector::builder(
            NatsSink::new("nats://127.0.0.1:4222").expect("nats url"),
            PostgresSink::new("postgres://postgres@127.0.0.1/test").expect("postgres url"),
        )
    }

    fn refusal(builder: CollectorBuilder) -> String {
        builder.build().expect_err("refused").to_string()
    }

    #[test]
    fn settings_out_of_range_are_refused_by_build() {
        assert!(builder().build().is_ok());
        assert!(builder().batch_size(MAX_BATCH_SIZE).build().is_ok());
        assert!(refusal(builder().batch_size(0)).contains("from 1 to 65536, not 0"));
        assert!(refusal(builder().batch_size(MAX_BATCH_SIZE + 1)).contains("not 65537"));
        assert!(
            refusal(builder().consumer("two words")).contains("`two words` is not a consumer name")
        );
        assert!(refusal(builder().consumer("")).contains("is not a consumer name"));
        assert!(refusal(builder().checkpoint_table("1bad")).contains("not a table name"));
    }
}
