"""Model Context Protocol servers: their tools offered to the model beside the built-in ones.

`config` reads `MCP_SERVERS_FILE`; `server` keeps one connection per MCP server in a task of its
own; `toolset` names their tools and turns them into Agents SDK tools.
"""
