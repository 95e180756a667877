"""The CLI of issue 12 against the real binaries: `bayesguard test DIR`
(policy unit tests, offline), `--version` on both binaries, `--json` on
check / replay / test, and eval's exit codes (ALLOW 0, DENY 1, ESCALATE 4)
against a real daemon.

- test: the shipped policies/*_test.yaml pass (every default policy has
  one); a case whose expectation is wrong FAILs naming the check, what it
  expected and the actual verdict, exit 1; malformed test files are refused
  with file:line:col and exit 2 before anything runs; --json is one
  document with the same facts.
- test files are no policies: a daemon serving a directory holding a
  broken *_test.yaml starts, serves the policies, keeps the revision the
  directory has without it, and its watch does not reload when a test
  file changes (a policy edit afterwards does: the watch is alive);
  `bayesguard check` skips them too.
Run with /usr/bin/python3 (ctest sets the environment)."""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import bgtest  # noqa: E402

CLI = bgtest.CLI
POLICIES = bgtest.default_policies()


def run(*args, cwd=None):
    return subprocess.run([CLI] + list(args), capture_output=True, text=True, timeout=120,
                          cwd=cwd, env=dict(os.environ, BG_PLUGIN_DIR=bgtest.PLUGIN_DIR))


def policy_copy():
    """A temp dir with the shipped policies and no test files."""
    tmp = tempfile.mkdtemp(prefix="bgcli-")
    for f in os.listdir(POLICIES):
        if f.endswith(".yaml") and not f.endswith("_test.yaml"):
            shutil.copy(os.path.join(POLICIES, f), tmp)
    return tmp


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


# ------------------------------------------------------------ bayesguard test

def test_shipped_policy_tests_pass():
    r = run("test", POLICIES)
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert "FAIL" not in r.stdout and re.search(r"^PASS: (\d+)/\1$", r.stdout, re.M), r.stdout
    j = run("test", POLICIES, "--json")
    assert j.returncode == 0, j.stderr
    doc = json.loads(j.stdout)
    assert doc["failed"] == 0 and doc["passed"] == doc["total"] == len(doc["cases"]) >= 20, doc
    assert doc["errors"] == [] and len(doc["revision"]) == 64, doc
    # every default policy has its tests, and each case names its file and line
    shipped = sorted(f[:-5] for f in os.listdir(POLICIES)
                     if f.endswith(".yaml") and not f.endswith("_test.yaml"))
    assert sorted({c["policy"] for c in doc["cases"]}) == shipped, (shipped, doc["cases"])
    for c in doc["cases"]:
        assert c["result"] == "PASS" and c["failure"] is None, c
        assert c["file"].endswith("%s_test.yaml" % c["policy"]) and c["line"] > 0, c
    # -v prints every step's verdict; the cold-start case shows ESCALATE
    v = run("test", POLICIES, "-v")
    assert v.returncode == 0 and "actual: ESCALATE" in v.stdout, v.stdout
    vj = json.loads(run("test", POLICIES, "--json", "-v").stdout)
    cold = [c for c in vj["cases"] if c["name"] == "cold start escalates every command"][0]
    assert [s["kind"] for s in cold["steps"]] == ["expect", "expect"], cold
    assert all(s["actual"]["decision"] == "ESCALATE" for s in cold["steps"]), cold


FAILING = """policy: shell
peer: {uid: 1000}
cases:
  - name: passes
    steps:
      - expect: {tool: exec, arguments: {cmd: "ls"}, decision: ESCALATE}
  - name: wrong verdict
    steps:
      - observe: {tool: exec, arguments: {cmd: "ls"}, harmed: false, repeat: 3}
      - expect: {tool: exec, arguments: {cmd: "ls"}, decision: DENY,
                 harm_bound: {ge: 0.1, le: 0.2}, observations: 3}
      - expect: {tool: exec, arguments: {cmd: "ls"}, decision: ESCALATE}
  - name: wrong policy
    steps:
      - expect: {tool: send_email, decision: DENY}
  - name: wrong error
    steps:
      - expect: {tool: exec, arguments: {cmd: 3}, error: "no such text"}
  - name: an error that does not come
    steps:
      - expect: {tool: exec, arguments: {cmd: "ls"}, error: "cmd"}
  - name: refused where a verdict was expected
    peer: anonymous
    steps:
      - expect: {tool: exec, arguments: {cmd: "ls"}, decision: ESCALATE}
"""


