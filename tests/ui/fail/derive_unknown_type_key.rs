use audit_layer::Auditable;

#[derive(serde::Serialize, Auditable)]
#[audit(kind = "user")]
struct User {
    name: String,
}

fn main() {}
