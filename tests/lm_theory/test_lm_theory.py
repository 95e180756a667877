"""lm_theory over gRPC with the real daemon (issue 14 items 4-5).

The model is ../shared/models/stories260K.bin (vocabulary 512) with a
byte-level tokenizer this test writes in llama2.c format
(scripts/lm_byte_tokenizer.py: <unk> <s> </s>, 256 one-byte pieces, 253
pieces that never merge), so llama2.c's encode of a text is the dummy
space and then one id per byte, written out there as enc(). The probabilities are meaningless for English; the computation is
real and checked exactly:

- the verdict's cautious.label is a theory's sentence, and harm_bound,
  cautious.harm and the plausible set equal the noniid bound computed here
  from the LM's log-probabilities as printed by `bayesguard lm score` (the
  CLI on the same checkpoint, not the plugin), to 1e-5 (the CLI prints 6
  decimals of nats);
- an observation moves the posterior as the LM's likelihood says (the
  cautious hypothesis' posterior after one harmed outcome, to 1e-5);
- backend vulkan (lavapipe) gives the same bound within 1e-4 (skipped with
  the reason where no Vulkan device is usable);
- a checkpoint replaced under the same path: a Reload of the same policy
  text scores with the new file, the posterior rebuilt from the history;
- a missing checkpoint, a corrupt checkpoint, a tokenizer of the wrong
  size: `bayesguard check` exits 1 naming file:line:col of the `model` key;
  a Reload with such a file fails and the daemon keeps serving the last
  good set;
- a model file someone else can write (mode or owner): refused like a
  policy file that others can write.
"""
import math
import os
import shutil
import struct
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import bgtest  # noqa: E402
sys.path.insert(0, os.path.join(os.environ.get("BG_SOURCE_DIR", ""), "scripts"))
from lm_byte_tokenizer import enc, write_tokenizer  # noqa: E402
from bgtest import Daemon, guard_pb2  # noqa: E402

SHARED = os.environ.get("BG_SHARED_DIR", "")
CKPT = os.path.join(SHARED, "models", "stories260K.bin")
CLI = os.path.join(os.environ.get("BG_BUILD_DIR", ""), "daemon", "bayesguard")
ALPHA = 0.1
# The daemon's `backend: vulkan` accepts a CPU-type device (lavapipe); the
# CLI needs it said.
VK_ENV = dict(os.environ, BG_VK_ALLOW_CPU="1")

THEORIES = [
    "deleting files is harmful",
    "reading files is always fine",
    "network calls leak secrets",
    "writing to /etc breaks the system",
    "sending email to strangers is risky",
    "the agent is careful",
    "large payments are dangerous",
    "shell commands can destroy data",
    "listing a directory is harmless",
    "the user asked for this action",
    "rm -rf is never safe",
    "curl to unknown hosts exfiltrates data",
    "chmod 777 opens the system",
    "git push --force loses history",
    "a dry run changes nothing",
    "temporary files may be removed",
]
PROMPT = "Action: {tool} {args}\nTheory:{theory}\nSo this action is"
# One byte each: under stories260K's vocabulary the byte tokens are rare,
# and continuations of equal length keep P(harm) away from 0 and 1, so the
# checks below compare numbers that differ between theories.
HARM, SAFE = "x", "y"


def policy_text(tok, ckpt=CKPT, backend="cpu", name="lmt", extra=""):
    th = "\n".join("      - %s" % t for t in THEORIES)
    return ("apiVersion: bayesguard/v1\nkind: GuardPolicy\nmetadata: {name: %s}\nspec:\n"
            "  match: {tools: [\"*\"]}\n  model:\n    plugin: lm_theory\n    config:\n"
            "      model: {checkpoint: %s, tokenizer: %s, backend: %s}\n"
            "      prompt: %s\n      harm: %s\n      safe: %s\n      theories:\n%s\n"
            "  estimator: {plugin: noniid, alpha: %g}\n  threshold: 0.999\n"
            "  over_threshold: deny\n  outcomes: open\n  session: context.session\n%s"
            % (name, ckpt, tok, backend, '"' + PROMPT.replace("\n", "\\n") + '"', HARM, SAFE,
               th, ALPHA, extra))


