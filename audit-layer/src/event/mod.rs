//! The `audit/1` event: one structured, versioned record per audited action.
//!
//! Field names are a contract: later versions may add fields, never rename or remove one.
//! Absent optional fields are omitted from the JSON, never written as `null`.
//!
//! # Example
//!
//! ```
//! use audit_layer::{Actor, AuditEvent, Category, Outcome};
//!
//! let event = AuditEvent::new(Category::System, "audit.start", Outcome::Success, Actor::service("audit"))
//!     .with_target("trail:main");
//! let json = serde_json::to_string(&event).unwrap();
//! assert!(json.starts_with(r#"{"schema":"audit/1","id":""#));
//! assert!(!json.contains("null"));
//!
//! let back: AuditEvent = serde_json::from_str(&json).unwrap();
//! assert_eq!(back, event);
//! ```

pub(crate) mod actor;
pub(crate) mod json;
pub(crate) mod model;

pub use self::model::{
    Change, RequestInfo, ResponseInfo, SCHEMA, Source, Timestamp, TimestampError,
};

pub(crate) use self::json::{write_event, write_event_members};
pub(crate) use self::model::{AuditEvent, Category, Outcome, event_id};
