"""lm_gfn over gRPC with the real daemon (issue 14 item 4): theories
sampled from the space of all word sequences up to a length, by a
language model fine-tuned as a GFlowNet on the session's own reward.

Model: ../shared/models/stories260K.bin with the byte-level tokenizer of
tests/lm_theory (scripts/lm_byte_tokenizer.py), as test_lm_theory.py.
The vocabulary is three words whose last bytes differ (the sampler's token
for a word is its last token), max_len 3: 3 + 9 + 27 = 39 theories, few
enough to list.

- Without data, a session samples the untrained sampler (the prior): the
  verdict is SAMPLED and its cautious label is a sentence of the
  vocabulary's words.
- After two outcomes (trained in the background, `train_steps` per
  observation), the sampled verdict's bound is held against the exact one
  of the same theories listed (lm_theory list mode, a second daemon, the
  same outcomes). The bar, measured (see the printed gap): the bound
  within BOUND_TOL of the exact one and the cautious label the exact one's;
  the posterior of the cautious theory, normalised over the sampled
  candidates, at least the exact posterior (the candidates are a subset,
  so it can only be larger) and within POST_RATIO of it.
- Bad configurations are policy errors from `bayesguard check`, at the
  key that is wrong: lm_gfn on a bit-set model, the bit-set sampler on a
  sequence model, two words ending in the same token, a space over 64
  bits, min_len over max_len.
"""
import itertools
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import bgtest  # noqa: E402
sys.path.insert(0, os.path.join(os.environ.get("BG_SOURCE_DIR", ""), "scripts"))
from lm_byte_tokenizer import write_tokenizer  # noqa: E402
from bgtest import Daemon, guard_pb2  # noqa: E402

import grpc  # noqa: E402

SHARED = os.environ.get("BG_SHARED_DIR", "")
CKPT = os.path.join(SHARED, "models", "stories260K.bin")
CLI = os.path.join(os.environ.get("BG_BUILD_DIR", ""), "daemon", "bayesguard")
WORDS = ["files", "harm", "safe"]  # last bytes s, m, e: three distinct tokens
MAX_LEN = 3
K = 128
TRAIN_STEPS = 40
PROMPT = "Action: {tool} {args}\\nTheory:{theory}\\nSo this action is"
TOOL, ARGS = "delete_file", '{"path": "/tmp/x"}'
OUTCOMES = [(TOOL, ARGS, True), ("read_file", '{"path": "/etc/hosts"}', False)]
# Seconds to wait for each round of training (ASan: ~5x slower).
ASAN = os.environ.get("BG_SANITIZE") == "1"
WAIT = 600.0 if ASAN else 60.0
RPC_TIMEOUT = 300.0 if ASAN else 60.0
# The bars (measured: see the printed gap and ratio; margins stated there).
BOUND_TOL = 1e-9
# The cautious posterior ratio is the bar (within a factor 10 of the
# exact cautious one's), not a fit to one trajectory: training is
# deterministic for a given build, but the CPU kernels' float order moves it
# (measured 1.16 with the earlier GEMM/attention kernels, 1.86 after them).
POST_RATIO = 10.0


def all_theories():
    out = []
    for n in range(1, MAX_LEN + 1):
        for seq in itertools.product(WORDS, repeat=n):
            out.append(" ".join(seq))
    return out


def head(name):
    return ("apiVersion: bayesguard/v1\nkind: GuardPolicy\nmetadata: {name: %s}\nspec:\n"
            "  match: {tools: [\"*\"]}\n" % name)


def model_cfg(tok, theories, extra=""):
    return ("  model:\n    plugin: lm_theory\n    config:\n"
            "      model: {checkpoint: %s, tokenizer: %s, backend: cpu}\n"
            "      prompt: \"%s\"\n      harm: x\n      safe: y\n      theories:\n%s%s"
            % (CKPT, tok, PROMPT, theories, extra))


TAIL = ("  estimator: {plugin: noniid, alpha: 0.1}\n  threshold: 0.999\n"
        "  over_threshold: deny\n  outcomes: open\n  session: context.session\n")


def sampled_theories(words=WORDS, max_len=MAX_LEN):
    return ("        sampled:\n          vocabulary: [%s]\n          max_len: %d\n"
            % (", ".join(words), max_len))