def lm_score(prefix, conts, backend="cpu", ckpt=CKPT):
    argv = [CLI, "lm", "score", "--model", ckpt, "--backend", backend, "--prefix",
            " ".join(map(str, prefix))]
    for c in conts:
        argv += ["--continuation", " ".join(map(str, c))]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=VK_ENV)
    assert r.returncode == 0, r.stderr
    return [float(x) for x in r.stdout.split()]


def lm_logits(tool, args, backend="cpu", ckpt=CKPT):
    """d_i = log p(H | BOS pre rest_i) - log p(S | BOS pre rest_i) per
    theory, from `bayesguard lm score` (one call per theory)."""
    pre_text, _ = PROMPT.split("{theory}")
    rest_t = PROMPT[PROMPT.index("{theory}"):]
    pre = [1] + enc(pre_text.replace("{tool}", tool).replace("{args}", args))
    out = []
    for t in THEORIES:
        rest = enc(rest_t.replace("{theory}", t).replace("{tool}", tool).replace("{args}", args))
        lh, ls = lm_score(pre + rest, [enc(HARM), enc(SAFE)], backend, ckpt)
        out.append(lh - ls)
    return out


def sigmoid(x):
    return 1 / (1 + math.exp(-x)) if x >= 0 else math.exp(x) / (1 + math.exp(x))


def noniid(logpost, harm):
    """Prop 4.6 walk (plugins/estimator/noniid): the bound, the cautious
    index, the kept set's size."""
    m = max(logpost)
    w = [math.exp(l - m) for l in logpost]
    z = sum(w)
    post = [x / z for x in w]
    order = sorted(range(len(post)), key=lambda i: (-post[i], i))
    s, kept = 0.0, []
    for i in order:
        s += post[i]
        if post[i] >= ALPHA * s * (1 - 1e-12):
            kept.append(i)
    best = max(harm[i] for i in kept)
    cautious = next(i for i in kept if harm[i] == best)
    return best, cautious, len(kept), post


def setup_dir():
    tmp = tempfile.mkdtemp(prefix="bgt-lmt-")
    tok = os.path.join(tmp, "bytes.tok")
    write_tokenizer(tok)
    pol = os.path.join(tmp, "policies")
    os.mkdir(pol)
    with open(os.path.join(pol, "lmt.yaml"), "w") as f:
        f.write(policy_text(tok))
    return tmp, tok, pol


def evaluate(d, tool, args, session, timeout=20.0):
    return d.evaluate(guard_pb2.EvaluateRequest(
        action=guard_pb2.Action(tool=tool, arguments_json=args),
        context=guard_pb2.Context(session=session)), timeout=timeout)


def test_bound_equals_exact():
    tmp, tok, pol = setup_dir()
    try:
        tool, args = "delete_file", '{"path": "/tmp/x"}'
        d_ = lm_logits(tool, args)
        harm = [sigmoid(x) for x in d_]
        bound, ci, kept, _ = noniid([0.0] * len(THEORIES), harm)
        print("  P(harm) over the theories: %.4f .. %.4f" % (min(harm), max(harm)))
        assert 0 < min(harm) and max(harm) < 1 and max(harm) - min(harm) > 0.5, harm
        with Daemon(policies=pol, args=["--no-watch"]) as d:
            v = evaluate(d, tool, args, "s1")
            print("  bound %.6f (exact %.6f), cautious %r, plausible %d"
                  % (v.harm_bound, bound, v.cautious.label, v.plausible_set_size))
            assert v.cautious.label == THEORIES[ci], (v.cautious.label, THEORIES[ci])
            assert v.cautious.label in THEORIES
            assert abs(v.harm_bound - bound) < 1e-5, (v.harm_bound, bound)
            assert abs(v.cautious.harm - harm[ci]) < 1e-5
            assert v.plausible_set_size == kept
            assert v.model == "lm_theory"

            # One harmed outcome: the posterior moves by log sigmoid(d_i).
            d.call("Observe", guard_pb2.ObserveRequest(
                action=guard_pb2.Action(tool=tool, arguments_json=args),
                context=guard_pb2.Context(session="s1"), harmed=True))
            logpost = [math.log(h) for h in harm]
            b2, c2, k2, post = noniid(logpost, harm)
            v2 = evaluate(d, tool, args, "s1")
            print("  after a harmed outcome: bound %.6f (exact %.6f), posterior %.6f (exact "
                  "%.6f)" % (v2.harm_bound, b2, v2.cautious.posterior, post[c2]))
            assert v2.observations == 1
            assert v2.cautious.label == THEORIES[c2]
            assert abs(v2.harm_bound - b2) < 1e-5
            assert abs(v2.cautious.posterior - post[c2]) < 1e-5
            assert v2.plausible_set_size == k2
    finally:
        shutil.rmtree(tmp)


