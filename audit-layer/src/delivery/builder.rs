//! [`AuditTrailBuilder`]: every setting of the layer and the trail, in one place.

use std::any::Any;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderName;
use tokio::sync::{Notify, mpsc, oneshot, watch};

use super::handle::{AuditTrail, StopHandle};
use super::policy::{DeliveryPolicy, Durability, FailurePolicy};
use super::queue::{Counters, Intake, WriterState, enqueue_detached};
use super::writer::{Writer, WriterSettings};
use crate::detect::Detector;
use crate::error::ConfigError;
use crate::event::Category;
use crate::event::actor::Actor;
use crate::file::{JsonlFileSink, TrailSource};
use crate::follow::{Follower, FollowerSettings, Followers, Recorder};
use crate::layer::client_ip::{ForwardedHeader, TrustedProxies};
use crate::layer::config::{Config, SharedResolver};
use crate::layer::shared::Shared;
use crate::redact::{FORBIDDEN_HEADERS, SecretNames, limits};
use crate::sink::Sink;

/// Configures and starts an [`AuditTrail`]. Every method takes and returns the builder;
/// [`build`](Self::build) checks the whole configuration and reports every mistake in it
/// at once, each naming the bad value.
#[must_use = "call `build()` to start the trail"]
pub struct AuditTrailBuilder {
    config: Config,
    delivery: DeliveryPolicy,
    sinks: Vec<Box<dyn Sink>>,
    followers: Vec<Box<dyn Follower>>,
    /// The first file trail among the sinks: what followers follow.
    followed: Option<TrailSource>,
    follower_settings: FollowerSettings,
    detectors: Vec<Box<dyn Detector>>,
    queue_capacity: usize,
    writer: WriterSettings,
    /// What the settings that can be refused were given, checked by `build`.
    unchecked: Unchecked,
}

/// Settings kept as given until `build`, which checks them against the final
/// configuration (`secret_names` may come after `record_headers`).
#[derive(Debug, Default)]
struct Unchecked {
    trusted_proxies: Vec<String>,
    request_id_header: Option<String>,
    recorded_headers: Vec<String>,
    actor_header: Option<String>,
    /// A second actor resolver was given.
    resolver_twice: bool,
}

impl AuditTrailBuilder {
    pub(super) fn new() -> Self {
        Self {
            config: Config::default(),
            delivery: DeliveryPolicy::default(),
            sinks: Vec::new(),
            followers: Vec::new(),
            followed: None,
            follower_settings: FollowerSettings::default(),
            detectors: Vec::new(),
            queue_capacity: 8192,
            writer: WriterSettings::default(),
            unchecked: Unchecked::default(),
        }
    }

    /// Adds a sink. Every event goes to every sink, in the same order.
    pub fn sink<S: Sink>(mut self, sink: S) -> Self {
        if let Some(file) = (&sink as &dyn Any).downcast_ref::<JsonlFileSink>() {
            self.followed.get_or_insert_with(|| file.source());
        }
        self.sinks.push(Box::new(sink));
        self
    }

    /// Adds a follower: a store that copies the file trail from a cursor of its own, on a
    /// thread of its own, so that its outage only makes it fall behind (see
    /// [`follow`](crate::follow)). It follows the first
    /// [`JsonlFileSink`](crate::file::JsonlFileSink) among the sinks; `build` refuses
    /// followers without one.
    pub fn follower(mut self, follower: impl Follower) -> Self {
        self.followers.push(Box::new(follower));
        self
    }

    /// [`health`](AuditTrail::health) is Degraded while a follower's oldest unshipped event
    /// is older than this (60 s by default), as well as while one is retrying or stopped.
    pub fn follower_lag_threshold(mut self, threshold: Duration) -> Self {
        self.follower_settings.lag_threshold = threshold;
        self
    }

    /// How long [`shutdown`](AuditTrail::shutdown) lets followers ship what is left (5 s by
    /// default); whatever they have not shipped then, they ship from their cursors at the
    /// next start.
    pub fn follower_drain(mut self, drain: Duration) -> Self {
        self.follower_settings.drain = drain;
        self
    }

