"""deploy/ as far as it can be checked without a cluster or a container engine.

- deploy/kubernetes/sidecar.yaml parses (a real YAML library), and its Pod
  agrees with the image's ENTRYPOINT (deploy/Dockerfile): the ConfigMap is
  mounted where --policies points, the data volume where --data-dir points.
  The listeners are the trust boundary of the sidecar: every one names its
  roles (none serves them all): `health` on every interface (the gRPC probes
  and the containerPort named grpc are its port), `agent` on a unix socket
  in a volume the agent container mounts (BAYESGUARD_ADDR points there),
  `reporter` on a unix socket in another volume that the agent container
  does not mount (the tool-runner does), `operator` on the loopback only
  (not a containerPort, not EXPOSEd); sockets 0660. The containerPort named
  metrics and the Pod's prometheus.io/port annotation are the
  --metrics-listen port (and the image EXPOSEs health and metrics), the
  image's plugin directory is the one the build installs, the files the
  image copies from the build exist in a build, the runtime stage installs
  the package of every shared library they link, and the directories the
  daemon writes exist in the image owned by its USER.
- The ConfigMap's policies pass `bayesguardd --check`.
- bayesguardd runs with the ENTRYPOINT's arguments as written, paths moved
  under a temp dir and the TCP ports made ephemeral: the health port
  answers the kubelet's probe (grpc.health.v1 Check, service "") SERVING and
  refuses Evaluate; the socket files are 0660, so (when the test runs as
  root and can switch uids) an agent of another uid connects with the
  sockets' group, as the Pod's fsGroup gives it, and is logged as its own
  uid, and without the group cannot connect; the agent socket serves
  Evaluate (the session keyed by the caller's uid, from the kernel) and
  refuses Observe, Status and Reload naming the role; the reporter socket
  refuses Evaluate, refuses an Observe without a receipt, and takes the
  outcome of the shadow policy's ALLOW with its receipt, once; the receipt
  key is made 0600 in the data volume beside the observation log; the
  decision log is on stdout; a scrape as the annotations describe it (GET
  prometheus.io/path on the metrics port) counts those decisions and that
  observation.
- A ConfigMap update as the kubelet makes it (a new timestamped directory,
  `..data` swapped by an atomic rename, the old directory removed) is
  hot-reloaded: Status over the operator listener shows the new revision
  and threshold, and Evaluate calls over the agent socket running through
  the swap all succeed.
Run with /usr/bin/python3 (ctest sets the environment)."""
import json
import os
import re
import glob
import shutil
import stat
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


def load_documents():
    with open(MANIFEST) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    kinds = {d["kind"]: d for d in docs}
    assert len(kinds) == len(docs), "one document of each kind: %s" % [d["kind"] for d in docs]
    assert set(kinds) == {"ConfigMap", "StatefulSet", "NetworkPolicy"}, list(kinds)
    return kinds


def load_manifest():
    """The ConfigMap and the Pod template of the StatefulSet."""
    kinds = load_documents()
    return kinds["ConfigMap"], kinds["StatefulSet"]["spec"]["template"]


def guard_container(pod):
    """bayesguard: a native sidecar, i.e. an init container that keeps running."""
    (g,) = [c for c in pod["spec"].get("initContainers", []) if c["name"] == "bayesguard"]
    return g


# The fields of the Kubernetes v1 objects the manifest uses (core/v1, apps/v1,
# networking.k8s.io/v1 API reference): a misspelt key is silently ignored by
# some tools and refused by the API server; here it fails the test.
K8S_FIELDS = {
    "ObjectMeta": {"name", "namespace", "labels", "annotations"},
    "StatefulSetSpec": {"serviceName", "replicas", "selector", "template",
                        "volumeClaimTemplates", "podManagementPolicy", "updateStrategy"},
    "PodSpec": {"securityContext", "volumes", "initContainers", "containers",
                "serviceAccountName", "automountServiceAccountToken",
                "terminationGracePeriodSeconds"},
    "PodSecurityContext": {"fsGroup", "runAsUser", "runAsGroup", "runAsNonRoot",
                           "seccompProfile", "supplementalGroups", "fsGroupChangePolicy"},
    "Container": {"name", "image", "command", "args", "env", "ports", "volumeMounts",
                  "resources", "securityContext", "startupProbe", "readinessProbe",
                  "livenessProbe", "restartPolicy", "imagePullPolicy", "workingDir"},
    "SecurityContext": {"runAsUser", "runAsGroup", "runAsNonRoot", "readOnlyRootFilesystem",
                        "allowPrivilegeEscalation", "capabilities", "seccompProfile",
                        "privileged"},
    "Probe": {"grpc", "httpGet", "exec", "tcpSocket", "initialDelaySeconds", "periodSeconds",
              "timeoutSeconds", "failureThreshold", "successThreshold"},
    "Volume": {"name", "configMap", "emptyDir", "secret", "persistentVolumeClaim"},
    "VolumeMount": {"name", "mountPath", "readOnly", "subPath"},
    "ContainerPort": {"name", "containerPort", "protocol"},
    "EnvVar": {"name", "value", "valueFrom"},
}


