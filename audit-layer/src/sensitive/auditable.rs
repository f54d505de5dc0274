//! [`Auditable`] types and their redacted [`AuditSnapshot`]s.

use std::borrow::Cow;
use std::hash::{BuildHasher, Hasher, RandomState};
use std::io;
use std::sync::OnceLock;

use serde::Serialize;
use serde_json::Value;

use crate::redact::{REDACTED, SecretNames, redact_json, scan_free_text, scan_strings_in};

/// A type whose state can be recorded before and after a sensitive action.
///
/// Derive it with `#[derive(Auditable)]` (see the [module docs](super)); the derive decides
/// which fields are recorded, redacted or skipped, so that no secret reaches the trail.
pub trait Auditable {
    /// The kind of resource, the first part of targets (`user` in `user:7`).
    const RESOURCE: &'static str;

    /// A redacted snapshot of the current state.
    fn audit_snapshot(&self) -> AuditSnapshot;

    /// The id of this resource (the `#[audit(id)]` field), the second part of targets.
    fn audit_id(&self) -> Option<String> {
        self.audit_snapshot().id().map(str::to_owned)
    }
}

/// The recorded state of one [`Auditable`] value: its fields, with redacted fields replaced
/// and skipped fields left out. Redacted values are kept only as an in-memory fingerprint, so
/// a change to them can be reported without recording them.
#[derive(Clone, Debug, PartialEq)]
pub struct AuditSnapshot {
    id: Option<String>,
    pub(crate) fields: Vec<SnapshotField>,
    /// Whether the default secret names were applied (by the derive's `__finish`).
    redacted_with_defaults: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct SnapshotField {
    pub(crate) name: Cow<'static, str>,
    pub(crate) value: SnapshotValue,
    is_id: bool,
}

/// One field's recorded value.
#[doc(hidden)]
#[derive(Clone, Debug, PartialEq)]
pub enum SnapshotValue {
    /// A value compared as a whole; `fingerprint` is of the value before any redaction
    /// inside it, so a change to a secret inside it is still seen. `None` for a scalar,
    /// which nothing redacts inside: its `json` is the value itself, compared directly, and
    /// fingerprinted only if its field is redacted as a whole.
    Plain {
        json: Value,
        fingerprint: Option<u64>,
    },
    /// A redacted value: only its fingerprint.
    Redacted { fingerprint: u64 },
    /// A nested auditable value, compared field by field.
    Nested(AuditSnapshot),
}

impl AuditSnapshot {
    /// The resource id, if the type has an `#[audit(id)]` field.
    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    /// The snapshot as a JSON object, redacted values as `"[REDACTED]"`.
    pub fn to_json(&self) -> Value {
        object(
            self.fields
                .iter()
                .map(|field| (field.name.clone(), field.value.to_json())),
        )
    }

    /// [`to_json`](Self::to_json), moving the values instead of copying them: what an
    /// event records once the snapshot has been diffed.
    pub(crate) fn into_json(self) -> Value {
        object(
            self.fields
                .into_iter()
                .map(|field| (field.name, field.value.into_json())),
        )
    }

    /// Redacts, by name, what the type did not mark: fields named like secrets (other than
    /// the id) and secret-named entries inside plain values.
    pub(crate) fn redacted_with(mut self, names: &SecretNames) -> Self {
        for field in &mut self.fields {
            field.value = match std::mem::replace(
                &mut field.value,
                SnapshotValue::Redacted { fingerprint: 0 },
            ) {
                plain @ SnapshotValue::Plain { .. }
                    if !field.is_id && names.is_secret(&field.name) =>
                {
                    SnapshotValue::Redacted {
                        fingerprint: plain.fingerprint().unwrap_or(0),
                    }
                }
                SnapshotValue::Plain {
                    mut json,
                    mut fingerprint,
                } => {
                    if let Value::String(text) = &json
                        && let Some(redacted) = scan_free_text(text, names)
                    {
                        // A scalar is compared as it is, unless part of it is redacted:
                        // then by the fingerprint of what it was, so that a change to the
                        // redacted part alone is still seen.
                        fingerprint = fingerprint.or_else(|| Some(self::fingerprint(&json)));
                        json = Value::String(redacted);
                    } else {
                        // Containers are fingerprinted whole when they are taken.
                        redact_json(&mut json, names);
                        scan_strings_in(&mut json, names);
                    }
                    SnapshotValue::Plain { json, fingerprint }
                }
                SnapshotValue::Nested(nested) => SnapshotValue::Nested(nested.redacted_with(names)),
                redacted => redacted,
            };
        }
        self
    }

