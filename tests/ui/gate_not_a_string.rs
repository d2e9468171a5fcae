// The capability is a string literal.
use capfence::{Blocked, Context, Decimal};
struct E;
impl From<Blocked> for E {
    fn from(_: Blocked) -> Self {
        E
    }
}

#[capfence::gate(payments.transfer)]
fn transfer(ctx: &Context, amount: Decimal) -> Result<(), E> {
    Ok(())
}

fn main() {}
