// The error type must implement From<capfence::Blocked>.
use capfence::Context;

#[capfence::gate("payments.read", policy = "policies/treasury_agent.yaml")]
fn read(ctx: &Context) -> Result<u32, String> {
    Ok(7)
}

fn main() {}
