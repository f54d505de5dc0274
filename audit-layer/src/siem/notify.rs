//! Alert notifications: each detector alert handed to whoever must act on it, off the
//! request path, with retries, at most one notification per rule and burst.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::path::Path;
use std::time::Duration;

use crate::error::ConfigError;
use crate::event::{AuditEvent, Category, Timestamp};
use crate::file::TrailLine;
use crate::follow::{Cursor, Follower, LocalCursor};
use crate::format::Format;
use crate::siem::http::{Target, TargetSettings};
use crate::sink::{BoxFuture, SinkError};

/// How long a rule must stay quiet before its next alert is notified again.
const DEFAULT_QUIET: Duration = Duration::from_secs(300);
/// The most rules whose bursts are tracked at once; the one quiet longest is forgotten first.
const MAX_RULES: usize = 1024;

/// One alert to act on.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Notification {
    /// The alert event, as the trail stored it.
    pub alert: AuditEvent,
    /// The rule that raised it: the alert's action (`auth.bruteforce`).
    pub rule: String,
    /// Alerts of this rule left unnotified since its previous notification (the rest of
    /// that burst).
    pub suppressed: u64,
}

/// Something that acts on alerts: pages someone, posts to a chat, opens a ticket. Called by
/// an [`AlertNotifier`], on the trail's follower thread.
pub trait Notifier: Send + 'static {
    /// A short name for logs, metrics and status (`webhook:https://hooks.example/..`).
    fn name(&self) -> &str;

    /// Delivers one notification; `Err` is retried with backoff, the alerts after it wait.
    fn notify<'a>(
        &'a mut self,
        notification: &'a Notification,
    ) -> BoxFuture<'a, Result<(), SinkError>>;
}

/// A follower of the trail that hands its alerts to a [`Notifier`]: the first alert of a
/// rule's burst is notified, the rest of the burst is counted and suppressed, and the rule
/// is re-armed once it has been quiet for [`quiet`](Self::quiet) (5 minutes by default),
/// measured in the alerts' own times, so a catch-up after an outage notifies as the alerts
/// happened.
///
/// As a follower it never holds back the trail: a slow or dead notifier only falls behind
/// (its lag is in [`AuditTrail::followers`](crate::AuditTrail::followers)), a failed
/// notification is retried with backoff, and its cursor (in `DIR/followers/`) moves past
/// each alert once notified, so an alert is notified once, also across restarts.
///
/// ```
/// use audit_layer::file::JsonlFileSink;
/// use audit_layer::siem::{AlertNotifier, notify_fn};
/// use audit_layer::AuditTrail;
/// use std::time::Duration;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// let pager = notify_fn("pager", |notification| async move {
///     println!("{} ({} more)", notification.rule, notification.suppressed);
///     Ok::<_, std::io::Error>(())
/// });
/// let audit = AuditTrail::builder()
///     .sink(JsonlFileSink::new(dir.path()))
///     .follower(AlertNotifier::new(pager).quiet(Duration::from_secs(600)))
///     .build()?;
/// # drop(audit);
/// # Ok(()) }
/// ```
pub struct AlertNotifier<N> {
    name: String,
    notifier: N,
    quiet: Duration,
    timeout: Duration,
    cursor: LocalCursor,
    /// Per rule: the time of its last alert, and the alerts suppressed since it was last
    /// notified.
    bursts: HashMap<String, (Timestamp, u64)>,
}

impl<N: Notifier> fmt::Debug for AlertNotifier<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AlertNotifier")
            .field("name", &self.name)
            .field("quiet", &self.quiet)
            .finish_non_exhaustive()
    }
}

impl<N: Notifier> AlertNotifier<N> {
    /// Notifies `notifier` of the trail's alerts.
    pub fn new(notifier: N) -> Self {
        let name = format!("notify:{}", notifier.name());
        Self {
            cursor: LocalCursor::new(&name),
            name,
            notifier,
            quiet: DEFAULT_QUIET,
            timeout: Duration::from_secs(30),
            bursts: HashMap::new(),
        }
    }

    /// How long a rule must be quiet before its next alert is notified (default 5
    /// minutes). Zero notifies every alert.
    #[must_use]
    pub fn quiet(mut self, quiet: Duration) -> Self {
        self.quiet = quiet;
        self
    }

    /// The bound of one notification (default 30 s); one that takes longer failed.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The notification an alert makes, or `None` when its burst was notified already
    /// (it is then counted).
    fn decide(&self, alert: &AuditEvent) -> Option<Notification> {
        let rule = alert.action.as_ref();
        let quiet = self.quiet.as_micros().min(u128::from(u64::MAX)) as u64;
        match self.bursts.get(rule) {
            // An alert older than the rule's last one (a replay) is part of its burst.
            Some((last, _))
                if alert.time.unix_micros().saturating_sub(last.unix_micros()) < quiet =>
            {
                None
            }
            previous => Some(Notification {
                alert: alert.clone(),
                rule: rule.to_owned(),
                suppressed: previous.map_or(0, |(_, suppressed)| *suppressed),
            }),
        }
    }

    /// Records an alert of `rule` at `time`, notified or not.
    fn note(&mut self, rule: &str, time: Timestamp, notified: bool) {
        if !self.bursts.contains_key(rule)
            && self.bursts.len() >= MAX_RULES
            && let Some(oldest) = self
                .bursts
                .iter()
                .min_by_key(|(_, (last, _))| *last)
                .map(|(rule, _)| rule.clone())
        {
            self.bursts.remove(&oldest);
        }
        let entry = self.bursts.entry(rule.to_owned()).or_insert((time, 0));
        entry.0 = entry.0.max(time);
        entry.1 = if notified { 0 } else { entry.1 + 1 };
    }
}

