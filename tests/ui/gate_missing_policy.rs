// The policy file must exist.
use capfence::{Blocked, Context, Decimal};
struct E;
impl From<Blocked> for E {
    fn from(_: Blocked) -> Self {
        E
    }
}

#[capfence::gate("payments.read", policy = "no/such/policy.yaml")]
fn read(ctx: &Context) -> Result<(), E> {
    Ok(())
}

fn main() {}
