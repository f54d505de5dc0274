use audit_layer::{Auditable, sensitive};
use axum::http::StatusCode;

#[derive(serde::Serialize, Auditable)]
struct User {
    #[audit(id)]
    id: u64,
}

#[sensitive(action = "user.create", resource = User, create)]
async fn create_user() -> StatusCode {
    StatusCode::CREATED
}

fn main() {}
