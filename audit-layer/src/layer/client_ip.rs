//! The client address, and the proxies trusted to forward it.

use std::net::{IpAddr, SocketAddr};

use http::header::{FORWARDED, HeaderName};
use http::{HeaderMap, HeaderValue};
use ipnet::IpNet;

use crate::error::ConfigError;
use crate::redact::{TRUNCATED, bound, limits};

/// Which forwarding header the trusted proxies set.
///
/// Only one is read: if proxies append to `X-Forwarded-For`, a `Forwarded` header can only
/// have come from the client, and reading it would let the client choose its own address.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2` (nginx, HAProxy, AWS ALB, most CDNs).
    #[default]
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=client, for="[2001:db8::1]:4711"`.
    Forwarded,
}

/// The networks whose connections may name the client in a forwarding header.
///
/// The peer comes from axum's `ConnectInfo<SocketAddr>` (serve with
/// `into_make_service_with_connect_info::<SocketAddr>()`), or from a plain [`SocketAddr`]
/// request extension for other servers.
///
/// A forwarding header counts only when the peer is a configured trusted proxy. The client is
/// then the rightmost address of the chain that is not itself a trusted proxy: every entry to
/// its right was appended by a proxy we trust, every entry to its left could be forged by the
/// client. The chain is read from the right, so no length or size of what a client put on
/// its left changes that. A malformed entry on that path falls back to the peer. The chain
/// as received is recorded in `source.forwarded` either way, so a forgery attempt is
/// visible: its rightmost 32 entries, after a truncation marker if there were more.
///
/// # Example
///
/// ```
/// use audit_layer::layer::TrustedProxies;
///
/// let proxies = TrustedProxies::new(["10.0.0.0/8", "192.168.1.1"]).unwrap();
/// assert!(proxies.contains("10.1.2.3".parse().unwrap()));
/// assert!(proxies.contains("::ffff:192.168.1.1".parse().unwrap()));
/// assert!(!proxies.contains("203.0.113.9".parse().unwrap()));
///
/// let err = TrustedProxies::new(["10.0.0.0/33"]).unwrap_err();
/// assert!(err.to_string().contains("10.0.0.0/33"));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    networks: Vec<IpNet>,
}

impl TrustedProxies {
    /// Parses CIDRs (`10.0.0.0/8`, `fd00::/8`) and single addresses (`192.168.1.1`).
    pub fn new<I, S>(networks: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut parsed = Vec::new();
        for text in networks {
            let text = text.as_ref().trim();
            let network = text
                .parse::<IpNet>()
                .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| ConfigError::TrustedProxy(text.to_owned()))?;
            parsed.push(network.trunc());
        }
        Ok(Self { networks: parsed })
    }

    /// Whether `ip` is in a trusted network. IPv4-mapped IPv6 addresses count as IPv4.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.networks.iter().any(|net| net.contains(&ip))
    }

    /// Whether no proxy is trusted.
    pub fn is_empty(&self) -> bool {
        self.networks.is_empty()
    }
}

/// The resolved client address and the chain as received.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct ClientAddr {
    pub(crate) ip: Option<IpAddr>,
    pub(crate) port: Option<u16>,
    pub(crate) forwarded: Option<Vec<String>>,
}