def sampler(plugin="lm_gfn", config=""):
    return ("  sampler:\n    plugin: %s\n    samples: %d\n    train_steps: %d\n"
            "    max_version_lag: 0\n    on_unhealthy: deny\n%s"
            % (plugin, K, TRAIN_STEPS, config))


def sampled_policy(tok, name="lmg"):
    return head(name) + model_cfg(tok, sampled_theories()) + TAIL + sampler()


def listed_policy(tok, name="lml"):
    th = "".join("        - %s\n" % t for t in all_theories())
    return head(name) + model_cfg(tok, th) + TAIL


def write(dirpath, name, text):
    with open(os.path.join(dirpath, name), "w") as f:
        f.write(text)


def evaluate(d, session, timeout=RPC_TIMEOUT):
    return d.evaluate(guard_pb2.EvaluateRequest(
        action=guard_pb2.Action(tool=TOOL, arguments_json=ARGS),
        context=guard_pb2.Context(session=session)), timeout=timeout)


def observe_all(d, session, outcomes=OUTCOMES):
    for tool, args, harmed in outcomes:
        d.call("Observe", guard_pb2.ObserveRequest(
            action=guard_pb2.Action(tool=tool, arguments_json=args),
            context=guard_pb2.Context(session=session), harmed=harmed), timeout=RPC_TIMEOUT)


def skip_without_model():
    if not os.path.exists(CKPT):
        print("skip: %s not found (the shared models beside the checkout)" % CKPT)
        sys.exit(77)


def test_sampled_vs_exact():
    skip_without_model()
    tmp = tempfile.mkdtemp(prefix="bgt-lmg-")
    try:
        tok = os.path.join(tmp, "bytes.tok")
        write_tokenizer(tok)
        theories = set(all_theories())
        # The exact verdict: the 39 theories listed.
        ex = os.path.join(tmp, "exact")
        os.mkdir(ex)
        write(ex, "lml.yaml", listed_policy(tok))
        with Daemon(policies=ex, args=["--no-watch"]) as d:
            observe_all(d, "s")
            exact = evaluate(d, "s")
        assert exact.bound_kind == guard_pb2.EXACT, exact
        print("  exact: bound %.9f, cautious %r, posterior %.6f, plausible %d of %d"
              % (exact.harm_bound, exact.cautious.label, exact.cautious.posterior,
                 exact.plausible_set_size, len(theories)))

        sp = os.path.join(tmp, "sampled")
        os.mkdir(sp)
        write(sp, "lmg.yaml", sampled_policy(tok))
        with Daemon(policies=sp, args=["--no-watch"]) as d:
            # No data: the untrained sampler (the prior) answers.
            v0 = evaluate(d, "fresh")
            print("  prior: bound %.6f, cautious %r, samples %d"
                  % (v0.harm_bound, v0.cautious.label, v0.samples))
            assert v0.bound_kind == guard_pb2.SAMPLED and v0.samples == K, v0
            assert v0.cautious.label in theories, v0.cautious.label
            assert v0.model == "lm_theory"

            t0 = time.time()
            got = {}

            def trained():
                try:
                    got["v"] = evaluate(d, "s")
                except grpc.RpcError as e:  # a new session sampler: UNAVAILABLE, retry
                    assert e.code() == grpc.StatusCode.UNAVAILABLE, e
                    return False
                return got["v"].sampler.healthy
            observe_all(d, "s", OUTCOMES[:1])
            bgtest.wait_for(trained, WAIT, "the sampler to train on the first outcome", 0.2)
            observe_all(d, "s", OUTCOMES[1:])
            # At once: the sampler has trained on the first outcome only
            # (version_lag 1 > max_version_lag 0): computed as usual, then
            # DENY as unhealthy (on_unhealthy: deny). Printed: what the bar
            # below is up against (not asserted: training runs meanwhile).
            u = evaluate(d, "s")
            print("  trained on the first outcome only (version_lag %d, healthy %s): bound "
                  "%.9f, cautious %r, gap %.3g" % (u.sampler.version_lag, u.sampler.healthy,
                                                   u.harm_bound, u.cautious.label,
                                                   abs(u.harm_bound - exact.harm_bound)))
            bgtest.wait_for(trained, WAIT, "the sampler to train on both outcomes", 0.2)
            v = got["v"]
            print("  sampled after %.1f s: bound %.9f, cautious %r, posterior %.6f, plausible "
                  "%d, tb_residual %.3f, ess %.1f, train_steps %d"
                  % (time.time() - t0, v.harm_bound, v.cautious.label, v.cautious.posterior,
                     v.plausible_set_size, v.sampler.tb_residual, v.sampler.ess,
                     v.sampler.train_steps))
            assert v.bound_kind == guard_pb2.SAMPLED and v.samples == K, v
            assert v.observations == len(OUTCOMES)
            assert v.cautious.label in theories, v.cautious.label
            gap = abs(v.harm_bound - exact.harm_bound)
            ratio = v.cautious.posterior / exact.cautious.posterior
            print("  gap |sampled - exact| = %.3g (bar %g); cautious posterior ratio %.4f "
                  "(bar 1 .. %g)" % (gap, BOUND_TOL, ratio, POST_RATIO))
            assert v.cautious.label == exact.cautious.label, (v.cautious.label,
                                                             exact.cautious.label)
            assert gap <= BOUND_TOL, (v.harm_bound, exact.harm_bound)
            assert abs(v.cautious.harm - exact.cautious.harm) <= BOUND_TOL
            assert 1 - 1e-9 <= ratio <= POST_RATIO, ratio
    finally:
        shutil.rmtree(tmp)


