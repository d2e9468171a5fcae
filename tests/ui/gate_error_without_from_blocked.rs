// The error type must implement From<capfence::Blocked>. (A type of the
// crate's own: `String` would list every From impl the dependency graph adds.)
use capfence::Context;

#[derive(Debug)]
pub struct ToolError;

#[capfence::gate("payments.read", policy = "policies/treasury_agent.yaml")]
fn read(ctx: &Context) -> Result<u32, ToolError> {
    Ok(7)
}

fn main() {}
