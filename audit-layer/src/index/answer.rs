//! A filter answered from the index where it can be, from the files where it cannot.

use std::ops::ControlFlow;
use std::path::Path;

use serde_json::Value;

use super::IndexError;
use super::store::TrailIndex;
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

/// Calls `visit` with each event of the trail in `dir` that `filter` matches, in trail
/// order, with its line and JSON, until it breaks: what [`for_each_event`] and
/// [`Filter::matches`] find, read from the index up to its cursor when the trail has one
/// (its events retention deleted left out), and from the files after it.
pub fn search(
    dir: &Path,
    filter: &Filter,
    mut visit: impl FnMut(&str, &Value) -> ControlFlow<()>,
) -> Result<Answered, IndexError> {
    let io = |e| IndexError::io(dir, e);
    let indexed = match TrailIndex::open_existing(dir)? {
        Some(index) => index.cursor()?.map(|(_, seq, _)| (index, seq)),
        None => None,
    };
    let oldest = layout::oldest_seq(dir).map_err(io)?;
    let (Some((index, cursor)), Some(oldest)) = (indexed, oldest) else {
        for_each_event(dir, |line, event| {
            if filter.matches(event) {
                visit(line, event)
            } else {
                ControlFlow::Continue(())
            }
        })
        .map_err(io)?;
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
    // The files after the cursor, skipping whole files that end before it.
    let mut read_after = 0;
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
            read_after += 1;
            if filter.matches(&event) && visit(&text, &event).is_break() {
                return Ok(Answered::Index { read_after });
            }
        }
    }
    Ok(Answered::Index { read_after })
}