    #[doc(hidden)]
    pub fn __new() -> Self {
        Self {
            id: None,
            fields: Vec::new(),
            redacted_with_defaults: false,
        }
    }

    #[doc(hidden)]
    pub fn __field(&mut self, name: &'static str, value: SnapshotValue) {
        self.fields.push(SnapshotField {
            name: Cow::Borrowed(name),
            value,
            is_id: false,
        });
    }

    #[doc(hidden)]
    pub fn __id(&mut self, name: &'static str, value: SnapshotValue) {
        if let SnapshotValue::Plain { json, .. } = &value {
            self.id = Some(match json {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            });
        }
        self.fields.push(SnapshotField {
            name: Cow::Borrowed(name),
            value,
            is_id: true,
        });
    }

    #[doc(hidden)]
    pub fn __redacted<T: Serialize + ?Sized>(&mut self, name: &'static str, value: &T) {
        self.fields.push(SnapshotField {
            name: Cow::Borrowed(name),
            value: SnapshotValue::Redacted {
                fingerprint: plain(value).fingerprint().unwrap_or(0),
            },
            is_id: false,
        });
    }

    /// Applies the default secret names; a trail with a list of its own applies it too when it
    /// records.
    #[doc(hidden)]
    pub fn __finish(self) -> Self {
        static DEFAULT_NAMES: OnceLock<SecretNames> = OnceLock::new();
        let mut snapshot = self.redacted_with(DEFAULT_NAMES.get_or_init(SecretNames::default));
        snapshot.redacted_with_defaults = true;
        snapshot
    }

    /// Redacted with a trail's list. Most trails keep the default list, which a derived
    /// snapshot has already been through: then a second pass would change nothing.
    pub(crate) fn redacted_for_trail(self, names: &SecretNames) -> Self {
        if self.redacted_with_defaults && names.is_default() {
            self
        } else {
            self.redacted_with(names)
        }
    }
}

/// A JSON object of named values.
fn object(fields: impl Iterator<Item = (Cow<'static, str>, Value)>) -> Value {
    // Inserted one by one: collecting would also allocate a vector to sort first.
    let mut object = serde_json::Map::new();
    for (name, value) in fields {
        object.insert(name.into_owned(), value);
    }
    Value::Object(object)
}

impl SnapshotValue {
    /// The fingerprint of the unredacted value; `None` for a nested snapshot.
    pub(crate) fn fingerprint(&self) -> Option<u64> {
        match self {
            Self::Plain {
                fingerprint: Some(fingerprint),
                ..
            }
            | Self::Redacted { fingerprint } => Some(*fingerprint),
            Self::Plain {
                json,
                fingerprint: None,
            } => Some(fingerprint(json)),
            Self::Nested(_) => None,
        }
    }

    fn to_json(&self) -> Value {
        match self {
            Self::Plain { json, .. } => json.clone(),
            Self::Redacted { .. } => Value::String(REDACTED.to_owned()),
            Self::Nested(nested) => nested.to_json(),
        }
    }

    fn into_json(self) -> Value {
        match self {
            Self::Plain { json, .. } => json,
            Self::Redacted { .. } => Value::String(REDACTED.to_owned()),
            Self::Nested(nested) => nested.into_json(),
        }
    }
}

/// A value serialized for a snapshot, with the fingerprint of its unredacted form.
fn plain<T: Serialize + ?Sized>(value: &T) -> SnapshotValue {
    // Fingerprinted through the JSON value, whose object keys are sorted, even for a redacted
    // field that keeps nothing else: a `HashMap` serialized directly would be hashed in its
    // iteration order, which differs between two loads of the same data.
    let json = serde_json::to_value(value)
        .unwrap_or_else(|e| Value::String(format!("<unserializable: {e}>")));
    // Most fields are scalars: hashing them would cost more than comparing them.
    let fingerprint =
        matches!(json, Value::Array(_) | Value::Object(_)).then(|| fingerprint(&json));
    SnapshotValue::Plain { json, fingerprint }
}

/// A keyed hash, random per process: it tells whether a value changed, and never leaves
/// memory.
fn fingerprint(json: &Value) -> u64 {
    static KEY: OnceLock<RandomState> = OnceLock::new();
    let mut hasher = KEY.get_or_init(RandomState::new).build_hasher();
    // Streamed into the hasher, without a buffer per field. Equal values are written in
    // equal pieces, so they hash alike however the hasher treats the pieces' boundaries.
    let _ = serde_json::to_writer(HashWriter(&mut hasher), json);
    hasher.finish()
}

/// Feeds what is written to a hasher.
struct HashWriter<'a, H>(&'a mut H);

impl<H: Hasher> io::Write for HashWriter<'_, H> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.write(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Dispatches a field by its type (autoref specialization:
/// `(&&&FieldRef(&field)).__audit_value()`): an [`Auditable`] type to [`ViaAuditable`]
/// (snapshotted field by field), an `Option`, `Vec`, `HashMap` or `BTreeMap` of one to
/// [`ViaAuditableCollection`] (each element snapshotted, so its own redactions apply),
/// anything else to [`ViaSerialize`].
#[doc(hidden)]
#[derive(Debug)]
pub struct FieldRef<'a, T: ?Sized>(pub &'a T);

