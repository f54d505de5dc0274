//! A [`Filter`] as SQL over the index, a page at a time.

use std::ops::ControlFlow;

use rusqlite::types::Value as Sql;

use super::store::{TrailIndex, ip_key};
use super::{IndexError, IndexedLine};
use crate::file::{Filter, Page, search_words};

impl TrailIndex {
    /// The events that match `filter`, a page at a time: newest first unless
    /// [`Page::oldest_first`], after or before the seq the page names. The same events, in
    /// the same order, as [`Filter::matches`] finds reading the files.
    pub fn query(&self, filter: &Filter, page: &Page) -> Result<Vec<IndexedLine>, IndexError> {
        let mut lines = Vec::new();
        self.each(filter, page, |line| {
            lines.push(line);
            ControlFlow::Continue(())
        })?;
        Ok(lines)
    }

    /// [`query`](Self::query), one line at a time, until `visit` breaks: for results too
    /// many to hold.
    pub fn each(
        &self,
        filter: &Filter,
        page: &Page,
        mut visit: impl FnMut(IndexedLine) -> ControlFlow<()>,
    ) -> Result<(), IndexError> {
        let (sql, params) = statement(filter, page);
        let sqlite = |e| IndexError::sqlite(self.path(), e);
        let mut statement = self.connection().prepare_cached(&sql).map_err(sqlite)?;
        let mut rows = statement
            .query(rusqlite::params_from_iter(params))
            .map_err(sqlite)?;
        while let Some(row) = rows.next().map_err(sqlite)? {
            let line = IndexedLine {
                seq: u64::try_from(row.get::<_, i64>(0).map_err(sqlite)?).unwrap_or(0),
                line: row.get(1).map_err(sqlite)?,
            };
            if visit(line).is_break() {
                break;
            }
        }
        Ok(())
    }
}

/// The SQL of a query, and its parameters.
fn statement(filter: &Filter, page: &Page) -> (String, Vec<Sql>) {
    let mut conditions = Conditions::default();
    conditions.add(filter, page);
    let order = if page.oldest_first { "ASC" } else { "DESC" };
    let limit = page.limit.and_then(|n| i64::try_from(n).ok()).unwrap_or(-1);
    let (sql, params) = match &filter.actor {
        // The actor is its id or its name: one index each, their pages merged.
        Some(actor) => {
            let rest = conditions.sql();
            let branch = |column: &str| {
                format!(
                    "SELECT seq FROM (SELECT seq FROM events WHERE {column} = ? AND {rest} \
                     ORDER BY seq {order} LIMIT {limit})"
                )
            };
            let sql = format!(
                "SELECT seq, line FROM events WHERE seq IN ({} UNION {}) \
                 ORDER BY seq {order} LIMIT {limit}",
                branch("actor_id"),
                branch("actor_name")
            );
            let mut params = vec![Sql::Text(actor.clone())];
            params.extend(conditions.params.iter().cloned());
            params.push(Sql::Text(actor.clone()));
            params.extend(conditions.params);
            (sql, params)
        }
        None => (
            format!(
                "SELECT seq, line FROM events WHERE {} ORDER BY seq {order} LIMIT {limit}",
                conditions.sql()
            ),
            conditions.params,
        ),
    };
    (sql, params)
}

/// `AND`ed conditions and their parameters, in order.
#[derive(Default)]
struct Conditions {
    sql: Vec<String>,
    params: Vec<Sql>,
}

impl Conditions {
    fn sql(&self) -> String {
        if self.sql.is_empty() {
            "1".to_owned()
        } else {
            self.sql.join(" AND ")
        }
    }

    fn push(&mut self, sql: &str, params: impl IntoIterator<Item = Sql>) {
        self.sql.push(sql.to_owned());
        self.params.extend(params);
    }

    fn add(&mut self, filter: &Filter, page: &Page) {
        if let Some(before) = page.before {
            self.push("seq < ?", [seq(before)]);
        }
        if let Some(after) = page.after {
            self.push("seq > ?", [seq(after)]);
        }
        self.pattern("action", filter.action.as_deref());
        self.pattern("target", filter.target.as_deref());
        for (column, value) in [
            ("outcome", &filter.outcome),
            ("category", &filter.category),
            ("request_id", &filter.request_id),
        ] {
            if let Some(value) = value {
                self.push(&format!("{column} = ?"), [Sql::Text(value.clone())]);
            }
        }
        if let Some(since) = filter.since {
            self.push("time >= ?", [micros(since.unix_micros())]);
        }
        if let Some(until) = filter.until {
            self.push("time < ?", [micros(until.unix_micros())]);
        }
        if let Some(network) = &filter.ip {
            let (first, last) = (network.network(), network.broadcast());
            self.push(
                "ip >= ? AND ip <= ?",
                [Sql::Blob(ip_key(first)), Sql::Blob(ip_key(last))],
            );
        }
        if let Some(text) = &filter.text {
            // Each word quoted: the words of free text are never FTS5 syntax.
            let words: Vec<String> = search_words(text).map(|w| format!("\"{w}\"")).collect();
            if !words.is_empty() {
                self.push(
                    "seq IN (SELECT rowid FROM words WHERE words MATCH ?)",
                    [Sql::Text(words.join(" "))],
                );
            }
        }
    }

    /// `column` equal to `pattern`, or starting with it when it ends in `*`.
    fn pattern(&mut self, column: &str, pattern: Option<&str>) {
        let Some(pattern) = pattern else {
            return;
        };
        match pattern.strip_suffix('*') {
            None => self.push(&format!("{column} = ?"), [Sql::Text(pattern.to_owned())]),
            Some("") => self.push(&format!("{column} IS NOT NULL"), []),
            Some(prefix) => {
                // Every text that starts with `prefix` sorts from it up to (not including)
                // `prefix` with its last byte one higher; as bytes, since that may not be
                // UTF-8 (no byte of UTF-8 is 0xFF, so there is always a next one).
                let mut end = prefix.as_bytes().to_vec();
                if let Some(last) = end.last_mut() {
                    *last += 1;
                }
                self.push(
                    &format!("{column} >= ? AND {column} < CAST(? AS TEXT)"),
                    [Sql::Text(prefix.to_owned()), Sql::Blob(end)],
                );
            }
        }
    }
}

fn seq(seq: u64) -> Sql {
    Sql::Integer(i64::try_from(seq).unwrap_or(i64::MAX))
}

fn micros(micros: u64) -> Sql {
    Sql::Integer(i64::try_from(micros).unwrap_or(i64::MAX))
}
