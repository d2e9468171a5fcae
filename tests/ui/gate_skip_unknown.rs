// skip() names an argument of the function.
use capfence::{Blocked, Context, Decimal};
struct E;
impl From<Blocked> for E {
    fn from(_: Blocked) -> Self {
        E
    }
}

#[capfence::gate("payments.transfer", skip(memo), policy = "policies/treasury_agent.yaml")]
fn transfer(ctx: &Context, amount: Decimal, destination: &str) -> Result<(), E> {
    Ok(())
}

fn main() {}
