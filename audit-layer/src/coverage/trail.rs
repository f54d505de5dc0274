//! Coverage after the fact: what a stored trail shows of requests nothing audited.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::ops::ControlFlow;
use std::path::Path;

use http::Method;
use serde::Serialize;
use serde_json::Value;

use super::rules::CoverageRules;

/// The most event ids an [`AuthWithoutIp`] lists.
const LISTED: usize = 10;

/// What a stored trail shows: sensitive-looking requests recorded as nothing more than
/// requests (run-time gaps: served by a route that is not `#[sensitive]`, or by a manual
/// handler that did not name its action), and authentication events without a source IP.
///
/// A run-time gap is an `http.request` event of category `request` whose method and route
/// the [`CoverageRules`] find sensitive-looking; requests that were `denied` never reached
/// their handler and do not count, nor do requests no route matched.
///
/// ```no_run
/// use audit_layer::coverage::{CoverageRules, TrailCoverage};
///
/// let found = TrailCoverage::scan("./audit-log".as_ref(), &CoverageRules::default())?;
/// assert!(found.is_clean(), "{found}");
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone, Debug, Default, Serialize)]
pub struct TrailCoverage {
    /// Events read.
    pub events: u64,
    /// Sensitive-looking requests recorded as plain requests, per method and route.
    pub unaudited: Vec<UnauditedRequests>,
    /// Authentication events without a source IP, per action.
    pub auth_without_ip: Vec<AuthWithoutIp>,
}

/// Requests of one method and route that look sensitive and were recorded as plain requests.
#[derive(Clone, Debug, Serialize)]
pub struct UnauditedRequests {
    /// The HTTP method.
    pub method: String,
    /// The matched route (`/admin/users/{id}`), or the path when none was recorded.
    pub route: String,
    /// Why it looks sensitive.
    pub sensitive_because: String,
    /// How many such requests the trail holds.
    pub count: u64,
    /// The first one's event id.
    pub first_event: String,
    /// The last one's time.
    pub last_time: String,
}

/// Authentication events of one action that carry no source IP.
#[derive(Clone, Debug, Serialize)]
pub struct AuthWithoutIp {
    /// The action (`auth.login`).
    pub action: String,
    /// How many.
    pub count: u64,
    /// The first ten's event ids.
    pub events: Vec<String>,
}

impl TrailCoverage {
    /// Reads every event of the trail in `dir`.
    pub fn scan(dir: &Path, rules: &CoverageRules) -> io::Result<Self> {
        let mut found = Self::default();
        let mut requests = BTreeMap::<(String, String), UnauditedRequests>::new();
        let mut auth = BTreeMap::<String, AuthWithoutIp>::new();
        crate::file::for_each_event(dir, |_, event| {
            if event.get("id").is_some() {
                found.events += 1;
            }
            match event["category"].as_str() {
                Some("request") => note_request(event, rules, &mut requests),
                Some("auth") if event["source"]["ip"].as_str().is_none() => {
                    let action = event["action"].as_str().unwrap_or_default().to_owned();
                    let entry = auth.entry(action.clone()).or_insert(AuthWithoutIp {
                        action,
                        count: 0,
                        events: Vec::new(),
                    });
                    entry.count += 1;
                    if entry.events.len() < LISTED {
                        entry.events.push(text(&event["id"]));
                    }
                }
                _ => {}
            }
            ControlFlow::Continue(())
        })?;
        found.unaudited = requests.into_values().collect();
        found.auth_without_ip = auth.into_values().collect();
        Ok(found)
    }

    /// Whether the trail shows no gap.
    pub fn is_clean(&self) -> bool {
        self.unaudited.is_empty() && self.auth_without_ip.is_empty()
    }
}

fn note_request(
    event: &Value,
    rules: &CoverageRules,
    requests: &mut BTreeMap<(String, String), UnauditedRequests>,
) {
    if event["action"] != "http.request" || event["outcome"] == "denied" {
        return;
    }
    let request = &event["request"];
    let status = event["response"]["status"].as_u64();
    let route = match request["route"].as_str() {
        Some(route) => route,
        // No route matched, or not recorded: the path, unless nothing was found there.
        None if matches!(status, Some(404 | 405)) => return,
        None => request["path"].as_str().unwrap_or_default(),
    };
    let Some(method) = request["method"]
        .as_str()
        .and_then(|m| Method::from_bytes(m.as_bytes()).ok())
    else {
        return;
    };
    if rules.exemption(Some(&method), route).is_some() {
        return;
    }
    let Some(why) = rules.why(Some(&method), route) else {
        return;
    };
    let entry = requests
        .entry((route.to_owned(), method.to_string()))
        .or_insert_with(|| UnauditedRequests {
            method: method.to_string(),
            route: route.to_owned(),
            sensitive_because: why,
            count: 0,
            first_event: text(&event["id"]),
            last_time: String::new(),
        });
    entry.count += 1;
    entry.last_time = text(&event["time"]);
}

fn text(value: &Value) -> String {
    value.as_str().unwrap_or_default().to_owned()
}

/// A line per finding, then a count.
impl fmt::Display for TrailCoverage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for gap in &self.unaudited {
            writeln!(
                f,
                "unaudited: {} {} ({}): {} request(s) recorded as plain requests, first {}, last at {}",
                gap.method,
                gap.route,
                gap.sensitive_because,
                gap.count,
                gap.first_event,
                gap.last_time
            )?;
        }
        for gap in &self.auth_without_ip {
            writeln!(
                f,
                "no source IP: {} event(s) of {}, first {}",
                gap.count,
                gap.action,
                gap.events.first().map_or("", String::as_str)
            )?;
        }
        write!(
            f,
            "{} event(s): {} unaudited route(s), {} authentication action(s) without a source IP",
            self.events,
            self.unaudited.len(),
            self.auth_without_ip.len()
        )
    }
}
