//! The collector: many application instances' trails gathered into one central store, each
//! checked as it arrives.
//!
//! Each instance keeps its own file trail, with its own chain and its own id (`trail.id`,
//! which every line and checkpoint carries), and follows it into NATS JetStream with a
//! [`NatsSink`](crate::sink::nats::NatsSink) follower: its lines on
//! `<prefix>.<trail>.<category>.<action>`, its signed checkpoints on `<prefix>.<trail>`.
//! A [`Collector`] takes them from the stream through a durable consumer and, per instance:
//!
//! - checks each line on its own (its hash over its content, the trail it names) and
//!   against the store (it links to the stored line before it), and stores it in
//!   PostgreSQL, in the table a [`PostgresSink`](crate::sink::postgres::PostgresSink)
//!   follower writes, under its trail id and seq: `audit verify --against` and `audit
//!   check-copy` check the central store as they check any copy;
//! - checks each signed checkpoint (its signature, against the keys it is given; its last
//!   hash, against the stored line) and stores it in the checkpoint table;
//! - keeps lines that arrive ahead of a missing one (collectors side by side take an
//!   instance's lines in any order) in `<table>_pending` until it comes, and gives the gap
//!   up after a grace time ([`CollectorBuilder::gap_grace`]): each message is acknowledged
//!   once the store has it, stored or waiting;
//! - checks each signed Merkle tree head of an instance that keeps a tree (published on
//!   `<prefix>.<trail>:tree` by the follower): it must be signed by a trusted key, end at
//!   the line the store holds at its seq, and hold the head accepted before it, so that an
//!   instance cannot rewrite what the store took and go on proving events from the
//!   rewritten tree;
//! - raises an `alert` event into the central trail ([`CollectorBuilder::alerts`]) for an
//!   altered, misfiled or forked line (`audit.collect.tampered`, never stored) and for lines
//!   that never arrived (`audit.collect.gap`, after a grace time);
//! - keeps what it knows of the instance (last seq, lines, missing, faults, lag, the last
//!   checkpoint that verified) in `<table>_instances`, read with
//!   [`PostgresSink::instances`](crate::sink::postgres::PostgresSink::instances) or `audit
//!   collect --report`.
//!
//! Several collectors may run at once on one stream and one store: they share the durable
//! consumer, so the stream hands each message to one of them, and each stores an instance's
//! lines holding that instance's row in `<table>_instances`, so they take turns per instance
//! and nothing is stored twice. A collector that stops leaves its unacknowledged messages
//! to the others.

mod arrivals;
mod collector;
mod report;
pub(crate) mod tree;
pub(crate) mod verdict;

pub use self::collector::{Collector, CollectorBuilder, DEFAULT_CONSUMER};
pub use self::report::InstanceReport;
