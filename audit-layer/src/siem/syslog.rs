//! The syslog follower: the trail as RFC 5424 messages, octet-counted (RFC 6587), over TCP
//! or TLS.

use std::collections::VecDeque;
use std::fmt;
use std::path::Path;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::error::ConfigError;
use crate::file::TrailLine;
use crate::follow::{Cursor, Follower, LocalCursor};
use crate::format::Format;
use crate::siem::connection::{Endpoint, Stream};
use crate::siem::rfc5424::{Header, write_frame};
use crate::sink::{BoxFuture, SinkError};

/// How long to wait for a connection, a batch's write, or the receiver's goodbye.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes written after a batch before it counts as received: more than a loopback or LAN
/// connection's send and receive buffers hold together.
const DEFAULT_RESEND_WINDOW: u64 = 16 << 20;
/// How long a batch may stay unconfirmed before the follower closes the connection to
/// have the receiver confirm it.
const DEFAULT_CONFIRM_AFTER: Duration = Duration::from_secs(1);

/// A follower that ships the trail to a syslog receiver (rsyslog, syslog-ng, a SIEM's
/// collector), one RFC 5424 message per event, in the format you choose ([`Format::Ocsf`]
/// by default; [`Format::Cef`] for ArcSight, QRadar and Wazuh).
///
/// Each message carries the event id, the trail id and the line's seq in its structured
/// data (`[audit@32473 id=".." trail=".." seq=".."]`), its time is the event's, its MSGID
/// the action, and its severity warning for alerts, notice for denials, informational
/// otherwise (facility 13, *log audit*, by default).
///
/// # Delivery
///
/// Syslog over TCP has no acknowledgement: bytes a receiver had not read when it died are
/// lost without a word. So the follower counts a batch as received only when the receiver
/// has closed the connection in answer to the follower's own close (which it does once it
/// has read everything): the follower closes and reopens its connection when its oldest
/// unconfirmed batch is [`confirm_after`](SyslogFollowerBuilder::confirm_after) old (1 s),
/// and at shutdown. Under a flood, a batch also counts as received once
/// [`resend_window`](SyslogFollowerBuilder::resend_window) bytes (16 MiB, more than the
/// connection's buffers hold) were written after it. The cursor (in `DIR/followers/`) moves
/// only then; after a broken connection or a crash the follower resends from it. Nothing is
/// lost, and a receiver killed while events flow sees at most a second's worth (or the
/// window) twice, each copy with the same event id for the SIEM to drop.
///
/// ```
/// use audit_layer::file::JsonlFileSink;
/// use audit_layer::format::Format;
/// use audit_layer::siem::SyslogFollower;
/// use audit_layer::AuditTrail;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// let syslog = SyslogFollower::builder("tcp://127.0.0.1:6514")
///     .format(Format::Cef)
///     .app_name("shop")
///     .build()?;
/// let audit = AuditTrail::builder()
///     .sink(JsonlFileSink::new(dir.path()))
///     .follower(syslog)
///     .build()?;
/// # drop(audit);
/// # Ok(()) }
/// ```
pub struct SyslogFollower {
    name: String,
    endpoint: Endpoint,
    header: Header,
    format: Format,
    timeout: Duration,
    resend_window: u64,
    confirm_after: Duration,
    stream: Option<Stream>,
    cursor: LocalCursor,
    /// Batches written on this connection and not yet counted as received.
    in_doubt: VecDeque<Written>,
    written: u64,
    buffer: Vec<u8>,
    message: Vec<u8>,
}

impl fmt::Debug for SyslogFollower {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SyslogFollower")
            .field("name", &self.name)
            .field("format", &self.format)
            .field("connected", &self.stream.is_some())
            .finish_non_exhaustive()
    }
}

/// Settings of a [`SyslogFollower`], from [`SyslogFollower::builder`].
#[derive(Clone, Debug)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct SyslogFollowerBuilder {
    url: String,
    format: Format,
    facility: u8,
    hostname: Option<String>,
    app_name: String,
    sd_id: String,
    timeout: Duration,
    resend_window: u64,
    confirm_after: Duration,
    root_certificates: Vec<Vec<u8>>,
}

/// A batch written and not yet counted as received.
#[derive(Debug)]
struct Written {
    /// The seq and hash of its last line.
    seq: u64,
    hash: String,
    /// The bytes written on the connection when it ended.
    end: u64,
    when: Instant,
}