    /// Adds a detector: it sees every event the trail accepts, on the writer thread, and
    /// the alerts it raises are recorded right after the event that raised them. See
    /// [`detect`](crate::detect).
    pub fn detector(mut self, detector: impl Detector) -> Self {
        self.detectors.push(Box::new(detector));
        self
    }

    /// Networks (CIDRs or addresses) of the proxies allowed to name the client in a
    /// forwarding header. None by default: the connection peer is the client.
    ///
    /// Each entry is checked by [`build`](Self::build).
    pub fn trusted_proxies<I, S>(mut self, networks: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.unchecked.trusted_proxies = networks
            .into_iter()
            .map(|network| network.as_ref().to_owned())
            .collect();
        self
    }

    /// Which forwarding header the trusted proxies set (`X-Forwarded-For` by default).
    pub fn forwarded_header(mut self, header: ForwardedHeader) -> Self {
        self.config.forwarded_header = header;
        self
    }

    /// The request id header, read from requests and set on responses (`x-request-id`).
    /// Its value is recorded, so a header that carries credentials (`Authorization`,
    /// `Proxy-Authorization`, `Cookie`, `Set-Cookie`, `X-Api-Key`) is refused.
    pub fn request_id_header(mut self, name: &str) -> Self {
        self.unchecked.request_id_header = Some(name.to_owned());
        self
    }

    /// Paths (`/health`) or route patterns (`/users/{id}`) that are not recorded. Empty by
    /// default: every request is recorded.
    pub fn skip_paths<I, S>(mut self, paths: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.config.skip.extend(paths.into_iter().map(Into::into));
        self
    }

    /// Replaces the list of secret names (query parameters, JSON fields) whose values are
    /// redacted. See [`SecretNames`] for how names match.
    pub fn secret_names(mut self, names: SecretNames) -> Self {
        self.config.secret_names = names;
        self
    }