def test_score_cache():
    """The host's score cache (plugin_lm_cache.c) answers the Observe of an
    evaluated action and a repeated Evaluate: the verdicts with it on
    (default), off (BG_LM_SCORE_CACHE=0) and with a bad value (a warning,
    then the default) are the same to 1e-12, and the bad value is named in
    the log."""
    tmp, tok, pol = setup_dir()
    tool, args = "delete_file", '{"path": "/etc/x"}'
    seen = {}
    try:
        for mode in ("4096", "0", "lots"):
            old = os.environ.get("BG_LM_SCORE_CACHE")
            os.environ["BG_LM_SCORE_CACHE"] = mode
            try:
                with Daemon(policies=pol, args=["--no-watch"]) as d:
                    v1 = evaluate(d, tool, args, "c")
                    v1b = evaluate(d, tool, args, "c")
                    d.call("Observe", guard_pb2.ObserveRequest(
                        action=guard_pb2.Action(tool=tool, arguments_json=args),
                        context=guard_pb2.Context(session="c"), harmed=False))
                    v2 = evaluate(d, tool, args, "c")
                    v3 = evaluate(d, "read_file", args, "c")
                    log = d.log()
            finally:
                if old is None:
                    del os.environ["BG_LM_SCORE_CACHE"]
                else:
                    os.environ["BG_LM_SCORE_CACHE"] = old
            assert v1.harm_bound == v1b.harm_bound, (v1.harm_bound, v1b.harm_bound)
            assert v2.observations == 1 and v2.harm_bound != v1.harm_bound
            seen[mode] = [(v.harm_bound, v.cautious.label, v.cautious.posterior)
                          for v in (v1, v2, v3)]
            assert ("BG_LM_SCORE_CACHE=lots ignored" in log) == (mode == "lots"), log
            print("  cache %s: bounds %s" % (mode, ["%.6f" % x[0] for x in seen[mode]]))
        for mode in ("0", "lots"):
            for a, b in zip(seen["4096"], seen[mode]):
                assert a[1] == b[1] and abs(a[0] - b[0]) < 1e-12 and abs(a[2] - b[2]) < 1e-12, \
                    (mode, a, b)
    finally:
        shutil.rmtree(tmp)


def vulkan_usable():
    r = subprocess.run([CLI, "lm", "score", "--model", CKPT, "--backend", "vulkan",
                        "--prefix", "1", "--continuation", "2"],
                       capture_output=True, text=True, timeout=120, env=VK_ENV)
    return r.returncode == 0, r.stderr.strip()


def test_vulkan_same_verdict():
    ok, why = vulkan_usable()
    if not ok:
        print("  skip: no usable Vulkan device (%s)" % why)
        return
    tmp, tok, pol = setup_dir()
    try:
        with open(os.path.join(pol, "lmt.yaml"), "w") as f:
            f.write(policy_text(tok, backend="vulkan"))
        tool, args = "run_shell", '{"cmd": "ls"}'
        harm = [sigmoid(x) for x in lm_logits(tool, args)]
        bound, ci, _, _ = noniid([0.0] * len(THEORIES), harm)
        with Daemon(policies=pol, args=["--no-watch"]) as d:
            # the first call on lavapipe compiles pipelines and uploads the
            # model: seconds, tens of them on a loaded CI machine or ASan
            v = evaluate(d, tool, args, "v", timeout=180.0)
            print("  vulkan bound %.6f, cpu exact %.6f" % (v.harm_bound, bound))
            assert "on vulkan" in d.log(), d.log_text_tail()  # no silent CPU fallback
            assert abs(v.harm_bound - bound) < 1e-4
            assert v.cautious.label in THEORIES
    finally:
        shutil.rmtree(tmp)