def test_failing_cases_say_why():
    tmp = policy_copy()
    try:
        write(os.path.join(tmp, "shell_test.yaml"), FAILING)
        r = run("test", tmp)
        assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
        out = r.stdout
        f = os.path.join(tmp, "shell_test.yaml")
        assert "PASS  %s:4  shell: passes" % f in out, out
        assert "FAIL  %s:7  shell: wrong verdict" % f in out, out
        # step 2 at its line and column, every failed check, not the passing one
        assert ("step 2 (expect at %s:10:9): decision: expected DENY, got ESCALATE; "
                "harm_bound: expected >= 0.1 and <= 0.2, got 0.9" % f) in out, out
        assert "observations: expected" not in out, out
        assert "actual: ESCALATE harm_bound=0.9" in out and "observations=3" in out, out
        assert ("policy: tool 'send_email' is decided by policy email (spec.match.tools), "
                "not shell") in out, out
        assert "error: expected a message containing 'no such text', got: " in out, out
        assert "error: expected the step to be refused with 'cmd', but it got a verdict" in out
        assert "refused: policy shell keys sessions by peer.identity, but this listener cannot " \
               "tell who is calling" in out, out
        assert "PASS: 1/6" in out and "FAIL: 5/6" in out, out
        # the same as JSON
        j = run("test", tmp, "--json")
        assert j.returncode == 1, j.stderr
        doc = json.loads(j.stdout)
        assert (doc["passed"], doc["failed"], doc["total"]) == (1, 5, 6), doc
        wrong = [c for c in doc["cases"] if c["name"] == "wrong verdict"][0]
        fl = wrong["failure"]
        assert (fl["step"], fl["line"], fl["column"], fl["kind"]) == (2, 10, 9, "expect"), fl
        assert fl["message"].startswith("decision: expected DENY, got ESCALATE"), fl
        a = fl["actual"]
        assert a["decision"] == "ESCALATE" and a["policy"] == "shell" and a["observations"] == 3
        assert 0.9 < a["harm_bound"] <= 1 and a["bound_kind"] == "EXACT", a
        assert a["cautious"]["harm"] == a["harm_bound"], a
    finally:
        shutil.rmtree(tmp)


# (test file text, what stderr must say): refused before anything runs
MALFORMED = [
    ("policy: shell\ncases:\n  - name: x\n    steps:\n      - expect: {tool: exec, decison: DENY}\n",
     "shell_test.yaml:5:30: unknown key 'decison' in expect; allowed: tool,"),
    ("cases:\n  - name: x\n    steps:\n      - expect: {tool: exec}\n",
     "shell_test.yaml:1:1: missing 'policy'"),
    ("policy: shel\ncases:\n  - name: x\n    steps:\n      - expect: {tool: exec}\n",
     "shell_test.yaml:1:9: policy 'shel' is not defined in"),
    ("policy: shell\ncases:\n  - name: x\n    steps: [\n", "shell_test.yaml:5:1: invalid YAML"),
    ("policy: shell\ncases:\n  - name: x\n    steps:\n      - expect: {tool: exec, decision: MAYBE}\n",
     "shell_test.yaml:5:40: decision: expected ALLOW, DENY or ESCALATE, got 'MAYBE'"),
    ("policy: shell\ncases:\n  - name: x\n    steps:\n"
     "      - expect: {tool: exec, harm_bound: {between: 1}}\n",
     "shell_test.yaml:5:43: unknown key 'between' in harm_bound; allowed: ge, gt, le, lt"),
    ("policy: shell\ncases:\n  - name: x\n    steps:\n"
     "      - observe: {tool: exec, harmed: false, repeat: 0}\n",
     "shell_test.yaml:5:54: repeat: expected an integer from 1 to 1000000, got '0'"),
    ("policy: shell\ncases:\n  - name: x\n    steps:\n      - observe: {tool: exec}\n",
     "shell_test.yaml:5:18: observe: missing 'harmed'"),
    ("policy: shell\npeer: {uid: 1, identity: x}\ncases: []\n",
     "shell_test.yaml:2:7: peer: give exactly one of uid"),
    ("policy: shell\ncases:\n  - name: x\n    steps:\n      - expect: {tool: exec}\n"
     "        observe: {tool: exec, harmed: true}\n",
     "shell_test.yaml:5:9: a step is one key, observe: {...} or expect: {...}"),
    ("policy: shell\ncases:\n  - name: x\n    steps: [{expect: {tool: t}}]\n"
     "  - name: x\n    steps: [{expect: {tool: t}}]\n",
     "shell_test.yaml:5:11: case name 'x' is used twice (first at line 3)"),
    ("policy: shell\ncases:\n  - name: x\n    steps:\n"
     "      - expect: {tool: exec, decision: DENY, error: boom}\n",
     "a step that expects an error has no verdict to check"),
    ("policy: shell\ncases: {}\n", "shell_test.yaml:2:8: cases: expected a list, got a map"),
    # bounded: the unique-name check is quadratic (fuzz_policy_test's review)
    ("policy: shell\ncases:\n" + "".join("  - {name: c%d, steps: [{expect: {tool: exec}}]}\n" % i
                                         for i in range(4097)),
     "shell_test.yaml:3:3: cases: at most 4096 in one file (this one has 4097)"),
]


