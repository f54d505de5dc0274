//! The sensitive update the benches measure: a setting whose value a handler bumps, with
//! and without `#[sensitive]` (its state loaded before and after, diffed, redacted).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use audit_layer::{AuditEvent, AuditTrail, Auditable, BoxError, sensitive};

use audit_layer::sink::{BoxFuture, Sink, SinkError};

use audit_layer::sensitive::Snapshot;
use axum::Router;
use axum::extract::{Path, State};
use axum::routing::post;
use serde::Serialize;

#[derive(Clone, Serialize, Auditable)]
#[audit(resource = "setting")]
struct Setting {
    #[audit(id)]
    id: u64,
    value: u64,
    #[audit(redact)]
    secret: String,
}

#[derive(Clone, Default)]
struct Settings(Arc<RwLock<HashMap<u64, Setting>>>);

impl Settings {
    fn bump(&self, id: u64) -> u64 {
        let mut settings = self.0.write().unwrap_or_else(|e| e.into_inner());
        let setting = settings.entry(id).or_insert_with(|| Setting {
            id,
            value: 0,
            secret: "s3cret".to_owned(),
        });
        setting.value += 1;
        setting.value
    }
}

impl Snapshot<Settings> for Setting {
    type Key = u64;

    async fn load(settings: &Settings, id: &u64) -> Result<Option<Self>, BoxError> {
        let settings = settings.0.read().unwrap_or_else(|e| e.into_inner());
        Ok(settings.get(id).cloned())
    }
}

async fn bump(State(settings): State<Settings>, Path(id): Path<u64>) -> String {
    settings.bump(id).to_string()
}

#[sensitive(action = "setting.bump", resource = Setting, key = id)]
async fn bump_audited(State(settings): State<Settings>, Path(id): Path<u64>) -> String {
    settings.bump(id).to_string()
}

/// `POST /settings/{id}`: unaudited, or a sensitive handler behind `trail`'s layer.
pub(crate) fn router(trail: Option<&AuditTrail>) -> Router {
    match trail {
        None => Router::new()
            .route("/settings/{id}", post(bump))
            .with_state(Settings::default()),
        Some(trail) => Router::new()
            .route("/settings/{id}", post(bump_audited))
            .with_state(Settings::default())
            .layer(trail.layer()),
    }
}

/// The sink the sensitive benches "sync" to, and the instruction count's `audited-discard`
/// writes to: it takes every event and keeps none, so that they measure the layer, not a sink
/// (a `MemorySink` would copy each event and keep it).
pub(crate) struct Discard;

impl Sink for Discard {
    fn name(&self) -> &str {
        "discard"
    }

    fn write_batch<'a>(
        &'a mut self,
        _events: &'a [AuditEvent],
    ) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async { Ok(()) })
    }
}