impl SyslogFollower {
    /// A follower for the receiver at `url`: `tcp://host:port`, or `tls://host:port`
    /// (the server's certificate checked against Mozilla's roots and any
    /// [`root_certificate`](SyslogFollowerBuilder::root_certificate)).
    pub fn builder(url: impl Into<String>) -> SyslogFollowerBuilder {
        SyslogFollowerBuilder {
            url: url.into(),
            format: Format::Ocsf,
            facility: 13,
            hostname: None,
            app_name: "audit-layer".to_owned(),
            sd_id: "audit@32473".to_owned(),
            timeout: DEFAULT_TIMEOUT,
            resend_window: DEFAULT_RESEND_WINDOW,
            confirm_after: DEFAULT_CONFIRM_AFTER,
            root_certificates: Vec::new(),
        }
    }
}

impl SyslogFollowerBuilder {
    /// The events' format (default [`Format::Ocsf`]).
    pub fn format(mut self, format: Format) -> Self {
        self.format = format;
        self
    }

    /// The syslog facility, 0 to 23 (default 13, *log audit*).
    pub fn facility(mut self, facility: u8) -> Self {
        self.facility = facility;
        self
    }

    /// The HOSTNAME field (default: the machine's host name).
    pub fn hostname(mut self, hostname: impl Into<String>) -> Self {
        self.hostname = Some(hostname.into());
        self
    }

    /// The APP-NAME field (default `audit-layer`).
    pub fn app_name(mut self, app_name: impl Into<String>) -> Self {
        self.app_name = app_name.into();
        self
    }

    /// The structured data's id, `name@<private enterprise number>` (default
    /// `audit@32473`, RFC 5612's number for documentation: use your organization's).
    pub fn sd_id(mut self, sd_id: impl Into<String>) -> Self {
        self.sd_id = sd_id.into();
        self
    }

    /// The bound of each connection attempt, each batch's write, and the wait for the
    /// receiver to close at shutdown (default 10 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The bytes written after a batch before it counts as received (default 16 MiB); see
    /// [`SyslogFollower`]'s delivery.
    pub fn resend_window(mut self, bytes: u64) -> Self {
        self.resend_window = bytes;
        self
    }

    /// How long a batch may wait unconfirmed before the follower closes its connection to
    /// have the receiver confirm it (default 1 s); see [`SyslogFollower`]'s delivery.
    pub fn confirm_after(mut self, after: Duration) -> Self {
        self.confirm_after = after;
        self
    }

    /// A PEM certificate (or several) to trust besides Mozilla's roots, for `tls://`.
    pub fn root_certificate(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.root_certificates.push(pem.into());
        self
    }

    /// Checks the settings.
    pub fn build(self) -> Result<SyslogFollower, ConfigError> {
        let invalid = |reason: String| ConfigError::Sink {
            sink: "syslog",
            reason,
        };
        let tls = match self.url.split_once("://").map(|(scheme, _)| scheme) {
            Some("tcp") => None,
            Some("tls") => {
                Some(crate::tls::client_config(&self.root_certificates).map_err(invalid)?)
            }
            _ => {
                return Err(invalid(format!(
                    "`{}`: expected tcp://host:port or tls://host:port",
                    self.url
                )));
            }
        };
        let endpoint = Endpoint::parse(&self.url, tls).map_err(invalid)?;
        let header = Header {
            facility: self.facility,
            hostname: self.hostname.unwrap_or_else(host_name),
            app_name: self.app_name,
            procid: std::process::id().to_string(),
            sd_id: self.sd_id,
        };
        header.check().map_err(invalid)?;
        if self.timeout.is_zero() {
            return Err(ConfigError::Zero("syslog timeout"));
        }
        let name = format!("syslog:{}", self.url);
        Ok(SyslogFollower {
            cursor: LocalCursor::new(&name),
            name,
            endpoint,
            header,
            format: self.format,
            timeout: self.timeout,
            resend_window: self.resend_window,
            confirm_after: self.confirm_after,
            stream: None,
            in_doubt: VecDeque::new(),
            written: 0,
            buffer: Vec::new(),
            message: Vec::new(),
        })
    }
}

/// The machine's host name as RFC 5424 takes it, `-` when unknown.
fn host_name() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default();
    let name: String = name
        .trim()
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(255)
        .collect();
    if name.is_empty() {
        "-".to_owned()
    } else {
        name
    }
}

