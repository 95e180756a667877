"""docs/PLUGINS.md cannot rot: do what it says, and compare with what it shows.

The page marks what this test uses with `<!-- doc-test: WHAT [FILE] -->`
before a fenced block:

  file NAME     the block is a file of the author's directory (the plugin's
                source, the policy): written as is
  build         the build command, run as is in that directory with `cc`
                replaced by the build's C compiler ($CC) and $BAYESGUARD the
                source tree; it must succeed without a warning
  symbols       the `nm` line: the plugin must export bg_plugin_entry only
  check         `bayesguard check ...`: must exit 0
  check-output  what check prints: each line shown must be printed (a line
                with "…" up to the "…")
  daemon        the daemon line (run here on a free port) and the CLI lines,
                each run with --addr pointing at it; an `eval` line whose
                comment starts with a decision ("# ALLOW: ...") must get it

So the doc's plugin is built out of tree, with exactly the documented
command, and loaded by the real `bayesguard check` and `bayesguardd`.
Runs without grpcio (only the C CLI talks to the daemon).
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

SRC = os.environ.get("BG_SOURCE_DIR", "")
BUILD = os.environ.get("BG_BUILD_DIR", "")
PLUGIN_DIR = os.environ.get("BG_PLUGIN_DIR", os.path.join(BUILD, "plugins"))
CC = os.environ.get("CC", "cc")
CLI = os.path.join(BUILD, "daemon", "bayesguard")
DAEMON = os.path.join(BUILD, "daemon", "bayesguardd")
SKIP = 77


def blocks(text):
    """[(what, arg, body)] for every marked fenced block, in page order."""
    pat = re.compile(r"<!-- doc-test: (\S+)(?: (\S+))? -->\n```[a-z]*\n(.*?)```", re.S)
    return [(m.group(1), m.group(2), m.group(3)) for m in pat.finditer(text)]


def one(bl, what):
    got = [b for b in bl if b[0] == what]
    assert len(got) == 1, "docs/PLUGINS.md: expected one '%s' block, found %d" % (what, len(got))
    return got[0][2]


def sh(cmd, cwd, env, check=True):
    r = subprocess.run(["sh", "-c", cmd], cwd=cwd, env=env, capture_output=True, text=True,
                       timeout=120)
    if check:
        assert r.returncode == 0, "%s\nexit %d\nstdout:\n%s\nstderr:\n%s" % (
            cmd, r.returncode, r.stdout, r.stderr)
    return r


def strip_comment(line):
    return line.split("#", 1)[0].strip()


def main():
    for p in (CLI, DAEMON, os.path.join(PLUGIN_DIR, "bg_noniid.so")):
        if not os.path.exists(p):
            print("skip: %s is not built" % p)
            return SKIP
    with open(os.path.join(SRC, "docs", "PLUGINS.md"), encoding="utf-8") as f:
        bl = blocks(f.read())
    work = tempfile.mkdtemp(prefix="bg-plugin-doc-")
    try:
        return run(bl, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(bl, work):
    # The author's directory: the files of the page, an empty plugins/.
    files = [(arg, body) for what, arg, body in bl if what == "file"]
    assert any(n.endswith(".c") for n, _ in files), "no C file in docs/PLUGINS.md"
    for name, body in files:
        path = os.path.join(work, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(body)
    os.makedirs(os.path.join(work, "plugins"), exist_ok=True)
    # bayesguard and bayesguardd on PATH, as for an installed daemon.
    bindir = os.path.join(work, ".bin")
    os.makedirs(bindir)
    os.symlink(CLI, os.path.join(bindir, "bayesguard"))
    os.symlink(DAEMON, os.path.join(bindir, "bayesguardd"))
    env = dict(os.environ, BAYESGUARD=SRC, PATH=bindir + os.pathsep + os.environ["PATH"])

    # Build, exactly as documented (the compiler is the build's).
    build = one(bl, "build").replace("\\\n", " ").strip()
    assert build.startswith("cc "), build
    cmd = "'%s' %s" % (CC, build[3:])
    r = sh(cmd, work, env)
    assert r.stderr == "" and r.stdout == "", "warnings:\n" + r.stderr + r.stdout
    so = os.path.join(work, "plugins", "rates7.so")
    assert os.path.exists(so), "the build command made no plugins/rates7.so"
    print("built out of tree:", cmd)

    # Only bg_plugin_entry is exported.
    nm = strip_comment(one(bl, "symbols"))
    if shutil.which("nm"):
        out = sh(nm, work, env).stdout.split()
        defined = [w for w in out if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_@.]*", w) and
                   w not in ("T", "D", "B", "R", "W", "V", "A")]
        assert defined == ["bg_plugin_entry"], "exported: %s" % out
    else:
        print("nm not found: the export check is skipped")

    # check with the estimator beside it, as the page says.
    shutil.copy(os.path.join(PLUGIN_DIR, "bg_noniid.so"), os.path.join(work, "plugins"))
    r = sh(strip_comment(one(bl, "check")), work, env)
    printed = r.stdout.splitlines()
    for want in one(bl, "check-output").splitlines():
        if "…" in want:
            head = want.split("…", 1)[0]
            assert any(l.startswith(head) for l in printed), \
                "check printed no line starting %r:\n%s" % (head, r.stdout)
        else:
            assert want in printed, "check did not print %r:\n%s" % (want, r.stdout)
    print("bayesguard check: ok, and prints what the page shows")

    run_daemon(one(bl, "daemon").splitlines(), work, env)
    print("test_plugin_doc: all checks passed")
    return 0


def run_daemon(lines, work, env):
    start = [l for l in lines if l.startswith("bayesguardd ")]
    assert len(start) == 1, lines
    argv = strip_comment(start[0]).rstrip("&").split()
    listen = argv.index("--listen")
    argv[listen + 1] = "127.0.0.1:0"
    ready = os.path.join(work, "ready")
    argv = [DAEMON] + argv[1:] + ["--ready-file", ready]
    log = open(os.path.join(work, "daemon.log"), "wb")
    proc = subprocess.Popen(argv, cwd=work, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while not os.path.exists(ready):
            assert proc.poll() is None, "bayesguardd exited %s:\n%s" % (
                proc.returncode, open(log.name).read())
            assert time.monotonic() < deadline, "bayesguardd not ready after 30 s"
            time.sleep(0.02)
        with open(ready) as f:
            addr = f.read().split()[0]
        # `bayesguard CMD ...` -> `bayesguard CMD --addr ADDR ...`
        wrapper = os.path.join(work, ".bin", "bayesguard")
        os.unlink(wrapper)
        with open(wrapper, "w") as f:
            f.write('#!/bin/sh\ncmd="$1"; shift\nexec "%s" "$cmd" --addr "%s" "$@"\n'
                    % (CLI, addr))
        os.chmod(wrapper, 0o755)
        evals = 0
        for line in lines:
            if line.startswith("bayesguardd "):
                continue
            r = sh(strip_comment(line), work, env, check=False)
            m = re.search(r"#\s*(ALLOW|DENY|ESCALATE)\b", line)
            # eval's exit code is its verdict's (ALLOW 0, DENY 1, ESCALATE 4)
            want = {"ALLOW": 0, "DENY": 1, "ESCALATE": 4}[m.group(1)] if (
                line.startswith("bayesguard eval") and m) else 0
            assert r.returncode == want, "%s\nexit %d, expected %d\n%s%s" % (
                line, r.returncode, want, r.stdout, r.stderr)
            if line.startswith("bayesguard eval") and m:
                evals += 1
                got = r.stdout.split()[0] if r.stdout.split() else ""
                assert got == m.group(1), "%s\nexpected %s, got:\n%s" % (line, m.group(1),
                                                                        r.stdout)
                print("%-8s %s" % (got, r.stdout.splitlines()[1].strip()))
                if evals == 1:
                    assert "'rate=0.5'" in r.stdout, r.stdout
        assert evals >= 2, "the daemon block has no eval with an expected decision"
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0, open(log.name).read()
        log.close()


if __name__ == "__main__":
    sys.exit(main())
