// The policy decides transfers on `amount`; a gate without it does not compile.
use capfence::{Blocked, Context, Decimal};
struct E;
impl From<Blocked> for E {
    fn from(_: Blocked) -> Self {
        E
    }
}

#[capfence::gate("payments.transfer", policy = "policies/treasury_agent.yaml")]
fn transfer(ctx: &Context, destination: &str) -> Result<(), E> {
    Ok(())
}

fn main() {}
