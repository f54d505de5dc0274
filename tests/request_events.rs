//! One event per request, with every `audit/1` field, for each way a request can end.

mod common;

use std::convert::Infallible;
use std::time::{Duration, SystemTime};

use audit_layer::{Actor, AuditContext, AuditTrail, Category, Outcome, RequestId};

use audit_layer::sink::MemorySink;
use axum::body::Body;
use axum::extract::Path;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use common::{get as get_request, memory_trail, only_event, request_from};
use http::{Request, Response, StatusCode};
use tower::{ServiceBuilder, ServiceExt};

fn app(audit: &AuditTrail) -> Router {
    Router::new()
        .route("/hello", get(|| async { "hello" }))
        .route(
            "/users/{id}",
            post(
                |Path(id): Path<u32>, Json(body): Json<serde_json::Value>| async move {
                    (
                        StatusCode::CREATED,
                        Json(serde_json::json!({"id": id, "body": body})),
                    )
                },
            ),
        )
        .route("/forbidden", get(|| async { StatusCode::FORBIDDEN }))
        .route("/unauthorized", get(|| async { StatusCode::UNAUTHORIZED }))
        .route(
            "/broken",
            get(|| async { StatusCode::INTERNAL_SERVER_ERROR }),
        )
        .route(
            "/panic",
            get(|| async {
                if true {
                    panic!("handler exploded");
                }
                "unreachable"
            }),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                "late"
            }),
        )
        .layer(audit.layer())
}

#[tokio::test]
async fn get_records_every_field() {
    let (builder, sink) = memory_trail();
    let audit = builder.build().unwrap();
    let before = SystemTime::now();
    let request = request_from("192.0.2.10:50000", "GET", "/hello?page=2&token=abc")
        .header("user-agent", "curl/8.0")
        .body(Body::empty())
        .unwrap();
    let response = app(&audit).oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let header_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    audit.flush().await.unwrap();

    let event = only_event(&sink);
    assert_eq!(event.schema, "audit/1");
    assert_eq!(event.id.get_version_num(), 7);
    let time = event.time.as_system_time();
    assert!(time >= before - Duration::from_millis(1) && time <= SystemTime::now());
    assert_eq!(event.category, Category::Request);
    assert_eq!(event.action, "http.request");
    assert_eq!(event.outcome, Outcome::Success);
    assert_eq!(event.actor, Actor::anonymous());

    let json: serde_json::Value = serde_json::to_value(&event).unwrap();
    let source = &json["source"];
    assert_eq!(source["ip"], "192.0.2.10");
    assert_eq!(source["port"], 50000);
    assert_eq!(source["user_agent"], "curl/8.0");
    assert!(source.get("forwarded").is_none());
    let request = &json["request"];
    assert_eq!(request["id"], header_id.as_str());
    assert_eq!(request["method"], "GET");
    assert_eq!(request["path"], "/hello");
    assert_eq!(request["route"], "/hello");
    assert_eq!(request["query"], "page=2&token=[REDACTED]");
    assert_eq!(json["response"]["status"], 200);
    assert!(json["response"]["duration_us"].as_u64().is_some());

    // Absent optional fields are omitted, never null.
    let text = serde_json::to_string(&event).unwrap();
    assert!(!text.contains("null"), "{text}");
    for absent in ["target", "reason", "labels", "details"] {
        assert!(
            json.get(absent).is_none(),
            "{absent} should be absent: {text}"
        );
    }
    // RFC 3339 UTC with microseconds.
    let time_text = json["time"].as_str().unwrap();
    assert_eq!(
        time_text.len(),
        "2026-11-22T17:54:18.123456Z".len(),
        "{time_text}"
    );
    assert!(time_text.ends_with('Z'));
    audit.shutdown().await.unwrap();
}

