use audit_layer::sensitive;
use axum::extract::State;

#[sensitive(action = "user.purge", resource = User)]
async fn purge(State(_app): State<()>) {}

fn main() {}