    /// Adds names to the list of secret names.
    pub fn redact_also<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.config.secret_names.extend(names);
        self
    }

    /// Request headers whose values are recorded in `request.headers` (besides
    /// `User-Agent`, always recorded as `source.user_agent`). Credentials can never be
    /// recorded: `Authorization`, `Proxy-Authorization`, `Cookie`, `Set-Cookie`,
    /// `X-Api-Key`, and any header whose name is a secret name, are refused, as is a name
    /// longer than 128 bytes (the most a record keeps of a header's name). A recorded value
    /// is client input, scanned as free text is (a `Referer` loses the `token=` of its
    /// query, a URL its credentials), then bounded to 512 bytes.
    pub fn record_headers<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.unchecked
            .recorded_headers
            .extend(names.into_iter().map(|name| name.as_ref().to_owned()));
        self
    }

    /// Finds the actor from the request head when nothing put an [`Actor`](crate::Actor) in
    /// the extensions: a closure over the request's `Parts` (its argument's type is
    /// inferred). See [`Actor`](crate::Actor) for the order of sources. A resolver that
    /// panics is logged and counts as not knowing.
    ///
    /// ```
    /// use audit_layer::{Actor, AuditTrail};
    /// use audit_layer::sink::MemorySink;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let runtime = tokio::runtime::Runtime::new()?;
    /// # let _guard = runtime.enter();
    /// let audit = AuditTrail::builder()
    ///     .sink(MemorySink::new())
    ///     // A gateway that authenticated the caller names them in `x-authenticated-user`.
    ///     .actor_resolver(|parts| {
    ///         let user = parts.headers.get("x-authenticated-user")?.to_str().ok()?;
    ///         Some(Actor::user(user))
    ///     })
    ///     .build()?;
    /// # Ok(()) }
    /// ```
    ///
    /// A trail has one resolver: giving a second, of either kind, is an error from
    /// [`build`](Self::build).
    pub fn actor_resolver<F>(mut self, resolver: F) -> Self
    where
        F: Fn(&http::request::Parts) -> Option<Actor> + Send + Sync + 'static,
    {
        self.set_resolver(SharedResolver::Now(Arc::new(resolver)));
        self
    }

    /// Finds the actor with an async look-up (a session store, a token introspection):
    /// the closure reads what it needs from the request head and returns a `'static`
    /// future. The future runs beside the inner service, so it adds no latency unless it
    /// is slower than the handler; a response waits for it before its event is built. Bound
    /// it yourself (`tokio::time::timeout`) if the store can hang. A resolver that panics, in
    /// the closure or in the future, is logged and counts as not knowing.
    ///
    /// ```
    /// use std::time::Duration;
    /// use audit_layer::{Actor, AuditTrail};
    /// use audit_layer::sink::MemorySink;
    ///
    /// # async fn session_user(_: String) -> Option<String> { Some("7".into()) }
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let runtime = tokio::runtime::Runtime::new()?;
    /// # let _guard = runtime.enter();
    /// let audit = AuditTrail::builder()
    ///     .sink(MemorySink::new())
    ///     .actor_resolver_async(|parts| {
    ///         let cookie = parts.headers.get("cookie").and_then(|v| v.to_str().ok()).map(str::to_owned);
    ///         async move {
    ///             let lookup = session_user(cookie?);
    ///             let user = tokio::time::timeout(Duration::from_millis(200), lookup).await.ok()??;
    ///             Some(Actor::user(user))
    ///         }
    ///     })
    ///     .build()?;
    /// # Ok(()) }
    /// ```
    ///
    /// A trail has one resolver: giving a second, of either kind, is an error from
    /// [`build`](Self::build).
    pub fn actor_resolver_async<F, Fut>(mut self, resolver: F) -> Self
    where
        F: Fn(&http::request::Parts) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Option<Actor>> + Send + 'static,
    {
        self.set_resolver(SharedResolver::Later(Arc::new(move |parts| {
            Box::pin(resolver(parts))
        })));
        self
    }

    fn set_resolver(&mut self, resolver: SharedResolver) {
        if self.config.actor_resolver.replace(resolver).is_some() {
            self.unchecked.resolver_twice = true;
        }
    }

    /// Takes the actor's id from a request header, as a last resort.
    ///
    /// **Safe only behind a gateway that sets this header on every request and strips it
    /// from clients' requests**: otherwise any client names itself. Its value is recorded
    /// as the actor's id, so a header that carries credentials (`Authorization`, `Cookie`,
    /// `X-Api-Key`, ...) is refused: find the actor from those with an
    /// [`actor_resolver`](Self::actor_resolver).
    pub fn trust_actor_header(mut self, name: &str) -> Self {
        self.unchecked.actor_header = Some(name.to_owned());
        self
    }

    /// Adds a label to every event (`service`, `region`, ...). Under a secret name (see
    /// [`secret_names`](Self::secret_names)) its value is recorded as `[REDACTED]`; under any
    /// name, a URL in it loses its credentials.
    pub fn label(mut self, key: impl AsRef<str>, value: impl AsRef<str>) -> Self {
        // Redacted and bounded with every event, by the scrub stage.
        self.config
            .labels
            .insert(key.as_ref().to_owned(), value.as_ref().to_owned());
        self
    }

    /// Whether the layer turns a panicking handler into a `500` response (the default). The
    /// panic is recorded as an `error` event either way; with `false` it then resumes
    /// unwinding, as if the layer were not there.
    pub fn catch_panics(mut self, catch: bool) -> Self {
        self.config.catch_panics = catch;
        self
    }

    /// What happens when the trail cannot keep up (default [`FailurePolicy::block`]: wait).
    /// See [`FailurePolicy`](crate::FailurePolicy) for when to pick each.
    pub fn failure_policy(mut self, policy: FailurePolicy) -> Self {
        self.delivery.failure = policy;
        self
    }

    /// How durable events of a category must be before their response leaves (`Synced` for
    /// `sensitive`, `auth` and `alert`, `Batched` for the rest, by default).
    pub fn durability(mut self, category: Category, level: Durability) -> Self {
        self.delivery.durability.set_category(category, level);
        self
    }

    /// How durable the events of a route (pattern like `/payments/{id}`, or a path) must be;
    /// wins over the category's level.
    pub fn route_durability(mut self, route: impl Into<String>, level: Durability) -> Self {
        self.delivery.durability.set_route(route.into(), level);
        self
    }

    /// How often batched events are synced at the latest (100 ms by default).
    pub fn sync_interval(mut self, interval: Duration) -> Self {
        self.writer.sync_interval = interval.max(Duration::from_millis(1));
        self
    }

    /// With a policy that may refuse, how long a response waits for its event to be synced
    /// before it is answered 503 instead (10 s by default). Under [`FailurePolicy::block`]
    /// it waits as long as it takes.
    pub fn durable_timeout(mut self, timeout: Duration) -> Self {
        self.delivery.durable_timeout = timeout;
        self
    }

    /// How many events may wait for the writer (8192 by default). When it is full, requests
    /// wait for room.
    pub fn queue_capacity(mut self, capacity: usize) -> Self {
        self.queue_capacity = capacity;
        self
    }

    /// How long the writer gathers ordinary events into one batch before it writes them
    /// (2 ms by default; zero writes each batch as soon as it arrives).
    ///
    /// Gathering keeps the request path from waking the writer thread for every event, which
    /// costs more than writing the event. While events arrive too slowly to fill a batch of
    /// 64 in that time, the writer gathers for as long as 64 take, up to five times the
    /// delay (10 ms by default): each round has a fixed cost, and at a few thousand requests
    /// a second this cuts the writer's CPU per event by about 40%. Events whose response
    /// waits for them to be synced, [`AuditTrail::flush`], and a queue past half full cut
    /// the wait short, so it never delays a durable event. Even stretched, it is far below
    /// the [sync interval](Self::sync_interval), which bounds what a crash can lose.
    pub fn write_delay(mut self, delay: Duration) -> Self {
        self.writer.write_delay = delay;
        self
    }

    /// The most events handed to a sink at once (512 by default).
    pub fn batch_size(mut self, size: usize) -> Self {
        self.writer.batch_size = size;
        self
    }

    /// Backoff between retries of a failing sink or follower: doubling from `initial` up
    /// to `max` (50 ms and 5 s by default).
    pub fn retry_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.writer.backoff_initial = initial;
        self.writer.backoff_max = max.max(initial);
        self.follower_settings.backoff_initial = initial;
        self.follower_settings.backoff_max = max.max(initial);
        self
    }

    /// After how many consecutive failures a sink counts as failing, so that
    /// [`AuditTrail::flush`] reports it (3 by default). Retries go on regardless.
    pub fn failing_after(mut self, attempts: u32) -> Self {
        self.writer.failing_after = attempts.max(1);
        self
    }

    /// How long [`AuditTrail::shutdown`] keeps retrying a failing sink before it gives up
    /// and writes the undelivered events to standard error (30 s by default).
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.writer.shutdown_timeout = timeout;
        self
    }

    /// Checks the configuration, starts the writer thread and returns the trail's handle.
    ///
    /// Every mistake in the configuration is reported: one as itself, several as
    /// [`ConfigError::Several`]. Sinks that reach a server connect on their first batch;
    /// [`build_checked`](Self::build_checked) connects them first.
    pub fn build(self) -> Result<AuditTrail, ConfigError> {
        let trail = self.start()?;
        trail.record_start();
        Ok(trail)
    }

    /// [`build`](Self::build), then connects every sink (and creates its table or stream)
    /// before the trail records anything: a server that is down or refuses the settings
    /// fails the start with [`ConfigError::Unreachable`] naming the sink, instead of
    /// holding back the first events (and, under the default policy, the first sensitive
    /// requests) while the writer retries.
    ///
    /// ```
    /// use audit_layer::sink::{BoxFuture, Sink, SinkError};
    /// use audit_layer::{AuditEvent, AuditTrail, ConfigError};
    ///
    /// /// A sink whose server is down.
    /// struct Unreachable;
    ///
    /// impl Sink for Unreachable {
    ///     fn name(&self) -> &str {
    ///         "db:10.0.0.7"
    ///     }
    ///     fn open(&mut self) -> BoxFuture<'_, Result<(), SinkError>> {
    ///         Box::pin(async { Err(SinkError::new("connection refused")) })
    ///     }
    ///     fn write_batch<'a>(&'a mut self, _: &'a [AuditEvent]) -> BoxFuture<'a, Result<(), SinkError>> {
    ///         Box::pin(async { Err(SinkError::new("connection refused")) })
    ///     }
    /// }
    ///
    /// # #[tokio::main] async fn main() {
    /// let error = AuditTrail::builder().sink(Unreachable).build_checked().await.unwrap_err();
    /// assert!(matches!(error, ConfigError::Unreachable { .. }));
    /// assert_eq!(error.to_string(), "audit sink `db:10.0.0.7` cannot start: connection refused");
    /// # }
    /// ```
    pub async fn build_checked(self) -> Result<AuditTrail, ConfigError> {
        let trail = self.start()?;
        let failures: Vec<_> = trail
            .open_sinks()
            .await
            .into_iter()
            .map(|(sink, error)| ConfigError::Unreachable {
                sink,
                reason: error.to_string(),
            })
            .collect();
        if let Some(error) = ConfigError::from_all(failures) {
            trail.abandon().await;
            return Err(error);
        }
        trail.record_start();
        Ok(trail)
    }

    /// Checks the configuration and starts the writer; records nothing yet.
    fn start(mut self) -> Result<AuditTrail, ConfigError> {
        let mut errors = self.check();
        if self.sinks.is_empty() {
            errors.push(ConfigError::NoSink);
        }
        if self.queue_capacity == 0 {
            errors.push(ConfigError::Zero("queue_capacity"));
        }
        if self.writer.batch_size == 0 {
            errors.push(ConfigError::Zero("batch_size"));
        }
        if !self.followers.is_empty() && self.followed.is_none() {
            errors.push(ConfigError::NothingToFollow);
        }
        let mut names = std::collections::HashSet::new();
        for follower in &self.followers {
            if !names.insert(follower.name()) {
                errors.push(ConfigError::FollowerName(follower.name().to_owned()));
            }
        }
        if let Some(error) = ConfigError::from_all(errors) {
            return Err(error);
        }
        let (queue, items) = mpsc::channel(self.queue_capacity);
        let counters = Arc::new(Counters::default());
        let (state_tx, state) = watch::channel(WriterState::default());
        let (stop_tx, stop_rx) = oneshot::channel();
        let (finished_tx, finished) = std::sync::mpsc::channel();
        let wake_writer = Arc::new(Notify::new());
        let writer = Writer::new(
            items,
            Arc::clone(&wake_writer),
            stop_rx,
            self.sinks,
            Arc::clone(&counters),
            state_tx,
            WriterSettings {
                max_pending: self.queue_capacity.max(self.writer.batch_size),
                sync_alerts: self.delivery.durability.level(Category::Alert, None, None)
                    == Durability::Synced,
                ..self.writer
            },
        );
        let spare_events = writer.spare_events();
        writer
            .with_detectors(self.detectors, self.config.secret_names.clone())
            .spawn(finished_tx)
            .map_err(ConfigError::Writer)?;
        let intake = Intake {
            policy: self.delivery,
            secret_names: self.config.secret_names.clone(),
            queue,
            wake_writer,
            counters,
            state: state.clone(),
            spare_events,
        };
        let shared = Arc::new(Shared::new(self.config, intake));
        let followers = match &self.followed {
            Some(source) if !self.followers.is_empty() => Some(
                Followers::start(
                    self.followers,
                    source,
                    &recorder(&shared),
                    self.follower_settings,
                )
                .map_err(ConfigError::Writer)?,
            ),
            _ => None,
        };
        Ok(AuditTrail::new(
            shared,
            followers,
            self.followed,
            state,
            StopHandle {
                request: stop_tx,
                finished,
            },
        ))
    }
}

