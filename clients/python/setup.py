"""Build the bayesguard client package, generating its message modules.

The wire API's .proto files live in the repository's proto/ (found as
../../proto from this file, or $BAYESGUARD_PROTO_DIR). build_py runs
Debian's protoc (protobuf-compiler, the version python3-protobuf was made
for) on them into the build's bayesguard/v1/, so the installed package
carries bayesguard/v1/guard_pb2.py and nothing generated is committed.
No downloads: dependencies are Debian's python3-grpcio and python3-protobuf,
seen through a venv made with --system-site-packages, and are therefore not
declared as install_requires (pip --no-index could not resolve them).
"""
import os
import shutil
import subprocess

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))
PROTOS = ["bayesguard/v1/guard.proto"]


def proto_dir():
    d = os.environ.get("BAYESGUARD_PROTO_DIR") or os.path.join(HERE, "..", "..", "proto")
    d = os.path.abspath(d)
    for p in PROTOS:
        if not os.path.isfile(os.path.join(d, p)):
            raise SystemExit("bayesguard setup: %s not found under %s: build from the "
                             "bayesguard source tree (clients/python beside proto/), or set "
                             "BAYESGUARD_PROTO_DIR to the folder holding bayesguard/v1/"
                             % (p, d))
    return d


def check_protoc(protoc):
    """Refuse a protoc newer than the protobuf runtime: its generated code
    would not import (Debian's protobuf-compiler 3.21.x pairs with
    python3-protobuf 4.21.x; the two share the 21.x release)."""
    out = subprocess.run([protoc, "--version"], capture_output=True, text=True).stdout
    try:
        import google.protobuf
    except ImportError:
        raise SystemExit("bayesguard setup: python3-protobuf is not importable here: make "
                         "the venv with --system-site-packages and install python3-protobuf")

    def release(v):
        parts = v.strip().split()[-1].split(".")
        return tuple(int(x) for x in parts[1:3]) if len(parts) >= 3 else None
    gen, run = release(out), release(google.protobuf.__version__)
    if gen is None or run is None or gen > run:
        raise SystemExit("bayesguard setup: %s (%s) is newer than the protobuf runtime %s: "
                         "use Debian's protobuf-compiler, the release of python3-protobuf"
                         % (protoc, out.strip(), google.protobuf.__version__))


class BuildWithProtos(build_py):
    """build_py, then protoc --python_out into the build's package folder."""

    def run(self):
        super().run()
        protoc = os.environ.get("PROTOC") or shutil.which("protoc")
        if not protoc:
            raise SystemExit("bayesguard setup: protoc not found: install Debian's "
                             "protobuf-compiler (apt-get install protobuf-compiler)")
        check_protoc(protoc)
        src = proto_dir()
        out = os.path.abspath(self.build_lib)
        for p in PROTOS:
            subprocess.run([protoc, "-I", src, "--python_out=" + out, p], check=True, cwd=src)
        v1 = os.path.join(out, "bayesguard", "v1")
        open(os.path.join(v1, "__init__.py"), "a").close()


setup(
    name="bayesguard",
    version="0.1.0",
    description="Client of the bayesguard daemon: ask before an AI agent's tool call runs",
    packages=["bayesguard"],
    python_requires=">=3.9",
    cmdclass={"build_py": BuildWithProtos},
)
