// A capability the policy never names: a compile error with a suggestion.
use capfence::{Blocked, Context, Decimal};
struct E;
impl From<Blocked> for E {
    fn from(_: Blocked) -> Self {
        E
    }
}

#[capfence::gate("payments.transfr", policy = "policies/treasury_agent.yaml")]
fn transfer(ctx: &Context, amount: Decimal, destination: &str) -> Result<(), E> {
    Ok(())
}

fn main() {}
