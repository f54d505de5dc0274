//! Failed logins across many accounts from one place: credential stuffing (many usernames
//! fast, from one IP) and password spraying (a few tries per account, slowly, from one
//! network). One count serves both; they differ in their key's width, window and limits.

use std::borrow::Cow;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use super::burst::{Bursts, Fired};
use super::{
    CREDENTIAL_STUFFING, Detector, PASSWORD_SPRAYING, Timing, burst_alert, is_failure_of,
    timing_setters, username,
};
use crate::event::AuditEvent;

/// Failed logins for many distinct usernames from one source IP within a short window (10
/// within 60 seconds by default): one [`CREDENTIAL_STUFFING`] alert per burst, keyed
/// `ip:<address>`.
///
/// Failed logins are those [`BruteForce`](super::BruteForce) counts, and usernames are
/// compared the same way (case-insensitively, as hashes). A username tried many times counts
/// once here (and towards brute force there).
///
/// ```
/// use std::time::Duration;
/// use audit_layer::detect::CredentialStuffing;
///
/// let detector = CredentialStuffing::logins()
///     .distinct_usernames(10)
///     .within(Duration::from_secs(60));
/// ```
#[derive(Clone, Debug)]
pub struct CredentialStuffing(Accounts);

impl CredentialStuffing {
    /// Counts the failed logins that [`AuditContext::login_failed`](crate::AuditContext::login_failed)
    /// records.
    pub fn logins() -> Self {
        Self::new(crate::auth::LOGIN)
    }

    /// Counts failures of `action`.
    pub fn new(action: impl Into<Cow<'static, str>>) -> Self {
        Self(Accounts::new(
            action.into(),
            "credential_stuffing",
            10,
            Duration::from_secs(60),
            (32, 128),
        ))
    }

    /// Distinct usernames failing from one IP that raise an alert; 0 turns it off.
    pub fn distinct_usernames(mut self, usernames: u32) -> Self {
        self.0.bursts.set_threshold(usernames);
        self
    }

    timing_setters!("a source IP", 0.timing);

    /// The most source IPs tracked at once (100,000 by default).
    pub fn max_tracked(mut self, keys: usize) -> Self {
        self.0.bursts.max_tracked = keys.max(1);
        self
    }
}

impl Detector for CredentialStuffing {
    fn name(&self) -> &str {
        "credential_stuffing"
    }

    fn observe(&mut self, event: &AuditEvent, alerts: &mut Vec<AuditEvent>) {
        self.0.observe(event, CREDENTIAL_STUFFING, alerts);
    }
}

/// One or two failed logins each across many accounts from one network over hours: one
/// [`PASSWORD_SPRAYING`] alert per burst, keyed `network:<address>/<prefix>`.
///
/// By default, 20 accounts within an hour, each failing at most twice, from one IPv4 /24 or
/// IPv6 /64 (sprayers rotate addresses within a range; [`prefix`](Self::prefix) with 32 and
/// 128 counts per address). Accounts tried more often than that are left out: that is
/// brute force, which [`BruteForce`](super::BruteForce) counts.
///
/// ```
/// use std::time::Duration;
/// use audit_layer::detect::PasswordSpraying;
///
/// let detector = PasswordSpraying::logins()
///     .accounts(20)
///     .per_account(2)
///     .within(Duration::from_secs(3600));
/// ```
#[derive(Clone, Debug)]
pub struct PasswordSpraying(Accounts);

impl PasswordSpraying {
    /// Counts the failed logins that [`AuditContext::login_failed`](crate::AuditContext::login_failed)
    /// records.
    pub fn logins() -> Self {
        Self::new(crate::auth::LOGIN)
    }

    /// Counts failures of `action`.
    pub fn new(action: impl Into<Cow<'static, str>>) -> Self {
        let mut accounts = Accounts::new(
            action.into(),
            "password_spraying",
            20,
            Duration::from_secs(3600),
            (24, 64),
        );
        accounts.bursts.per_item = Some(2);
        Self(accounts)
    }

    /// Accounts failing from one network that raise an alert; 0 turns it off.
    pub fn accounts(mut self, accounts: u32) -> Self {
        self.0.bursts.set_threshold(accounts);
        self
    }

