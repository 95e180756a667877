"""deploy/ as far as it can be checked without a cluster or a container engine.

- deploy/kubernetes/sidecar.yaml parses (a real YAML library), and its Pod
  agrees with the image's ENTRYPOINT (deploy/Dockerfile): the ConfigMap is
  mounted where --policies points, the data volume where --data-dir points,
  the shared socket volume holds the unix socket the agent is told to use
  (BAYESGUARD_ADDR), the gRPC probes and the containerPort named grpc are
  the TCP --listen port, the containerPort named metrics and the Pod's
  prometheus.io/port annotation are the --metrics-listen port (and the image
  EXPOSEs both), the image's plugin directory is the one the build
  installs, and the directories the daemon writes exist in the image owned
  by its USER.
- The ConfigMap's policies pass `bayesguardd --check`.
- bayesguardd runs with the ENTRYPOINT's arguments as written, paths moved
  under a temp dir and the TCP port made ephemeral: the kubelet's gRPC probe
  (grpc.health.v1 Check, service "") answers SERVING, the agent's Evaluate
  over the unix socket works, its Observe without a receipt is refused
  (the ConfigMap's policy keeps `outcomes: receipts`, and an ESCALATE has no
  receipt), the receipt key is made 0600 in the data volume beside the
  observation log, and a scrape as the annotations describe it (GET
  prometheus.io/path on the metrics port) counts that decision and no
  observation.
- A ConfigMap update as the kubelet makes it (a new timestamped directory,
  `..data` swapped by an atomic rename, the old directory removed) is
  hot-reloaded: Status shows the new revision and threshold, and Evaluate
  calls running through the swap all succeed.
Run with /usr/bin/python3 (ctest sets the environment)."""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import bgtest  # noqa: E402
import grpc  # noqa: E402
from bgtest import Daemon, guard_pb2  # noqa: E402

import yaml  # noqa: E402  (python3-yaml, Debian's)

