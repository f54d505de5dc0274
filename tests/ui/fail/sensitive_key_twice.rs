use audit_layer::sensitive;
use axum::extract::{Path, State};

#[sensitive(action = "user.delete", resource = User, key = id, action = "user.remove")]
async fn delete_user(State(_app): State<()>, Path(id): Path<u64>) {
    let _ = id;
}

fn main() {}
