// A gated function returns Result, so a blocked call can return an error.
use capfence::{Blocked, Context, Decimal};
struct E;
impl From<Blocked> for E {
    fn from(_: Blocked) -> Self {
        E
    }
}

#[capfence::gate("payments.read", policy = "policies/treasury_agent.yaml")]
fn read(ctx: &Context) -> u32 {
    7
}

fn main() {}
