//! Storing a batch: binary `COPY` on one or more connections, skipping rows already stored,
//! with text made storable.

use std::borrow::Cow;
use std::collections::HashSet;

use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::error::SqlState;
use uuid::Uuid;

use super::Connection;
use super::table::EventJson;
use crate::event::AuditEvent;

/// Copies `rows` in on one connection; if some are already stored (a batch offered again
/// after its commit went through unseen), copies the others.
pub(super) async fn store(
    connection: &Connection,
    rows: &[(&AuditEvent, Cow<'_, str>)],
) -> Result<u64, tokio_postgres::Error> {
    let all = rows.iter().map(|(event, json)| (*event, json.as_ref()));
    match copy_rows(connection, all.clone()).await {
        Err(error) if error.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
            let ids: Vec<Uuid> = rows.iter().map(|(event, _)| event.id).collect();
            let stored: HashSet<Uuid> = connection
                .client
                .query(&connection.existing_ids, &[&ids])
                .await?
                .iter()
                .map(|row| row.get(0))
                .collect();
            let missing = all.filter(|(event, _)| !stored.contains(&event.id));
            copy_rows(connection, missing).await
        }
        other => other,
    }
}

/// The events' JSON texts, from one buffer and their end offsets.
pub(super) fn split_at<'a>(json: &'a str, ends: &'a [usize]) -> impl Iterator<Item = &'a str> + 'a {
    ends.iter().scan(0, move |start, &end| {
        let text = &json[*start..end];
        *start = end;
        Some(text)
    })
}

/// One `COPY ... FROM STDIN (FORMAT binary)`: the rows land together or not at all.
pub(super) async fn copy_rows<'a>(
    connection: &Connection,
    rows: impl Iterator<Item = (&'a AuditEvent, &'a str)>,
) -> Result<u64, tokio_postgres::Error> {
    let sink = connection.client.copy_in(&connection.copy).await?;
    let writer = BinaryCopyInWriter::new(sink, &connection.types);
    tokio::pin!(writer);
    for (event, json) in rows {
        let time = event.time.as_system_time();
        let ip = event.source.as_ref().and_then(|source| source.ip);
        let status = event.status().map(i32::from);
        writer
            .as_mut()
            .write(&[
                &event.id,
                &time,
                &event.category.as_str(),
                &storable_text(&event.action),
                &event.outcome.as_str(),
                &storable_text(&event.actor.id),
                &ip,
                &event.request_id().map(storable_text),
                &event.target.as_deref().map(storable_text),
                &status,
                &EventJson(json),
            ])
            .await?;
    }
    writer.finish().await
}

/// PostgreSQL text cannot hold a NUL character: it becomes U+FFFD. Refused, the row would
/// fail its batch on every retry and hold back every event after it.
pub(super) fn storable_text(text: &str) -> Cow<'_, str> {
    if text.contains('\0') {
        Cow::Owned(text.replace('\0', "\u{fffd}"))
    } else {
        Cow::Borrowed(text)
    }
}

/// The event's JSON with each `\u0000` escape (a NUL in a string) as `\ufffd`: `jsonb`
/// refuses it, and `->>` on a `json` column cannot turn it into text. An escaped backslash
/// followed by `u0000` is left alone.
pub(super) fn storable_json(json: &str) -> Cow<'_, str> {
    const NUL: &str = "\\u0000";
    if !json.contains(NUL) {
        return Cow::Borrowed(json);
    }
    let mut out = String::with_capacity(json.len());
    let mut copied = 0;
    let mut at = 0;
    let bytes = json.as_bytes();
    while at < bytes.len() {
        if bytes[at] != b'\\' {
            at += 1;
        } else if json[at..].starts_with(NUL) {
            out.push_str(&json[copied..at]);
            out.push_str("\\ufffd");
            at += NUL.len();
            copied = at;
        } else {
            // An escape: the backslash and the ASCII character after it.
            at += 2;
        }
    }
    out.push_str(&json[copied..]);
    Cow::Owned(out)
}
