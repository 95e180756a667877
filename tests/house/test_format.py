#!/usr/bin/env python3
"""test_format.py — every C source and header of the tree is clang-format clean.

STYLE.md: files are formatted with the repository's .clang-format. This test
holds the tree to it, so a file that drifts fails here, not in a reviewer's
diff. It walks the source folders (lib, daemon, plugins, include, tests,
bench, clients) for *.c and *.h, skips nothing else, and runs
`clang-format --dry-run -Werror` on them in batches; a failure lists every
file that is not clean and the one command that fixes them.

Skips (exit 77, with the reason) when clang-format is not installed: the
result depends on its version, and `make test` installs Debian 12's
(scripts/install-deps.sh), the version the tree is formatted with.
"""
import os
import shutil
import subprocess
import sys

SRC = os.environ.get("BG_SOURCE_DIR") or os.path.abspath(os.path.join(os.path.dirname(__file__), "../.."))
FOLDERS = ("lib", "daemon", "plugins", "include", "tests", "bench", "clients")


def sources():
    out = []
    for top in FOLDERS:
        for root, dirs, files in os.walk(os.path.join(SRC, top)):
            dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != "node_modules")
            out += [os.path.join(root, f) for f in sorted(files) if f.endswith((".c", ".h"))]
    return out


def main():
    exe = shutil.which("clang-format")
    if not exe:
        print("SKIP: clang-format is not installed (make test installs it: scripts/install-deps.sh)")
        return 77
    files = sources()
    if len(files) < 100:
        print(f"FAIL: found only {len(files)} C files under {SRC}: wrong source root?")
        return 1
    bad = []
    for i in range(0, len(files), 64):
        batch = files[i:i + 64]
        r = subprocess.run([exe, "--dry-run", "-Werror"] + batch, capture_output=True, text=True)
        if r.returncode != 0:
            for f in batch:
                if subprocess.run([exe, "--dry-run", "-Werror", f], capture_output=True).returncode:
                    bad.append(os.path.relpath(f, SRC))
    print(f"{len(files)} C files checked with {exe}, {len(bad)} not formatted")
    if bad:
        for f in bad:
            print("  not clang-format clean:", f)
        print("fix: clang-format -i " + " ".join(bad))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