    /// The most failures one account may have to count as sprayed (2 by default).
    pub fn per_account(mut self, failures: u32) -> Self {
        self.0.bursts.per_item = Some(failures.max(1));
        self
    }

    /// The network a key covers: IPv4 and IPv6 prefix lengths (24 and 64 by default; at
    /// most 32 and 128).
    pub fn prefix(mut self, v4: u8, v6: u8) -> Self {
        self.0.prefix = (v4.min(32), v6.min(128));
        self
    }

    timing_setters!("a network", 0.timing);

    /// The most networks tracked at once (100,000 by default).
    pub fn max_tracked(mut self, keys: usize) -> Self {
        self.0.bursts.max_tracked = keys.max(1);
        self
    }
}

impl Detector for PasswordSpraying {
    fn name(&self) -> &str {
        "password_spraying"
    }

    fn observe(&mut self, event: &AuditEvent, alerts: &mut Vec<AuditEvent>) {
        self.0.observe(event, PASSWORD_SPRAYING, alerts);
    }
}

/// Distinct accounts failing from one network.
#[derive(Clone, Debug)]
struct Accounts {
    action: Cow<'static, str>,
    rule: &'static str,
    timing: Timing,
    /// IPv4 and IPv6 prefix lengths of a key.
    prefix: (u8, u8),
    bursts: Bursts<IpAddr>,
    hasher: RandomState,
}

impl Accounts {
    fn new(
        action: Cow<'static, str>,
        rule: &'static str,
        threshold: u32,
        window: Duration,
        prefix: (u8, u8),
    ) -> Self {
        Self {
            action,
            rule,
            timing: Timing::new(window),
            prefix,
            bursts: Bursts::new(rule, threshold),
            hasher: RandomState::new(),
        }
    }

    fn observe(&mut self, event: &AuditEvent, action: &'static str, alerts: &mut Vec<AuditEvent>) {
        if !is_failure_of(event, &self.action) {
            return;
        }
        let (Some(ip), Some(name)) = (event.source.as_ref().and_then(|s| s.ip), username(event))
        else {
            return;
        };
        let network = network(ip, self.prefix);
        let item = self.hasher.hash_one(name.to_lowercase());
        let at = event.time.unix_micros();
        let span = self.timing.span();
        if let Some(fired) = self.bursts.hit(network, Some(item), at, span, event.id) {
            alerts.push(self.alert(event, action, network, fired));
        }
    }

    fn alert(
        &self,
        event: &AuditEvent,
        action: &'static str,
        network: IpAddr,
        fired: Fired,
    ) -> AuditEvent {
        let prefix = match network {
            IpAddr::V4(_) => self.prefix.0,
            IpAddr::V6(_) => self.prefix.1,
        };
        let whole = prefix == if network.is_ipv4() { 32 } else { 128 };
        let (key, from) = if whole {
            (format!("ip:{network}"), format!("source IP {network}"))
        } else {
            let cidr = format!("{network}/{prefix}");
            (format!("network:{cidr}"), format!("network {cidr}"))
        };
        let reason = format!(
            "failed `{}` for {} distinct usernames from {from} within {} s",
            self.action,
            fired.count,
            self.timing.window.as_secs_f64()
        );
        burst_alert(
            event,
            action,
            self.rule,
            key,
            fired,
            self.timing.window,
            reason,
        )
        .with_detail("source_ip", network.to_string())
    }
}

/// `ip` with all but its first `prefix` bits cleared.
fn network(ip: IpAddr, (v4, v6): (u8, u8)) -> IpAddr {
    match ip {
        IpAddr::V4(ip) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(v4)).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(ip) & mask))
        }
        IpAddr::V6(ip) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(v6)).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(ip) & mask))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_keep_their_prefix() {
        let ip = |text: &str| text.parse::<IpAddr>().expect("ip");
        assert_eq!(network(ip("203.0.113.77"), (24, 64)), ip("203.0.113.0"));
        assert_eq!(network(ip("203.0.113.77"), (32, 128)), ip("203.0.113.77"));
        assert_eq!(network(ip("203.0.113.77"), (0, 0)), ip("0.0.0.0"));
        assert_eq!(
            network(ip("2001:db8:1:2:3::9"), (24, 64)),
            ip("2001:db8:1:2::")
        );
    }
}
