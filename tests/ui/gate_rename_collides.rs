// Two arguments may not end up with one payload name: the table would decide
// on `limit` while the record and the body use `amount`.
use capfence::{Blocked, Context, Decimal};
struct E;
impl From<Blocked> for E {
    fn from(_: Blocked) -> Self {
        E
    }
}

#[capfence::gate("payments.transfer", rename(limit = "amount"), policy = "policies/treasury_agent.yaml")]
fn transfer(_ctx: &Context, limit: Decimal, amount: Decimal, destination: &str) -> Result<(), E> {
    let _ = (limit, amount, destination);
    Ok(())
}

fn main() {}
