//! The table: its validated name, its SQL, and the event column's binary form.

use bytes::{BufMut, BytesMut};
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};

/// A validated, optionally schema-qualified table name.
#[derive(Clone, Debug)]
pub(super) struct TableName {
    /// As given: `audit.events`.
    pub(super) display: String,
    /// Quoted for SQL: `"audit"."events"`.
    pub(super) quoted: String,
    /// The schema, quoted, when the name has one.
    pub(super) schema: Option<String>,
    /// The index names, quoted, unqualified: an index lives in its table's schema.
    pub(super) time_index: String,
    pub(super) seq_index: String,
}

/// Runs `ddl` (statements sent as one simple query, hence one transaction) under a lock that
/// every process of this crate takes to create tables: PostgreSQL's `CREATE .. IF NOT
/// EXISTS` run by two sessions at once may fail with a duplicate key in its catalog.
pub(super) fn serialized_ddl(ddl: &str) -> String {
    // The key is arbitrary and fixed: "audit-la" read as a big-endian i64.
    format!("SELECT pg_advisory_xact_lock(7022629598037634145);\n{ddl}")
}

impl TableName {
    pub(super) fn parse(text: &str) -> Result<Self, String> {
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
        // PostgreSQL would truncate a longer name itself; do it here so it stays valid UTF-8
        // (identifiers are ASCII here).
        let index_name = |suffix: &str| {
            let mut index = format!("{table}_{suffix}");
            index.truncate(63);
            format!("\"{index}\"")
        };
        Ok(Self {
            display: text.to_owned(),
            schema: (parts.len() == 2).then(|| format!("\"{}\"", parts[0])),
            quoted,
            time_index: index_name("time_idx"),
            seq_index: index_name("trail_seq_idx"),
        })
    }

