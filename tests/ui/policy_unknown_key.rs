// A policy error is a compile error that names the file, line and column.
static POLICY: &dyn capfence::Decide =
    &capfence::policy!("compiler/tests/fixtures/load/unknown_key.yaml");

fn main() {}
