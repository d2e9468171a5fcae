// Sync, async, method, skip and rename forms all compile.
use capfence::{Blocked, Context, Decimal};

#[derive(Debug)]
struct ToolError(Blocked);

impl From<Blocked> for ToolError {
    fn from(b: Blocked) -> Self {
        ToolError(b)
    }
}

#[capfence::gate("payments.transfer", policy = "policies/treasury_agent.yaml")]
fn transfer(ctx: &Context, amount: Decimal, destination: &str) -> Result<(), ToolError> {
    let _ = (amount, destination);
    Ok(())
}

#[capfence::gate("payments.refund", skip(memo), policy = "policies/treasury_agent.yaml")]
async fn refund(ctx: &Context, amount: u64, memo: String) -> Result<u64, ToolError> {
    let _ = memo;
    Ok(amount)
}

#[capfence::gate("payments.transfer", rename(sum = "amount", to = "destination"), policy = "policies/treasury_agent.yaml")]
fn ambient(sum: i64, to: String) -> Result<String, ToolError> {
    Ok(format!("{sum} {to}"))
}

struct Tools;

impl Tools {
    #[capfence::gate("payments.read", policy = "policies/treasury_agent.yaml")]
    pub fn balance(&self, ctx: &Context, account: &str) -> Result<u32, ToolError> {
        let _ = account;
        Ok(7)
    }
}

fn main() {
    let _ = (transfer, refund, ambient, Tools::balance);
}
