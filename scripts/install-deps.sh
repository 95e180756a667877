#!/bin/sh
# install-deps.sh: install the Debian packages bayesguard needs to build, test and run.
# Idempotent: asks apt only for what is missing, so a second run is a no-op.
set -eu

PKGS="build-essential cmake pkg-config
 libgrpc-dev protobuf-compiler protobuf-compiler-grpc grpc-proto
 libprotobuf-c-dev protobuf-c-compiler
 libuv1-dev libyaml-dev libjansson-dev libssl-dev zlib1g-dev
 libhiredis-dev redis-server
 python3 python3-grpcio python3-yaml python3-protobuf openssl
 python3-venv python3-setuptools python3-wheel
 libvulkan-dev glslang-tools spirv-tools mesa-vulkan-drivers vulkan-validationlayers
 libopenblas-dev gnuplot-nox
 clang clang-format"

# The MCP proxy's tests (tests/mcp) run the MCP TypeScript SDK on Node.js;
# npm ci installs the SDK into the build tree. Debian's nodejs and npm, unless
# the machine already has a node and an npm (another packaging of Node.js
# that bundles npm conflicts with Debian's npm package).
if ! command -v node >/dev/null 2>&1; then PKGS="$PKGS nodejs"; fi
if ! command -v npm >/dev/null 2>&1; then PKGS="$PKGS npm"; fi

missing=""
for p in $PKGS; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing="$missing $p"
  fi
done

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi
if [ -n "$missing" ]; then
  echo "install-deps: installing:$missing"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends $missing
fi

# libFuzzer (make test-fuzz, docs/FUZZING.md) is in the compiler-rt package
# of the installed clang's major version (Debian 12: libclang-rt-14-dev).
rt="libclang-rt-$(clang -dumpversion | cut -d. -f1)-dev"
if ! dpkg-query -W -f='${Status}' "$rt" 2>/dev/null | grep -q "install ok installed"; then
  echo "install-deps: installing: $rt"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "$rt"
fi