#[tokio::test]
async fn post_records_method_route_status_and_outer_actor() {
    let (builder, sink) = memory_trail();
    let audit = builder.build().unwrap();
    let alice = Actor::user("1").with_name("alice").with_role("admin");
    // An auth layer outside the audit layer puts the actor in the request extensions.
    let app = app(&audit);
    let request = request_from("192.0.2.10:50000", "POST", "/users/7")
        .header("content-type", "application/json")
        .extension(alice.clone())
        .body(Body::from(r#"{"name":"bob","password":"hunter2"}"#))
        .unwrap();
    let response = app.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    audit.flush().await.unwrap();

    let event = only_event(&sink);
    let request = event.request.as_ref().unwrap();
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, "/users/7");
    assert_eq!(request.route.as_deref(), Some("/users/{id}"));
    assert_eq!(event.status(), Some(201));
    assert_eq!(event.outcome, Outcome::Success);
    assert_eq!(event.actor, alice);
    // Bodies are not recorded by the layer.
    assert!(!serde_json::to_string(&event).unwrap().contains("hunter2"));
    audit.shutdown().await.unwrap();
}

#[tokio::test]
async fn outcomes_follow_the_status() {
    let (builder, sink) = memory_trail();
    let audit = builder.build().unwrap();
    let app = app(&audit);
    for (path, status, outcome) in [
        ("/forbidden", 403, Outcome::Denied),
        ("/unauthorized", 401, Outcome::Denied),
        ("/broken", 500, Outcome::Error),
        ("/no-such-route", 404, Outcome::Failure),
    ] {
        let response = app.clone().oneshot(get_request(path)).await.unwrap();
        assert_eq!(response.status().as_u16(), status);
        audit.flush().await.unwrap();
        let event = only_event(&sink);
        sink.take();
        assert_eq!(event.status(), Some(status), "{path}");
        assert_eq!(event.outcome, outcome, "{path}");
        assert_eq!(event.request.as_ref().unwrap().path, path);
    }
    audit.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_panic_is_answered_500_recorded_and_the_service_keeps_serving() {
    let (builder, sink) = memory_trail();
    let audit = builder.build().unwrap();
    let app = app(&audit);
    let response = app.clone().oneshot(get_request("/panic")).await.unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(response.headers().contains_key("x-request-id"));
    let response = app.oneshot(get_request("/hello")).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    audit.flush().await.unwrap();

    let events = sink.request_events();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].outcome, Outcome::Error);
    assert_eq!(events[0].status(), Some(500));
    assert_eq!(events[0].reason.as_deref(), Some("panic: handler exploded"));
    assert_eq!(events[1].outcome, Outcome::Success);
    audit.shutdown().await.unwrap();
}

#[tokio::test]
async fn secrets_quoted_by_a_panic_or_a_service_error_are_redacted_from_the_reason() {
    let (builder, sink) = memory_trail();
    let audit = builder.build().unwrap();
    let app = Router::new()
        .route(
            "/panic",
            get(|| async {
                if true {
                    panic!(
                        "error sending request for url (https://api.example/v1?api_key=KEY-SECRET): \
                         Login {{ user: \"bob\", password: \"PASSWORD-SECRET\" }}"
                    );
                }
                "unreachable"
            }),
        )
        .layer(audit.layer());
    app.oneshot(get_request("/panic")).await.unwrap();
    // A tower service whose error quotes a connection string.
    let failing = tower::service_fn(|_request: http::Request<Body>| async {
        Err::<http::Response<Body>, _>("connect to postgres://app:DB-SECRET@db/app refused")
    });
    let result = ServiceBuilder::new()
        .layer(audit.layer())
        .service(failing)
        .oneshot(get_request("/x"))
        .await;
    assert!(result.is_err());
    audit.flush().await.unwrap();

    let reasons: Vec<_> = sink
        .request_events()
        .into_iter()
        .map(|event| event.reason.unwrap())
        .collect();
    assert_eq!(
        reasons,
        [
            "panic: error sending request for url (https://api.example/v1?api_key=[REDACTED]): \
             Login { user: \"bob\", password: \"[REDACTED]\" }",
            "connect to postgres://app:[REDACTED]@db/app refused",
        ]
    );
    audit.shutdown().await.unwrap();
}

#[tokio::test]
async fn catch_panic_inside_the_layer_answers_first() {
    let (builder, sink) = memory_trail();
    let audit = builder.build().unwrap();
    let app = Router::new()
        .route(
            "/panic",
            get(|| async {
                if true {
                    panic!("boom");
                }
                "unreachable"
            }),
        )
        .layer(
            ServiceBuilder::new()
                .layer(audit.layer())
                .layer(tower_http::catch_panic::CatchPanicLayer::new()),
        );
    let response = app.oneshot(get_request("/panic")).await.unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    audit.flush().await.unwrap();
    let event = only_event(&sink);
    assert_eq!(event.outcome, Outcome::Error);
    assert_eq!(event.status(), Some(500));
    audit.shutdown().await.unwrap();
}

