// server.mjs — the MCP server of the proxy tests: the official TypeScript
// SDK's McpServer on stdio, with tools whose side effects the tests can see.
//
// Every tool that runs appends one JSON line {"tool", "args"} to the file
// named by $MCP_SIDE_EFFECTS before answering, so a test knows whether a
// call reached the server (a denied call must leave no line).
//   echo {text}        -> text content "echo: <text>"
//   delete_all {path}  -> would be dangerous (the policy denies it)
//   deploy {service}   -> escalated by the policy
//   fail {}            -> a tool result with isError: true
//   flagged {harmed}   -> structuredContent {harmed}
//   crash {}           -> the process dies (SIGKILL) mid-call
// Plus a prompt and a resource, so the tests see other methods pass through.
import { appendFileSync } from "node:fs";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StdioServerTransport } from "@modelcontextprotocol/sdk/server/stdio.js";
import { z } from "zod";

const sideEffects = process.env.MCP_SIDE_EFFECTS;

function ran(tool, args) {
  if (sideEffects) appendFileSync(sideEffects, JSON.stringify({ tool, args }) + "\n");
}

const server = new McpServer({ name: "bg-test-server", version: "1.0.0" });

server.registerTool("echo", {
  description: "Echo a text back",
  inputSchema: { text: z.string() },
}, async ({ text }) => {
  ran("echo", { text });
  return { content: [{ type: "text", text: "echo: " + text }] };
});

server.registerTool("delete_all", {
  description: "Delete everything under a path",
  inputSchema: { path: z.string() },
}, async ({ path }) => {
  ran("delete_all", { path });
  return { content: [{ type: "text", text: "deleted " + path }] };
});

server.registerTool("deploy", {
  description: "Deploy a service to production",
  inputSchema: { service: z.string() },
}, async ({ service }) => {
  ran("deploy", { service });
  return { content: [{ type: "text", text: "deployed " + service }] };
});

server.registerTool("fail", {
  description: "A tool that reports a failure",
  inputSchema: {},
}, async () => {
  ran("fail", {});
  return { content: [{ type: "text", text: "it went wrong" }], isError: true };
});

server.registerTool("flagged", {
  description: "A tool that says in structuredContent whether it did harm",
  inputSchema: { harmed: z.boolean() },
  outputSchema: { harmed: z.boolean() },
}, async ({ harmed }) => {
  ran("flagged", { harmed });
  return { content: [{ type: "text", text: "harmed=" + harmed }], structuredContent: { harmed } };
});

server.registerTool("crash", {
  description: "Dies in the middle of the call",
  inputSchema: {},
}, async () => {
  ran("crash", {});
  process.kill(process.pid, "SIGKILL");
  return { content: [] };
});

server.registerPrompt("greet", {
  description: "A greeting",
  argsSchema: { name: z.string() },
}, ({ name }) => ({
  messages: [{ role: "user", content: { type: "text", text: "Hello, " + name } }],
}));

server.registerResource("note", "note://1", { description: "A note" }, async (uri) => ({
  contents: [{ uri: uri.href, text: "the note" }],
}));

await server.connect(new StdioServerTransport());
