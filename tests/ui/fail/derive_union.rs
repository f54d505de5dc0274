use audit_layer::Auditable;

#[derive(Auditable)]
union Bits {
    int: u32,
    float: f32,
}

fn main() {}
