//! A filter answered from the index where it can be, from the files where it cannot.

use std::ops::ControlFlow;
use std::path::Path;

use serde_json::Value;

use super::store::TrailIndex;
use super::{IndexError, IndexedLine};
use crate::file::{Filter, Page, for_each_event, layout};

/// Where [`search`]'s answer came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answered {
    /// The index, up to its cursor, then the files after it: this many lines were read
    /// from the files.
    Index {
        /// Lines read from the files, after the index's cursor.
        read_after: u64,
    },
    /// Every file: there is no index, or it is empty.
    Scan,
}

/// The trail's index, opened with its cursor, and the oldest seq the files still hold;
/// `None` when either is missing (then only a scan answers).
fn indexed(dir: &Path) -> Result<Option<(TrailIndex, u64, u64)>, IndexError> {
    let Some(index) = TrailIndex::open_existing(dir)? else {
        return Ok(None);
    };
    let Some((_, cursor, _)) = index.cursor()? else {
        return Ok(None);
    };
    let oldest = layout::oldest_seq(dir).map_err(|e| IndexError::io(dir, e))?;
    Ok(oldest.map(|oldest| (index, cursor, oldest)))
}

/// Calls `visit` with each event of the trail in `dir` that `filter` matches, in trail
/// order, with its line and JSON, until it breaks: what [`for_each_event`] and
/// [`Filter::matches`] find, read from the index up to its cursor when the trail has one
/// (its events retention deleted left out), and from the files after it.
pub fn search(
    dir: &Path,
    filter: &Filter,
    mut visit: impl FnMut(&str, &Value) -> ControlFlow<()>,
) -> Result<Answered, IndexError> {
    let Some((index, cursor, oldest)) = indexed(dir)? else {
        for_each_event(dir, |line, event| {
            if filter.matches(event) {
                visit(line, event)
            } else {
                ControlFlow::Continue(())
            }
        })
        .map_err(|e| IndexError::io(dir, e))?;
        return Ok(Answered::Scan);
    };
    let mut page = Page::all_oldest_first();
    page.after = oldest.checked_sub(1);
    let mut stopped = false;
    index.each(filter, &page, |found| {
        let event = serde_json::from_str(&found.line).unwrap_or(Value::Null);
        let flow = visit(&found.line, &event);
        stopped = flow.is_break();
        flow
    })?;
    if stopped {
        return Ok(Answered::Index { read_after: 0 });
    }
    let mut read_after = 0;
    after_cursor(dir, cursor, |line, event| {
        read_after += 1;
        if filter.matches(event) {
            visit(line, event)
        } else {
            ControlFlow::Continue(())
        }
    })?;
    Ok(Answered::Index { read_after })
}

/// One page of the events of the trail in `dir` that `filter` matches: from the index up
/// to its cursor and the files after it, or from the files alone when there is no index.
/// Newest first, the lines after the cursor come first; oldest first, last.
pub fn search_page(
    dir: &Path,
    filter: &Filter,
    page: &Page,
) -> Result<Vec<IndexedLine>, IndexError> {
    let limit = page.limit.unwrap_or(usize::MAX);
    let within = |seq: u64| {
        page.before.is_none_or(|before| seq < before) && page.after.is_none_or(|after| seq > after)
    };
    let matching = |line: &str, event: &Value, into: &mut Vec<IndexedLine>| {
        if let Some(seq) = event["seq"].as_u64()
            && within(seq)
            && filter.matches(event)
        {
            into.push(IndexedLine {
                seq,
                line: line.to_owned(),
            });
        }
    };
    let Some((index, cursor, oldest)) = indexed(dir)? else {
        let mut found = Vec::new();
        for_each_event(dir, |line, event| {
            matching(line, event, &mut found);
            ControlFlow::Continue(())
        })
        .map_err(|e| IndexError::io(dir, e))?;
        if !page.oldest_first {
            found.reverse();
        }
        found.truncate(limit);
        return Ok(found);
    };
    let mut tail = Vec::new();
    if page.before.is_none_or(|before| before > cursor + 1) {
        after_cursor(dir, cursor, |line, event| {
            matching(line, event, &mut tail);
            ControlFlow::Continue(())
        })?;
    }
    // The index may still hold events whose files retention deleted.
    let mut bounded = page.clone();
    if let Some(floor) = oldest.checked_sub(1) {
        bounded.after = Some(page.after.map_or(floor, |after| after.max(floor)));
    }
    if page.oldest_first {
        let mut found = index.query(filter, &bounded)?;
        found.extend(tail);
        found.truncate(limit);
        Ok(found)
    } else {
        tail.reverse();
        tail.truncate(limit);
        bounded.limit = page.limit.map(|limit| limit - tail.len());
        let mut found = tail;
        if found.len() < limit {
            found.extend(index.query(filter, &bounded)?);
        }
        Ok(found)
    }
}

/// Calls `visit` with each line of the files after seq `cursor`, skipping whole files that
/// end before it.
fn after_cursor(
    dir: &Path,
    cursor: u64,
    mut visit: impl FnMut(&str, &Value) -> ControlFlow<()>,
) -> Result<(), IndexError> {
    let io = |e| IndexError::io(dir, e);
    for file in layout::list(dir).map_err(io)? {
        let last = file.last_line().map_err(io)?;
        let last_seq = last
            .and_then(|line| serde_json::from_slice::<Value>(&line).ok())
            .and_then(|line| line["seq"].as_u64());
        if last_seq.is_some_and(|seq| seq <= cursor) {
            continue;
        }
        let bytes = file.read().map_err(io)?;
        for line in layout::without_padding(&bytes)
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
        {
            let text = String::from_utf8_lossy(line);
            let event: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            if event["seq"].as_u64().is_some_and(|seq| seq <= cursor) {
                continue;
            }
            if visit(&text, &event).is_break() {
                return Ok(());
            }
        }
    }
    Ok(())
}
