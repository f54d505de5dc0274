//! Errors of configuration and of delivery.

/// A boxed error, as services and sinks return.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A configuration the trail refuses to start with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A trusted proxy that is neither a CIDR nor an address.
    #[error(
        "`{0}` is not an IP network or address (expected a CIDR like 10.0.0.0/8, or an address)"
    )]
    TrustedProxy(String),
    /// A header that carries credentials was asked to be recorded.
    #[error("header `{0}` can never be recorded: it carries credentials")]
    ForbiddenHeader(String),
    /// A header name that is not valid.
    #[error("`{0}` is not a valid HTTP header name")]
    HeaderName(String),
    /// A header asked to be recorded whose name is longer than a record keeps a header's
    /// name (128 bytes).
    #[error("header name `{0}` is longer than {max} bytes, the most a record keeps of a header's name", max = crate::redact::limits::HEADER_NAME)]
    HeaderNameTooLong(String),
    /// The trail was built without a sink.
    #[error("no sink configured: add one with `AuditTrailBuilder::sink`")]
    NoSink,
    /// A size that must be positive was zero.
    #[error("`{0}` must be at least 1")]
    Zero(&'static str),
    /// A sink's settings are not usable (a malformed URL, an invalid table or subject name).
    #[error("invalid {sink} sink settings: {reason}")]
    Sink {
        /// Which kind of sink (`postgres`, `nats`).
        sink: &'static str,
        /// What is wrong, and how to fix it.
        reason: String,
    },
    /// The writer thread could not be started.
    #[error("cannot start the audit writer: {0}")]
    Writer(#[source] std::io::Error),
    /// A sink could not connect, or create what it writes into, at a checked start
    /// ([`AuditTrailBuilder::build_checked`](crate::AuditTrailBuilder::build_checked)).
    #[error("audit sink `{sink}` cannot start: {reason}")]
    Unreachable {
        /// The sink's name.
        sink: String,
        /// Why, as the sink says.
        reason: String,
    },
    /// Followers were given, but no file trail for them to follow.
    #[error(
        "followers copy the file trail, and no `JsonlFileSink` was added: add one with \
         `AuditTrailBuilder::sink`, or add the store with `sink` instead of `follower` (the \
         direct mode)"
    )]
    NothingToFollow,
    /// A view of the file trail was asked of a trail that writes no files.
    #[error(
        "this audit trail writes no files, and the viewer reads the file trail: add a \
         `JsonlFileSink` with `AuditTrailBuilder::sink`"
    )]
    NoFileTrail,
    /// Two followers have the same name (they would share a status and metric labels).
    #[error("two followers are named `{0}`; give one of them other settings (a table, a stream)")]
    FollowerName(String),
    /// A setting that takes one value was given more than once.
    #[error("{0} was given more than once; a trail has one")]
    Twice(&'static str),
    /// More than one mistake, each as it would be reported alone.
    #[error("{} configuration errors: {}", .0.len(), list(.0))]
    Several(Vec<ConfigError>),
}

impl ConfigError {
    /// The errors of one configuration: none, one as itself, or several together.
    pub(crate) fn from_all(mut errors: Vec<ConfigError>) -> Option<Self> {
        match errors.len() {
            0 => None,
            1 => errors.pop(),
            _ => Some(Self::Several(errors)),
        }
    }

    /// Each error: itself, or each of several.
    pub fn errors(&self) -> &[ConfigError] {
        match self {
            Self::Several(errors) => errors,
            one => std::slice::from_ref(one),
        }
    }
}

fn list(errors: &[ConfigError]) -> String {
    errors
        .iter()
        .enumerate()
        .map(|(i, error)| format!("({}) {error}", i + 1))
        .collect::<Vec<_>>()
        .join("; ")
}

/// A failure to deliver events to the sinks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// A sink keeps failing; its events are kept and retried, none is dropped.
    #[error(
        "audit sink `{sink}` is failing ({error}); {pending} event(s) wait for it and are retried"
    )]
    SinkFailing {
        /// The sink's name.
        sink: String,
        /// Its last error.
        error: String,
        /// Events accepted but not yet written to it.
        pending: u64,
    },
    /// A sink failed to close at shutdown.
    #[error("audit sink `{sink}` failed to close: {error}")]
    Close {
        /// The sink's name.
        sink: String,
        /// The error.
        error: String,
    },
    /// Shutdown gave up on a failing sink; the events it never got were written to standard
    /// error as JSON lines (prefixed `audit-undelivered `), so they are not lost.
    #[error(
        "{count} audit event(s) could not be delivered to sink `{sink}` before shutdown ({error}); \
         they were written to standard error"
    )]
    Undelivered {
        /// The sink's name.
        sink: String,
        /// Its last error.
        error: String,
        /// How many events it never got.
        count: u64,
    },
    /// The trail was shut down, or its writer stopped.
    #[error("the audit trail is shut down")]
    Closed,
}

/// The text of a panic's payload (a `&str` or a `String`, as `panic!` makes them).
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("<non-string panic payload>")
}
