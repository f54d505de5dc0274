//! [`PostgresSink`] as a [`Follower`] of the file trail: a row per line with its trail,
//! seq and hash, one `COPY` per batch, and the cursor read back as the trail's highest seq.

use std::borrow::Cow;

use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::Type;
use tokio_postgres::{Client, Statement};

use super::copy::{storable_json, storable_text};
use super::table::EventJson;
use super::{PostgresSink, describe};
use crate::file::TrailLine;
use crate::follow::fields::LineFields;
use crate::follow::{Cursor, Follower};
use crate::sink::{BoxFuture, SinkError};

/// The statements of a follower's connection.
pub(super) struct FollowStatements {
    pub(super) copy: Statement,
    pub(super) cursor: Statement,
    pub(super) types: Vec<Type>,
}

impl FollowStatements {
    pub(super) async fn prepare(
        client: &Client,
        sink: &PostgresSink,
    ) -> Result<Self, tokio_postgres::Error> {
        let types = client
            .prepare(&sink.table.follow_types_sql())
            .await?
            .columns()
            .iter()
            .map(|column| column.type_().clone())
            .collect();
        Ok(Self {
            copy: client.prepare(&sink.table.follow_copy_sql()).await?,
            cursor: client.prepare(&sink.table.cursor_sql()).await?,
            types,
        })
    }
}

impl Follower for PostgresSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn cursor<'a>(&'a mut self, trail: &'a str) -> BoxFuture<'a, Result<Cursor, SinkError>> {
        Box::pin(async move {
            if !self.following {
                // Connections made before prepared no follower's statements.
                self.following = true;
                self.connections.clear();
            }
            let result = self.read_cursor(trail).await;
            if result.is_err() {
                self.connections.clear();
            }
            result
        })
    }

    fn ship<'a>(
        &'a mut self,
        trail: &'a str,
        lines: &'a [TrailLine],
    ) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            let result = self.ship_lines(trail, lines).await;
            if result.is_err() {
                // Start afresh: a connection may be broken or mid-statement.
                self.connections.clear();
            }
            result
        })
    }

    fn close(&mut self) -> BoxFuture<'_, ()> {
        self.connections.clear();
        Box::pin(async {})
    }
}

impl PostgresSink {
    async fn read_cursor(&mut self, trail: &str) -> Result<Cursor, SinkError> {
        self.ensure_connected().await?;
        let (client, follow) = self.follower_connection()?;
        let rows = tokio::time::timeout(self.timeout, client.query(&follow.cursor, &[&trail]))
            .await
            .map_err(|_| SinkError::new(format!("no cursor within {:?}", self.timeout)))?
            .map_err(|error| SinkError::new(describe(&error)))?;
        let Some(row) = rows.first() else {
            return Ok(Cursor::empty());
        };
        let seq: i64 = row.get(0);
        let hash: Option<String> = row.get(1);
        let seq = u64::try_from(seq)
            .map_err(|_| SinkError::new(format!("a negative seq ({seq}) in the table")))?;
        let hash =
            hash.ok_or_else(|| SinkError::new(format!("the row of seq {seq} has no hash")))?;
        Ok(Cursor::after(seq, hash))
    }

    pub(super) fn follower_connection(&self) -> Result<(&Client, &FollowStatements), SinkError> {
        let connection = self
            .connections
            .first()
            .ok_or_else(|| SinkError::new("not connected"))?;
        let follow = connection
            .follow
            .as_ref()
            .ok_or_else(|| SinkError::new("not prepared for following"))?;
        Ok((&connection.client, follow))
    }

