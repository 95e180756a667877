#!/bin/sh
# npm_ci.sh SRC_DIR DEST_DIR — install the MCP TypeScript SDK pinned by
# SRC_DIR/package-lock.json into DEST_DIR/node_modules with `npm ci` (never
# global, never into the source tree), and copy the test's .mjs scripts
# beside it (node resolves packages from the script's own folder).
# Skips npm when DEST_DIR's install stamp is newer than the lockfile.
# The ctest fixture mcp_npm_ci runs it before the MCP tests.
set -eu
src=$1
dst=$2
mkdir -p "$dst"
cp "$src/package.json" "$src/package-lock.json" "$src/server.mjs" "$src/client.mjs" "$dst/"
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "npm_ci: node and npm are needed (scripts/install-deps.sh installs Debian's nodejs and npm)" >&2
  exit 1
fi
stamp=$dst/node_modules/.bg-npm-ci-stamp
if [ -f "$stamp" ] && [ "$stamp" -nt "$src/package-lock.json" ]; then
  echo "npm_ci: $dst/node_modules is current"
  exit 0
fi
cd "$dst"
echo "npm_ci: node $(node --version), npm $(npm --version): npm ci in $dst"
npm ci --ignore-scripts --no-audit --no-fund
touch "$stamp"
