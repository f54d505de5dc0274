use audit_layer::sensitive;
use axum::extract::Path;

#[sensitive(action = "user.delete", resource = User, key = id)]
async fn delete_user(Path(id): Path<u64>) {
    let _ = id;
}

fn main() {}