def check_fields(kind, obj, where):
    extra = set(obj) - K8S_FIELDS[kind]
    assert not extra, "%s: %s has no field %s" % (where, kind, sorted(extra))


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


def listeners(argv):
    """{frozenset(roles): address} of the --listen flags; every one must
    name its roles, and no two the same ones."""
    out = {}
    for spec in flag_values(argv, "--listen"):
        assert "@" in spec, "--listen %s serves every role: name its roles" % spec
        roles, addr = spec.split("@", 1)
        key = frozenset(roles.split(","))
        assert key not in out, (spec, out)
        out[key] = addr
    return out


def tcp_port(addr):
    return int(addr.rsplit(":", 1)[1])


def runtime_packages():
    stage = dockerfile_runtime_stage()
    m = re.search(r"apt-get install ([^&]*)", stage)
    assert m, stage
    return {w for w in m.group(1).split() if not w.startswith("-")}


def with_dependencies(pkgs):
    """pkgs and what they depend on, transitively, as dpkg knows it here (the
    build machine is Debian 12, as the image is)."""
    out, todo = set(), list(pkgs)
    while todo:
        p = todo.pop()
        if p in out:
            continue
        out.add(p)
        r = subprocess.run(["dpkg-query", "-W", "-f", "${Depends},${Pre-Depends}", p],
                           capture_output=True, text=True)
        for alt in r.stdout.split(","):
            for dep in alt.split("|"):
                name = dep.strip().split(" ")[0].split(":")[0]
                if name:
                    todo.append(name)
    return out