def test_malformed_test_files():
    tmp = policy_copy()
    try:
        path = os.path.join(tmp, "shell_test.yaml")
        for text, want in MALFORMED:
            write(path, text)
            r = run("test", tmp)
            assert r.returncode == 2, (text, r.returncode, r.stdout, r.stderr)
            assert want in r.stderr, (text, want, r.stderr)
            assert "PASS" not in r.stdout and "FAIL" not in r.stdout, r.stdout  # nothing ran
            j = run("test", tmp, "--json")
            doc = json.loads(j.stdout)
            assert j.returncode == 2 and doc["total"] == 0 and doc["cases"] == [], doc
            assert any(want in e for e in doc["errors"]), (want, doc)
        # no test file at all, a policy dir that does not load, usage
        os.unlink(path)
        r = run("test", tmp)
        assert r.returncode == 2 and "no policy tests (NAME_test.yaml" in r.stderr, r
        write(path, "policy: shell\ncases: [{name: x, steps: [{expect: {tool: exec}}]}]\n")
        write(os.path.join(tmp, "zz.yaml"), "apiVersion: bayesguard/v1\nkind: Nope\n")
        r = run("test", tmp)
        assert r.returncode == 2 and "zz.yaml:2" in r.stderr and "no test ran" in r.stderr, r
        r = run("test")
        assert r.returncode == 2 and "usage: bayesguard test DIR" in r.stderr, r
        r = run("test", tmp, "--bogus")
        assert r.returncode == 2 and "'--bogus'" in r.stderr, r
    finally:
        shutil.rmtree(tmp)


# ------------------------------------------- test files are not policies

BROKEN_TEST = "policy: [this is not a policy\n"


def test_check_skips_test_files():
    tmp = policy_copy()
    try:
        before = json.loads(run("check", tmp, "--json").stdout)
        # policies/ as shipped, its *_test.yaml beside the policies: the same
        # revision as the policies alone (what a daemon serving it reports)
        shipped = json.loads(run("check", POLICIES, "--json").stdout)
        assert shipped["valid"] and shipped["revision"] == before["revision"], (shipped, before)
        write(os.path.join(tmp, "broken_test.yaml"), BROKEN_TEST)
        shutil.copy(os.path.join(POLICIES, "shell_test.yaml"), tmp)
        r = run("check", tmp)
        assert r.returncode == 0 and "ok, 3 policies" in r.stdout, (r.stdout, r.stderr)
        j = run("check", tmp, "--json")
        doc = json.loads(j.stdout)
        assert j.returncode == 0 and doc["valid"] is True and doc["errors"] == [], doc
        assert [p["name"] for p in doc["policies"]] == ["email", "payments", "shell"], doc
        assert doc["revision"] == before["revision"], (doc, before)  # not hashed in
        shell = doc["policies"][2]
        assert shell["over_threshold"] == "escalate" and shell["threshold"] == 0.05, shell
        assert shell["session"] == "peer.identity" and "exec" in shell["tools"], shell
        assert {"bernoulli", "logistic", "noniid"} <= {p["name"] for p in doc["plugins"]}, doc
        # an invalid policy: exit 1, the error at its position
        write(os.path.join(tmp, "zz.yaml"),
              "apiVersion: bayesguard/v1\nkind: GuardPolicy\nmetadata: {name: zz}\n"
              "spec:\n  match: {tools: [zz]}\n  model: {plugin: bernoulli}\n"
              "  estimator: {plugin: iid}\n  threshold: 7\n")
        j = run("check", tmp, "--json")
        doc = json.loads(j.stdout)
        assert j.returncode == 1 and doc["valid"] is False and doc["revision"] is None, doc
        assert any("zz.yaml:8:" in e and "threshold" in e for e in doc["errors"]), doc
        assert doc["policies"] == [], doc
    finally:
        shutil.rmtree(tmp)


def status(d):
    return json.loads(d.cli("status", "--json", check=0).stdout)


