use audit_layer::sensitive;
use axum::extract::{Path, State};

#[sensitive(action = "user.delete", resource = User, key = user_id)]
async fn delete_user(State(app): State<()>, Path(id): Path<u64>) {
    let _ = (app, id);
}

fn main() {}