#[tokio::test]
async fn panics_can_be_left_to_unwind_and_are_still_recorded() {
    let (builder, sink) = memory_trail();
    let audit = builder.catch_panics(false).build().unwrap();
    let app = app(&audit);
    let outcome = tokio::spawn(app.oneshot(get_request("/panic"))).await;
    assert!(outcome.unwrap_err().is_panic());
    audit.flush().await.unwrap();
    let event = only_event(&sink);
    assert_eq!(event.outcome, Outcome::Error);
    assert_eq!(event.reason.as_deref(), Some("panic: handler exploded"));
    audit.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_dropped_request_is_recorded_as_cancelled() {
    let (builder, sink) = memory_trail();
    let audit = builder.build().unwrap();
    let app = app(&audit);
    let result = tokio::time::timeout(
        Duration::from_millis(50),
        app.clone().oneshot(get_request("/slow")),
    )
    .await;
    assert!(result.is_err(), "the request should time out");
    audit.flush().await.unwrap();
    let event = only_event(&sink);
    assert_eq!(event.outcome, Outcome::Cancelled);
    assert_eq!(event.status(), None);
    assert!(event.response.as_ref().unwrap().duration_us >= 40_000);
    audit.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_timeout_layer_outside_gives_a_cancelled_event() {
    let (builder, sink) = memory_trail();
    let audit = builder.build().unwrap();
    #[allow(deprecated)]
    let timeout = tower_http::timeout::TimeoutLayer::with_status_code(
        StatusCode::REQUEST_TIMEOUT,
        Duration::from_millis(50),
    );
    let app = app(&audit).layer(timeout);
    let response = app.oneshot(get_request("/slow")).await.unwrap();
    assert_eq!(response.status(), StatusCode::REQUEST_TIMEOUT);
    audit.flush().await.unwrap();
    assert_eq!(only_event(&sink).outcome, Outcome::Cancelled);
    audit.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_service_error_is_recorded_with_its_text() {
    let (builder, sink) = memory_trail();
    let audit = builder.build().unwrap();
    let service =
        ServiceBuilder::new()
            .layer(audit.layer())
            .service_fn(|_request: Request<Body>| async {
                Err::<Response<Body>, _>(std::io::Error::other("database unreachable"))
            });
    let error = service.oneshot(get_request("/anything")).await.unwrap_err();
    assert_eq!(error.to_string(), "database unreachable");
    audit.flush().await.unwrap();
    let event = only_event(&sink);
    assert_eq!(event.outcome, Outcome::Error);
    assert_eq!(event.status(), None);
    assert_eq!(event.reason.as_deref(), Some("database unreachable"));
    // A plain tower service has no route patterns.
    assert_eq!(event.request.as_ref().unwrap().route, None);
    audit.shutdown().await.unwrap();
}

#[tokio::test]
async fn plain_tower_services_use_a_socket_addr_extension() {
    let (builder, sink) = memory_trail();
    let audit = builder.build().unwrap();
    let service =
        ServiceBuilder::new()
            .layer(audit.layer())
            .service_fn(|_request: Request<String>| async {
                Ok::<_, Infallible>(Response::new(String::from("ok")))
            });
    let peer: std::net::SocketAddr = "[2001:db8::5]:4000".parse().unwrap();
    let request = Request::get("/x")
        .extension(peer)
        .body(String::new())
        .unwrap();
    service.oneshot(request).await.unwrap();
    audit.flush().await.unwrap();
    let source = only_event(&sink).source.unwrap();
    assert_eq!(source.ip, Some(peer.ip()));
    assert_eq!(source.port, Some(4000));
    audit.shutdown().await.unwrap();
}

#[tokio::test]
async fn request_ids_are_kept_rejected_or_generated_and_visible_to_handlers() {
    let (builder, sink) = memory_trail();
    let audit = builder.build().unwrap();
    let app = Router::new()
        .route("/id", get(|id: RequestId| async move { id.to_string() }))
        .layer(audit.layer());

    let cases = [
        Some("trace-abc.123:x_y".to_owned()),
        Some("bad id with spaces".to_owned()),
        Some("x".repeat(129)),
        None,
    ];
    for incoming in cases {
        sink.take();
        let mut request = request_from("192.0.2.10:1", "GET", "/id");
        if let Some(id) = &incoming {
            request = request.header("x-request-id", id.as_str());
        }
        let response = app
            .clone()
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let header = response.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_owned();
        let body = axum::body::to_bytes(response.into_body(), 1024)
            .await
            .unwrap();
        audit.flush().await.unwrap();
        let event = only_event(&sink);
        let recorded = event.request.unwrap().id;
        assert_eq!(header, recorded);
        assert_eq!(body, recorded.as_bytes());
        match incoming.as_deref() {
            Some(id) if RequestId::is_acceptable(id) => assert_eq!(recorded, id),
            // A request without an acceptable id of its own is known by its event's id.
            _ => assert_eq!(recorded, event.id.to_string()),
        }
        assert_eq!(event.id.get_version_num(), 7);
    }
    audit.shutdown().await.unwrap();
}

#[tokio::test]
async fn query_secrets_are_redacted_and_the_list_is_configurable() {
    let (builder, sink) = memory_trail();
    let audit = builder.redact_also(["pin"]).build().unwrap();
    let app = app(&audit);
    // `;` separates pairs too, for the servers and proxies that read it so.
    let uri = "/hello?user=bob&password=hunter2&API_KEY=k&access_token=t&card=4111&cvv=123&pin=97531&q=ok;secret=s3mi";
    app.oneshot(get_request(uri)).await.unwrap();
    audit.flush().await.unwrap();
    let event = only_event(&sink);
    assert_eq!(
        event.request.as_ref().unwrap().query.as_deref(),
        Some(
            "user=bob&password=[REDACTED]&API_KEY=[REDACTED]&access_token=[REDACTED]\
             &card=[REDACTED]&cvv=[REDACTED]&pin=[REDACTED]&q=ok;secret=[REDACTED]"
        )
    );
    let text = serde_json::to_string(&event).unwrap();
    for secret in ["hunter2", "4111", "97531", "s3mi"] {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }
    audit.shutdown().await.unwrap();
}

#[tokio::test]
async fn only_allowed_headers_are_recorded_never_credentials() {
    let (builder, sink) = memory_trail();
    let audit = builder.record_headers(["x-tenant-id"]).build().unwrap();
    let request = request_from("192.0.2.10:1", "GET", "/hello")
        .header("authorization", "Bearer SECRET-TOKEN")
        .header("cookie", "session=SECRET-COOKIE")
        .header("x-api-key", "SECRET-KEY")
        .header("x-tenant-id", "acme")
        .header("x-other", "not-recorded")
        .body(Body::empty())
        .unwrap();
    app(&audit).oneshot(request).await.unwrap();
    audit.flush().await.unwrap();
    let event = only_event(&sink);
    let headers = &event.request.as_ref().unwrap().headers;
    assert_eq!(headers.len(), 1);
    assert_eq!(headers["x-tenant-id"], "acme");
    let text = serde_json::to_string(&event).unwrap();
    for secret in [
        "SECRET-TOKEN",
        "SECRET-COOKIE",
        "SECRET-KEY",
        "not-recorded",
    ] {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }
    audit.shutdown().await.unwrap();
}

/// A recorded header's value is client input of any shape: a `Referer` can carry a reset
/// token in its query, a proxy's `X-Original-URL` a URL's credentials. Both go.
#[tokio::test]
async fn recorded_header_values_lose_the_shapes_of_a_secret() {
    let (builder, sink) = memory_trail();
    let audit = builder
        .record_headers(["referer", "x-original-url"])
        .build()
        .unwrap();
    let request = request_from("192.0.2.10:1", "GET", "/hello")
        .header(
            "referer",
            "https://app.example/reset?user=bob&token=REFERER-SECRET",
        )
        .header(
            "x-original-url",
            "https://svc:URL-SECRET@api.example/v1/items",
        )
        .body(Body::empty())
        .unwrap();
    app(&audit).oneshot(request).await.unwrap();
    audit.flush().await.unwrap();
    let event = only_event(&sink);
    let headers = &event.request.as_ref().unwrap().headers;
    assert_eq!(
        headers["referer"],
        "https://app.example/reset?user=bob&token=[REDACTED]"
    );
    assert_eq!(
        headers["x-original-url"],
        "https://svc:[REDACTED]@api.example/v1/items"
    );
    audit.shutdown().await.unwrap();
}

#[tokio::test]
async fn long_values_are_cut_with_a_marker() {
    let (builder, sink) = memory_trail();
    let audit = builder.build().unwrap();
    let long_path = format!("/{}", "a".repeat(5000));
    let request = request_from(
        "192.0.2.10:1",
        "GET",
        &format!("{long_path}?q={}", "b".repeat(5000)),
    )
    .header("user-agent", "u".repeat(2000))
    .body(Body::empty())
    .unwrap();
    app(&audit).oneshot(request).await.unwrap();
    audit.flush().await.unwrap();
    let event = only_event(&sink);
    let request = event.request.unwrap();
    assert!(request.path.len() <= 2048 && request.path.ends_with("...[truncated]"));
    let query = request.query.unwrap();
    assert!(query.len() <= 2048 && query.ends_with("...[truncated]"));
    let agent = event.source.unwrap().user_agent.unwrap();
    assert!(agent.len() <= 512 && agent.ends_with("...[truncated]"));
    audit.shutdown().await.unwrap();
}

#[tokio::test]
async fn header_text_that_is_not_utf8_is_kept_with_replacement_characters() {
    let (builder, sink) = memory_trail();
    let audit = builder.trust_actor_header("x-user").build().unwrap();
    // Long enough to be cut, with a multi-byte character across the cut and bytes that are
    // not UTF-8 before it.
    let mut long_agent = b"agent\xff/".to_vec();
    long_agent.extend("é".repeat(400).as_bytes());
    for (agent, user, expected_agent, expected_user) in [
        (
            &b"agent\xff/1.0"[..],
            &b"\xc3mallory"[..],
            "agent\u{fffd}/1.0".to_owned(),
            "\u{fffd}mallory",
        ),
        (
            &long_agent,
            b"plain",
            format!("agent\u{fffd}/{}", "é".repeat(400)),
            "plain",
        ),
    ] {
        let request = request_from("192.0.2.10:1", "GET", "/hello")
            .header("user-agent", http::HeaderValue::from_bytes(agent).unwrap())
            .header("x-user", http::HeaderValue::from_bytes(user).unwrap())
            .body(Body::empty())
            .unwrap();
        app(&audit).oneshot(request).await.unwrap();
        audit.flush().await.unwrap();
        let event = only_event(&sink);
        sink.take();
        let recorded = event.source.unwrap().user_agent.unwrap();
        if expected_agent.len() <= 512 {
            assert_eq!(recorded, expected_agent);
        } else {
            // Cut at a character boundary, within the bound, with its marker.
            assert!(recorded.len() <= 512, "{}", recorded.len());
            let kept = recorded
                .strip_suffix(audit_layer::redact::TRUNCATED)
                .unwrap();
            assert!(
                expected_agent.starts_with(kept) && kept.len() > 400,
                "{recorded}"
            );
        }
        assert_eq!(event.actor.id, expected_user);
    }
    audit.shutdown().await.unwrap();
}

#[tokio::test]
async fn skipped_paths_and_routes_are_not_recorded() {
    let (builder, sink) = memory_trail();
    let audit = builder
        .skip_paths(["/health", "/users/{id}", "/internal/ping"])
        .build()
        .unwrap();
    // A layer on a nested router sees paths without the prefix; the skip list names them
    // as clients send them, as the events do.
    let internal = Router::new()
        .route("/ping", get(|| async { "pong" }))
        .route("/hello", get(|| async { "hello" }))
        .layer(audit.layer());
    let app = Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/users/{id}", get(|| async { "user" }))
        .route("/hello", get(|| async { "hello" }))
        .layer(audit.layer())
        .nest("/internal", internal);
    for path in [
        "/health",
        "/users/3",
        "/internal/ping",
        "/hello",
        "/internal/hello",
    ] {
        app.clone().oneshot(get_request(path)).await.unwrap();
    }
    audit.flush().await.unwrap();
    let paths: Vec<_> = sink
        .request_events()
        .into_iter()
        .map(|event| event.request.unwrap().path)
        .collect();
    assert_eq!(paths, ["/hello", "/internal/hello"]);
    audit.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_panicking_actor_resolver_neither_drops_the_request_nor_its_event() {
    let (builder, sink) = memory_trail();
    let audit = builder
        .actor_resolver(|parts| {
            if parts.headers.contains_key("x-boom") {
                panic!("resolver bug");
            }
            None
        })
        .build()
        .unwrap();
    let app = app(&audit);
    let request = request_from("192.0.2.10:1", "GET", "/hello")
        .header("x-boom", "1")
        .body(Body::empty())
        .unwrap();
    let response = app.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    audit.flush().await.unwrap();
    let event = only_event(&sink);
    assert_eq!(event.outcome, Outcome::Success);
    assert!(event.actor.is_anonymous());
    audit.shutdown().await.unwrap();
}

/// A session look-up: answers after `delay`, naming the user of the `session` cookie.
fn session_resolver(
    delay: Duration,
    calls: std::sync::Arc<std::sync::atomic::AtomicUsize>,
) -> impl Fn(
    &http::request::Parts,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<Actor>> + Send>>
+ Send
+ Sync
+ 'static {
    move |parts| {
        calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let session = parts
            .headers
            .get("cookie")
            .and_then(|v| v.to_str().ok())
            .and_then(|cookie| cookie.strip_prefix("session="))
            .map(str::to_owned);
        Box::pin(async move {
            tokio::time::sleep(delay).await;
            if session.as_deref() == Some("boom") {
                panic!("session store bug");
            }
            Some(Actor::user(format!("user-of-{}", session?)))
        })
    }
}

#[tokio::test]
async fn an_async_resolver_names_the_actor_whether_it_answers_before_or_after_the_handler() {
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (builder, sink) = memory_trail();
    let audit = builder
        .actor_resolver_async(session_resolver(Duration::from_millis(30), calls.clone()))
        .build()
        .unwrap();
    let app = Router::new()
        .route("/fast", get(|| async { "fast" }))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(120)).await;
                "slow"
            }),
        )
        .layer(audit.layer());
    for (path, session) in [("/fast", "a"), ("/slow", "b"), ("/fast", "boom")] {
        let request = request_from("192.0.2.10:1", "GET", path)
            .header("cookie", format!("session={session}"))
            .body(Body::empty())
            .unwrap();
        let response = app.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path} {session}");
    }
    // An actor already in the extensions needs no look-up.
    let request = request_from("192.0.2.10:1", "GET", "/fast")
        .header("cookie", "session=c")
        .extension(Actor::user("outer"))
        .body(Body::empty())
        .unwrap();
    app.clone().oneshot(request).await.unwrap();
    audit.flush().await.unwrap();
    let actors: Vec<_> = sink
        .request_events()
        .into_iter()
        .map(|event| event.actor.id)
        .collect();
    // The look-up outlasts `/fast`'s handler: the response waited for it. A look-up that
    // panics counts as not knowing.
    assert_eq!(actors, ["user-of-a", "user-of-b", "anonymous", "outer"]);
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 3);
    audit.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_second_actor_resolver_is_a_configuration_error() {
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (builder, _sink) = memory_trail();
    let error = builder
        .actor_resolver(|_| None)
        .actor_resolver_async(session_resolver(Duration::ZERO, calls))
        .build()
        .expect_err("two resolvers are refused");
    assert!(
        matches!(error, audit_layer::ConfigError::Twice(_)),
        "{error}"
    );
    assert!(error.to_string().contains("actor resolver"), "{error}");
}

