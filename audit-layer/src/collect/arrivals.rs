//! What a message of the instances' stream is: a line of a trail, a checkpoint of one, a
//! tree head of one, or something else (a direct-mode event, another publisher's message).

use async_nats::HeaderMap;

use super::verdict::ArrivedLine;
use crate::file::Checkpoint;
use crate::sink::nats::{CHECKPOINT_HEADER, HASH_HEADER, PublishedHead, SEQ_HEADER, TREE_SUFFIX};

/// One message, read.
#[derive(Debug)]
pub(crate) enum Arrival {
    /// A line of `trail` (`<prefix>.<trail>.<category>.<action>`).
    Line { trail: String, line: ArrivedLine },
    /// A checkpoint of `trail` (`<prefix>.<trail>`).
    Checkpoint {
        trail: String,
        checkpoint: Box<Checkpoint>,
    },
    /// A signed Merkle tree head of `trail`, with its proofs (`<prefix>.<trail>:tree`).
    TreeHead {
        trail: String,
        head: Box<PublishedHead>,
    },
    /// A message of `trail` that says it is a line or a checkpoint but cannot be read as one.
    Unreadable { trail: String, detail: String },
    /// Not part of any trail: an event a sink published in direct mode, or another
    /// publisher's message.
    Foreign,
}

/// Reads a message on `subject` of the stream whose trails' subjects start with `prefix`.
pub(crate) fn classify(
    prefix: &str,
    subject: &str,
    headers: Option<&HeaderMap>,
    payload: &[u8],
) -> Arrival {
    let Some(rest) = subject
        .strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('.'))
    else {
        return Arrival::Foreign;
    };
    if let Some(trail) = rest
        .strip_suffix(TREE_SUFFIX)
        .filter(|trail| !trail.is_empty() && !trail.contains('.'))
    {
        return match serde_json::from_slice::<PublishedHead>(payload) {
            Ok(head) => Arrival::TreeHead {
                trail: trail.to_owned(),
                head: Box::new(head),
            },
            Err(error) => Arrival::Unreadable {
                trail: trail.to_owned(),
                detail: format!("a tree head's message that is not one: {error}"),
            },
        };
    }
    let Some(trail) = rest.split('.').next().filter(|trail| !trail.is_empty()) else {
        return Arrival::Foreign;
    };
    let header = |name: &str| {
        headers
            .and_then(|headers| headers.get(name))
            .map(|value| value.as_str())
    };
    let unreadable = |detail: String| Arrival::Unreadable {
        trail: trail.to_owned(),
        detail,
    };
    if let Some(seq_to) = header(CHECKPOINT_HEADER) {
        return match serde_json::from_slice::<Checkpoint>(payload) {
            Ok(checkpoint) if checkpoint.seq_to.to_string() == seq_to => Arrival::Checkpoint {
                trail: trail.to_owned(),
                checkpoint: Box::new(checkpoint),
            },
            Ok(checkpoint) => unreadable(format!(
                "a checkpoint of seq {} filed as the one of seq {seq_to}",
                checkpoint.seq_to
            )),
            Err(error) => unreadable(format!("a checkpoint's message that is not one: {error}")),
        };
    }
    let (Some(seq), Some(hash)) = (header(SEQ_HEADER), header(HASH_HEADER)) else {
        return Arrival::Foreign;
    };
    let Ok(seq) = seq.parse() else {
        return unreadable(format!("`{SEQ_HEADER}: {seq}` is not a seq"));
    };
    match std::str::from_utf8(payload) {
        Ok(json) => Arrival::Line {
            trail: trail.to_owned(),
            line: ArrivedLine {
                seq,
                hash: hash.to_owned(),
                json: json.to_owned(),
            },
        },
        Err(_) => unreadable(format!("seq {seq}: the line is not UTF-8")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.insert(*name, *value);
        }
        headers
    }

    #[test]
    fn lines_checkpoints_and_the_rest_are_told_apart() {
        let line = headers(&[(SEQ_HEADER, "7"), (HASH_HEADER, "ab")]);
        match classify(
            "audit",
            "audit.web-1.request.http.request",
            Some(&line),
            b"{}",
        ) {
            Arrival::Line { trail, line } => assert_eq!((trail.as_str(), line.seq), ("web-1", 7)),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            classify("audit", "audit.request.http", None, b"{}"),
            Arrival::Foreign
        ));
        assert!(matches!(
            classify("audits", "audit.web-1.request", Some(&line), b"{}"),
            Arrival::Foreign
        ));
        let bad = headers(&[(SEQ_HEADER, "x"), (HASH_HEADER, "ab")]);
        assert!(matches!(
            classify("audit", "audit.web-1.request.a", Some(&bad), b"{}"),
            Arrival::Unreadable { .. }
        ));
        let checkpoint = headers(&[(CHECKPOINT_HEADER, "9")]);
        assert!(matches!(
            classify("audit", "audit.web-1", Some(&checkpoint), b"not json"),
            Arrival::Unreadable { .. }
        ));
        let head = PublishedHead {
            seq_to: 4,
            note: "o\n5\nAAAA\n\n".to_owned(),
            last_line: "{}".to_owned(),
            last_leaf: Vec::new(),
            old_size: 0,
            consistency: Vec::new(),
        };
        let json = serde_json::to_vec(&head).unwrap();
        match classify("audit", "audit.web-1:tree", None, &json) {
            Arrival::TreeHead { trail, head: read } => {
                assert_eq!((trail.as_str(), *read), ("web-1", head));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            classify("audit", "audit.web-1:tree", None, b"{"),
            Arrival::Unreadable { .. }
        ));
    }
}
