use audit_layer::Auditable;

#[derive(serde::Serialize, Auditable)]
struct User {
    #[audit(redacted)]
    password_hash: String,
}

fn main() {}
