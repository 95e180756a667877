"""How long a session is refused (UNAVAILABLE) after a reload that makes
fresh samplers: a d = 10 sampled bandit policy (plugin defaults, K = 256,
train_steps 20), 40 observations in one ObserveStream, then three reloads
that change the sampler seed; prints the seconds until Evaluate answers.
Run from the build folder with the environment ctest gives Python tests
(BG_PLUGIN_DIR, BG_SOURCE_DIR, BG_BUILD_DIR, BG_PYTHONPATH) and
/usr/bin/python3. A measurement, not a test (docs/GFLOWNET.md)."""
import os
import random
import shutil
import sys
import tempfile
import time

import grpc

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "tests", "python"))
from bgtest import Daemon, guard_pb2  # noqa: E402

D = 10
POL = """apiVersion: bayesguard/v1
kind: GuardPolicy
metadata: {name: arms10}
spec:
  match: {tools: ["pull_*"]}
  model: {plugin: bandit, config: {features: 10, sigma: 1.0, theta: 4}}
  estimator: {plugin: iid}
  sampler:
    plugin: gfn
    samples: 256
    train_steps: 20
    always: true
    config: {seed: SEED}
  threshold: 0.5
  session: context.session
  outcomes: open
  features: from_request
"""
def act(x): return guard_pb2.Action(tool="pull_arm", features=[float(v) for v in x])
tmp = tempfile.mkdtemp()
open(os.path.join(tmp, "p.yaml"), "w").write(POL.replace("SEED", "1"))
with Daemon(policies=tmp) as d:
    rng = random.Random(5); ctx = guard_pb2.Context(session="s1")
    w = [rng.randint(0, 1) for _ in range(D)]
    reqs = []
    for _ in range(40):
        xa = [rng.randint(0, 1) for _ in range(D)]
        r = sum(a * b for a, b in zip(xa, w)) + rng.gauss(0, 1)
        reqs.append(guard_pb2.ObserveRequest(action=act(xa), context=ctx, harmed=r > 4, value=r))
    fn = d.channel().stream_unary("/bayesguard.v1.Guard/ObserveStream",
        request_serializer=guard_pb2.ObserveRequest.SerializeToString,
        response_deserializer=guard_pb2.ObserveStreamResponse.FromString)
    fn(iter(reqs), timeout=60)
    x = [1] * D
    def ok():
        try:
            d.evaluate(guard_pb2.EvaluateRequest(action=act(x), context=ctx)); return True
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.UNAVAILABLE, e; return False
    t0 = time.monotonic()
    while not ok(): time.sleep(0.05)
    print("first training (burst of 40): %.2f s" % (time.monotonic() - t0))
    for s in (2, 3, 4):
        open(os.path.join(tmp, "p.yaml"), "w").write(POL.replace("SEED", str(s)))
        assert d.call("Reload", guard_pb2.ReloadRequest()).ok
        t0 = time.monotonic(); n = 0
        while not ok(): n += 1; time.sleep(0.05)
        print("reload %d: UNAVAILABLE for %.2f s (%d refused Evaluates), load %s" % (s, time.monotonic() - t0, n, os.getloadavg()[0]))
shutil.rmtree(tmp)