/// A `HeaderName`, not a `&str`: looked up on every request, a string would be parsed into a
/// name each time.
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// Resolves the client of a request from its peer and headers. Never fails: anything
/// unusable falls back to the peer.
///
/// The chain is read from the right, entry by entry, whatever its length or size: the
/// client is found before any entry a client could have written is looked at, and only the
/// rightmost entries are kept for `source.forwarded`.
pub(crate) fn resolve(
    peer: Option<SocketAddr>,
    headers: &HeaderMap,
    trusted: &TrustedProxies,
    header: ForwardedHeader,
) -> ClientAddr {
    let peer_only = ClientAddr {
        ip: peer.map(|p| p.ip().to_canonical()),
        port: peer.map(|p| p.port()),
        forwarded: None,
    };
    let name = match header {
        ForwardedHeader::XForwardedFor => &X_FORWARDED_FOR,
        ForwardedHeader::Forwarded => &FORWARDED,
    };
    if !headers.contains_key(name) {
        return peer_only;
    }
    // Walked while it names trusted proxies (only behind a trusted peer), kept while there
    // is room: whichever ends last ends the walk.
    let mut searching = peer.is_some_and(|p| trusted.contains(p.ip()));
    let mut client = None;
    let mut kept: Vec<String> = Vec::new();
    let mut cut = false;
    for entry in entries_from_right(headers.get_all(name).iter().rev(), header) {
        if kept.len() < limits::FORWARDED_ENTRIES {
            kept.push(sanitize(&bound(entry.text, limits::FORWARDED_ENTRY)));
        } else {
            cut = true;
        }
        if searching {
            match parse_node(entry.node) {
                Some((ip, port)) if trusted.contains(ip) => client = Some((ip, port)),
                Some(found) => {
                    client = Some(found);
                    searching = false;
                }
                // Past this point we cannot tell a proxy's entry from a forged one.
                None => {
                    client = None;
                    searching = false;
                }
            }
        }
        if !searching && cut {
            break;
        }
    }
    if cut {
        kept.truncate(limits::FORWARDED_ENTRIES - 1);
        kept.push(TRUNCATED.to_owned());
    }
    kept.reverse();
    let forwarded = Some(kept);
    match client {
        Some((ip, port)) => ClientAddr {
            ip: Some(ip),
            port,
            forwarded,
        },
        None => ClientAddr {
            forwarded,
            ..peer_only
        },
    }
}

/// One entry of a forwarding chain.
struct Entry<'a> {
    /// As received (a whole element for `Forwarded`).
    text: &'a str,
    /// Its address (`for=` of a `Forwarded` element, unquoted); empty if it has none.
    node: &'a str,
}

/// The entries of a chain, rightmost first, from its header lines given last line first.
fn entries_from_right<'a>(
    lines: impl Iterator<Item = &'a HeaderValue>,
    header: ForwardedHeader,
) -> impl Iterator<Item = Entry<'a>> {
    lines.flat_map(move |line| {
        let entries: Box<dyn Iterator<Item = Entry<'a>>> = match line.to_str() {
            // Not visible ASCII: record that something was there, trust none of it.
            Err(_) => Box::new(std::iter::once(Entry {
                text: "[invalid]",
                node: "",
            })),
            Ok(text) => match header {
                ForwardedHeader::XForwardedFor => Box::new(text.rsplit(',').map(|entry| {
                    let entry = entry.trim();
                    Entry {
                        text: entry,
                        node: entry,
                    }
                })),
                // Quotes are only known from the left: a line's elements are split first.
                ForwardedHeader::Forwarded => {
                    let elements: Vec<&str> = split_unquoted(text, ',').map(str::trim).collect();
                    Box::new(elements.into_iter().rev().map(|element| Entry {
                        text: element,
                        node: forwarded_for(element).unwrap_or(""),
                    }))
                }
            },
        };
        entries
    })
}

/// Replaces control characters so a recorded entry is plain text.
fn sanitize(text: &str) -> String {
    if text.chars().any(char::is_control) {
        text.chars()
            .map(|c| if c.is_control() { '?' } else { c })
            .collect()
    } else {
        text.to_owned()
    }
}

/// Splits at `separator` outside double quotes.
fn split_unquoted(text: &str, separator: char) -> impl Iterator<Item = &str> {
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let current = rest?;
        let mut quoted = false;
        let mut escaped = false;
        for (i, c) in current.char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' if quoted => escaped = true,
                '"' => quoted = !quoted,
                c if c == separator && !quoted => {
                    rest = Some(&current[i + c.len_utf8()..]);
                    return Some(&current[..i]);
                }
                _ => {}
            }
        }
        rest = None;
        Some(current)
    })
}

/// The `for=` value of one `Forwarded` element, unquoted.
fn forwarded_for(element: &str) -> Option<&str> {
    split_unquoted(element, ';').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        key.trim().eq_ignore_ascii_case("for").then(|| {
            let value = value.trim();
            value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(value)
        })
    })
}