#[tokio::test]
async fn actor_sources_in_order_of_precedence() {
    let (builder, sink) = memory_trail();
    let audit = builder
        .actor_resolver(|parts| {
            parts
                .headers
                .get("x-resolver-user")
                .and_then(|v| v.to_str().ok())
                .map(|id| Actor::service(id.to_owned()))
        })
        .trust_actor_header("x-gateway-user")
        .build()
        .unwrap();
    let app = Router::new()
        // A login handler names the user it just authenticated.
        .route(
            "/login",
            post(|| async { (Extension(Actor::user("2").with_name("bob")), "welcome") }),
        )
        // An extractor inside the layer sets it on the context.
        .route(
            "/ctx",
            get(|audit: AuditContext| async move {
                audit.set_actor(Actor::user("3").with_name("carol"));
                "ok"
            }),
        )
        .route("/plain", get(|| async { "ok" }))
        .layer(audit.layer());

    let send = |method: &str, path: &str, headers: &[(&str, &str)], actor: Option<Actor>| {
        let mut request = request_from("192.0.2.10:1", method, path);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(actor) = actor {
            request = request.extension(actor);
        }
        app.clone().oneshot(request.body(Body::empty()).unwrap())
    };
    let outer = Actor::user("9").with_name("outer");
    send("POST", "/login", &[], Some(outer.clone()))
        .await
        .unwrap();
    send("GET", "/ctx", &[], Some(outer.clone())).await.unwrap();
    send(
        "GET",
        "/plain",
        &[("x-resolver-user", "svc")],
        Some(outer.clone()),
    )
    .await
    .unwrap();
    send(
        "GET",
        "/plain",
        &[("x-resolver-user", "svc"), ("x-gateway-user", "gw")],
        None,
    )
    .await
    .unwrap();
    send("GET", "/plain", &[("x-gateway-user", "gw")], None)
        .await
        .unwrap();
    send("GET", "/plain", &[], None).await.unwrap();
    audit.flush().await.unwrap();

    let ids: Vec<_> = sink
        .request_events()
        .into_iter()
        .map(|e| e.actor.id)
        .collect();
    assert_eq!(ids, ["2", "3", "9", "svc", "gw", "anonymous"]);
    audit.shutdown().await.unwrap();
}

