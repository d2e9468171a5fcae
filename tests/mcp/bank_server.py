"""A small MCP server for the proxy's tests, written with the official MCP
Python SDK: a bank whose `transfer_funds` tool appends every transfer it
executes to the file named on its command line. On stdio, or over
streamable HTTP with `--http PORT`."""

import os
import sys

from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from typing import Annotated

from pydantic import BaseModel, Field

LEDGER = sys.argv[1]
app = MCPServer("test-bank")


@app.tool()
def transfer_funds(amount: float, destination: str) -> str:
    """Send `amount` to `destination`."""
    with open(LEDGER, "a", encoding="utf-8") as out:
        out.write(f"{amount} {destination}\n")
    return f"[BANK GATEWAY] transferred ${amount:.2f} to {destination}"


class Payment(BaseModel):
    reference: str
    amount_sent: str


@app.tool()
def pay(amount: float, destination: str) -> Payment:
    """Pays through the rail and returns its receipt (structured content);
    an account the bank closed is an error."""
    if destination == "closed-acct":
        raise ToolError("the bank says: account closed")
    with open(LEDGER, "a", encoding="utf-8") as out:
        out.write(f"{amount} {destination}\n")
    return Payment(reference=f"RAIL-{int(amount)}", amount_sent=f"{amount - 0.5:.2f}")


@app.tool()
def routed_transfer(
    amount: float,
    destination: Annotated[str, Field(json_schema_extra={"x-mcp-header": "Destination"})],
) -> str:
    """A transfer whose destination a modern (2026-07-28) client mirrors
    into the `Mcp-Param-Destination` header, which the SDK's server holds
    to the body."""
    with open(LEDGER, "a", encoding="utf-8") as out:
        out.write(f"{amount} {destination}\n")
    return f"routed ${amount:.2f} to {destination}"


@app.tool()
def read_balance() -> str:
    """The treasury's balance."""
    return "balance: 1,000,000.00"


@app.tool()
def wipe_ledger() -> str:
    """Deletes the ledger (no policy rule allows it)."""
    with open(LEDGER, "a", encoding="utf-8") as out:
        out.write("WIPED\n")
    return "wiped"


class Confirmation(BaseModel):
    ok: bool


@app.tool()
async def confirm_vendor(vendor: str, ctx: Context) -> str:
    """Asks the client (elicitation) and logs to it (a notification): requests
    and notifications the server sends to the client, through the proxy."""
    await ctx.info(f"checking {vendor}")
    answer = await ctx.elicit(f"Is {vendor} a known vendor?", Confirmation)
    if answer.action == "accept" and answer.data.ok:
        return f"{vendor} confirmed"
    return f"{vendor} not confirmed"


@app.tool()
def crash() -> str:
    """Exits the server in the middle of a call (status 3)."""
    os._exit(3)


if __name__ == "__main__":
    # `bank_server.py LEDGER --http PORT`: streamable HTTP at /mcp.
    if sys.argv[2:3] == ["--http"]:
        app.run("streamable-http", host="127.0.0.1", port=int(sys.argv[3]))
    else:
        app.run()
