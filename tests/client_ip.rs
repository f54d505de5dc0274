//! The recorded client address: forwarding headers count only from trusted proxies.

mod common;

use std::net::SocketAddr;

use audit_layer::{AuditEvent, AuditTrail};

use audit_layer::layer::ForwardedHeader;

use audit_layer::sink::MemorySink;

use audit_layer::event::Source;
use axum::body::Body;
use axum::{Router, routing::get};
use common::{memory_trail, only_event, raw_http, request_from};
use tower::ServiceExt;

fn app(audit: &AuditTrail) -> Router {
    Router::new()
        .route("/hello", get(|| async { "hello" }))
        .layer(audit.layer())
}

/// Serves `app` on a loopback port with connection info, as a real deployment does.
async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    addr
}

async fn one_request(
    audit: AuditTrail,
    sink: &MemorySink,
    peer: &str,
    headers: &[(&str, &str)],
) -> AuditEvent {
    let mut request = request_from(peer, "GET", "/hello");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    app(&audit)
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    audit.shutdown().await.unwrap();
    only_event(sink)
}

fn source(event: &AuditEvent) -> &Source {
    event.source.as_ref().unwrap()
}

#[tokio::test]
async fn a_forged_header_from_an_untrusted_peer_over_tcp_is_ignored() {
    let (builder, sink) = memory_trail();
    // Trusting some other network must not make loopback trusted.
    let audit = builder.trusted_proxies(["10.0.0.0/8"]).build().unwrap();
    let addr = serve(app(&audit)).await;
    let response = raw_http(
        addr,
        "GET /hello HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 1.2.3.4\r\n\
         Forwarded: for=5.6.7.8\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    audit.shutdown().await.unwrap();
    let event = only_event(&sink);
    let source = source(&event);
    assert_eq!(source.ip, Some("127.0.0.1".parse().unwrap()));
    assert!(source.port.is_some_and(|p| p != addr.port()));
    assert_eq!(
        source.forwarded.as_deref(),
        Some(&["1.2.3.4".to_owned()][..])
    );
}

#[tokio::test]
async fn one_trusted_proxy_over_tcp_names_the_client() {
    let (builder, sink) = memory_trail();
    let audit = builder.trusted_proxies(["127.0.0.1/32"]).build().unwrap();
    let addr = serve(app(&audit)).await;
    raw_http(
        addr,
        "GET /hello HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 203.0.113.9\r\nConnection: close\r\n\r\n",
    )
    .await;
    audit.shutdown().await.unwrap();
    let event = only_event(&sink);
    assert_eq!(source(&event).ip, Some("203.0.113.9".parse().unwrap()));
    assert_eq!(source(&event).port, None);
}

#[tokio::test]
async fn two_trusted_proxies_with_x_forwarded_for() {
    let (builder, sink) = memory_trail();
    let audit = builder.trusted_proxies(["10.0.0.0/8"]).build().unwrap();
    // client -> 10.0.0.1 (edge) -> 10.0.0.2 (peer); the client forged a leading entry.
    let event = one_request(
        audit,
        &sink,
        "10.0.0.2:443",
        &[("x-forwarded-for", "6.6.6.6, 203.0.113.9, 10.0.0.1")],
    )
    .await;
    assert_eq!(source(&event).ip, Some("203.0.113.9".parse().unwrap()));
    assert_eq!(
        source(&event).forwarded.as_deref().unwrap(),
        ["6.6.6.6", "203.0.113.9", "10.0.0.1"]
    );
}

#[tokio::test]
async fn one_and_two_trusted_proxies_with_forwarded() {
    for (value, expected_ip, expected_port) in [
        (
            r#"for="[2001:db8::7]:4711";proto=https"#,
            "2001:db8::7",
            Some(4711),
        ),
        (
            "for=198.51.100.3, for=10.0.0.1;by=10.0.0.2",
            "198.51.100.3",
            None,
        ),
    ] {
        let (builder, sink) = memory_trail();
        let audit = builder
            .trusted_proxies(["10.0.0.0/8"])
            .forwarded_header(ForwardedHeader::Forwarded)
            .build()
            .unwrap();
        let event = one_request(audit, &sink, "10.0.0.2:443", &[("forwarded", value)]).await;
        assert_eq!(
            source(&event).ip,
            Some(expected_ip.parse().unwrap()),
            "{value}"
        );
        assert_eq!(source(&event).port, expected_port, "{value}");
    }
}

#[tokio::test]
async fn with_forwarded_configured_x_forwarded_for_is_not_read() {
    let (builder, sink) = memory_trail();
    let audit = builder
        .trusted_proxies(["10.0.0.0/8"])
        .forwarded_header(ForwardedHeader::Forwarded)
        .build()
        .unwrap();
    let event = one_request(
        audit,
        &sink,
        "10.0.0.2:443",
        &[("x-forwarded-for", "1.2.3.4")],
    )
    .await;
    assert_eq!(source(&event).ip, Some("10.0.0.2".parse().unwrap()));
}

#[tokio::test]
async fn malformed_headers_fall_back_to_the_peer() {
    let cases: Vec<(&str, String)> = vec![
        ("x-forwarded-for", "definitely not an address".into()),
        ("x-forwarded-for", "203.0.113.9, 300.1.1.1".into()),
        ("x-forwarded-for", ",,,".into()),
        ("x-forwarded-for", format!("203.0.113.{}", "9".repeat(100))),
    ];
    for (name, value) in cases {
        let (builder, sink) = memory_trail();
        let audit = builder.trusted_proxies(["10.0.0.0/8"]).build().unwrap();
        let event = one_request(audit, &sink, "10.0.0.2:443", &[(name, &value)]).await;
        assert_eq!(
            source(&event).ip,
            Some("10.0.0.2".parse().unwrap()),
            "{value}"
        );
        assert_eq!(event.status(), Some(200));
        let forwarded = source(&event).forwarded.as_ref().unwrap();
        assert!(forwarded.len() <= 32);
        assert!(forwarded.iter().all(|entry| entry.len() <= 64));
    }
}

#[tokio::test]
async fn a_non_ascii_header_is_recorded_as_invalid_and_ignored() {
    let (builder, sink) = memory_trail();
    let audit = builder.trusted_proxies(["10.0.0.0/8"]).build().unwrap();
    let request = request_from("10.0.0.2:443", "GET", "/hello")
        .header(
            "x-forwarded-for",
            http::HeaderValue::from_bytes(b"203.0.113.9\xff").unwrap(),
        )
        .body(Body::empty())
        .unwrap();
    app(&audit).oneshot(request).await.unwrap();
    audit.shutdown().await.unwrap();
    let event = only_event(&sink);
    assert_eq!(source(&event).ip, Some("10.0.0.2".parse().unwrap()));
    assert_eq!(source(&event).forwarded.as_deref().unwrap(), ["[invalid]"]);
}

/// A chain as a trusted proxy delivers it: what the client sent, the client's address the
/// first proxy appended, then the proxies'.
fn delivered_chain(forged: &[String], client: std::net::Ipv4Addr, proxies: usize) -> String {
    let mut entries: Vec<String> = forged.to_vec();
    entries.push(client.to_string());
    entries.extend((0..proxies).map(|i| format!("10.0.{i}.1")));
    entries.join(", ")
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// Whatever a client puts on the left (any number of entries of any size, any visible
    /// text), the client recorded is the rightmost entry that is not a trusted proxy, and
    /// `source.forwarded` keeps the rightmost entries.
    #[test]
    fn the_rightmost_untrusted_entry_is_the_client_for_any_chain(
        forged in proptest::collection::vec("[ -~]{0,300}", 0..400),
        client in (11u8..=223, proptest::prelude::any::<u8>(), proptest::prelude::any::<u8>(), 1u8..=254),
        proxies in 0usize..6,
    ) {
        let client = std::net::Ipv4Addr::new(client.0, client.1, client.2, client.3);
        let chain = delivered_chain(&forged, client, proxies);
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let event = runtime.block_on(async {
            let (builder, sink) = memory_trail();
            let audit = builder.trusted_proxies(["10.0.0.0/8"]).build().unwrap();
            one_request(audit, &sink, "10.0.0.2:443", &[("x-forwarded-for", &chain)]).await
        });
        let source = source(&event);
        proptest::prop_assert_eq!(source.ip, Some(std::net::IpAddr::V4(client)));
        let recorded = source.forwarded.as_ref().unwrap();
        proptest::prop_assert!(recorded.len() <= 32);
        proptest::prop_assert!(recorded.iter().all(|entry| entry.len() <= 64));
        let tail: Vec<String> = std::iter::once(client.to_string())
            .chain((0..proxies).map(|i| format!("10.0.{i}.1")))
            .collect();
        proptest::prop_assert_eq!(recorded[recorded.len() - tail.len()..].to_vec(), tail);
    }
}