#[tokio::test]
async fn handlers_name_and_enrich_their_event() {
    let (builder, sink) = memory_trail();
    let audit = builder.label("service", "billing").build().unwrap();
    let app = Router::new()
        .route(
            "/login",
            post(|audit: AuditContext| async move {
                audit.set_action("auth.login");
                audit.set_category(Category::Auth);
                audit.set_outcome(Outcome::Failure);
                audit.set_target("user:bob");
                audit.set_reason("bad password");
                audit.label("tenant", "acme");
                audit.detail("attempt", 3);
                StatusCode::UNAUTHORIZED
            }),
        )
        .layer(audit.layer());
    app.oneshot(
        request_from("192.0.2.10:1", "POST", "/login")
            .body(Body::empty())
            .unwrap(),
    )
    .await
    .unwrap();
    audit.flush().await.unwrap();
    let event = only_event(&sink);
    assert_eq!(event.action, "auth.login");
    assert_eq!(event.category, Category::Auth);
    assert_eq!(event.outcome, Outcome::Failure);
    assert_eq!(event.status(), Some(401));
    assert_eq!(event.target.as_deref(), Some("user:bob"));
    assert_eq!(event.reason.as_deref(), Some("bad password"));
    assert_eq!(event.labels["service"], "billing");
    assert_eq!(event.labels["tenant"], "acme");
    assert_eq!(event.details.unwrap()["attempt"], 3);
    audit.shutdown().await.unwrap();
}