SRC = os.environ.get("BG_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
MANIFEST = os.path.join(SRC, "deploy", "kubernetes", "sidecar.yaml")
DOCKERFILE = os.path.join(SRC, "deploy", "Dockerfile")


def load_manifest():
    with open(MANIFEST) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    kinds = {d["kind"]: d for d in docs}
    assert set(kinds) == {"ConfigMap", "Pod"}, list(kinds)
    return kinds["ConfigMap"], kinds["Pod"]


def entrypoint():
    """The runtime stage's ENTRYPOINT (exec form) as a list."""
    with open(DOCKERFILE) as f:
        text = f.read().replace("\\\n", " ")
    m = re.findall(r"^ENTRYPOINT\s+(\[.*\])\s*$", text, re.M)
    assert len(m) == 1, m
    return json.loads(m[0])


def flag_values(argv, flag):
    return [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == flag]


def copy_dests():
    with open(DOCKERFILE) as f:
        return re.findall(r"^COPY\s+(?:--from=\S+\s+)?(.+)$", f.read(), re.M)


def dockerfile_runtime_stage():
    with open(DOCKERFILE) as f:
        text = f.read().replace("\\\n", " ")
    return text.split("\nFROM ")[-1]


def test_manifest_matches_entrypoint():
    cm, pod = load_manifest()
    argv = entrypoint()
    assert argv[0] == "/usr/local/bin/bayesguardd", argv
    containers = {c["name"]: c for c in pod["spec"]["containers"]}
    guard, agent = containers["bayesguard"], containers["agent"]
    vols = {v["name"]: v for v in pod["spec"]["volumes"]}
    mounts = {m["name"]: m["mountPath"] for m in guard["volumeMounts"]}
    # policies: the ConfigMap, read-only, where --policies points
    pol_vol = [n for n, v in vols.items() if v.get("configMap", {}).get("name") ==
               cm["metadata"]["name"]]
    assert len(pol_vol) == 1, vols
    assert flag_values(argv, "--policies") == [mounts[pol_vol[0]]], (argv, mounts)
    assert any(m["name"] == pol_vol[0] and m.get("readOnly") for m in guard["volumeMounts"])
    # the decision log: the container's stdout (the runtime collects and rotates it)
    assert flag_values(argv, "--decision-log") == ["-"], argv
    # data: an emptyDir where --data-dir points
    data = flag_values(argv, "--data-dir")
    assert len(data) == 1 and data[0] in mounts.values(), (data, mounts)
    # listeners: one TCP port (probes, containerPort), one unix socket the agent shares
    listens = flag_values(argv, "--listen")
    tcp = [l for l in listens if not l.startswith("unix:")]
    unix = [l[len("unix:"):] for l in listens if l.startswith("unix:")]
    assert len(tcp) == 1 and len(unix) == 1, listens
    port = int(tcp[0].rsplit(":", 1)[1])
    ports = {p["name"]: p["containerPort"] for p in guard["ports"]}
    metrics = flag_values(argv, "--metrics-listen")
    assert len(metrics) == 1, argv
    mport = int(metrics[0].rsplit(":", 1)[1])
    assert ports == {"grpc": port, "metrics": mport}, guard["ports"]
    ann = pod["metadata"].get("annotations", {})
    assert ann.get("prometheus.io/scrape") == "true", ann
    assert ann.get("prometheus.io/port") == str(mport), ann
    assert ann.get("prometheus.io/path") == "/metrics", ann
    exposed = re.findall(r"^EXPOSE\s+(.+)$", dockerfile_runtime_stage(), re.M)
    assert len(exposed) == 1 and set(exposed[0].split()) == {str(port), str(mport)}, exposed
    for probe in ("readinessProbe", "livenessProbe"):
        assert guard[probe]["grpc"]["port"] == port, guard[probe]
    sock_dir = os.path.dirname(unix[0])
    shared = [n for n, p in mounts.items() if p == sock_dir]
    assert len(shared) == 1, (sock_dir, mounts)
    agent_mounts = {m["name"]: m["mountPath"] for m in agent["volumeMounts"]}
    assert shared[0] in agent_mounts, agent_mounts
    addr = {e["name"]: e["value"] for e in agent["env"]}["BAYESGUARD_ADDR"]
    assert addr == "unix:" + os.path.join(agent_mounts[shared[0]], os.path.basename(unix[0])), \
        addr
    # plugins: the directory the image copies the built plugins into
    plugins = flag_values(argv, "--plugins")
    assert len(plugins) == 1 and any(c.split()[-1].rstrip("/") == plugins[0].rstrip("/")
                                     for c in copy_dests()), (plugins, copy_dests())
    # the directories it writes exist in the image, owned by the USER it runs as
    stage = dockerfile_runtime_stage()
    user = re.findall(r"^USER\s+(\S+)", stage, re.M)
    assert len(user) == 1, user
    for wdir in (data[0], sock_dir):
        assert re.search(r"mkdir -p [^&]*%s\b" % re.escape(wdir), stage), wdir
        assert re.search(r"chown %s [^&]*%s\b" % (re.escape(user[0]), re.escape(wdir)), stage), \
            (wdir, user)


def kubelet_layout(root, files, stamp):
    """A ConfigMap volume as the kubelet writes it: ..<stamp>/ with the files,
    ..data -> ..<stamp>, and each key a symlink through ..data."""
    os.makedirs(root, exist_ok=True)
    d = os.path.join(root, ".." + stamp)
    os.makedirs(d)
    for name, text in files.items():
        with open(os.path.join(d, name), "w") as f:
            f.write(text)
    tmp = os.path.join(root, "..data_tmp")
    os.symlink(".." + stamp, tmp)
    old = os.path.realpath(os.path.join(root, "..data")) if os.path.islink(
        os.path.join(root, "..data")) else None
    os.rename(tmp, os.path.join(root, "..data"))  # the atomic swap
    for name in files:
        link = os.path.join(root, name)
        if not os.path.islink(link):
            os.symlink(os.path.join("..data", name), link)
    if old:
        shutil.rmtree(old)


class EntrypointDaemon(Daemon):
    """bayesguardd with the image's ENTRYPOINT arguments, paths remapped."""

    def __init__(self, remap, **kw):
        super().__init__(**kw)
        self.remap = remap
        self.listen = []

    def argv(self):
        out = [bgtest.DAEMON]
        for a in entrypoint()[1:]:
            for old, new in self.remap:
                if a == old or a.startswith(old + "/") or a.startswith("unix:" + old + "/"):
                    a = a.replace(old, new, 1)
            out.append(a)
        self.listen = flag_values(out, "--listen")
        return out + ["--ready-file", self.ready]


def test_entrypoint_configmap_and_reload():
    cm, _ = load_manifest()
    tmp = tempfile.mkdtemp(prefix="bgdeploy-")
    pol_dir = os.path.join(tmp, "policies")
    kubelet_layout(pol_dir, cm["data"], "2026_11_26_12_00_00.000000001")
    r = subprocess.run([bgtest.DAEMON, "--check", "--policies", pol_dir, "--plugins",
                        bgtest.PLUGIN_DIR], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, (r.stdout, r.stderr)
    run_dir, data_dir = os.path.join(tmp, "run"), os.path.join(tmp, "data")
    os.makedirs(run_dir)
    os.makedirs(data_dir)
    remap = [("/etc/bayesguard/policies", pol_dir), ("/usr/lib/bayesguard/plugins",
             bgtest.PLUGIN_DIR), ("/var/lib/bayesguard", data_dir),
             ("/run/bayesguard", run_dir), ("0.0.0.0:50051", "127.0.0.1:0"),
             ("0.0.0.0:9464", "127.0.0.1:0")]
    name = yaml.safe_load(list(cm["data"].values())[0])["metadata"]["name"]
    with EntrypointDaemon(remap, policies=pol_dir) as d:
        unix_i = [i for i, a in enumerate(d.addrs) if a.startswith("unix:")]
        tcp_i = [i for i, a in enumerate(d.addrs) if not a.startswith("unix:")]
        assert len(unix_i) == 1 and len(tcp_i) == 1, d.addrs
        assert d.health(i=tcp_i[0]).status == 1  # the kubelet's gRPC probe: SERVING
        req = guard_pb2.EvaluateRequest(action=guard_pb2.Action(tool="shell_exec"),
                                        context=guard_pb2.Context(session="pod"))
        v = d.evaluate(req, i=unix_i[0])  # the agent, over the shared socket
        assert v.policy == name, v
        # its decision log line, on stdout where `kubectl logs` finds it
        line = bgtest.wait_for(lambda: next((l for l in d.log().splitlines()
                                             if v.decision_id in l), None), 10,
                               "the decision's line in the container's output")
        rec = json.loads(line)
        assert (rec["decision"], rec["policy"], rec["session"]) == (
            guard_pb2.Decision.Name(v.decision), name, "pod"), rec
        assert not v.receipt, v  # ESCALATE: the action does not run, no outcome to report
        bgtest.expect_code(lambda: d.call("Observe", guard_pb2.ObserveRequest(
            action=guard_pb2.Action(tool="shell_exec"), context=guard_pb2.Context(session="pod"),
            harmed=False), i=unix_i[0]), grpc.StatusCode.PERMISSION_DENIED, ["no receipt"])
        assert sorted(os.listdir(data_dir)) == ["observations.bglog", "receipt.key"], \
            os.listdir(data_dir)
        key = os.stat(os.path.join(data_dir, "receipt.key"))
        assert key.st_mode & 0o777 == 0o600 and key.st_size == 32, oct(key.st_mode)
        # Prometheus, as the Pod's annotations tell it to scrape
        _, pod = load_manifest()
        maddr = re.search(r"metrics on (\S+)", d.log()).group(1)
        url = "http://%s%s" % (maddr, pod["metadata"]["annotations"]["prometheus.io/path"])
        with urllib.request.urlopen(url, timeout=10) as resp:
            assert resp.status == 200, resp.status
            text = resp.read().decode()
        samples = dict(l.rsplit(" ", 1) for l in text.splitlines() if not l.startswith("#"))
        assert samples['bayesguard_evaluations_total{policy="%s",decision="%s"}' % (
            name, guard_pb2.Decision.Name(v.decision).lower())] == "1", text
        for harmed in ("true", "false"):
            assert samples.get('bayesguard_observations_total{policy="%s",harmed="%s"}' % (
                name, harmed), "0") == "0", text
        st = d.call("Status", guard_pb2.StatusRequest(), i=tcp_i[0])
        rev0, thr0 = st.revision, st.policies[0].threshold

        # the kubelet's ConfigMap update, while the agent keeps evaluating
        stop, errors, done = threading.Event(), [], [0]

        def agent():
            ch = d.channel(unix_i[0])
            while not stop.is_set():
                try:
                    d.evaluate(req, ch=ch)
                    done[0] += 1
                except Exception as e:  # noqa: BLE001 — any failure fails the test
                    errors.append(repr(e))
        t = threading.Thread(target=agent)
        t.start()
        try:
            # The agent is evaluating before the swap starts, not maybe after it.
            bgtest.wait_for(lambda: done[0] > 0 or errors, 60.0, "the agent's first Evaluate")
            new = {k: v.replace("threshold: %g" % thr0, "threshold: 0.25")
                   for k, v in cm["data"].items()}
            assert new != cm["data"], "the test needs the policy's threshold line"
            kubelet_layout(pol_dir, new, "2026_11_26_12_05_00.000000002")

            def reloaded():
                s = d.call("Status", guard_pb2.StatusRequest(), i=tcp_i[0])
                return s.revision != rev0 and s.policies[0].threshold == 0.25
            bgtest.wait_for(reloaded, 20.0, "the ConfigMap update to be hot-reloaded")
            v = d.evaluate(req, i=unix_i[0])
            assert v.threshold == 0.25, v
        finally:
            stop.set()
            t.join()
        print("ConfigMap swap under load: %d Evaluate calls, %d failed" % (done[0], len(errors)))
        assert not errors and done[0] > 0, errors[:3]
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    bgtest.main([test_manifest_matches_entrypoint, test_entrypoint_configmap_and_reload])