    pub(super) fn create_sql(&self) -> String {
        format!(
            "{schema}CREATE TABLE IF NOT EXISTS {table} (\n    \
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
                 event json NOT NULL\n\
             );\n\
             CREATE INDEX IF NOT EXISTS {index} ON {table} (time);\n\
             ALTER TABLE {table} ADD COLUMN IF NOT EXISTS trail text,\n    \
                 ADD COLUMN IF NOT EXISTS seq bigint,\n    \
                 ADD COLUMN IF NOT EXISTS hash text;\n\
             CREATE UNIQUE INDEX IF NOT EXISTS {seq_index} ON {table} (trail, seq);\n",
            schema = self.create_schema_sql(),
            table = self.quoted,
            index = self.time_index,
            seq_index = self.seq_index,
        )
    }

    /// `CREATE SCHEMA` for the table's schema, if it has one (with a trailing newline).
    fn create_schema_sql(&self) -> String {
        match &self.schema {
            Some(schema) => format!("CREATE SCHEMA IF NOT EXISTS {schema};\n"),
            None => String::new(),
        }
    }

    /// The table as a table of checkpoints: a row per checkpoint of each trail, as the
    /// checkpoint mirror and the collector keep them.
    pub(super) fn create_checkpoints_sql(&self) -> String {
        format!(
            "{}CREATE TABLE IF NOT EXISTS {} (trail text NOT NULL, seq_to bigint NOT NULL, \
             checkpoint json NOT NULL, stored timestamptz NOT NULL DEFAULT now(), \
             PRIMARY KEY (trail, seq_to))",
            self.create_schema_sql(),
            self.quoted
        )
    }

    /// Inserts a checkpoint (`$1` trail, `$2` seq_to, `$3` its JSON), once.
    pub(super) fn insert_checkpoint_sql(&self) -> String {
        format!(
            "INSERT INTO {} (trail, seq_to, checkpoint) VALUES ($1, $2, $3::text::json) \
             ON CONFLICT DO NOTHING",
            self.quoted
        )
    }

    /// The table as the collector's table of instances: what the central store knows of
    /// each instance's trail, as JSON, locked row by row while a collector stores.
    #[cfg(feature = "collector")]
    pub(super) fn create_instances_sql(&self) -> String {
        format!(
            "{}CREATE TABLE IF NOT EXISTS {} (trail text PRIMARY KEY, state jsonb NOT NULL, \
             updated timestamptz NOT NULL DEFAULT now())",
            self.create_schema_sql(),
            self.quoted
        )
    }

    /// The table as the collector's pending table: lines (`kind` 0) and checkpoints (1)
    /// that arrived ahead of a missing line, kept until it comes or its grace is over.
    #[cfg(feature = "collector")]
    pub(super) fn create_pending_sql(&self) -> String {
        format!(
            "{}CREATE TABLE IF NOT EXISTS {} (trail text NOT NULL, kind smallint NOT NULL, \
             seq bigint NOT NULL, hash text NOT NULL, body text NOT NULL, \
             arrived timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (trail, kind, seq))",
            self.create_schema_sql(),
            self.quoted
        )
    }

    /// The hashes the table keeps for some seqs of a trail (`$1` trail, `$2` seqs).
    #[cfg(feature = "collector")]
    pub(super) fn hashes_sql(&self) -> String {
        format!(
            "SELECT seq, hash FROM {} WHERE trail = $1 AND seq = ANY($2)",
            self.quoted
        )
    }

    /// The follower's columns' types (a query that returns no row).
    pub(super) fn follow_types_sql(&self) -> String {
        format!(
            "SELECT {COLUMNS}, {FOLLOW_COLUMNS} FROM {} LIMIT 0",
            self.quoted
        )
    }

    pub(super) fn follow_copy_sql(&self) -> String {
        format!(
            "COPY {} ({COLUMNS}, {FOLLOW_COLUMNS}) FROM STDIN (FORMAT binary)",
            self.quoted
        )
    }

    /// The seq and hash of a trail's last row: the follower's cursor.
    pub(super) fn cursor_sql(&self) -> String {
        format!(
            "SELECT seq, hash FROM {} WHERE trail = $1 ORDER BY seq DESC LIMIT 1",
            self.quoted
        )
    }

    /// A trail's rows from a seq, in order, with the event as the table keeps its text.
    pub(super) fn read_copy_sql(&self) -> String {
        format!(
            "SELECT seq, hash, event::text FROM {} WHERE trail = $1 AND seq >= $2 \
             ORDER BY seq LIMIT $3",
            self.quoted
        )
    }

    /// Rows copied into a staging table, then moved in: rows the sink stored in direct mode
    /// (no seq) are given their place in the trail, rows already followed are kept.
    pub(super) fn adopt_sql(&self) -> [String; 3] {
        [
            format!(
                "CREATE TEMPORARY TABLE IF NOT EXISTS audit_follow_stage \
                 (LIKE {} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS",
                self.quoted
            ),
            format!(
                "COPY audit_follow_stage ({COLUMNS}, {FOLLOW_COLUMNS}) FROM STDIN (FORMAT binary)"
            ),
            format!(
                "INSERT INTO {table} AS stored ({COLUMNS}, {FOLLOW_COLUMNS}) \
                 SELECT DISTINCT ON (id) {COLUMNS}, {FOLLOW_COLUMNS} FROM audit_follow_stage \
                 ORDER BY id, seq \
                 ON CONFLICT (id) DO UPDATE SET trail = excluded.trail, seq = excluded.seq, \
                 hash = excluded.hash, event = excluded.event WHERE stored.seq IS NULL",
                table = self.quoted
            ),
        ]
    }

    /// A query that returns no row but tells the columns' types.
    pub(super) fn types_sql(&self) -> String {
        format!("SELECT {COLUMNS} FROM {} LIMIT 0", self.quoted)
    }

    pub(super) fn copy_sql(&self) -> String {
        format!(
            "COPY {} ({COLUMNS}) FROM STDIN (FORMAT binary)",
            self.quoted
        )
    }

    pub(super) fn existing_ids_sql(&self) -> String {
        format!("SELECT id FROM {} WHERE id = ANY($1)", self.quoted)
    }
}

/// The columns the sink writes, in the order it writes them.
pub(super) const COLUMNS: &str =
    "id, time, category, action, outcome, actor_id, source_ip, request_id, target, status, event";

/// The columns a follower writes besides [`COLUMNS`]: the line's place in its trail.
pub(super) const FOLLOW_COLUMNS: &str = "trail, seq, hash";

/// The event's JSON as a `json` or `jsonb` value, whichever the column is: the sink accepts a
/// table made with either.
#[derive(Debug)]
pub(super) struct EventJson<'a>(pub(super) &'a str);

impl ToSql for EventJson<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        if *ty == Type::JSONB {
            // jsonb's binary format: a version byte, then the text.
            out.put_u8(1);
        }
        out.put_slice(self.0.as_bytes());
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::JSON || *ty == Type::JSONB
    }

    to_sql_checked!();
}

pub(super) fn is_identifier(text: &str) -> bool {
    let mut chars = text.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && text.len() <= 63
}