#[tokio::test]
async fn audit_context_without_the_layer_is_a_loud_500() {
    let app = Router::new().route("/x", get(|_audit: AuditContext| async { "ok" }));
    let response = app.oneshot(get_request("/x")).await.unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
}

#[tokio::test]
async fn ten_thousand_concurrent_requests_give_ten_thousand_events() {
    let sink = MemorySink::new();
    let audit = AuditTrail::builder()
        .sink(sink.clone())
        .queue_capacity(256)
        .build()
        .unwrap();
    let app = app(&audit);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..10_000 {
        let app = app.clone();
        tasks.spawn(async move {
            let request = request_from("192.0.2.10:1", "GET", "/hello")
                .header("x-request-id", format!("req-{i}"))
                .body(Body::empty())
                .unwrap();
            app.oneshot(request).await.unwrap().status()
        });
    }
    while let Some(status) = tasks.join_next().await {
        assert_eq!(status.unwrap(), StatusCode::OK);
    }
    audit.flush().await.unwrap();
    let events = sink.request_events();
    assert_eq!(events.len(), 10_000);
    let ids: std::collections::HashSet<_> = events.iter().map(|e| e.id).collect();
    assert_eq!(ids.len(), 10_000);
    let request_ids: std::collections::HashSet<_> = events
        .iter()
        .map(|e| e.request_id().unwrap().to_owned())
        .collect();
    assert_eq!(request_ids.len(), 10_000);
    for i in 0..10_000 {
        assert!(request_ids.contains(&format!("req-{i}")));
    }
    let stats = audit.stats();
    // The requests' events and `audit.start`.
    assert_eq!(
        (stats.accepted, stats.written, stats.lost),
        (10_001, 10_001, 0)
    );
    audit.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_client_that_hangs_up_gives_a_cancelled_event() {
    use tokio::io::AsyncWriteExt;
    let (builder, sink) = memory_trail();
    let audit = builder.build().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = app(&audit);
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await
        .unwrap();
    });
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(stream);
    common::eventually(|| !sink.request_events().is_empty()).await;
    let event = only_event(&sink);
    assert_eq!(event.outcome, Outcome::Cancelled);
    assert_eq!(event.request.unwrap().path, "/slow");
    audit.shutdown().await.unwrap();
}