impl fmt::Debug for AuditTrailBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditTrailBuilder")
            .field("config", &self.config)
            .field(
                "sinks",
                &self.sinks.iter().map(|s| s.name()).collect::<Vec<_>>(),
            )
            .field(
                "followers",
                &self.followers.iter().map(|f| f.name()).collect::<Vec<_>>(),
            )
            .field(
                "detectors",
                &self.detectors.iter().map(|d| d.name()).collect::<Vec<_>>(),
            )
            .field("queue_capacity", &self.queue_capacity)
            .field("writer", &self.writer)
            .finish()
    }
}

impl AuditTrailBuilder {
    /// Checks the settings kept as given, and moves those that pass into the configuration.
    fn check(&mut self) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        let unchecked = std::mem::take(&mut self.unchecked);
        match TrustedProxies::new(&unchecked.trusted_proxies) {
            Ok(proxies) => self.config.trusted_proxies = proxies,
            // Each bad entry is named.
            Err(_) => errors.extend(
                unchecked
                    .trusted_proxies
                    .iter()
                    .filter_map(|network| TrustedProxies::new([network]).err()),
            ),
        }
        if let Some(name) = unchecked.request_id_header {
            match header_name(&name).and_then(refuse_credentials) {
                Ok(name) => self.config.request_id_header = name,
                Err(error) => errors.push(error),
            }
        }
        if let Some(name) = unchecked.actor_header {
            match header_name(&name).and_then(refuse_credentials) {
                Ok(name) => self.config.actor_header = Some(name),
                Err(error) => errors.push(error),
            }
        }
        if unchecked.resolver_twice {
            errors.push(ConfigError::Twice("an actor resolver"));
        }
        let names = &self.config.secret_names;
        for name in unchecked.recorded_headers {
            let checked = header_name(&name)
                .and_then(|name| {
                    if name.as_str().len() > limits::HEADER_NAME {
                        return Err(ConfigError::HeaderNameTooLong(name.as_str().to_owned()));
                    }
                    Ok(name)
                })
                .and_then(refuse_credentials)
                .and_then(|name| refuse_secret_named(name, names));
            match checked {
                Ok(name) if !self.config.recorded_headers.contains(&name) => {
                    self.config.recorded_headers.push(name)
                }
                Ok(_) => {}
                Err(error) => errors.push(error),
            }
        }
        errors
    }
}