def check(pol):
    return subprocess.run([CLI, "check", pol], capture_output=True, text=True, timeout=120)


def test_bad_configs():
    skip_without_model()
    tmp = tempfile.mkdtemp(prefix="bgt-lmg-bad-")
    try:
        tok = os.path.join(tmp, "bytes.tok")
        write_tokenizer(tok)
        pol = os.path.join(tmp, "p")
        os.mkdir(pol)
        bandit = (head("bits") + "  model:\n    plugin: bandit\n    config: {features: 8, theta: 0.5, "
                  "enumerate: false}\n" + TAIL + sampler())
        cases = [
            ("lm_gfn on a bit-set model", bandit,
             ["lm_gfn samples token sequences", "8-bit sets"]),
            ("gfn on a sequence model",
             head("g") + model_cfg(tok, sampled_theories()) + TAIL + sampler("gfn"),
             ["sampler gfn (ABI 1.1) reads ids as bit sets", "name a sequence sampler"]),
            ("two words, one last token",
             head("w") + model_cfg(tok, sampled_theories(["files", "rules", "safe"])) + TAIL +
             sampler(), ["words `files` and `rules` end in the same token"]),
            ("over 64 bits",
             head("l") + model_cfg(tok, sampled_theories(max_len=33)) + TAIL + sampler(),
             ["theories.sampled.max_len must be an integer in 1..32"]),
            ("a space over 64 bits",
             head("b") + model_cfg(tok, sampled_theories(WORDS + ["a%d" % i for i in range(8)],
                                                         max_len=20)) + TAIL + sampler(),
             ["take 80 bits; an id holds 64"]),
            ("min_len over max_len",
             head("m") + model_cfg(tok, sampled_theories()) + TAIL +
             sampler(config="    config: {min_len: 4}\n"),
             ["min_len 4 is above the space's max_len 3"]),
        ]
        for what, text, want in cases:
            for f in os.listdir(pol):
                os.unlink(os.path.join(pol, f))
            write(pol, "bad.yaml", text)
            r = check(pol)
            out = r.stdout + r.stderr
            print("  %s: exit %d: %s" % (what, r.returncode,
                                         [ln for ln in out.splitlines() if "bad.yaml" in ln][:1]))
            assert r.returncode == 1, (what, out)
            for w in want:
                assert w in out, (what, w, out)
            assert "bad.yaml:" in out, (what, out)  # file:line:col of the key
        # and the good one passes
        for f in os.listdir(pol):
            os.unlink(os.path.join(pol, f))
        write(pol, "good.yaml", sampled_policy(tok))
        r = check(pol)
        assert r.returncode == 0, r.stdout + r.stderr
    finally:
        shutil.rmtree(tmp)


if __name__ == "__main__":
    bgtest.main([test_bad_configs, test_sampled_vs_exact])