impl<N: Notifier> Follower for AlertNotifier<N> {
    fn name(&self) -> &str {
        &self.name
    }

    fn start(&mut self, trail_dir: &Path) -> Result<(), SinkError> {
        self.cursor.open(trail_dir)
    }

    fn cursor<'a>(&'a mut self, _trail: &'a str) -> BoxFuture<'a, Result<Cursor, SinkError>> {
        Box::pin(async move { self.cursor.get() })
    }

    fn ship<'a>(
        &'a mut self,
        _trail: &'a str,
        lines: &'a [TrailLine],
    ) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            for line in lines {
                // Most lines are not alerts: parsed only when they may be one.
                if !line.json.contains("\"category\":\"alert\"") {
                    continue;
                }
                let Ok(event) = line.event() else { continue };
                if event.category != Category::Alert {
                    continue;
                }
                match self.decide(&event) {
                    Some(notification) => {
                        let sent =
                            tokio::time::timeout(self.timeout, self.notifier.notify(&notification))
                                .await
                                .unwrap_or_else(|_| {
                                    Err(SinkError::new(format!(
                                        "no notification within {:?}",
                                        self.timeout
                                    )))
                                });
                        sent?;
                        metrics::counter!("audit_notifications_total", "notifier" => self.name.clone(), "outcome" => "sent").increment(1);
                        self.note(&notification.rule, event.time, true);
                    }
                    None => {
                        metrics::counter!("audit_notifications_total", "notifier" => self.name.clone(), "outcome" => "suppressed").increment(1);
                        self.note(event.action.as_ref(), event.time, false);
                    }
                }
                self.cursor.confirm(line.seq, &line.hash);
            }
            if let Some(last) = lines.last() {
                self.cursor.confirm(last.seq, &last.hash);
            }
            Ok(())
        })
    }
}

/// A [`Notifier`] that calls an async function: the generic callback, for a chat, a pager
/// or a queue of the application's own.
pub fn notify_fn<F, Fut, E>(name: impl Into<String>, callback: F) -> FnNotifier<F>
where
    F: FnMut(Notification) -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    FnNotifier {
        name: name.into(),
        callback,
    }
}

/// The [`Notifier`] of [`notify_fn`].
pub struct FnNotifier<F> {
    name: String,
    callback: F,
}

impl<F> fmt::Debug for FnNotifier<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FnNotifier")
            .field("name", &self.name)
            .finish()
    }
}

impl<F, Fut, E> Notifier for FnNotifier<F>
where
    F: FnMut(Notification) -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn name(&self) -> &str {
        &self.name
    }

    fn notify<'a>(
        &'a mut self,
        notification: &'a Notification,
    ) -> BoxFuture<'a, Result<(), SinkError>> {
        let called = (self.callback)(notification.clone());
        Box::pin(async move { called.await.map_err(SinkError::new) })
    }
}

/// A [`Notifier`] that POSTs each notification as JSON, signed like the webhook follower's
/// batches: `{"rule":..,"suppressed":..,"alert":<the alert in the chosen format>}`.
pub struct WebhookNotifier {
    target: Target,
    format: Format,
}

impl fmt::Debug for WebhookNotifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookNotifier")
            .field("name", &self.target.name)
            .field("format", &self.format)
            .finish_non_exhaustive()
    }
}

/// Settings of a [`WebhookNotifier`], from [`WebhookNotifier::builder`].
#[must_use = "a builder does nothing until `build` is called"]
pub struct WebhookNotifierBuilder {
    url: String,
    format: Format,
    target: TargetSettings,
}

impl fmt::Debug for WebhookNotifierBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookNotifierBuilder")
            .field("url", &self.url)
            .field("format", &self.format)
            .finish_non_exhaustive()
    }
}

impl WebhookNotifier {
    /// A notifier POSTing to `url`.
    pub fn builder(url: impl Into<String>) -> WebhookNotifierBuilder {
        WebhookNotifierBuilder {
            url: url.into(),
            format: Format::Ocsf,
            target: TargetSettings::default(),
        }
    }
}

impl WebhookNotifierBuilder {
    crate::siem::http::target_setters!();

    /// The alert's format inside the notification (default [`Format::Ocsf`]; CEF is sent
    /// as a string).
    pub fn format(mut self, format: Format) -> Self {
        self.format = format;
        self
    }

    /// Checks the settings.
    pub fn build(self) -> Result<WebhookNotifier, ConfigError> {
        let target =
            self.target
                .build(&self.url, "webhook")
                .map_err(|reason| ConfigError::Sink {
                    sink: "webhook notifier",
                    reason,
                })?;
        Ok(WebhookNotifier {
            target,
            format: self.format,
        })
    }
}

impl Notifier for WebhookNotifier {
    fn name(&self) -> &str {
        &self.target.name
    }

    fn notify<'a>(
        &'a mut self,
        notification: &'a Notification,
    ) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            let mut alert = Vec::new();
            self.format
                .encode(&notification.alert, &mut alert)
                .map_err(SinkError::new)?;
            let mut body = Vec::with_capacity(alert.len() + 64);
            body.extend_from_slice(b"{\"rule\":");
            serde_json::to_writer(&mut body, &notification.rule).map_err(SinkError::new)?;
            body.extend_from_slice(
                format!(",\"suppressed\":{},\"alert\":", notification.suppressed).as_bytes(),
            );
            if self.format.is_json() {
                body.extend_from_slice(&alert);
            } else {
                serde_json::to_writer(&mut body, &String::from_utf8_lossy(&alert))
                    .map_err(SinkError::new)?;
            }
            body.push(b'}');
            self.target
                .post(body, "application/json", None)
                .await
                .map_err(|(error, _)| error)?;
            Ok(())
        })
    }
}