#[doc(hidden)]
pub trait ViaAuditable {
    fn __audit_value(&self) -> SnapshotValue;
}

impl<T: Auditable + ?Sized> ViaAuditable for &&FieldRef<'_, T> {
    fn __audit_value(&self) -> SnapshotValue {
        SnapshotValue::Nested(self.0.audit_snapshot())
    }
}

#[doc(hidden)]
pub trait ViaAuditableCollection {
    fn __audit_value(&self) -> SnapshotValue;
}

impl<T: Auditable> ViaAuditableCollection for &FieldRef<'_, Option<T>> {
    fn __audit_value(&self) -> SnapshotValue {
        match self.0 {
            Some(value) => SnapshotValue::Nested(value.audit_snapshot()),
            None => plain(&Value::Null),
        }
    }
}

impl<T: Auditable + Serialize> ViaAuditableCollection for &FieldRef<'_, Vec<T>> {
    fn __audit_value(&self) -> SnapshotValue {
        // Shown redacted element by element; the fingerprint is of the unredacted list, so
        // a change to a secret inside is still seen (and reported as redacted).
        let json = Value::Array(
            self.0
                .iter()
                .map(|item| item.audit_snapshot().into_json())
                .collect(),
        );
        SnapshotValue::Plain {
            json,
            fingerprint: plain(self.0).fingerprint(),
        }
    }
}

impl<K: Serialize, T: Auditable + Serialize, S> ViaAuditableCollection
    for &FieldRef<'_, std::collections::HashMap<K, T, S>>
{
    fn __audit_value(&self) -> SnapshotValue {
        map_of_snapshots(self.0.iter(), self.0)
    }
}

impl<K: Serialize, T: Auditable + Serialize> ViaAuditableCollection
    for &FieldRef<'_, std::collections::BTreeMap<K, T>>
{
    fn __audit_value(&self) -> SnapshotValue {
        map_of_snapshots(self.0.iter(), self.0)
    }
}

/// A map of auditable values: shown entry by entry with each value's redactions, keyed as
/// `serde_json` keys them; the fingerprint is of the unredacted map.
fn map_of_snapshots<'a, K, T, M>(
    entries: impl Iterator<Item = (&'a K, &'a T)>,
    map: &M,
) -> SnapshotValue
where
    K: Serialize + 'a,
    T: Auditable + 'a,
    M: Serialize + ?Sized,
{
    let json = Value::Object(
        entries
            .map(|(key, value)| {
                let key = match serde_json::to_value(key) {
                    Ok(Value::String(key)) => key,
                    Ok(other) => other.to_string(),
                    Err(e) => format!("<unserializable key: {e}>"),
                };
                (key, value.audit_snapshot().into_json())
            })
            .collect(),
    );
    SnapshotValue::Plain {
        json,
        fingerprint: plain(map).fingerprint(),
    }
}

#[doc(hidden)]
pub trait ViaSerialize {
    fn __audit_value(&self) -> SnapshotValue;
}

impl<T: Serialize + ?Sized> ViaSerialize for FieldRef<'_, T> {
    fn __audit_value(&self) -> SnapshotValue {
        plain(self.0)
    }
}
