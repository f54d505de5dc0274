//! Checks of the SIEM formats against the published schemas vendored in `tests/data/`:
//! OCSF 1.8.0's dictionary, classes and objects, and ECS 8.17.0's field list.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

fn data(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(path)
}

fn load(path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|err| panic!("{} (vendored schema file): {err}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

/// The OCSF schema, as its repository lays it out.
pub struct Ocsf {
    root: PathBuf,
    dictionary: Map<String, Value>,
    types: Map<String, Value>,
}

impl Ocsf {
    pub fn load() -> Self {
        let root = data("ocsf-1.8.0");
        let dictionary = load(&root.join("dictionary.json"));
        Self {
            dictionary: dictionary["attributes"].as_object().unwrap().clone(),
            types: dictionary["types"]["attributes"]
                .as_object()
                .unwrap()
                .clone(),
            root,
        }
    }

    /// Attributes of a class or object file, its `extends` chain and `$include`s merged.
    fn attributes(&self, file: &Path, dir: &str) -> Map<String, Value> {
        let definition = load(file);
        let mut merged = Map::new();
        if let Some(parent) = definition["extends"].as_str() {
            let parent_file =
                find(&self.root.join(dir), &format!("{parent}.json")).unwrap_or_else(|| {
                    panic!(
                        "{parent}.json (extended by {}) not vendored",
                        file.display()
                    )
                });
            merged = self.attributes(&parent_file, dir);
        }
        self.merge(&mut merged, &definition["attributes"]);
        merged
    }

    fn merge(&self, merged: &mut Map<String, Value>, attributes: &Value) {
        for (name, attribute) in attributes.as_object().into_iter().flatten() {
            if name == "$include" {
                let includes = match attribute {
                    Value::Array(items) => items.clone(),
                    other => vec![other.clone()],
                };
                for include in includes {
                    let file = self.root.join(include.as_str().unwrap());
                    let included = load(&file);
                    let mut attributes = included["attributes"].clone();
                    // A profile's attributes bind only events that declare the profile
                    // (in `metadata.profiles`), which ours do not.
                    if included["meta"] == "profile" {
                        for attribute in attributes.as_object_mut().unwrap().values_mut() {
                            attribute["profile"] = included["name"].clone();
                        }
                    }
                    self.merge(merged, &attributes);
                }
                continue;
            }
            let entry = merged
                .entry(name.clone())
                .or_insert_with(|| Value::Object(Map::new()));
            for (key, value) in attribute.as_object().unwrap() {
                // A class adds its activities to the base event's `0` and `99`.
                if key == "enum"
                    && let (Some(old), Some(new)) = (entry[key].as_object_mut(), value.as_object())
                {
                    old.extend(new.clone());
                    continue;
                }
                entry[key] = value.clone();
            }
        }
    }

    /// Every fault of `event` against its class, as `path: what` lines.
    pub fn check(&self, event: &Value) -> Vec<String> {
        let mut faults = Vec::new();
        let class_uid = event["class_uid"].as_u64().expect("class_uid");
        let class_file = self.class_file(class_uid);
        let class = load(&class_file);
        let attributes = self.attributes(&class_file, "events");
        let category_uid = class_uid / 1000;
        let categories = load(&self.root.join("categories.json"));
        let category = categories["attributes"]
            .as_object()
            .unwrap()
            .values()
            .find(|c| c["uid"] == category_uid)
            .expect("category");
        expect(
            &mut faults,
            "category_uid",
            &event["category_uid"],
            &category_uid.into(),
        );
        expect(
            &mut faults,
            "category_name",
            &event["category_name"],
            &category["caption"],
        );
        expect(
            &mut faults,
            "class_name",
            &event["class_name"],
            &class["caption"],
        );
        let activity = event["activity_id"].as_u64().unwrap_or(0);
        expect(
            &mut faults,
            "type_uid",
            &event["type_uid"],
            &(class_uid * 100 + activity).into(),
        );
        if let Some(caption) =
            attributes["activity_id"]["enum"][activity.to_string()]["caption"].as_str()
            && activity != 99
        {
            expect(
                &mut faults,
                "activity_name",
                &event["activity_name"],
                &caption.into(),
            );
        }
        self.check_object(&mut faults, "", event, &attributes);
        faults
    }

    fn class_file(&self, class_uid: u64) -> PathBuf {
        let events = self.root.join("events");
        for entry in walk(&events) {
            let class = load(&entry);
            let (Some(uid), Some(parent)) = (class["uid"].as_u64(), entry.parent()) else {
                continue;
            };
            let categories = load(&self.root.join("categories.json"));
            let dir = parent.file_name().unwrap().to_str().unwrap();
            let category_uid = categories["attributes"][dir]["uid"].as_u64().unwrap();
            if category_uid * 1000 + uid == class_uid {
                return entry;
            }
        }
        panic!("class {class_uid} is not vendored");
    }

    fn check_object(
        &self,
        faults: &mut Vec<String>,
        path: &str,
        value: &Value,
        attributes: &Map<String, Value>,
    ) {
        let Some(object) = value.as_object() else {
            faults.push(format!("{path}: not an object"));
            return;
        };
        for (name, attribute) in attributes {
            let in_profile = attribute["profile"].is_string();
            if attribute["requirement"] == "required" && !in_profile && !object.contains_key(name) {
                faults.push(format!("{path}.{name}: required, absent"));
            }
        }
        for (name, member) in object {
            let at = if path.is_empty() {
                name.clone()
            } else {
                format!("{path}.{name}")
            };
            let Some(attribute) = attributes.get(name) else {
                faults.push(format!("{at}: not an attribute here"));
                continue;
            };
            let Some(definition) = self.dictionary.get(name) else {
                faults.push(format!("{at}: not in the dictionary"));
                continue;
            };
            let type_name = attribute["type"]
                .as_str()
                .or(definition["type"].as_str())
                .unwrap()
                .to_owned();
            // The class and category ids are checked against the class file itself.
            let enumeration = attribute
                .get("enum")
                .or(definition.get("enum"))
                .filter(|_| !matches!(name.as_str(), "class_uid" | "category_uid" | "type_uid"));
            if definition["is_array"] == true {
                match member.as_array() {
                    Some(items) => {
                        for (i, item) in items.iter().enumerate() {
                            self.check_value(faults, &format!("{at}[{i}]"), item, &type_name, None);
                        }
                    }
                    None => faults.push(format!("{at}: not an array")),
                }
            } else {
                self.check_value(faults, &at, member, &type_name, enumeration);
            }
        }
    }

    fn check_value(
        &self,
        faults: &mut Vec<String>,
        at: &str,
        value: &Value,
        type_name: &str,
        enumeration: Option<&Value>,
    ) {
        if let Some(enumeration) = enumeration.and_then(Value::as_object) {
            let key = value.to_string();
            if !enumeration.contains_key(key.trim_matches('"')) {
                faults.push(format!("{at}: {value} not among {:?}", enumeration.keys()));
            }
        }
        if type_name == "object" || type_name == "json_t" {
            return;
        }
        if let Some(scalar) = self.types.get(type_name) {
            let base = scalar["type"].as_str().unwrap_or(type_name);
            let fits = match (type_name, base) {
                ("ip_t", _) => value
                    .as_str()
                    .is_some_and(|ip| ip.parse::<IpAddr>().is_ok()),
                ("port_t", _) => value.as_u64().is_some_and(|port| port <= 65_535),
                (_, "string_t") | ("string_t", _) => value.is_string(),
                (_, "integer_t" | "long_t") | ("integer_t" | "long_t" | "timestamp_t", _) => {
                    value.is_i64() || value.is_u64()
                }
                (_, "boolean_t") | ("boolean_t", _) => value.is_boolean(),
                (_, "float_t") | ("float_t", _) => value.is_number(),
                _ => value.is_string(),
            };
            if !fits {
                faults.push(format!("{at}: {value} is not a {type_name}"));
            }
            return;
        }
        let file = find(&self.root.join("objects"), &format!("{type_name}.json"))
            .unwrap_or_else(|| panic!("object {type_name} (at {at}) is not vendored"));
        let definition = load(&file);
        let attributes = self.attributes(&file, "objects");
        self.check_object(faults, at, value, &attributes);
        if let Some(names) = definition["constraints"]["at_least_one"].as_array()
            && !names
                .iter()
                .any(|name| value.get(name.as_str().unwrap()).is_some())
        {
            faults.push(format!("{at}: needs at least one of {names:?}"));
        }
    }
}

fn expect(faults: &mut Vec<String>, at: &str, actual: &Value, expected: &Value) {
    if actual != expected {
        faults.push(format!("{at}: {actual}, the schema says {expected}"));
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else if path.extension().is_some_and(|ext| ext == "json") {
            files.push(path);
        }
    }
    files.sort();
    files
}

fn find(dir: &Path, name: &str) -> Option<PathBuf> {
    walk(dir)
        .into_iter()
        .find(|path| path.file_name().is_some_and(|file| file == name))
}

/// ECS's published field list and allowed values.
pub struct Ecs {
    fields: BTreeMap<String, (String, bool)>,
    allowed: Value,
}

impl Ecs {
    pub fn load() -> Self {
        let root = data("ecs-8.17.0");
        let text = std::fs::read_to_string(root.join("fields.csv")).unwrap();
        let fields = text
            .lines()
            .skip(1)
            .map(|line| {
                let mut columns = line.split(',');
                let field = columns.next().unwrap().to_owned();
                let kind = columns.next().unwrap().to_owned();
                let array = columns.next() == Some("array");
                (field, (kind, array))
            })
            .collect();
        Self {
            fields,
            allowed: load(&root.join("allowed_values.json")),
        }
    }

    /// Every fault of `document`: fields outside ECS (other than under `audit_layer.`),
    /// values of the wrong type, and `event.*` values ECS does not allow.
    pub fn check(&self, document: &Value) -> Vec<String> {
        let mut faults = Vec::new();
        let mut leaves = Vec::new();
        flatten("", document, &mut leaves);
        for (field, value) in &leaves {
            if field.starts_with("audit_layer.") {
                continue;
            }
            // `labels` is an object of keyword values.
            if let Some(key) = field.strip_prefix("labels.") {
                if key.contains('.') || !value.is_string() {
                    faults.push(format!("{field}: labels are flat keywords"));
                }
                continue;
            }
            let Some((kind, _array)) = self.fields.get(field) else {
                faults.push(format!("{field}: not an ECS field"));
                continue;
            };
            let items = match value {
                Value::Array(items) => items.clone(),
                other => vec![other.clone()],
            };
            for item in items {
                let fits = match kind.as_str() {
                    "keyword" | "wildcard" | "text" | "match_only_text" | "constant_keyword" => {
                        item.is_string()
                    }
                    "long" | "integer" | "short" | "byte" => item.is_i64() || item.is_u64(),
                    "ip" => item.as_str().is_some_and(|ip| ip.parse::<IpAddr>().is_ok()),
                    "date" => item.is_string(),
                    "boolean" => item.is_boolean(),
                    "float" | "scaled_float" | "double" => item.is_number(),
                    other => {
                        faults.push(format!("{field}: ECS type {other} not checked here"));
                        true
                    }
                };
                if !fits {
                    faults.push(format!("{field}: {item} is not a {kind}"));
                }
            }
        }
        let event = &document["event"];
        for field in ["kind", "category", "type", "outcome"] {
            let allowed = &self.allowed[format!("event.{field}")];
            let values = match &event[field] {
                Value::Array(items) => items.clone(),
                Value::Null => continue,
                other => vec![other.clone()],
            };
            for value in values {
                if allowed.get(value.as_str().unwrap_or("")).is_none() {
                    faults.push(format!("event.{field}: {value} not allowed"));
                }
            }
        }
        let types: BTreeSet<&str> = event["type"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        for category in event["category"].as_array().into_iter().flatten() {
            let expected = &self.allowed["event.category"][category.as_str().unwrap_or("")];
            for kind in &types {
                if !expected
                    .as_array()
                    .is_some_and(|e| e.iter().any(|t| t == kind))
                {
                    faults.push(format!(
                        "event.type {kind} not expected with category {category}"
                    ));
                }
            }
        }
        for required in ["@timestamp", "ecs.version", "event.kind", "event.id"] {
            if !leaves.iter().any(|(field, _)| field == required) {
                faults.push(format!("{required}: absent"));
            }
        }
        faults
    }
}

fn flatten(prefix: &str, value: &Value, leaves: &mut Vec<(String, Value)>) {
    match value {
        Value::Object(members) => {
            for (name, member) in members {
                let path = if prefix.is_empty() {
                    name.clone()
                } else {
                    format!("{prefix}.{name}")
                };
                flatten(&path, member, leaves);
            }
        }
        other => leaves.push((prefix.to_owned(), other.clone())),
    }
}

/// One `key=value` of a CEF extension, escapes undone.
pub type CefPair = (String, String);

/// A CEF record split into its seven header fields and its extension's pairs, escapes
/// undone; `Err` says what breaks the format.
pub fn parse_cef(record: &str) -> Result<(Vec<String>, Vec<CefPair>), String> {
    if record.contains('\n') || record.contains('\r') {
        return Err("a line break inside the record".into());
    }
    let mut header = Vec::new();
    let mut field = String::new();
    let mut chars = record.chars();
    while header.len() < 7 {
        match chars.next() {
            Some('\\') => match chars.next() {
                Some(c @ ('\\' | '|')) => field.push(c),
                other => return Err(format!("bad header escape \\{other:?}")),
            },
            Some('|') => header.push(std::mem::take(&mut field)),
            Some(c) => field.push(c),
            None => return Err(format!("{} header fields, not 7", header.len())),
        }
    }
    if !header[0].starts_with("CEF:0") {
        return Err("no CEF:0 prefix".into());
    }
    let rest: String = chars.collect();
    // Keys are the words before an unescaped `=`; a value runs to the space before the next key.
    let mut pairs = Vec::new();
    let mut positions = Vec::new();
    let bytes = rest.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            i += 2;
            continue;
        }
        if bytes[i] == b'=' {
            let start = rest[..i].rfind(' ').map_or(0, |space| space + 1);
            positions.push((start, i));
        }
        i += 1;
    }
    for (n, &(start, eq)) in positions.iter().enumerate() {
        let end = positions
            .get(n + 1)
            .map_or(rest.len(), |&(next, _)| next.saturating_sub(1));
        let key = &rest[start..eq];
        let mut value = String::new();
        let mut raw = rest[eq + 1..end].chars();
        while let Some(c) = raw.next() {
            if c == '\\' {
                match raw.next() {
                    Some('n') => value.push('\n'),
                    Some('r') => value.push('\r'),
                    Some(c @ ('\\' | '=')) => value.push(c),
                    other => return Err(format!("bad extension escape \\{other:?} in {key}")),
                }
            } else {
                value.push(c);
            }
        }
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(format!("bad extension key `{key}`"));
        }
        pairs.push((key.to_owned(), value));
    }
    Ok((header, pairs))
}