def test_daemon_ignores_test_files():
    tmp = policy_copy()
    try:
        rev = json.loads(run("check", tmp, "--json").stdout)["revision"]
        write(os.path.join(tmp, "broken_test.yaml"), BROKEN_TEST)
        with bgtest.Daemon(policies=tmp, args=["--watch-debounce-ms", "50"]) as d:
            s = status(d)
            names = sorted(p["name"] for p in s["policies"] if p["file"] != "(built in)")
            assert names == ["email", "payments", "shell"], s
            assert s["reload"]["last_errors"] == [] and s["policies"] and s["revision"] == rev, s
            ok0 = int(s["reload"]["reloads_ok"])
            failed0 = int(s["reload"]["reloads_failed"])
            # A test file changes: no reload. A negative can only be waited
            # for: 1 s is 20 debounce periods, and the positive control
            # below shows the watch does see this directory.
            write(os.path.join(tmp, "broken_test.yaml"), BROKEN_TEST + "# edited\n")
            shutil.copy(os.path.join(POLICIES, "email_test.yaml"), tmp)
            time.sleep(1.0)
            s = status(d)
            assert int(s["reload"]["reloads_ok"]) == ok0, s["reload"]
            assert int(s["reload"]["reloads_failed"]) == failed0, s["reload"]
            # a policy edit does reload, and the test files still do not count
            with open(os.path.join(tmp, "email.yaml"), "a") as f:
                f.write("# edited\n")
            bgtest.wait_for(lambda: int(status(d)["reload"]["reloads_ok"]) > ok0, 20,
                            "the reload after a policy edit")
            s = status(d)
            assert s["reload"]["last_trigger"] == "watch" and s["reload"]["last_errors"] == [], s
            assert len(s["policies"]) == 4 and s["revision"] != rev, s  # + default-deny
    finally:
        shutil.rmtree(tmp)


# ------------------------------------------------------------- --version

def version_of(binary):
    r = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r
    lines = r.stdout.splitlines()
    assert len(lines) == 3, lines
    j = subprocess.run([binary, "--version", "--json"], capture_output=True, text=True,
                       timeout=30)
    assert j.returncode == 0, j
    return lines, json.loads(j.stdout)


def test_version():
    src = bgtest.SOURCE_DIR
    cm = open(os.path.join(src, "CMakeLists.txt")).read()
    version = re.search(r"project\(bayesguard VERSION ([0-9.]+)", cm).group(1)
    ph = open(os.path.join(src, "include", "bayesguard", "plugin.h")).read()
    major = int(re.search(r"#define BG_PLUGIN_ABI_MAJOR (\d+)", ph).group(1))
    minor = int(re.search(r"#define BG_PLUGIN_ABI_MINOR (\d+)", ph).group(1))
    date = re.search(r'#define BG_PLUGIN_ABI_DATE "([^"]+)"', ph).group(1)
    revs = set()
    for binary, prog in ((bgtest.DAEMON, "bayesguardd"), (CLI, "bayesguard")):
        lines, doc = version_of(binary)
        assert lines[0] == "%s %s" % (prog, version), lines
        assert lines[2] == "plugin ABI %d.%d (%s)" % (major, minor, date), lines
        rev = lines[1].split(" ", 1)[1]
        # git describe --always --dirty at configure time, or "unknown"
        assert lines[1].startswith("revision ") and (
            rev == "unknown" or re.fullmatch(r"[\w.\-]*[0-9a-f]{7,}(-dirty)?", rev)), lines
        assert doc == {"program": prog, "version": version, "revision": rev,
                       "plugin_abi": {"major": major, "minor": minor, "date": date}}, doc
        revs.add(rev)
    assert len(revs) == 1, revs  # one build, one revision
    if os.path.exists(os.path.join(src, ".git")) and shutil.which("git"):
        head = subprocess.run(["git", "-C", src, "rev-parse", "HEAD"], capture_output=True,
                              text=True).stdout.strip()
        sha = re.search(r"([0-9a-f]{7,})(-dirty)?$", rev)
        assert sha and subprocess.run(["git", "-C", src, "cat-file", "-e", sha.group(1)])\
            .returncode == 0, (rev, head)  # a commit of this repository
    r = run("--version", "--bogus")
    assert r.returncode == 2 and "--bogus" in r.stderr, r
    # --help reads its whole line too: a command name shows that command's help
    for h in ("--help", "help", "-h"):
        r = run(h, "--bogus")
        assert r.returncode == 2 and "--bogus" in r.stderr and r.stdout == "", r
        r = run(h, "eval")
        assert r.returncode == 0 and "eval" in r.stdout, r
    r = run("help", "eval", "extra")
    assert r.returncode == 2, r


# --------------------------------------------- eval exit codes, replay --json

