use audit_layer::Auditable;

#[derive(serde::Serialize, Auditable)]
struct User {
    #[audit(redact, skip)]
    password_hash: String,
}

fn main() {}