    /// One `COPY` on one connection: the lines land together or not at all, so the highest
    /// seq stored is always the end of an unbroken run.
    async fn ship_lines(&mut self, trail: &str, lines: &[TrailLine]) -> Result<(), SinkError> {
        self.ensure_connected().await?;
        let rows = lines
            .iter()
            .map(|line| LineFields::of(line).map(|fields| (line, fields)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| {
                SinkError::new(format!("a trail line that is not an event: {error}"))
            })?;
        let (client, follow) = self.follower_connection()?;
        let copied = tokio::time::timeout(
            self.timeout,
            copy_lines(client, &follow.copy, &follow.types, &rows, trail),
        )
        .await
        .map_err(|_| self.too_slow(lines.len()))?;
        match copied {
            Ok(_) => Ok(()),
            Err(error) if error.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
                // Rows stored by the sink in direct mode, with the same ids: adopted.
                let [stage, copy, insert] = self.table.adopt_sql();
                let adopting = async {
                    client.batch_execute("BEGIN").await?;
                    let moved = async {
                        client.batch_execute(&stage).await?;
                        let copy = client.prepare(&copy).await?;
                        copy_lines(client, &copy, &follow.types, &rows, trail).await?;
                        client.batch_execute(&insert).await?;
                        client.batch_execute("COMMIT").await
                    };
                    let moved = moved.await;
                    if moved.is_err() {
                        let _ = client.batch_execute("ROLLBACK").await;
                    }
                    moved
                };
                tokio::time::timeout(self.timeout, adopting)
                    .await
                    .map_err(|_| self.too_slow(lines.len()))?
                    .map_err(|error| SinkError::new(describe(&error)))
            }
            Err(error) => Err(SinkError::new(describe(&error))),
        }
    }

    /// Up to `max` lines of `trail` that the table holds from `from_seq` on, in seq order,
    /// each as the table keeps it: for `audit verify --against` ([`CopyCheck`]).
    ///
    /// [`CopyCheck`]: crate::file::CopyCheck
    pub async fn read_copy(
        &mut self,
        trail: &str,
        from_seq: u64,
        max: usize,
    ) -> Result<Vec<TrailLine>, SinkError> {
        self.ensure_connected().await?;
        let client = self.client()?;
        let sql = self.table.read_copy_sql();
        let from = i64::try_from(from_seq).unwrap_or(i64::MAX);
        let max = i64::try_from(max).unwrap_or(i64::MAX);
        let rows = tokio::time::timeout(self.timeout, client.query(&sql, &[&trail, &from, &max]))
            .await
            .map_err(|_| SinkError::new(format!("no rows within {:?}", self.timeout)))?
            .map_err(|error| SinkError::new(describe(&error)))?;
        rows.iter()
            .map(|row| {
                let seq: i64 = row.get(0);
                Ok(TrailLine {
                    seq: u64::try_from(seq)
                        .map_err(|_| SinkError::new(format!("a negative seq ({seq})")))?,
                    hash: row.get::<_, Option<String>>(1).unwrap_or_default(),
                    json: row.get(2),
                })
            })
            .collect()
    }

    fn too_slow(&self, count: usize) -> SinkError {
        SinkError::new(format!(
            "copy of {count} line(s) took over {:?}",
            self.timeout
        ))
    }
}

/// One binary `COPY` of the lines, each row with its columns, the whole line as the event,
/// and its place in the trail.
pub(super) async fn copy_lines(
    client: &Client,
    statement: &Statement,
    types: &[Type],
    rows: &[(&TrailLine, LineFields<'_>)],
    trail: &str,
) -> Result<u64, tokio_postgres::Error> {
    let sink = client.copy_in(statement).await?;
    let writer = BinaryCopyInWriter::new(sink, types);
    tokio::pin!(writer);
    for (line, fields) in rows {
        let time = fields.time.as_system_time();
        let status = fields.status().map(i32::from);
        let seq = i64::try_from(line.seq).unwrap_or(i64::MAX);
        let json: Cow<'_, str> = storable_json(&line.json);
        writer
            .as_mut()
            .write(&[
                &fields.id,
                &time,
                &fields.category.as_str(),
                &storable_text(&fields.action),
                &fields.outcome.as_str(),
                &storable_text(&fields.actor.id),
                &fields.source_ip(),
                &fields.request_id().map(storable_text),
                &fields.target.as_deref().map(storable_text),
                &status,
                &EventJson(&json),
                &trail,
                &seq,
                &line.hash,
            ])
            .await?;
    }
    writer.finish().await
}
