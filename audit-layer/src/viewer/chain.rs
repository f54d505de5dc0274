//! The chain's status for the viewer: verified incrementally, a budget of lines per look,
//! from where the last look stopped; never the whole trail per page.

use std::path::Path;

use crate::file::{ChainKey, TrailReader};

/// Lines checked per look at most: a page waits for at most this many.
const BUDGET: usize = 200_000;

/// How far the chain has been checked.
#[derive(Debug, Default)]
pub(super) struct Chain {
    key: Option<ChainKey>,
    reader: Option<TrailReader>,
    /// The last line checked: its seq and time.
    verified: Option<(u64, String)>,
    fault: Option<String>,
}

/// What a look found.
pub(super) struct ChainStatus {
    pub(super) verified: Option<(u64, String)>,
    pub(super) fault: Option<String>,
    /// The budget ran out before the end of the trail.
    pub(super) more: bool,
}

impl Chain {
    pub(super) fn new(key: Option<ChainKey>) -> Self {
        Self {
            key,
            ..Self::default()
        }
    }

    /// Checks the lines written since the last look (up to the budget): each must link to
    /// the one before it.
    pub(super) fn advance(&mut self, dir: &Path) -> ChainStatus {
        let mut checked = 0;
        let mut more = false;
        if self.fault.is_none() {
            if self.reader.is_none() {
                match TrailReader::from_oldest(dir, self.key.clone()) {
                    Ok(Some((reader, _))) => self.reader = Some(reader),
                    Ok(None) => {}
                    Err(fault) => self.fault = Some(fault.to_string()),
                }
            }
            while let Some(reader) = self.reader.as_mut() {
                if checked >= BUDGET {
                    more = true;
                    break;
                }
                match reader.read(4096) {
                    Ok(lines) if lines.is_empty() => break,
                    Ok(lines) => {
                        checked += lines.len();
                        if let Some(last) = lines.last() {
                            let time = last.time().map(|t| t.to_string()).unwrap_or_default();
                            self.verified = Some((last.seq, time));
                        }
                    }
                    Err(fault) => {
                        self.fault = Some(fault.to_string());
                        break;
                    }
                }
            }
        }
        ChainStatus {
            verified: self.verified.clone(),
            fault: self.fault.clone(),
            more,
        }
    }
}
