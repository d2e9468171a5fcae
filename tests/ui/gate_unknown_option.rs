// Only skip, rename and policy are options.
use capfence::{Blocked, Context, Decimal};
struct E;
impl From<Blocked> for E {
    fn from(_: Blocked) -> Self {
        E
    }
}

#[capfence::gate("payments.read", retries = 3)]
fn read(ctx: &Context) -> Result<(), E> {
    Ok(())
}

fn main() {}
