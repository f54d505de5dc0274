use audit_layer::Auditable;

#[derive(serde::Serialize, Auditable)]
enum Role {
    Admin,
    Viewer,
}

fn main() {}
