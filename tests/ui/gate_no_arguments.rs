// The capability is required.
use capfence::{Blocked, Context, Decimal};
struct E;
impl From<Blocked> for E {
    fn from(_: Blocked) -> Self {
        E
    }
}

#[capfence::gate]
fn transfer(ctx: &Context, amount: Decimal) -> Result<(), E> {
    Ok(())
}

fn main() {}
