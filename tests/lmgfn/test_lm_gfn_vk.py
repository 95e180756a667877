"""The lm_gfn sampler plugin with `backend: vulkan` through the real daemon
(issue 14): the policy of tests/lm_theory/test_lm_gfn.py (stories260K, the
byte tokenizer, three words, max_len 3: 39 theories, K = 128 samples),
run twice — the sampler's LM on the CPU and on Vulkan (Mesa's lavapipe;
the machine's own device with BG_VK_TEST_NATIVE=1) — with the same
outcomes, and the verdicts held against each other.

What is exact and what is not: the candidates are scored by lm_theory on
the CPU in both runs (log prior + log-likelihood of the outcomes, then
the estimator), so the verdict is a function of the *set* of sampled
theories only. The sets are equal unless a float difference of the two
backends' policies (measured 6e-8 in TV after three steps,
test_lmgfn_theory_vk) moves one of the 128 draws across a CDF boundary —
odds of about 1e-5 here. So the bar is identity up to the estimator's own
float noise: bound and cautious harm within BOUND_TOL = 1e-9, the same
cautious label (a sentence of the vocabulary's words), the same
plausible-set size; posteriors within POST_TOL = 1e-6 (a draw that lands
on a different theory of tiny posterior shifts the normalisation).

1. Before any data (the untrained sampler, adapters B = 0: the base LM).
2. After both outcomes, trained in the background (TRAIN_STEPS a
   outcome; lavapipe took 15 s for a step of batch 16 with its draws on
   a loaded 2-core machine, so the sampler here uses batch 4 and one step
   per outcome, ~8 s; the CPU run uses the same configuration): healthy,
   at the session's data, and the same verdict.
The daemon's log names the backend: the plugin has no CPU fallback
(`backend: vulkan` without a device is a policy error).
Skips (77) with the reason without the model or without a Vulkan device.
"""
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lm_theory"))
import test_lm_gfn as lg  # noqa: E402  (the policy texts and helpers)
from bgtest import Daemon, guard_pb2  # noqa: E402

import grpc  # noqa: E402

LVP_ICD = "/usr/share/vulkan/icd.d/lvp_icd.x86_64.json"
TRAIN_STEPS = 1
SAMPLER_CFG = "    config: {backend: %s, batch: 4}\n"
BOUND_TOL = 1e-9
# The posterior is normalised over the distinct candidates drawn, so a draw
# of the two backends' policies (equal up to float noise) that lands on a
# different theory of tiny posterior moves every posterior by that theory's
# mass: measured 4.1e-8 (cautious) and 1.1e-8 (predictive) after the CPU
# kernels' vectorised exp changed the CPU policy's last bits; 1e-6 is 25x
# that, and the bound, label and set size above stay exact.
POST_TOL = 1e-6
WAIT = 3000.0 if lg.ASAN else 600.0


def vulkan_env():
    if os.environ.get("BG_VK_TEST_NATIVE") != "1":
        os.environ["VK_DRIVER_FILES"] = LVP_ICD
        os.environ.pop("VK_ICD_FILENAMES", None)


def vulkan_usable():
    env = dict(os.environ, BG_VK_ALLOW_CPU="1")
    r = subprocess.run([lg.CLI, "lm", "score", "--model", lg.CKPT, "--backend", "vulkan",
                        "--prefix", "1", "--continuation", "2"],
                       capture_output=True, text=True, timeout=300, env=env)
    return r.returncode == 0, r.stderr.strip()


def policy(tok, backend):
    lg.TRAIN_STEPS = TRAIN_STEPS
    return (lg.head("lmg") + lg.model_cfg(tok, lg.sampled_theories()) + lg.TAIL +
            lg.sampler(config=SAMPLER_CFG % backend))


def run(tmp, tok, backend):
    """The prior verdict and the trained one on one backend."""
    pol = os.path.join(tmp, backend)
    os.mkdir(pol)
    lg.write(pol, "lmg.yaml", policy(tok, backend))
    with Daemon(policies=pol, args=["--no-watch"]) as d:
        assert "the sampler's LM trains and samples on %s" % backend in d.log(), \
            d.log_text_tail()
        t0 = time.time()
        prior = lg.evaluate(d, "fresh", timeout=WAIT)
        t1 = time.time()
        lg.observe_all(d, "s")
        got = {}

        def trained():
            try:
                got["v"] = lg.evaluate(d, "s", timeout=WAIT)
            except grpc.RpcError as e:  # a new session sampler: UNAVAILABLE, retry
                assert e.code() == grpc.StatusCode.UNAVAILABLE, e
                return False
            return got["v"].sampler.healthy
        lg.bgtest.wait_for(trained, WAIT, "the %s sampler to train on both outcomes" % backend,
                           0.5)
        v = got["v"]
        print("  %s: prior %.12f %r (%.2f s); trained in %.1f s: %.12f %r plausible %d, "
              "train_steps %d" % (backend, prior.harm_bound, prior.cautious.label, t1 - t0,
                                  time.time() - t1, v.harm_bound, v.cautious.label,
                                  v.plausible_set_size, v.sampler.train_steps))
        return prior, v


def same(what, a, b):
    gap = abs(a.harm_bound - b.harm_bound)
    print("  %s: |vulkan - cpu| bound %.3g (bar %g), labels %r / %r"
          % (what, gap, BOUND_TOL, a.cautious.label, b.cautious.label))
    assert a.bound_kind == b.bound_kind == guard_pb2.SAMPLED, (a, b)
    assert a.samples == b.samples == lg.K
    assert a.cautious.label == b.cautious.label, (a.cautious.label, b.cautious.label)
    assert a.cautious.label in set(lg.all_theories()), a.cautious.label
    assert gap <= BOUND_TOL, (a.harm_bound, b.harm_bound)
    assert abs(a.cautious.harm - b.cautious.harm) <= BOUND_TOL
    assert abs(a.cautious.posterior - b.cautious.posterior) <= POST_TOL, (
        a.cautious.posterior, b.cautious.posterior)
    assert a.plausible_set_size == b.plausible_set_size
    assert a.decision == b.decision
    assert abs(a.posterior_predictive - b.posterior_predictive) <= POST_TOL, (
        a.posterior_predictive, b.posterior_predictive)


def test_vulkan_same_as_cpu():
    lg.skip_without_model()
    vulkan_env()
    ok, why = vulkan_usable()
    if not ok:
        print("skip: no usable Vulkan device (%s)" % why)
        sys.exit(77)
    tmp = tempfile.mkdtemp(prefix="bgt-lmgvk-")
    try:
        tok = os.path.join(tmp, "bytes.tok")
        lg.write_tokenizer(tok)
        cpu_prior, cpu = run(tmp, tok, "cpu")
        vk_prior, vk = run(tmp, tok, "vulkan")
        same("prior", vk_prior, cpu_prior)
        same("trained", vk, cpu)
        for v in (cpu, vk):
            assert v.observations == len(lg.OUTCOMES) and v.sampler.version_lag == 0, v
        assert vk.sampler.train_steps == cpu.sampler.train_steps > 0, (vk.sampler, cpu.sampler)
    finally:
        shutil.rmtree(tmp)


if __name__ == "__main__":
    lg.bgtest.main([test_vulkan_same_as_cpu])
