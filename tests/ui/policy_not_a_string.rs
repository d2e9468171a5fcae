// The macro takes the path as a string literal.
static POLICY: &dyn capfence::Decide = &capfence::policy!(policies / fintech_policy);

fn main() {}