/// The layer writes each event into the memory of one already written (its box and string
/// buffers): nothing of the earlier event may show through, whatever the later one lacks.
#[tokio::test]
async fn an_event_written_into_an_earlier_ones_memory_keeps_nothing_of_it() {
    let (builder, sink) = memory_trail();
    let audit = builder.build().unwrap();
    let app = app(&audit);

    // Every reused string present and long...
    let rich = request_from("192.0.2.10:50000", "POST", "/users/7?page=2&token=abc")
        .header("user-agent", "a-rather-long-user-agent/1.0 (with details)")
        .header("x-request-id", "client-chosen-request-id-0001")
        .header("content-type", "application/json")
        .extension(Actor::user("alice-with-a-long-id"))
        .body(Body::from("{}"))
        .unwrap();
    assert_eq!(
        app.clone().oneshot(rich).await.unwrap().status(),
        StatusCode::CREATED
    );
    audit.flush().await.unwrap();

    // ...then each absent or shorter, one request at a time, once the one before is written.
    for (uri, user_agent) in [("/nowhere", None), ("/hello?a=1", Some("ua"))] {
        let mut request = request_from("192.0.2.10:50000", "GET", uri);
        if let Some(user_agent) = user_agent {
            request = request.header("user-agent", user_agent);
        }
        let response = app
            .clone()
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let header_id = response.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_owned();
        audit.flush().await.unwrap();

        let event = sink.request_events().pop().unwrap();
        let source = event.source.as_ref().unwrap();
        let request = event.request.as_ref().unwrap();
        assert_eq!(source.user_agent.as_deref(), user_agent, "{uri}");
        assert_eq!(request.id, header_id);
        assert_eq!(
            request.id,
            event.id.to_string(),
            "a generated id: the event's"
        );
        assert_eq!(request.method, "GET");
        assert_eq!(event.actor, Actor::anonymous());
        assert!(event.target.is_none() && event.details.is_none() && event.labels.is_empty());
        if uri == "/nowhere" {
            assert_eq!(request.path, "/nowhere");
            assert_eq!(request.route, None);
            assert_eq!(request.query, None);
            assert_eq!(event.status(), Some(404));
        } else {
            assert_eq!(request.path, "/hello");
            assert_eq!(request.route.as_deref(), Some("/hello"));
            assert_eq!(request.query.as_deref(), Some("a=1"));
            assert_eq!(event.status(), Some(200));
        }
    }

    // And the rich event itself was stored whole, before its memory was reused.
    let first = &sink.request_events()[0];
    let request = first.request.as_ref().unwrap();
    assert_eq!(request.path, "/users/7");
    assert_eq!(request.route.as_deref(), Some("/users/{id}"));
    assert_eq!(request.query.as_deref(), Some("page=2&token=[REDACTED]"));
    assert_eq!(request.id, "client-chosen-request-id-0001");
    assert_eq!(first.actor.id, "alice-with-a-long-id");
    assert_eq!(
        first.source.as_ref().unwrap().user_agent.as_deref(),
        Some("a-rather-long-user-agent/1.0 (with details)")
    );
}