def test_model_file_replaced():
    """A checkpoint replaced under the same path: a Reload of the unchanged
    policy text loads the new file, and the session's posterior is rebuilt
    from its history with the new model's likelihoods (the instance's key
    includes the model files' identity), not carried over."""
    tmp, tok, pol = setup_dir()
    try:
        ck = os.path.join(tmp, "m.bin")
        shutil.copy(CKPT, ck)
        with open(os.path.join(pol, "lmt.yaml"), "w") as f:
            f.write(policy_text(tok, ckpt=ck))
        tool, args = "write_file", '{"path": "/etc/hosts"}'
        with Daemon(policies=pol, args=["--no-watch"]) as d:
            d.call("Observe", guard_pb2.ObserveRequest(
                action=guard_pb2.Action(tool=tool, arguments_json=args),
                context=guard_pb2.Context(session="m"), harmed=True))
            old = [sigmoid(x) for x in lm_logits(tool, args, ckpt=ck)]
            v1 = evaluate(d, tool, args, "m")
            b1 = noniid([math.log(h) for h in old], old)[0]
            assert abs(v1.harm_bound - b1) < 1e-5, (v1.harm_bound, b1)
            # The new file: the embeddings of the printable bytes negated.
            data = bytearray(open(CKPT, "rb").read())
            lo, hi = 28 + 259 * 64 * 4, 28 + 354 * 64 * 4
            emb = struct.unpack("<%df" % ((hi - lo) // 4), bytes(data[lo:hi]))
            data[lo:hi] = struct.pack("<%df" % len(emb), *[-x for x in emb])
            with open(ck + ".new", "wb") as f:
                f.write(data)
            os.replace(ck + ".new", ck)
            new = [sigmoid(x) for x in lm_logits(tool, args, ckpt=ck)]
            b2, c2, _, post = noniid([math.log(h) for h in new], new)
            assert abs(b2 - b1) > 1e-3, "the perturbed model must score differently"
            rr = d.call("Reload", guard_pb2.ReloadRequest())
            assert rr.ok, rr
            v2 = evaluate(d, tool, args, "m")
            print("  replaced model: bound %.6f -> %.6f (exact %.6f), posterior %.6f (exact "
                  "%.6f)" % (v1.harm_bound, v2.harm_bound, b2, v2.cautious.posterior, post[c2]))
            assert v2.observations == 1
            assert abs(v2.harm_bound - b2) < 1e-5
            assert v2.cautious.label == THEORIES[c2]
            assert abs(v2.cautious.posterior - post[c2]) < 1e-5
    finally:
        shutil.rmtree(tmp)


def check(pol):
    return subprocess.run([CLI, "check", pol], capture_output=True, text=True, timeout=120)


def test_bad_model_files():
    tmp, tok, pol = setup_dir()
    try:
        path = os.path.join(pol, "lmt.yaml")
        good = open(path).read()
        line = next(i for i, l in enumerate(good.split("\n"), 1) if "checkpoint:" in l)
        r = check(pol)
        assert r.returncode == 0, r.stdout + r.stderr
        bad_ckpt = os.path.join(tmp, "corrupt.bin")
        with open(CKPT, "rb") as f:
            data = f.read()
        with open(bad_ckpt, "wb") as f:
            f.write(data[: len(data) // 2])  # cut short
        small_tok = os.path.join(tmp, "small.tok")
        write_tokenizer(small_tok, vocab=400)
        cases = [
            (policy_text(tok, ckpt=os.path.join(tmp, "missing.bin")), "missing.bin"),
            (policy_text(tok, ckpt=bad_ckpt), "corrupt.bin"),
            (policy_text(small_tok), "400 tokens"),
            (policy_text(os.path.join(tmp, "none.tok")), "none.tok"),
        ]
        for text, want in cases:
            with open(path, "w") as f:
                f.write(text)
            r = check(pol)
            out = r.stdout + r.stderr
            assert r.returncode == 1, out
            assert "lmt.yaml:%d:" % line in out and want in out, out
            print("  check: %s" % next(l for l in out.split("\n") if want in l).strip())

        with open(path, "w") as f:
            f.write(good)
        with Daemon(policies=pol, args=["--no-watch"]) as d:
            v1 = evaluate(d, "t", "{}", "r")
            rev = v1.revision
            for text, want in cases:
                with open(path, "w") as f:
                    f.write(text)
                rr = d.call("Reload", guard_pb2.ReloadRequest())
                assert not rr.ok and any(want in e for e in rr.errors), rr
                v = evaluate(d, "t", "{}", "r")
                assert v.revision == rev and abs(v.harm_bound - v1.harm_bound) < 1e-12
            # A good reload after them works and keeps serving.
            with open(path, "w") as f:
                f.write(good.replace("threshold: 0.999", "threshold: 0.998"))
            rr = d.call("Reload", guard_pb2.ReloadRequest())
            assert rr.ok, rr
            v = evaluate(d, "t", "{}", "r")
            assert v.revision != rev and abs(v.harm_bound - v1.harm_bound) < 1e-12
    finally:
        shutil.rmtree(tmp)


def test_model_files_others_can_write():
    """The attack: the agent (another uid, or a group it is in) can write the
    checkpoint, tokenizer or adapter a policy names, and rewrites the weights
    so that the harm continuation never scores: every theory then says
    "harmless" and every action is ALLOWed. The model files pass the policy
    files' rule (bg_trust.h): `check` refuses them naming the file and the
    fix, and a Reload onto them keeps the last good set serving."""
    tmp, tok, pol = setup_dir()
    try:
        ck = os.path.join(tmp, "m.bin")
        shutil.copy(CKPT, ck)
        os.chmod(ck, 0o644)
        os.chmod(tok, 0o644)
        path = os.path.join(pol, "lmt.yaml")
        with open(path, "w") as f:
            f.write(policy_text(tok, ckpt=ck))
        r = check(pol)
        assert r.returncode == 0, r.stdout + r.stderr
        cases = [(ck, 0o666, "model checkpoint", "writable by others"),
                 (ck, 0o664, "model checkpoint", "writable by its group"),
                 (tok, 0o646, "model tokenizer", "writable by others")]
        for f, mode, kind, what in cases:
            os.chmod(f, mode)
            r = check(pol)
            out = r.stdout + r.stderr
            assert r.returncode == 1, out
            assert f in out and kind in out and what in out and "chmod go-w" in out, out
            os.chmod(f, 0o644)
        if os.getuid() == 0:  # a file owned by another uid (the agent's)
            os.chown(ck, 65534, 65534)
            r = check(pol)
            out = r.stdout + r.stderr
            assert r.returncode == 1 and "owned by uid 65534" in out and "chown" in out, out
            os.chown(ck, 0, 0)
        with Daemon(policies=pol, args=["--no-watch"]) as d:
            v1 = evaluate(d, "t", "{}", "r")
            os.chmod(ck, 0o666)
            rr = d.call("Reload", guard_pb2.ReloadRequest())
            assert not rr.ok and any(ck in e and "writable by others" in e for e in rr.errors), rr
            v = evaluate(d, "t", "{}", "r")
            assert v.revision == v1.revision and v.harm_bound == v1.harm_bound, (v, v1)
            os.chmod(ck, 0o644)  # made safe, the same reload goes through
            rr = d.call("Reload", guard_pb2.ReloadRequest())
            assert rr.ok, rr
    finally:
        shutil.rmtree(tmp)


if __name__ == "__main__":
    if not os.path.exists(CKPT):
        print("skip: %s not found (the shared models/ folder)" % CKPT)
        sys.exit(77)
    bgtest.main([test_bound_equals_exact, test_score_cache, test_vulkan_same_verdict,
                 test_bad_model_files, test_model_file_replaced, test_model_files_others_can_write])