/// Parses `1.2.3.4`, `1.2.3.4:80`, `2001:db8::1`, `[2001:db8::1]` or `[2001:db8::1]:80`.
fn parse_node(node: &str) -> Option<(IpAddr, Option<u16>)> {
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Some((ip.to_canonical(), None));
    }
    if let Ok(socket) = node.parse::<SocketAddr>() {
        return Some((socket.ip().to_canonical(), Some(socket.port())));
    }
    let inner = node.strip_prefix('[')?.strip_suffix(']')?;
    inner
        .parse::<std::net::Ipv6Addr>()
        .ok()
        .map(|ip| (IpAddr::V6(ip).to_canonical(), None))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    fn peer(text: &str) -> Option<SocketAddr> {
        Some(text.parse().unwrap())
    }

    fn proxies() -> TrustedProxies {
        TrustedProxies::new(["10.0.0.0/8", "fd00::/8"]).unwrap()
    }

    #[test]
    fn untrusted_peer_keeps_its_address_and_records_the_forgery() {
        let got = resolve(
            peer("203.0.113.7:5555"),
            &headers(&[("x-forwarded-for", "1.1.1.1")]),
            &proxies(),
            ForwardedHeader::XForwardedFor,
        );
        assert_eq!(got.ip, Some("203.0.113.7".parse().unwrap()));
        assert_eq!(got.port, Some(5555));
        assert_eq!(got.forwarded, Some(vec!["1.1.1.1".to_owned()]));
    }

    #[test]
    fn rightmost_untrusted_entry_is_the_client() {
        let got = resolve(
            peer("10.0.0.2:80"),
            &headers(&[("x-forwarded-for", "6.6.6.6, 198.51.100.4, 10.0.0.1")]),
            &proxies(),
            ForwardedHeader::XForwardedFor,
        );
        assert_eq!(got.ip, Some("198.51.100.4".parse().unwrap()));
        assert_eq!(got.port, None);
    }

    #[test]
    fn several_header_lines_form_one_chain() {
        let got = resolve(
            peer("10.0.0.2:80"),
            &headers(&[
                ("x-forwarded-for", "198.51.100.4"),
                ("x-forwarded-for", "10.0.0.1"),
            ]),
            &proxies(),
            ForwardedHeader::XForwardedFor,
        );
        assert_eq!(got.ip, Some("198.51.100.4".parse().unwrap()));
        assert_eq!(got.forwarded.unwrap().len(), 2);
    }

    #[test]
    fn forwarded_header_with_ports_and_ipv6() {
        let got = resolve(
            peer("[fd00::1]:443"),
            &headers(&[(
                "forwarded",
                r#"for=192.0.2.60;proto=http, for="[2001:db8:cafe::17]:4711", For=10.1.1.1"#,
            )]),
            &proxies(),
            ForwardedHeader::Forwarded,
        );
        assert_eq!(got.ip, Some("2001:db8:cafe::17".parse().unwrap()));
        assert_eq!(got.port, Some(4711));
        assert_eq!(
            got.forwarded.unwrap(),
            vec![
                "for=192.0.2.60;proto=http",
                r#"for="[2001:db8:cafe::17]:4711""#,
                "For=10.1.1.1"
            ]
        );
    }

    #[test]
    fn the_other_header_is_ignored() {
        let got = resolve(
            peer("10.0.0.2:80"),
            &headers(&[("forwarded", "for=1.1.1.1")]),
            &proxies(),
            ForwardedHeader::XForwardedFor,
        );
        assert_eq!(got.ip, Some("10.0.0.2".parse().unwrap()));
        assert_eq!(got.forwarded, None);
    }

    #[test]
    fn malformed_entries_fall_back_to_the_peer() {
        for value in ["not-an-ip", "1.2.3.4, garbage", "", "1.2.3.999", "unknown"] {
            let got = resolve(
                peer("10.0.0.2:80"),
                &headers(&[("x-forwarded-for", value)]),
                &proxies(),
                ForwardedHeader::XForwardedFor,
            );
            assert_eq!(got.ip, Some("10.0.0.2".parse().unwrap()), "{value}");
        }
        for value in ["for=unknown", "for=_hidden", "proto=https", "for=\"[::1"] {
            let got = resolve(
                peer("10.0.0.2:80"),
                &headers(&[("forwarded", value)]),
                &proxies(),
                ForwardedHeader::Forwarded,
            );
            assert_eq!(got.ip, Some("10.0.0.2".parse().unwrap()), "{value}");
        }
    }

    #[test]
    fn garbage_left_of_the_client_does_not_matter() {
        let got = resolve(
            peer("10.0.0.2:80"),
            &headers(&[("x-forwarded-for", "garbage, 198.51.100.4")]),
            &proxies(),
            ForwardedHeader::XForwardedFor,
        );
        assert_eq!(got.ip, Some("198.51.100.4".parse().unwrap()));
    }

    #[test]
    fn a_long_chain_is_read_from_the_right_and_kept_from_the_right() {
        let long = (0..100)
            .map(|i| format!("198.51.100.{i}"))
            .collect::<Vec<_>>()
            .join(",");
        let got = resolve(
            peer("10.0.0.2:80"),
            &headers(&[("x-forwarded-for", &long)]),
            &proxies(),
            ForwardedHeader::XForwardedFor,
        );
        assert_eq!(got.ip, Some("198.51.100.99".parse().unwrap()));
        let recorded = got.forwarded.unwrap();
        assert_eq!(recorded.len(), 32);
        assert_eq!(recorded[0], TRUNCATED);
        assert_eq!(recorded[1], "198.51.100.69");
        assert_eq!(recorded[31], "198.51.100.99");

        let wide = format!("{}, 198.51.100.4", "x".repeat(500));
        let got = resolve(
            peer("10.0.0.2:80"),
            &headers(&[("x-forwarded-for", &wide)]),
            &proxies(),
            ForwardedHeader::XForwardedFor,
        );
        assert_eq!(got.ip, Some("198.51.100.4".parse().unwrap()));
        let recorded = got.forwarded.unwrap();
        assert!(recorded[0].len() <= 64);
        assert_eq!(recorded[1], "198.51.100.4");
    }

    #[test]
    fn forged_entries_of_any_number_or_size_left_of_the_client_change_nothing() {
        // The campaign's cases: 32 forged entries, one of 33 KiB, and thousands, each on
        // one line or as lines of their own, before the real client and a trusted proxy.
        let cases = [
            vec!["6.6.6.6".to_owned(); 32].join(", "),
            "6".repeat(33 * 1024),
            vec!["6.6.6.6".to_owned(); 5_000].join(","),
        ];
        for forged in cases {
            for split_lines in [false, true] {
                let mut map = HeaderMap::new();
                if split_lines {
                    map.append("x-forwarded-for", HeaderValue::from_str(&forged).unwrap());
                    map.append("x-forwarded-for", HeaderValue::from_static("198.51.100.4"));
                    map.append("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
                } else {
                    let value = format!("{forged}, 198.51.100.4, 10.0.0.1");
                    map.append("x-forwarded-for", HeaderValue::from_str(&value).unwrap());
                }
                let got = resolve(
                    peer("10.0.0.2:80"),
                    &map,
                    &proxies(),
                    ForwardedHeader::XForwardedFor,
                );
                assert_eq!(got.ip, Some("198.51.100.4".parse().unwrap()));
                let recorded = got.forwarded.unwrap();
                assert!(recorded.len() <= 32);
                assert_eq!(recorded[recorded.len() - 2..], ["198.51.100.4", "10.0.0.1"]);
            }
        }
    }

    #[test]
    fn all_trusted_chain_names_the_leftmost() {
        let got = resolve(
            peer("10.0.0.2:80"),
            &headers(&[("x-forwarded-for", "10.9.9.9, 10.0.0.1")]),
            &proxies(),
            ForwardedHeader::XForwardedFor,
        );
        assert_eq!(got.ip, Some("10.9.9.9".parse().unwrap()));
    }

    #[test]
    fn no_peer_no_address() {
        let got = resolve(
            None,
            &headers(&[("x-forwarded-for", "1.1.1.1")]),
            &proxies(),
            ForwardedHeader::XForwardedFor,
        );
        assert_eq!(got.ip, None);
    }
}