/// Requests of every shape at once, on several threads, while the writer hands the memory of
/// their events back: each event holds its own request's strings, and nothing of another's.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_events_of_every_shape_each_hold_only_their_own_request() {
    let (builder, sink) = memory_trail();
    let audit = builder.build().unwrap();
    let app = app(&audit);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..4_000u32 {
        let app = app.clone();
        tasks.spawn(async move {
            // Present or absent, short or long, by turns that do not line up.
            let mut uri = format!("/users/{i}");
            if i.is_multiple_of(2) {
                uri.push_str(&format!("?page={i}&token=t{i}"));
            }
            let mut request = request_from("192.0.2.10:1", "POST", &uri)
                .header("content-type", "application/json");
            if i.is_multiple_of(3) {
                request = request.header(
                    "user-agent",
                    format!("agent/{}", "x".repeat((i % 50) as usize)),
                );
            }
            if i.is_multiple_of(5) {
                request = request.header("x-request-id", format!("client-{i}"));
            }
            if i.is_multiple_of(7) {
                request = request.extension(Actor::user(format!("user-{i}")));
            }
            let response = app
                .oneshot(request.body(Body::from("{}")).unwrap())
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::CREATED);
            response.headers()["x-request-id"]
                .to_str()
                .unwrap()
                .to_owned()
        });
    }
    let mut header_ids = std::collections::HashSet::new();
    while let Some(id) = tasks.join_next().await {
        header_ids.insert(id.unwrap());
    }
    audit.flush().await.unwrap();

    let events = sink.request_events();
    assert_eq!(events.len(), 4_000);
    for event in &events {
        let request = event.request.as_ref().unwrap();
        let i: u32 = request.path["/users/".len()..].parse().unwrap();
        assert_eq!(request.route.as_deref(), Some("/users/{id}"));
        let expected_query = (i.is_multiple_of(2)).then(|| format!("page={i}&token=[REDACTED]"));
        assert_eq!(request.query, expected_query, "request {i}");
        let expected_agent =
            (i.is_multiple_of(3)).then(|| format!("agent/{}", "x".repeat((i % 50) as usize)));
        assert_eq!(event.source.as_ref().unwrap().user_agent, expected_agent);
        if i.is_multiple_of(5) {
            assert_eq!(request.id, format!("client-{i}"));
        } else {
            assert_eq!(request.id, event.id.to_string(), "request {i}");
        }
        assert!(header_ids.contains(&request.id));
        if i.is_multiple_of(7) {
            assert_eq!(event.actor, Actor::user(format!("user-{i}")));
        } else {
            assert_eq!(event.actor, Actor::anonymous(), "request {i}");
        }
    }
    audit.shutdown().await.unwrap();
}

/// An authentication middleware added before the audit layer runs after it: the `Actor` it
/// inserts arrives after the layer read the request. Handlers that extract `AuditContext`
/// (every sensitive handler does) still record it; one set on the context wins over it.
#[tokio::test]
async fn an_actor_inserted_by_a_middleware_inside_the_layer_is_adopted_by_the_extractors() {
    use axum::extract::Request;
    use axum::middleware::{self, Next};

    let (builder, sink) = memory_trail();
    let audit = builder.build().unwrap();
    let app = Router::new()
        .route("/me", get(|_audit: AuditContext| async { "me" }))
        .route(
            "/as-service",
            get(|audit: AuditContext| async move {
                audit.set_actor(Actor::service("batch"));
                "ok"
            }),
        )
        // Added first, so it runs inside the audit layer.
        .layer(middleware::from_fn(
            |mut request: Request, next: Next| async move {
                request
                    .extensions_mut()
                    .insert(Actor::user("7").with_name("grace"));
                next.run(request).await
            },
        ))
        .layer(audit.layer());
    for path in ["/me", "/as-service"] {
        app.clone().oneshot(common::get(path)).await.unwrap();
    }
    audit.flush().await.unwrap();
    let events = sink.request_events();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].actor, Actor::user("7").with_name("grace"));
    assert_eq!(events[1].actor, Actor::service("batch"));
    audit.shutdown().await.unwrap();
}