CLI_POLICIES = """apiVersion: bayesguard/v1
kind: GuardPolicy
metadata: {name: cli-open}
spec:
  match: {tools: ["cli_*"]}
  model: {plugin: bernoulli, config: {grid_size: 20}}
  estimator: {plugin: noniid, delta: 0.05, prior_floor: 0.001}
  threshold: 0.99
  over_threshold: deny
  session: context.session
  outcomes: open
---
apiVersion: bayesguard/v1
kind: GuardPolicy
metadata: {name: cli-deny}
spec:
  match: {tools: ["deny_*"]}
  model: {plugin: bernoulli, config: {rates: [0.01, 0.5, 0.9]}}
  estimator: {plugin: iid}
  threshold: 0.05
  over_threshold: deny
---
apiVersion: bayesguard/v1
kind: GuardPolicy
metadata: {name: cli-escalate}
spec:
  match: {tools: ["esc_*"]}
  model: {plugin: bernoulli, config: {rates: [0.01, 0.5, 0.9]}}
  estimator: {plugin: iid}
  threshold: 0.05
  over_threshold: escalate
"""


def test_eval_exit_codes_and_replay_json():
    tmp = tempfile.mkdtemp(prefix="bgcli-")
    try:
        pol = os.path.join(tmp, "pol")
        os.mkdir(pol)
        write(os.path.join(pol, "cli.yaml"), CLI_POLICIES)
        with bgtest.Daemon(policies=pol) as d:
            for tool, code, word in (("cli_x", 0, "ALLOW"), ("deny_x", 1, "DENY"),
                                     ("esc_x", 4, "ESCALATE"), ("nobody_x", 1, "DENY")):
                r = d.cli("eval", "--tool", tool, "--session", "s", check=code)
                assert r.stdout.startswith(word), (tool, r.stdout)
                j = d.cli("eval", "--tool", tool, "--session", "s", "--json", check=code)
                assert json.loads(j.stdout)["decision"] == word, j.stdout
            d.cli("eval", "--tool", "cli_x", "--feature", "nan", check=3)  # INVALID_ARGUMENT
            d.cli("eval", check=2)
            h = d.cli("eval", "--help", check=0)
            assert "exit: 0 ALLOW, 1 DENY, 4 ESCALATE, 2 usage, 3 RPC error" in h.stdout, h.stdout
            # replay --json: every line stored
            good = os.path.join(tmp, "good.jsonl")
            write(good, "".join('{"tool": "cli_x", "harmed": %s}\n' % ("true" if i % 3 == 0
                                                                       else "false")
                                for i in range(6)))
            r = d.cli("replay", good, "--session", "rj", "--json", check=0)
            doc = json.loads(r.stdout)
            assert doc["file"] == good and doc["sent"] == 6 and doc["stopped"] is None, doc
            last = doc["last"]
            assert last["policy"] == "cli-open" and last["session"] == "rj", last
            assert last["observations"] == "6" and last["posterior"]["hypotheses"] == "20", last
            # a refused line: where, why, what was stored
            bad = os.path.join(tmp, "bad.jsonl")
            write(bad, '{"tool": "cli_x"}\n\n{"tool": "cli_x", "harmed": 1}\n{"tool": "cli_x"}\n')
            r = d.cli("replay", bad, "--session", "rk", "--json", check=1)
            doc = json.loads(r.stdout)
            assert doc["sent"] == 1 and doc["last"]["observations"] == "1", doc
            assert doc["stopped"] == {"line": 3, "column": None,
                                      "message": '"harmed": expected true or false, got a '
                                                 'number'}, doc
            write(bad, '{"tool": "cli_x"\n')
            r = d.cli("replay", bad, "--session", "rk", "--json", check=1)
            doc = json.loads(r.stdout)
            assert doc["sent"] == 0 and doc["last"] is None, doc
            assert doc["stopped"]["line"] == 1 and doc["stopped"]["column"] == 16, doc
            assert "'}' expected near end of file" in doc["stopped"]["message"], doc
            # a line the daemon refuses (no policy matches): its message
            write(bad, '{"tool": "nobody_x"}\n')
            r = d.cli("replay", bad, "--session", "rk", "--json", check=1)
            doc = json.loads(r.stdout)
            assert doc["sent"] == 0 and "no policy matches tool 'nobody_x'" in \
                doc["stopped"]["message"], doc
    finally:
        shutil.rmtree(tmp)


if __name__ == "__main__":
    bgtest.main([test_shipped_policy_tests_pass, test_failing_cases_say_why,
                 test_malformed_test_files, test_check_skips_test_files,
                 test_daemon_ignores_test_files, test_version,
                 test_eval_exit_codes_and_replay_json])
