// A missing policy file is a compile error.
static POLICY: &dyn capfence::Decide = &capfence::policy!("no/such/policy.yaml");

fn main() {}