impl SyslogFollower {
    /// Encodes `lines` into one buffer of frames.
    fn encode(&mut self, trail: &str, lines: &[TrailLine]) -> Result<(), SinkError> {
        self.buffer.clear();
        for line in lines {
            let event = line.event().map_err(|error| {
                SinkError::new(format!("line {} holds no audit/1 event: {error}", line.seq))
            })?;
            self.message.clear();
            if self.format == Format::Audit {
                self.message.extend_from_slice(line.json.as_bytes());
            } else {
                self.format
                    .encode_at(&event, trail, line.seq, &mut self.message)
                    .map_err(SinkError::new)?;
            }
            write_frame(
                &mut self.buffer,
                &self.header,
                &event,
                trail,
                line.seq,
                &self.message,
            );
        }
        Ok(())
    }

    async fn send(&mut self) -> Result<(), SinkError> {
        if self.stream.is_none() {
            self.stream = Some(self.endpoint.connect(self.timeout).await?);
            self.written = 0;
        }
        let Some(stream) = self.stream.as_mut() else {
            return Err(SinkError::new("not connected"));
        };
        let write = async {
            stream.write_all(&self.buffer).await?;
            stream.flush().await
        };
        match tokio::time::timeout(self.timeout, write).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(SinkError::new(error)),
            Err(_) => Err(SinkError::new(format!(
                "no batch written within {:?}",
                self.timeout
            ))),
        }
    }

    /// Counts as received the batches the window has passed.
    fn confirm_passed(&mut self) {
        let mut received = None;
        while let Some(batch) = self.in_doubt.front() {
            if self.written - batch.end < self.resend_window {
                break;
            }
            received = self.in_doubt.pop_front();
        }
        if let Some(batch) = received {
            self.cursor.confirm(batch.seq, &batch.hash);
        }
    }

    /// Closes the connection and waits for the receiver to close its side, which it does
    /// once it has read everything: then every batch written is received. `Err` when it
    /// did not answer so (what was in doubt is then sent again).
    async fn settle(&mut self) -> Result<(), SinkError> {
        let Some(mut stream) = self.stream.take() else {
            return Ok(());
        };
        let goodbye = async {
            stream.shutdown().await?;
            let mut unread = [0_u8; 512];
            while stream.read(&mut unread).await? > 0 {}
            Ok::<_, std::io::Error>(())
        };
        let answered = tokio::time::timeout(self.timeout, goodbye).await;
        let last = self.in_doubt.pop_back();
        self.in_doubt.clear();
        match answered {
            Ok(Ok(())) => {
                if let Some(batch) = last {
                    self.cursor.confirm(batch.seq, &batch.hash);
                }
                Ok(())
            }
            Ok(Err(error)) => Err(SinkError::new(format!(
                "the receiver did not confirm what it was sent: {error}"
            ))),
            Err(_) => Err(SinkError::new(format!(
                "the receiver did not confirm what it was sent within {:?}",
                self.timeout
            ))),
        }
    }
}

impl Follower for SyslogFollower {
    fn name(&self) -> &str {
        &self.name
    }

    fn start(&mut self, trail_dir: &Path) -> Result<(), SinkError> {
        self.cursor.open(trail_dir)
    }

    fn cursor<'a>(&'a mut self, _trail: &'a str) -> BoxFuture<'a, Result<Cursor, SinkError>> {
        Box::pin(async move {
            // Called first and after each failure: what was in doubt is sent again.
            self.stream = None;
            self.in_doubt.clear();
            self.cursor.get()
        })
    }

    fn ship<'a>(
        &'a mut self,
        trail: &'a str,
        lines: &'a [TrailLine],
    ) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            let Some(last) = lines.last() else {
                return Ok(());
            };
            if self
                .in_doubt
                .front()
                .is_some_and(|batch| batch.when.elapsed() >= self.confirm_after)
            {
                self.settle().await?;
            }
            self.encode(trail, lines)?;
            if let Err(error) = self.send().await {
                self.stream = None;
                self.in_doubt.clear();
                return Err(error);
            }
            self.written += self.buffer.len() as u64;
            self.in_doubt.push_back(Written {
                seq: last.seq,
                hash: last.hash.clone(),
                end: self.written,
                when: Instant::now(),
            });
            self.confirm_passed();
            Ok(())
        })
    }

    fn close(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if let Err(error) = self.settle().await {
                tracing::warn!(target: "audit", follower = %self.name, %error, "the last lines will be sent again at the next start");
            }
        })
    }
}
