//! A follower's table searched with the filters of the file trail and its index.

use tokio_postgres::types::ToSql;

use super::{PostgresSink, describe};
use crate::file::{Filter, Page, TrailLine};
use crate::sink::SinkError;

/// Rows read per round: SQL narrows by the columns, Rust checks each row (and applies free
/// text), and a round that leaves the page short reads the next.
const CHUNK: i64 = 1000;

impl PostgresSink {
    /// The lines of `trail` in this follower's table that `filter` matches, a page at a
    /// time: the same lines, in the same order, as the trail's index
    /// ([`TrailIndex::query`](crate::index::TrailIndex::query)) and a scan of the files
    /// find, up to the last line the follower copied.
    ///
    /// The columns narrow the rows in SQL (actor, action, outcome, category, target,
    /// request id, time, source IP with `<<=`); every row is then checked with
    /// [`Filter::matches`], which also applies free text, so the answer is exactly the
    /// filter's. Uses the sink's first connection; for an application, a sink of its own
    /// beside the one that follows.
    pub async fn search(
        &mut self,
        trail: &str,
        filter: &Filter,
        page: &Page,
    ) -> Result<Vec<TrailLine>, SinkError> {
        self.ensure_connected().await?;
        let client = self.client()?;
        let wanted = page.limit.unwrap_or(usize::MAX);
        let mut found = Vec::new();
        let mut cursor = page.clone();
        while found.len() < wanted {
            let (sql, params) = statement(&self.table.quoted, trail, filter, &cursor);
            let params: Vec<&(dyn ToSql + Sync)> = params
                .iter()
                .map(|p| p.as_ref() as &(dyn ToSql + Sync))
                .collect();
            let rows = tokio::time::timeout(self.timeout, client.query(&sql, &params))
                .await
                .map_err(|_| SinkError::new(format!("no rows within {:?}", self.timeout)))?
                .map_err(|error| SinkError::new(describe(&error)))?;
            let Some(last) = rows.last() else { break };
            let last_seq: i64 = last.get(0);
            let last_seq = u64::try_from(last_seq)
                .map_err(|_| SinkError::new(format!("a negative seq ({last_seq})")))?;
            let fetched = rows.len();
            for row in rows {
                let json: String = row.get(2);
                let event: serde_json::Value = serde_json::from_str(&json).unwrap_or_default();
                if !filter.matches(&event) || found.len() == wanted {
                    continue;
                }
                let seq: i64 = row.get(0);
                found.push(TrailLine {
                    seq: u64::try_from(seq).unwrap_or_default(),
                    hash: row.get::<_, Option<String>>(1).unwrap_or_default(),
                    json,
                });
            }
            if (fetched as i64) < CHUNK {
                break;
            }
            if cursor.oldest_first {
                cursor.after = Some(last_seq);
            } else {
                cursor.before = Some(last_seq);
            }
        }
        Ok(found)
    }
}

type Param = Box<dyn ToSql + Sync + Send>;

/// A round's SQL and parameters: the filter's columns, the page's bounds, `CHUNK` rows.
fn statement(table: &str, trail: &str, filter: &Filter, page: &Page) -> (String, Vec<Param>) {
    let mut conditions = Conditions::default();
    conditions.add("trail = $", Box::new(trail.to_owned()));
    let seq = |seq: u64| -> Param { Box::new(i64::try_from(seq).unwrap_or(i64::MAX)) };
    if let Some(before) = page.before {
        conditions.add("seq < $", seq(before));
    }
    if let Some(after) = page.after {
        conditions.add("seq > $", seq(after));
    }
    if let Some(actor) = &filter.actor {
        conditions.add(
            "(actor_id = $ OR event->'actor'->>'name' = $)",
            Box::new(actor.clone()),
        );
    }
    for (column, pattern) in [("action", &filter.action), ("target", &filter.target)] {
        match pattern.as_deref().map(|p| (p, p.strip_suffix('*'))) {
            None => {}
            Some((_, Some(""))) => conditions.sql.push(format!("{column} IS NOT NULL")),
            Some((_, Some(prefix))) => {
                conditions.add(
                    &format!("starts_with({column}, $)"),
                    Box::new(prefix.to_owned()),
                );
            }
            Some((exact, None)) => {
                conditions.add(&format!("{column} = $"), Box::new(exact.to_owned()))
            }
        }
    }
    for (column, value) in [
        ("outcome", &filter.outcome),
        ("category", &filter.category),
        ("request_id", &filter.request_id),
    ] {
        if let Some(value) = value {
            conditions.add(&format!("{column} = $"), Box::new(value.clone()));
        }
    }
    if let Some(since) = filter.since {
        conditions.add("time >= $::text::timestamptz", Box::new(since.to_string()));
    }
    if let Some(until) = filter.until {
        conditions.add("time < $::text::timestamptz", Box::new(until.to_string()));
    }
    if let Some(network) = &filter.ip {
        conditions.add("source_ip <<= $::text::inet", Box::new(network.to_string()));
    }
    let order = if page.oldest_first { "ASC" } else { "DESC" };
    (
        format!(
            "SELECT seq, hash, event::text FROM {table} WHERE {} ORDER BY seq {order} LIMIT {CHUNK}",
            conditions.sql.join(" AND ")
        ),
        conditions.params,
    )
}

/// `AND`ed conditions, each `$` in them the parameter that comes with it.
#[derive(Default)]
struct Conditions {
    sql: Vec<String>,
    params: Vec<Param>,
}

impl Conditions {
    fn add(&mut self, condition: &str, value: Param) {
        self.params.push(value);
        let number = format!("${}", self.params.len());
        self.sql.push(condition.replace('$', &number));
    }
}
