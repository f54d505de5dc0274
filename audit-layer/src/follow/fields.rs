//! The fields of a trail line that stores index and route by, read without building the
//! whole event.

use std::borrow::Cow;
use std::net::IpAddr;

use serde::Deserialize;
use uuid::Uuid;

use crate::event::{Category, Outcome, Timestamp};
use crate::file::TrailLine;

/// What a store keeps in columns (PostgreSQL) or subjects and headers (NATS). Unknown
/// members (`before`, `details`, ...) are skipped unread.
#[derive(Debug, Deserialize)]
// NATS routes by a few of them; PostgreSQL keeps them all.
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
pub(crate) struct LineFields<'a> {
    pub(crate) id: Uuid,
    pub(crate) time: Timestamp,
    pub(crate) category: Category,
    #[serde(borrow)]
    pub(crate) action: Cow<'a, str>,
    pub(crate) outcome: Outcome,
    #[serde(borrow)]
    pub(crate) actor: ActorFields<'a>,
    #[serde(default)]
    pub(crate) source: Option<SourceFields>,
    #[serde(default, borrow)]
    pub(crate) request: Option<RequestFields<'a>>,
    #[serde(default, borrow)]
    pub(crate) target: Option<Cow<'a, str>>,
    #[serde(default)]
    pub(crate) response: Option<ResponseFields>,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
pub(crate) struct ActorFields<'a> {
    #[serde(borrow)]
    pub(crate) id: Cow<'a, str>,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
pub(crate) struct SourceFields {
    #[serde(default)]
    pub(crate) ip: Option<IpAddr>,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
pub(crate) struct RequestFields<'a> {
    #[serde(borrow)]
    pub(crate) id: Cow<'a, str>,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
pub(crate) struct ResponseFields {
    #[serde(default)]
    pub(crate) status: Option<u16>,
}

#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
impl<'a> LineFields<'a> {
    /// The fields of `line`; an error if it is not an event.
    pub(crate) fn of(line: &'a TrailLine) -> Result<Self, serde_json::Error> {
        serde_json::from_str(&line.json)
    }

    pub(crate) fn source_ip(&self) -> Option<IpAddr> {
        self.source.as_ref().and_then(|source| source.ip)
    }

    pub(crate) fn request_id(&self) -> Option<&str> {
        self.request.as_ref().map(|request| request.id.as_ref())
    }

    pub(crate) fn status(&self) -> Option<u16> {
        self.response.as_ref().and_then(|response| response.status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::AuditEvent;
    use crate::event::actor::Actor;
    use crate::file::{JsonlFileSink, TrailReader};
    use crate::sink::Sink;

    #[tokio::test]
    async fn fields_and_time_are_read_from_a_chained_line() {
        let dir = tempfile::tempdir().unwrap();
        let event = AuditEvent::new(
            Category::Sensitive,
            "user.role.change",
            Outcome::Success,
            Actor::user("7"),
        )
        .with_target("user:2");
        let mut sink = JsonlFileSink::new(dir.path());
        sink.write_batch(std::slice::from_ref(&event))
            .await
            .unwrap();
        let lines = TrailReader::new(dir.path(), 0, None).read(10).unwrap();
        let line = lines.last().unwrap();
        let fields = LineFields::of(line).unwrap();
        assert_eq!(fields.id, event.id);
        assert_eq!(fields.category, Category::Sensitive);
        assert_eq!(fields.action, "user.role.change");
        assert_eq!(fields.actor.id, "7");
        assert_eq!(fields.target.as_deref(), Some("user:2"));
        assert_eq!(fields.status(), None);
        assert_eq!(line.time(), Some(event.time));
    }
}
