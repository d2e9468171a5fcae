"""An MCP server that only listens: every item the official MCP Python SDK's
stdio reader (`mcp.server.stdio.stdio_server`) hands it is appended to the
file named on the command line, one JSON line each (the message as the SDK
modelled it, or `{"invalid": ...}` for a line the SDK could not read).
Requests are answered with `{"echo": true}`, so a client sees which of its
messages reached the server.

The framing test (`test_framing.py`) puts `capfence mcp-proxy` in front of
it and compares what the SDK read with what the proxy decided."""

import json
import sys

import anyio
import mcp_types as types
from mcp.server.stdio import stdio_server
from mcp.shared.message import SessionMessage

LOG = sys.argv[1]


async def main() -> None:
    async with stdio_server() as (read, write), write:
        with open(LOG, "a", encoding="utf-8") as log:
            async for item in read:
                if isinstance(item, Exception):
                    log.write(json.dumps({"invalid": type(item).__name__}) + "\n")
                    log.flush()
                    continue
                message = item.message
                log.write(message.model_dump_json(by_alias=True, exclude_unset=True) + "\n")
                log.flush()
                if isinstance(message, types.JSONRPCRequest):
                    answer = types.JSONRPCResponse(jsonrpc="2.0", id=message.id, result={"echo": True})
                    await write.send(SessionMessage(answer))


if __name__ == "__main__":
    anyio.run(main)
