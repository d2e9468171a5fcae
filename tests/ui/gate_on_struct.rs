// #[gate] applies to functions.
#[capfence::gate("payments.read")]
struct Tool;

fn main() {}
