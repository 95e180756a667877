// client.mjs — the MCP client of the proxy tests: the official TypeScript
// SDK's Client over StdioClientTransport, which spawns
//   sh -c 'bayesguard mcp-proxy ARGS... -- node server.mjs; echo $? > EXIT_FILE'
// (the wrapper records the proxy's exit code, which the SDK does not
// expose, and hands the SDK's SIGTERM on to the proxy).
//
//   node client.mjs SCENARIO   with env BG_CLI (the bayesguard binary),
//   BG_PROXY_ARGS (JSON array of proxy flags), BG_EXIT_FILE, MCP_SIDE_EFFECTS
//
// Prints one JSON object with what the client saw; the Python tests assert
// on it (tests/mcp/test_mcp_*.py). Scenarios:
//   basic     tools/list, prompts, resources, ping through the proxy and
//             straight from the server (to compare), then every call named
//             in $BG_CALLS (JSON [[tool, args], ...])
//   crash     one call to `crash`: the error the client gets
//   escalate  one call to `deploy` (an operator decides meanwhile); with
//             BG_ELICIT=decline|accept the client declares elicitation and
//             answers so
import { readFileSync, existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { ElicitRequestSchema } from "@modelcontextprotocol/sdk/types.js";

const here = dirname(fileURLToPath(import.meta.url));
const serverScript = join(here, "server.mjs");
const scenario = process.argv[2];
const env = { ...process.env };

function proxyTransport() {
  const args = JSON.parse(process.env.BG_PROXY_ARGS || "[]");
  // The SDK stops the server it spawned with SIGTERM, to this sh: pass it
  // on to the proxy (which ends as on EOF) and record the proxy's code.
  // (dash gives a background job /dev/null for stdin unless it is moved.)
  const script = 'trap \'kill -TERM $pid\' TERM; exec 3<&0; "$0" "$@" <&3 3<&- & pid=$!; ' +
                 'wait $pid; wait $pid; echo $? > "$BG_EXIT_FILE"';
  return new StdioClientTransport({
    command: "sh",
    args: ["-c", script, process.env.BG_CLI, "mcp-proxy", ...args, "--",
           process.execPath, serverScript],
    env,
    stderr: "inherit",
  });
}

function directTransport() {
  return new StdioClientTransport({ command: process.execPath, args: [serverScript], env,
                                    stderr: "inherit" });
}

async function connect(transport, capabilities = {}) {
  const client = new Client({ name: "bg-test-client", version: "1.0.0" }, { capabilities });
  await client.connect(transport);
  return client;
}

async function call(client, name, args, opts) {
  try {
    return { result: await client.callTool({ name, arguments: args }, undefined, opts) };
  } catch (e) {
    return { error: { code: e.code ?? null, message: String(e.message) } };
  }
}

async function waitExitFile(ms) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    const f = process.env.BG_EXIT_FILE;
    if (existsSync(f)) {
      const t = readFileSync(f, "utf8").trim();
      if (t !== "") return Number(t);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  return null;
}

async function surface(client) {
  return {
    tools: await client.listTools(),
    prompts: await client.listPrompts(),
    prompt: await client.getPrompt({ name: "greet", arguments: { name: "Ada" } }),
    resources: await client.listResources(),
    resource: await client.readResource({ uri: "note://1" }),
    ping: await client.ping(),
  };
}

const out = {};
if (scenario === "basic") {
  const direct = await connect(directTransport());
  out.direct = await surface(direct);
  await direct.close();
  const client = await connect(proxyTransport());
  out.proxied = await surface(client);
  out.server_version = client.getServerVersion();
  out.calls = [];
  for (const [name, args] of JSON.parse(process.env.BG_CALLS || "[]"))
    out.calls.push(await call(client, name, args));
  await client.close();
  out.exit = await waitExitFile(15000);
} else if (scenario === "crash") {
  const client = await connect(proxyTransport());
  out.before = await call(client, "echo", { text: "still fine" });
  out.crash = await call(client, "crash", {}, { timeout: 15000 });
  out.exit = await waitExitFile(15000);
  await client.close().catch(() => {});
} else if (scenario === "escalate") {
  const mode = process.env.BG_ELICIT;
  const caps = mode ? { elicitation: {} } : {};
  const client = await connect(proxyTransport(), caps);
  out.elicitations = [];
  if (mode) {
    client.setRequestHandler(ElicitRequestSchema, async (req) => {
      out.elicitations.push(req.params);
      return { action: mode };
    });
  }
  console.error("client: calling deploy");
  out.call = await call(client, "deploy", { service: "web" },
                        { timeout: 60000, resetTimeoutOnProgress: true });
  await client.close();
  out.exit = await waitExitFile(15000);
} else {
  console.error("unknown scenario " + scenario);
  process.exit(2);
}
process.stdout.write(JSON.stringify(out) + "\n");
