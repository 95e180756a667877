"""clienttest — what tests/client/*.py share: the import paths of the
client package in the tree layout, the fixture policies, a daemon.

The tree layout: clients/python/ (the package's code) and the build tree's
python/ (its generated bayesguard/v1/*_pb2.py) are both on sys.path, and
bayesguard/__init__.py joins them into one package. clients/python must be
on the path before tests/python/bgtest.py imports bayesguard.v1, or that
import would make `bayesguard` a bare namespace package.
"""
import os
import sys

_SRC = os.environ.get("BG_SOURCE_DIR") or os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
CLIENT_DIR = os.path.join(_SRC, "clients", "python")
POLICIES = os.path.join(_SRC, "tests", "client", "policies")
sys.path.insert(0, os.path.join(_SRC, "tests", "python"))
sys.path.insert(0, CLIENT_DIR)

import bgtest  # noqa: E402  (skips with 77 without grpcio or the generated modules)
from bgtest import Daemon, main, wait_for  # noqa: E402,F401

import bayesguard  # noqa: E402

assert os.path.dirname(os.path.abspath(bayesguard.__file__)) == os.path.join(
    CLIENT_DIR, "bayesguard"), bayesguard.__file__


def daemon(**kw):
    """A daemon on the client fixture policies (every role on TCP)."""
    kw.setdefault("policies", POLICIES)
    return Daemon(**kw)


def expect_raises(exc_type, fn, *args, **kw):
    """Call fn; assert it raises exc_type; return the exception."""
    try:
        fn(*args, **kw)
    except exc_type as e:
        return e
    raise AssertionError("expected %s from %s" % (exc_type.__name__, fn))