def test_manifest_matches_entrypoint():
    cm, pod = load_manifest()
    sts = load_documents()["StatefulSet"]
    argv = entrypoint()
    assert argv[0] == "/usr/local/bin/bayesguardd", argv
    guard = guard_container(pod)
    containers = {c["name"]: c for c in pod["spec"]["containers"]}
    assert "bayesguard" not in containers, "bayesguard is the native sidecar, not a container"
    containers["bayesguard"] = guard
    agent = containers["agent"]
    vols = {v["name"]: v for v in pod["spec"]["volumes"]}
    claims = {c["metadata"]["name"]: c for c in sts["spec"].get("volumeClaimTemplates", [])}
    mounts = {m["name"]: m["mountPath"] for m in guard["volumeMounts"]}

    def mounters(vol):
        return {n for n, c in containers.items()
                if any(m["name"] == vol for m in c.get("volumeMounts", []))}
    # policies: the ConfigMap, read-only, where --policies points
    pol_vol = [n for n, v in vols.items() if v.get("configMap", {}).get("name") ==
               cm["metadata"]["name"]]
    assert len(pol_vol) == 1, vols
    assert flag_values(argv, "--policies") == [mounts[pol_vol[0]]], (argv, mounts)
    assert any(m["name"] == pol_vol[0] and m.get("readOnly") for m in guard["volumeMounts"])
    # the decision log: the container's stdout (the runtime collects and rotates it)
    assert flag_values(argv, "--decision-log") == ["-"], argv
    # data: a PersistentVolumeClaim of the StatefulSet where --data-dir
    # points (a rescheduled replica keeps its posteriors), the guard's alone
    data = flag_values(argv, "--data-dir")
    assert len(data) == 1 and data[0] in mounts.values(), (data, mounts)
    data_vol = [n for n, p in mounts.items() if p == data[0]][0]
    assert data_vol in claims and data_vol not in vols, (data_vol, claims, vols)
    assert claims[data_vol]["spec"]["accessModes"] == ["ReadWriteOnce"], claims[data_vol]
    assert mounters(data_vol) == {"bayesguard"}, mounters(data_vol)
    # listeners: one per role, each naming it
    ls = listeners(argv)
    assert set(ls) == {frozenset([r]) for r in ("health", "agent", "reporter", "operator")}, ls
    health, operator = ls[frozenset(["health"])], ls[frozenset(["operator"])]
    agent_sock, rep_sock = ls[frozenset(["agent"])], ls[frozenset(["reporter"])]
    assert health.startswith("0.0.0.0:"), health  # the kubelet probes the Pod's IP
    # the operator (Status, Reload, approving escalations) on a unix socket
    # no other container mounts: not the loopback, which the agent shares
    assert all(a.startswith("unix:/") for a in (agent_sock, rep_sock, operator)), ls
    agent_sock, rep_sock = agent_sock[len("unix:"):], rep_sock[len("unix:"):]
    op_sock = operator[len("unix:"):]
    assert flag_values(argv, "--socket-mode") == ["0660"], argv
    port = tcp_port(health)
    ports = {p["name"]: p["containerPort"] for p in guard["ports"]}
    metrics = flag_values(argv, "--metrics-listen")
    assert len(metrics) == 1, argv
    mport = tcp_port(metrics[0])
    assert ports == {"grpc": port, "metrics": mport}, guard["ports"]
    ann = pod["metadata"].get("annotations", {})
    assert ann.get("prometheus.io/scrape") == "true", ann
    assert ann.get("prometheus.io/port") == str(mport), ann
    assert ann.get("prometheus.io/path") == "/metrics", ann
    exposed = re.findall(r"^EXPOSE\s+(.+)$", dockerfile_runtime_stage(), re.M)
    assert len(exposed) == 1 and set(exposed[0].split()) == {str(port), str(mport)}, exposed
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert guard[probe]["grpc"]["port"] == port, guard[probe]
    # a native sidecar: started (and its startupProbe passed) before the agent,
    # stopped after it; the daemon replays its log before any listener opens,
    # so the startupProbe gives that time (>= 5 minutes) before liveness counts
    assert guard.get("restartPolicy") == "Always", guard.get("restartPolicy")
    sp = guard["startupProbe"]
    assert sp.get("periodSeconds", 10) * sp.get("failureThreshold", 3) >= 300, sp
    # least privilege: not root, read-only root file system, no capabilities
    sc = guard["securityContext"]
    assert sc.get("runAsNonRoot") is True and sc.get("readOnlyRootFilesystem") is True, sc
    assert sc.get("allowPrivilegeEscalation") is False, sc
    assert sc.get("capabilities", {}).get("drop") == ["ALL"], sc
    assert not sc.get("capabilities", {}).get("add"), sc
    user = re.findall(r"^USER\s+(\S+)", dockerfile_runtime_stage(), re.M)
    assert len(user) == 1 and "%s:%s" % (sc["runAsUser"], sc["runAsGroup"]) == user[0], (sc, user)
    assert pod["spec"]["securityContext"]["fsGroup"] == sc["runAsGroup"], pod["spec"]
    assert pod["spec"]["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    # with a read-only root, $TMPDIR (the plugins' private copies) is a volume
    tmp_vol = [n for n, p in mounts.items() if p == "/tmp"]
    assert len(tmp_vol) == 1 and "emptyDir" in vols[tmp_vol[0]], mounts
    # resources: requests for scheduling, a memory limit, and a CPU limit —
    # the cgroup quota it sets is what sizes --cq-threads (left to default)
    res = guard["resources"]
    assert {"cpu", "memory"} <= set(res["requests"]) and {"cpu", "memory"} <= set(res["limits"])
    assert flag_values(argv, "--cq-threads") == [], "leave it to the CPU limit"
    # every object's fields are the API's
    check_fields("ObjectMeta", sts["metadata"], "StatefulSet")
    check_fields("StatefulSetSpec", sts["spec"], "StatefulSet")
    check_fields("ObjectMeta", pod["metadata"], "template")
    check_fields("PodSpec", pod["spec"], "template")
    check_fields("PodSecurityContext", pod["spec"]["securityContext"], "template")
    assert sts["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    for v in pod["spec"]["volumes"]:
        check_fields("Volume", v, "volume %s" % v["name"])
    for name, c in containers.items():
        check_fields("Container", c, name)
        for key, kind in (("securityContext", "SecurityContext"), ("startupProbe", "Probe"),
                          ("readinessProbe", "Probe"), ("livenessProbe", "Probe")):
            if key in c:
                check_fields(kind, c[key], "%s.%s" % (name, key))
        for m in c.get("volumeMounts", []):
            check_fields("VolumeMount", m, name)
            assert m["name"] in vols or m["name"] in claims, (name, m)
        for p_ in c.get("ports", []):
            check_fields("ContainerPort", p_, name)
        for e in c.get("env", []):
            check_fields("EnvVar", e, name)
    # the NetworkPolicy selects this Pod and lets in only the metrics port
    np_ = load_documents()["NetworkPolicy"]
    assert np_["spec"]["podSelector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    assert "Ingress" in np_["spec"]["policyTypes"], np_
    open_ports = {p_["port"] for rule in np_["spec"]["ingress"] for p_ in rule.get("ports", [])}
    assert all(rule.get("ports") for rule in np_["spec"]["ingress"]), "a rule without ports opens all"
    assert open_ports == {mport}, open_ports
    # each socket in an emptyDir of its own, mounted by the guard at its directory
    sock_vols = []
    for sock in (agent_sock, rep_sock, op_sock):
        shared = [n for n, p in mounts.items() if p == os.path.dirname(sock)]
        assert len(shared) == 1, (sock, mounts)
        assert "emptyDir" in vols[shared[0]], vols[shared[0]]
        sock_vols.append(shared[0])
    agent_vol, rep_vol, op_vol = sock_vols
    assert len(set(sock_vols)) == 3, sock_vols
    assert mounters(op_vol) == {"bayesguard"}, "only kubectl exec reaches the operator"
    # the agent mounts its socket's volume and not the reporter's
    agent_mounts = {m["name"]: m["mountPath"] for m in agent["volumeMounts"]}
    assert agent_vol in agent_mounts and rep_vol not in agent_mounts, agent_mounts
    assert mounters(rep_vol) == {"bayesguard", "tool-runner"}, mounters(rep_vol)
    assert "agent" not in mounters(pol_vol[0]), "the agent would read the thresholds"
    addr = {e["name"]: e["value"] for e in agent["env"]}["BAYESGUARD_ADDR"]
    assert addr == "unix:" + os.path.join(agent_mounts[agent_vol],
                                          os.path.basename(agent_sock)), addr
    runner = containers["tool-runner"]
    runner_mounts = {m["name"]: m["mountPath"] for m in runner["volumeMounts"]}
    assert rep_vol in runner_mounts and agent_vol not in runner_mounts, runner_mounts
    raddr = {e["name"]: e["value"] for e in runner["env"]}["BAYESGUARD_REPORTER_ADDR"]
    assert raddr == "unix:" + os.path.join(runner_mounts[rep_vol],
                                           os.path.basename(rep_sock)), raddr
    # plugins: the directory the image copies the built plugins into
    plugins = flag_values(argv, "--plugins")
    assert len(plugins) == 1 and any(c.split()[-1].rstrip("/") == plugins[0].rstrip("/")
                                     for c in copy_dests()), (plugins, copy_dests())
    # what the image copies from the build exists in a build (BG_BUILD_DIR for /build)
    build_files = []
    for c in copy_dests():
        if c.startswith("/build/"):
            for src in c.split()[:-1]:
                found = glob.glob(os.path.join(bgtest.BUILD_DIR, os.path.relpath(src, "/build")))
                assert found, "the image copies %s, which the build does not make" % src
                build_files += [f for f in found if os.path.isfile(f)]
    assert os.path.join(bgtest.BUILD_DIR, "daemon", "bayesguardd") in build_files, build_files
    assert os.path.join(bgtest.BUILD_DIR, "daemon", "bayesguard") in build_files, build_files
    # and the runtime stage installs the package of every library they link,
    # or one that depends on it (libc6, libgcc-s1 and zlib1g are in debian:12
    # itself): ldd finds each library, dpkg names its package
    if all(shutil.which(t) for t in ("dpkg", "dpkg-query", "readelf", "ldd")):
        have = with_dependencies(runtime_packages() | {"libc6", "libgcc-s1", "zlib1g"})
        for f in build_files:
            needed = set(re.findall(r"Shared library: \[(.+?)\]", subprocess.run(
                ["readelf", "-d", f], capture_output=True, text=True).stdout))
            paths = dict(re.findall(r"^\s*(\S+) => (\S+)", subprocess.run(
                ["ldd", f], capture_output=True, text=True).stdout, re.M))
            if any(re.match(r"lib[a-z]+san\.so", lib) for lib in needed):
                continue  # a BG_SANITIZE build links more; the image's build is Release
            for lib in needed - {"ld-linux-x86-64.so.2"}:
                assert lib in paths, (f, lib, paths)
                path = os.path.realpath(paths[lib])
                r = subprocess.run(["dpkg", "-S", path], capture_output=True, text=True)
                if r.returncode != 0:  # merged /usr: the package says /lib, ldd /usr/lib
                    other = path[len("/usr"):] if path.startswith("/usr/") else "/usr" + path
                    r = subprocess.run(["dpkg", "-S", other], capture_output=True, text=True)
                assert r.returncode == 0, (f, lib, path, r.stderr)
                pkg = r.stdout.split(":")[0]
                assert pkg in have, "%s links %s (package %s), which the image lacks: %s" % (
                    f, lib, pkg, " ".join(sorted(runtime_packages())))
    # the directories it writes exist in the image, owned by the USER it runs as
    stage = dockerfile_runtime_stage()
    user = re.findall(r"^USER\s+(\S+)", stage, re.M)
    assert len(user) == 1, user
    for wdir in (data[0], os.path.dirname(agent_sock), os.path.dirname(rep_sock),
                 os.path.dirname(op_sock)):
        assert re.search(r"mkdir -p [^&]*%s(\s|$)" % re.escape(wdir), stage), wdir
        assert re.search(r"chown %s [^&]*%s(\s|$)" % (re.escape(user[0]), re.escape(wdir)),
                         stage), (wdir, user)


def image_dirs(tmp, pol_dir):
    """The remapping of the image's paths and ports under tmp: (remap, the
    agent, reporter, operator socket dirs and the data dir)."""
    dirs = [os.path.join(tmp, d) for d in ("run", "rep", "op", "data")]
    for d in dirs:
        os.makedirs(d)
    run_dir, rep_dir, op_dir, data_dir = dirs
    remap = [("/etc/bayesguard/policies", pol_dir), ("/usr/lib/bayesguard/plugins",
             bgtest.PLUGIN_DIR), ("/var/lib/bayesguard", data_dir),
             ("/run/bayesguard-operator", op_dir), ("/run/bayesguard-reporter", rep_dir),
             ("/run/bayesguard", run_dir),
             ("0.0.0.0:50051", "127.0.0.1:0"), ("0.0.0.0:9464", "127.0.0.1:0")]
    return remap, dirs


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
    """bayesguardd with the image's ENTRYPOINT arguments, paths remapped
    (in --listen values after the roles too); self.roles[i] is the role set
    of the i-th listener, so self.addrs[self.index(role)] is its address."""

    def __init__(self, remap, **kw):
        super().__init__(**kw)
        self.remap = remap
        self.listen = []
        self.roles = []

    def argv(self):
        out = [bgtest.DAEMON]
        for a in entrypoint()[1:]:
            roles, at, addr = a.rpartition("@") if "@" in a else ("", "", a)
            for old, new in self.remap:
                if addr == old or addr.startswith(old + "/") or \
                        addr.startswith("unix:" + old + "/"):
                    addr = addr.replace(old, new, 1)
            out.append(roles + at + addr)
        self.listen = flag_values(out, "--listen")
        self.roles = [frozenset(l.split("@", 1)[0].split(",")) for l in self.listen]
        return out + ["--ready-file", self.ready]

    def index(self, role):
        (i,) = [i for i, r in enumerate(self.roles) if role in r]
        return i


def evaluate_as(addr, uid, groups):
    """Evaluate over addr from a process of another uid (an agent container
    that does not run as the image's user), with the supplementary groups
    given (the Pod's fsGroup); returns one line: OK <decision_id>, or the
    status code and message."""
    v, err = bgtest.call_as(uid, uid, addr, "Evaluate", guard_pb2.EvaluateRequest(
        action=guard_pb2.Action(tool="shell_exec"), context=guard_pb2.Context(session="pod")),
        guard_pb2.Verdict, groups=groups)
    return "OK " + v.decision_id if v else "%s %s" % err


def policy_names(cm):
    return {k: yaml.safe_load(v)["metadata"]["name"] for k, v in cm["data"].items()}


def status_policy(st, name):
    (p,) = [p for p in st.policies if p.name == name]
    return p


def test_entrypoint_configmap_and_reload():
    cm, pod = load_manifest()
    names = policy_names(cm)
    assert set(names.values()) == {"shell", "http"}, names
    tmp = tempfile.mkdtemp(prefix="bgdeploy-")
    pol_dir = os.path.join(tmp, "policies")
    kubelet_layout(pol_dir, cm["data"], "2026_11_26_12_00_00.000000001")
    r = subprocess.run([bgtest.DAEMON, "--check", "--policies", pol_dir, "--plugins",
                        bgtest.PLUGIN_DIR], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, (r.stdout, r.stderr)
    remap, (run_dir, rep_dir, op_dir, data_dir) = image_dirs(tmp, pol_dir)
    uid = "uid:%d" % os.getuid()
    denied = grpc.StatusCode.PERMISSION_DENIED
    with EntrypointDaemon(remap, policies=pol_dir) as d:
        H, A, R, O = (d.index(r) for r in ("health", "agent", "reporter", "operator"))
        assert d.addrs[A].startswith("unix:" + run_dir + "/"), d.addrs
        assert d.addrs[R].startswith("unix:" + rep_dir + "/"), d.addrs
        assert d.addrs[O].startswith("unix:" + op_dir + "/"), d.addrs
        assert not d.addrs[H].startswith("unix:"), d.addrs
        assert "serves every role" not in d.log(), d.log()
        # the sockets: 0660, the daemon's user's (the image's USER in the Pod)
        for i in (A, R, O):
            st = os.stat(d.addrs[i][len("unix:"):])
            assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o660, \
                oct(st.st_mode)
            assert st.st_uid == os.getuid(), st
        # an agent of another uid: with the sockets' group (what the Pod's
        # fsGroup gives it) it connects, and is known by its own uid; without
        # the group the kernel refuses it the socket (needs root to switch uids)
        shell_evals = 0
        if os.geteuid() == 0:
            shell_evals += 1
            other = 4242 if os.getuid() != 4242 else 4243
            os.chmod(tmp, 0o711)  # mkdtemp's 0700 would stop it before the socket
            out = evaluate_as(d.addrs[A], other, [os.getgid()])
            assert out.startswith("OK "), out
            line = bgtest.wait_for(lambda: next((l for l in d.log().splitlines()
                                                 if out.split()[1] in l), None), 10,
                                   "the other uid's decision in the log")
            assert json.loads(line)["peer"] == "uid:%d" % other, line
            out = evaluate_as(d.addrs[A], other, [])
            assert out.startswith("UNAVAILABLE") and "ermission denied" in out, out
        # health: the kubelet's gRPC probe SERVING, and nothing else
        assert d.health(i=H).status == 1
        req = guard_pb2.EvaluateRequest(action=guard_pb2.Action(tool="shell_exec"),
                                        context=guard_pb2.Context(session="pod"))
        bgtest.expect_code(lambda: d.evaluate(req, i=H), denied,
                           ["Evaluate needs the agent role", "serves health"])
        # the agent, over its socket: Evaluate, keyed by its uid and session
        v = d.evaluate(req, i=A)
        shell_evals += 1
        assert v.policy == "shell", v
        assert v.decision == guard_pb2.ESCALATE and not v.receipt, v  # no outcome to report
        # its decision log line, on stdout where `kubectl logs` finds it
        line = bgtest.wait_for(lambda: next((l for l in d.log().splitlines()
                                             if v.decision_id in l), None), 10,
                               "the decision's line in the container's output")
        rec = json.loads(line)
        assert (rec["decision"], rec["policy"], rec["session"], rec["peer"]) == (
            "ESCALATE", "shell", "pod", uid), rec
        assert rec["session_key"] == uid + "|pod", rec  # a fresh child: the child's on a tie
        # ... and nothing else: the role is named before the receipt is looked at
        obs = guard_pb2.ObserveRequest(action=guard_pb2.Action(tool="shell_exec"),
                                       context=guard_pb2.Context(session="pod"), harmed=False)
        for method, m_req, role in (("Observe", obs, "reporter"),
                                    ("Status", guard_pb2.StatusRequest(), "operator"),
                                    ("Reload", guard_pb2.ReloadRequest(), "operator")):
            bgtest.expect_code(lambda: d.call(method, m_req, i=A), denied,
                               ["%s needs the %s role" % (method, role), "serves agent"])
        # the reporter: no Evaluate, no Status, no outcome without a receipt
        bgtest.expect_code(lambda: d.evaluate(req, i=R), denied,
                           ["Evaluate needs the agent role", "serves reporter"])
        bgtest.expect_code(lambda: d.call("Status", guard_pb2.StatusRequest(), i=R), denied,
                           ["Status needs the operator role"])
        bgtest.expect_code(lambda: d.call("Observe", obs, i=R), denied, ["no receipt"])
        # the shadow policy's ALLOW: the agent passes its receipt to whoever runs
        # the tool, who reports the outcome with it over the reporter socket, once
        hreq = guard_pb2.EvaluateRequest(
            action=guard_pb2.Action(tool="http_get", arguments_json='{"url":"https://a.b/"}'),
            context=guard_pb2.Context(session="pod"))
        hv = d.evaluate(hreq, i=A)
        assert (hv.policy, hv.decision, hv.shadow) == ("http", guard_pb2.ALLOW, True), hv
        assert hv.receipt, hv
        hobs = guard_pb2.ObserveRequest(action=hreq.action, context=hreq.context,
                                        harmed=False, receipt=hv.receipt)
        bgtest.expect_code(lambda: d.call("Observe", hobs, i=A), denied,
                           ["Observe needs the reporter role"])
        d.call("Observe", hobs, i=R)
        bgtest.expect_code(lambda: d.call("Observe", hobs, i=R), grpc.StatusCode.ALREADY_EXISTS)
        assert d.evaluate(hreq, i=A).observations == 1  # in the agent's session
        assert sorted(os.listdir(data_dir)) == [
            "escalations.log", "obs-00000000000000000001.bglog", "receipt.key", "store.key"], \
            os.listdir(data_dir)
        for name in ("escalations.log", "store.key"):
            st_ = os.stat(os.path.join(data_dir, name))
            assert st_.st_mode & 0o777 == 0o600, (name, oct(st_.st_mode))
        key = os.stat(os.path.join(data_dir, "receipt.key"))
        assert key.st_mode & 0o777 == 0o600 and key.st_size == 32, oct(key.st_mode)
        # Prometheus, as the Pod's annotations tell it to scrape
        maddr = re.search(r"metrics on (\S+)", d.log()).group(1)
        url = "http://%s%s" % (maddr, pod["metadata"]["annotations"]["prometheus.io/path"])
        with urllib.request.urlopen(url, timeout=10) as resp:
            assert resp.status == 200, resp.status
            text = resp.read().decode()
        samples = dict(l.rsplit(" ", 1) for l in text.splitlines() if not l.startswith("#"))
        assert samples['bayesguard_evaluations_total{policy="shell",decision="escalate"}'] \
            == str(shell_evals), text
        assert samples['bayesguard_evaluations_total{policy="http",decision="allow"}'] \
            == "2", text
        for pol, harmed, n in (("shell", "true", "0"), ("shell", "false", "0"),
                               ("http", "true", "0"), ("http", "false", "1")):
            assert samples.get('bayesguard_observations_total{policy="%s",harmed="%s"}' % (
                pol, harmed), "0") == n, (pol, harmed, text)
        # the operator, on its socket (kubectl exec into the guard's container): Status
        st = d.call("Status", guard_pb2.StatusRequest(), i=O)
        rev0, thr0 = st.revision, status_policy(st, "shell").threshold
        bgtest.expect_code(lambda: d.evaluate(req, i=O), denied,
                           ["Evaluate needs the agent role"])

        # the kubelet's ConfigMap update, while the agent keeps evaluating
        stop, errors, done = threading.Event(), [], [0]

        def agent():
            ch = d.channel(A)
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
            new = dict(cm["data"])
            new["shell.yaml"] = new["shell.yaml"].replace("threshold: %g" % thr0,
                                                          "threshold: 0.25")
            assert new != cm["data"], "the test needs the policy's threshold line"
            kubelet_layout(pol_dir, new, "2026_11_26_12_05_00.000000002")

            def reloaded():
                s = d.call("Status", guard_pb2.StatusRequest(), i=O)
                return s.revision != rev0 and status_policy(s, "shell").threshold == 0.25
            bgtest.wait_for(reloaded, 20.0, "the ConfigMap update to be hot-reloaded")
            v = d.evaluate(req, i=A)
            assert v.threshold == 0.25, v
        finally:
            stop.set()
            t.join()
        print("ConfigMap swap under load: %d Evaluate calls, %d failed" % (done[0], len(errors)))
        assert not errors and done[0] > 0, errors[:3]
    shutil.rmtree(tmp, ignore_errors=True)


RO_SCRIPT = (
    # every mount of this machine read-only (as the image's root is in the Pod,
    # readOnlyRootFilesystem) ...
    'for m in $(awk \'{print $2}\' /proc/self/mounts | grep -vE "^/(proc|sys|dev)(/|$)"); do '
    'mount -o remount,bind,ro "$m" 2>/dev/null; done; '
    # ... except the directories the Pod mounts writable (given as $1..$n before --)
    'while [ "$1" != "--" ]; do mount --bind "$1" "$1" && mount -o remount,bind,rw "$1" '
    '|| exit 97; shift; done; shift; exec "$@"')


def read_only_root_unavailable():
    """Why a private read-only mount namespace cannot be made here, or None."""
    if os.geteuid() != 0:
        return "needs root (a private mount namespace)"
    if not shutil.which("unshare"):
        return "unshare(1) is missing"
    r = subprocess.run(["unshare", "-m", "--propagation", "private", "true"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        return "unshare -m refused: " + r.stderr.strip()
    return None


def test_read_only_root():
    """readOnlyRootFilesystem: the daemon with the image's arguments runs with
    every mount read-only but its volumes (the socket directories, the data
    directory, and /tmp for the plugins' private copies — with $TMPDIR there),
    in a private mount namespace: it starts, decides, stores an outcome and
    answers the operator, and exits cleanly. Without the /tmp volume it must
    refuse to start, which shows the read-only root is real."""
    why = read_only_root_unavailable()
    if why:
        print("test_read_only_root: skipped: " + why)
        return
    cm, _ = load_manifest()
    tmp = tempfile.mkdtemp(prefix="bgdeploy-ro-")
    pol_dir = os.path.join(tmp, "policies")
    kubelet_layout(pol_dir, cm["data"], "2026_12_06_12_00_00.000000001")
    remap, vols = image_dirs(tmp, pol_dir)
    data_dir = vols[3]
    tmp_vol = os.path.join(tmp, "tmp")
    os.makedirs(tmp_vol)

    class ReadOnlyRoot(EntrypointDaemon):
        def __init__(self, writable, **kw):
            super().__init__(remap, **kw)
            self.writable = writable

        def argv(self):
            inner = super().argv()
            return (["unshare", "-m", "--propagation", "private", "sh", "-c", RO_SCRIPT, "sh"]
                    + self.writable + [self.tmp, "--", "env", "TMPDIR=" + tmp_vol] + inner)

    # without /tmp writable, the plugins cannot be copied: no start
    bad = ReadOnlyRoot(vols, policies=pol_dir, start_timeout=20)
    try:
        bad.start()
        bad.stop()
        raise AssertionError("started with a read-only /tmp: the root is not read-only")
    except AssertionError as e:
        assert "exited" in str(e) and "Read-only file system" in str(e), str(e)[-2000:]
    finally:
        bad.cleanup()
    with ReadOnlyRoot(vols + [tmp_vol], policies=pol_dir) as d:
        H, A, R, O = (d.index(r) for r in ("health", "agent", "reporter", "operator"))
        assert d.health(i=H).status == 1
        hreq = guard_pb2.EvaluateRequest(
            action=guard_pb2.Action(tool="http_get", arguments_json='{"url":"https://a.b/"}'),
            context=guard_pb2.Context(session="ro"))
        hv = d.evaluate(hreq, i=A)
        assert hv.decision == guard_pb2.ALLOW and hv.receipt, hv
        d.call("Observe", guard_pb2.ObserveRequest(action=hreq.action, context=hreq.context,
                                                   harmed=False, receipt=hv.receipt), i=R)
        st = d.call("Status", guard_pb2.StatusRequest(), i=O)
        assert st.observations >= 1 and not st.observation_log_broken, st
        assert "Read-only file system" not in d.log(), d.log_text_tail()
    assert os.path.getsize(os.path.join(data_dir, "obs-00000000000000000001.bglog")) > 0
    assert os.listdir(tmp_vol) == [], "private plugin copies are removed once loaded"
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    bgtest.main([test_manifest_matches_entrypoint, test_entrypoint_configmap_and_reload,
                 test_read_only_root])
