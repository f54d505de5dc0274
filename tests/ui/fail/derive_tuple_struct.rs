use audit_layer::Auditable;

#[derive(serde::Serialize, Auditable)]
struct UserId(u64);

fn main() {}
