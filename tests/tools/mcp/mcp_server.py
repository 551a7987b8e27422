"""A small MCP server for the tests, on mcp's own `MCPServer`.

`python mcp_server.py` serves stdio; `python mcp_server.py http <port>` serves streamable HTTP
on 127.0.0.1:<port>/mcp. It runs in the environment its entry gives it, without the project on
its path: it imports only `mcp`.
"""

import asyncio
import os
import sys
import time

from mcp.server.mcpserver import Context, MCPServer

server = MCPServer("dreamytin-test")


@server.tool()
def echo_env(key: str) -> str:
    """The value of an environment variable of this server, or <unset>."""
    return os.environ.get(key, "<unset>")


@server.tool()
def server_pid() -> str:
    """This server's process id."""
    return str(os.getpid())


@server.tool()
async def slow(seconds: float) -> str:
    """Answer after some seconds."""
    await asyncio.sleep(seconds)
    return "finally"


@server.tool()
def ls() -> str:
    """A tool whose name clashes with the built-in `ls`."""
    return "mcp ls"


@server.tool()
def big(mebibytes: float) -> str:
    """A result of that many MiB."""
    return "x" * int(mebibytes * 1024 * 1024)


@server.tool()
def broken() -> str:
    """Always fails."""
    raise ValueError("the broken tool is broken")


@server.tool()
def header(name: str, ctx: Context) -> str:
    """A header of the HTTP request that carried this call."""
    return (ctx.headers or {}).get(name.lower(), "<none>")


@server.tool()
async def add_tool(name: str, ctx: Context) -> str:
    """Add a tool and tell the client the list changed."""

    def added() -> str:
        return f"{name} works"

    server.add_tool(added, name=name, description="A tool added at run time.")
    await ctx.session.send_tool_list_changed()
    return "added"


if __name__ == "__main__":
    if sys.argv[1:2] == ["http"]:
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        server.run()
        # Reached only when the client closed the session (stdin), not when the server was killed.
        if os.environ.get("EXIT_FILE"):
            with open(os.environ["EXIT_FILE"], "w") as exit_file:
                exit_file.write(str(os.getpid()))
        if os.environ.get("LINGER"):  # a server that does not exit when its stdin closes
            time.sleep(3600)
