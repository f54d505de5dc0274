use audit_layer::Auditable;

#[derive(serde::Serialize, Auditable)]
#[audit(resource = "user")]
struct User {
    #[audit(rename = "name")]
    #[audit(rename = "login")]
    username: String,
}

fn main() {}
