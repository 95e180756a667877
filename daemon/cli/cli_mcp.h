/*
 * cli_mcp.h — `bayesguard mcp-proxy`: the stdio MCP proxy that asks the
 * guard before every tools/call (daemon/mcp/mcp.h; docs/MCP.md).
 *
 *   bayesguard mcp-proxy --guard ADDR [flags] -- SERVER_COMMAND [ARGS...]
 *
 * Exit codes: BG_MCP_EXIT_* of mcp.h (0 the client closed its stdin or
 * sent SIGTERM/SIGINT,
 * 1 proxy failure, 2 usage, 5 the server exited while the client was
 * connected, 6 the server could not be started). Main thread only.
 */
#ifndef BG_CLI_MCP_H
#define BG_CLI_MCP_H

int bg_cli_mcp_main(int argc, char **argv);

#endif
