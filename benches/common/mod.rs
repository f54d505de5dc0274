//! What the in-process benches share: the request they send, as axum's server would hand it
//! to the router (with the connection's peer address).

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::ConnectInfo;
use http::{Method, Request};

/// A request with a user agent, from a client at 192.0.2.10.
pub(crate) fn request(method: Method, uri: &str) -> Request<Body> {
    let peer: SocketAddr = "192.0.2.10:50000".parse().expect("address");
    Request::builder()
        .method(method)
        .uri(uri)
        .header("user-agent", "bench/1.0")
        .extension(ConnectInfo(peer))
        .body(Body::empty())
        .expect("request")
}
