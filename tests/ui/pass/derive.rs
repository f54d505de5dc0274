use audit_layer::Auditable;
use serde::Serialize;
use std::collections::HashMap;

#[derive(Serialize)]
#[serde(rename_all = "lowercase")]
enum Role {
    Admin,
    Viewer,
}

#[derive(Serialize, Auditable)]
struct Address {
    city: String,
}

#[derive(Serialize, Auditable)]
#[audit(resource = "user")]
struct User {
    #[audit(id)]
    id: u64,
    #[audit(rename = "login")]
    name: String,
    role: Role,
    #[audit(redact)]
    password_hash: String,
    #[audit(skip)]
    last_seen: Option<u64>,
    address: Address,
    tags: Vec<String>,
    prefs: HashMap<String, String>,
}

#[derive(Serialize, Auditable)]
struct Entry<K, V>
where
    K: Clone,
{
    #[audit(id, rename = "name")]
    key: K,
    value: V,
}

fn main() {
    let user = User {
        id: 1,
        name: "alice".into(),
        role: Role::Admin,
        password_hash: "h".into(),
        last_seen: None,
        address: Address { city: "Paris".into() },
        tags: vec![],
        prefs: HashMap::new(),
    };
    let _ = (&user.role, user.last_seen);
    assert_eq!(user.audit_id().as_deref(), Some("1"));
    assert_eq!(<User as Auditable>::RESOURCE, "user");
    let entry = Entry { key: String::from("k"), value: 3 };
    assert_eq!(entry.audit_id().as_deref(), Some("k"));
    assert_eq!(<Entry<String, i32> as Auditable>::RESOURCE, "entry");
}