/// How followers and collectors record their own events (an alert, a gap) into the trail: scrubbed as
/// every event is, and never waiting. Weak: the followers must not keep the queue open.
pub(super) fn recorder(shared: &Arc<Shared>) -> Recorder {
    let shared = Arc::downgrade(shared);
    Arc::new(move |event| {
        if let Some(shared) = shared.upgrade() {
            let event = shared.intake.scrub(Box::new(event));
            enqueue_detached(&shared, event);
        }
    })
}

fn header_name(name: &str) -> Result<HeaderName, ConfigError> {
    HeaderName::try_from(name).map_err(|_| ConfigError::HeaderName(name.to_owned()))
}

/// Refuses a header that carries credentials.
fn refuse_credentials(name: HeaderName) -> Result<HeaderName, ConfigError> {
    if FORBIDDEN_HEADERS.contains(&name.as_str()) {
        return Err(ConfigError::ForbiddenHeader(name.as_str().to_owned()));
    }
    Ok(name)
}

/// Refuses a header named like a secret (`x-session-token`): its value is not recorded
/// either.
fn refuse_secret_named(name: HeaderName, names: &SecretNames) -> Result<HeaderName, ConfigError> {
    if names.is_secret(name.as_str()) {
        return Err(ConfigError::ForbiddenHeader(name.as_str().to_owned()));
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::MemorySink;

    /// What `build` would say of the settings it checks, without starting a trail.
    fn checked(mut builder: AuditTrailBuilder) -> Result<(), ConfigError> {
        ConfigError::from_all(builder.check()).map_or(Ok(()), Err)
    }

    #[test]
    fn credentials_can_never_be_recorded() {
        for name in [
            "Authorization",
            "proxy-authorization",
            "cookie",
            "Set-Cookie",
            "x-api-key",
            "x-auth-token",
            "x-session-id",
        ] {
            let err = checked(AuditTrail::builder().record_headers([name])).unwrap_err();
            assert!(
                matches!(err, ConfigError::ForbiddenHeader(_)),
                "{name}: {err}"
            );
            assert!(err.to_string().contains("can never be recorded"));
        }
        assert!(checked(AuditTrail::builder().record_headers(["x-tenant-id"])).is_ok());
    }

    #[test]
    fn credentials_are_never_the_request_id_or_the_actor() {
        for name in ["Authorization", "cookie", "Set-Cookie", "x-api-key"] {
            let err = checked(AuditTrail::builder().request_id_header(name)).unwrap_err();
            assert!(
                matches!(err, ConfigError::ForbiddenHeader(_)),
                "{name}: {err}"
            );
            let err = checked(AuditTrail::builder().trust_actor_header(name)).unwrap_err();
            assert!(
                matches!(err, ConfigError::ForbiddenHeader(_)),
                "{name}: {err}"
            );
        }
        // A gateway's identity header is not a credential, whatever its words.
        assert!(checked(AuditTrail::builder().trust_actor_header("x-auth-request-user")).is_ok());
        assert!(checked(AuditTrail::builder().request_id_header("x-trace-id")).is_ok());
    }

    #[test]
    fn a_recorded_header_that_a_later_secret_name_names_is_refused() {
        let err = AuditTrail::builder()
            .record_headers(["x-tenant", "x-customer-pin"])
            .redact_also(["pin"])
            .sink(MemorySink::new())
            .build()
            .unwrap_err();
        assert!(
            matches!(&err, ConfigError::ForbiddenHeader(name) if name == "x-customer-pin"),
            "{err}"
        );
    }

    #[test]
    fn a_recorded_header_name_must_fit_in_a_record() {
        let longest = format!("x-{}", "a".repeat(limits::HEADER_NAME - 2));
        assert!(checked(AuditTrail::builder().record_headers([&longest])).is_ok());
        let err =
            checked(AuditTrail::builder().record_headers([format!("{longest}a")])).unwrap_err();
        assert!(matches!(err, ConfigError::HeaderNameTooLong(_)), "{err}");
        assert!(err.to_string().contains("longer than 128 bytes"), "{err}");
    }

    #[test]
    fn bad_settings_are_clear_errors() {
        assert!(matches!(
            AuditTrail::builder().build().unwrap_err(),
            ConfigError::NoSink
        ));
        assert!(matches!(
            AuditTrail::builder()
                .sink(MemorySink::new())
                .queue_capacity(0)
                .build()
                .unwrap_err(),
            ConfigError::Zero("queue_capacity")
        ));
        assert!(matches!(
            checked(AuditTrail::builder().request_id_header("bad header")).unwrap_err(),
            ConfigError::HeaderName(_)
        ));
        assert!(matches!(
            checked(AuditTrail::builder().trusted_proxies(["nope"])).unwrap_err(),
            ConfigError::TrustedProxy(_)
        ));
    }

    #[test]
    fn every_mistake_is_reported_at_once() {
        let err = AuditTrail::builder()
            .trusted_proxies(["10.0.0.0/8", "nope", "also nope"])
            .request_id_header("cookie")
            .record_headers(["x-tenant", "bad header"])
            .queue_capacity(0)
            .build()
            .unwrap_err();
        let errors = err.errors();
        assert_eq!(errors.len(), 6, "{err}");
        assert!(matches!(&errors[0], ConfigError::TrustedProxy(p) if p == "nope"));
        assert!(matches!(&errors[1], ConfigError::TrustedProxy(p) if p == "also nope"));
        assert!(matches!(&errors[2], ConfigError::ForbiddenHeader(h) if h == "cookie"));
        assert!(matches!(&errors[3], ConfigError::HeaderName(h) if h == "bad header"));
        assert!(matches!(errors[4], ConfigError::NoSink));
        assert!(matches!(errors[5], ConfigError::Zero("queue_capacity")));
        let text = err.to_string();
        assert!(
            text.starts_with("6 configuration errors: (1) `nope`"),
            "{text}"
        );
        assert!(text.contains("(5) no sink configured"), "{text}");
    }
}
