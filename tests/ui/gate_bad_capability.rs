// A capability is resource.action.
use capfence::{Blocked, Context, Decimal};
struct E;
impl From<Blocked> for E {
    fn from(_: Blocked) -> Self {
        E
    }
}

#[capfence::gate("payments", policy = "policies/treasury_agent.yaml")]
fn transfer(ctx: &Context, amount: Decimal) -> Result<(), E> {
    Ok(())
}

fn main() {}
