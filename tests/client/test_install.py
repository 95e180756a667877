"""The package installed as a user would: a venv made with
`python3 -m venv --system-site-packages` in the build tree, then
`pip install --no-build-isolation --no-index ./clients/python` (offline,
protoc generating the message modules), then a script run from outside
the source and build trees, with no PYTHONPATH, that calls the daemon."""
import os
import shutil
import subprocess
import sys
import tempfile

import clienttest
from clienttest import daemon, main

BUILD = os.environ.get("BG_BUILD_DIR") or tempfile.gettempdir()
SRC = os.path.dirname(os.path.dirname(clienttest.CLIENT_DIR))

SCRIPT = r"""
import sys, bayesguard, bayesguard.v1.guard_pb2 as pb
site = sys.argv[2]
assert bayesguard.__file__.startswith(site), bayesguard.__file__
assert pb.__file__.startswith(site), pb.__file__
with bayesguard.Guard(sys.argv[1]) as g:
    v = g.evaluate("send_email", {"to": "a@example.com"}, session="venv")
    assert v.allowed and v.receipt, v
    print("observations", g.report(v, harmed=False).observations)
    assert g.evaluate("deny_x", {}).decision is bayesguard.Decision.DENY
"""


def run(argv, **kw):
    r = subprocess.run(argv, capture_output=True, text=True, timeout=180, **kw)
    assert r.returncode == 0, "%s exited %d\n%s\n%s" % (argv, r.returncode, r.stdout, r.stderr)
    return r


def test_venv_install_outside_the_tree():
    root = tempfile.mkdtemp(prefix="bgc-venv-", dir=BUILD)
    try:
        # a copy of the two folders the build reads, so pip's in-tree build
        # writes nothing into the checkout
        src = os.path.join(root, "src")
        shutil.copytree(clienttest.CLIENT_DIR, os.path.join(src, "clients", "python"),
                        ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
        shutil.copytree(os.path.join(SRC, "proto"), os.path.join(src, "proto"))
        venv = os.path.join(root, "venv")
        run(["/usr/bin/python3", "-m", "venv", "--system-site-packages", venv])
        py = os.path.join(venv, "bin", "python")
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        run([os.path.join(venv, "bin", "pip"), "install", "--no-build-isolation", "--no-index",
             "--disable-pip-version-check", "./clients/python"], cwd=src, env=env)
        site = run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                   env=env).stdout.strip()
        out = os.path.join(root, "elsewhere")
        os.mkdir(out)
        with daemon() as d:
            r = run([py, "-c", SCRIPT, d.addrs[0], site], cwd=out, env=env)
        assert r.stdout.split() == ["observations", "1"], r.stdout
        # the installed package carries its generated modules; none in the copy's source
        assert os.path.isfile(os.path.join(site, "bayesguard", "v1", "guard_pb2.py"))
        assert not os.path.exists(os.path.join(src, "clients", "python", "bayesguard", "v1"))
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    if not os.access("/usr/bin/protoc", os.X_OK) and not shutil.which("protoc"):
        print("skip: protoc (protobuf-compiler) is not installed")
        sys.exit(77)
    main([test_venv_install_outside_the_tree])
