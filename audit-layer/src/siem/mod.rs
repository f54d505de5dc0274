//! SIEM followers: the trail shipped to syslog receivers and webhooks in the SIEMs' own
//! formats ([`Format`](crate::format::Format)), and alerts to whoever must act on them.
//!
//! Each is a [`Follower`](crate::follow::Follower): it reads the trail from a cursor on a
//! thread of its own, so a slow or dead receiver only makes it fall behind, never holds back
//! a request, and it catches up from its cursor after an outage or a restart. Receivers
//! cannot say what they hold, so these followers keep their cursor beside the trail
//! (`DIR/followers/<name>.cursor`). Delivery is at least once; every record carries its
//! event id, the key for a SIEM to drop the copies a resend makes.

mod connection;
pub(crate) mod http;
mod notify;
mod rfc5424;
mod signature;
mod syslog;
mod webhook;

pub use self::notify::{
    AlertNotifier, FnNotifier, Notification, Notifier, WebhookNotifier, WebhookNotifierBuilder,
    notify_fn,
};
pub use self::signature::{SIGNATURE_HEADER, SignatureError, sign_webhook, verify_webhook};
pub use self::syslog::{SyslogFollower, SyslogFollowerBuilder};
pub use self::webhook::{BATCH_HEADER, WebhookFollower, WebhookFollowerBuilder, WebhookShape};
