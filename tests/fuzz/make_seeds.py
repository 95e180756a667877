#!/usr/bin/env python3
"""make_seeds.py — writes the seed corpus of tests/fuzz (corpus/<harness>/).

The seeds are data kept in git (small: a few valid inputs per harness, plus
the regression inputs the fuzzers found, which this script does not touch);
run this only to regenerate the valid ones after a format change:

    /usr/bin/python3 tests/fuzz/make_seeds.py <build dir with python/ (protoc output)>

Formats: fuzz_request takes a selector byte then a serialized request;
fuzz_obs_log a flags byte then the log after its magic; fuzz_metrics_http a
read-size byte then the bytes a client sends; the others their file as is.
"""
import os
import random
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")


def put(harness, name, data):
    d = os.path.join(CORPUS, harness)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def requests(build):
    sys.path.insert(0, os.path.join(build, "python"))
    from bayesguard.v1 import bench_pb2, guard_pb2  # noqa: E402
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        "health_pb2", os.path.join(build, "python/grpc/health/v1/health_pb2.py"))
    health_pb2 = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(health_pb2)
    g = guard_pb2
    ev = g.EvaluateRequest(action=g.Action(id="c1", tool="send_email", arguments_json='{"to":"a@b"}'),
                           context=g.Context(session="s1", agent="a1", trace_id="t1"))
    put("request", "evaluate_email", b"\x00" + ev.SerializeToString())
    ev = g.EvaluateRequest(action=g.Action(tool="transfer_out", features=[2.5, 1.0]),
                           context=g.Context(agent="a1"), policy="payments")
    put("request", "evaluate_payments_2slices", b"\x08" + ev.SerializeToString())
    ev = g.EvaluateRequest(action=g.Action(tool="shell_exec", attributes={"user": "u1", "k": "v"}))
    put("request", "evaluate_shell_attr", b"\x00" + ev.SerializeToString())
    ob = g.ObserveRequest(action=g.Action(tool="arm_1", features=[1, 0, 1]), harmed=True, value=2.0,
                          id="d1")
    put("request", "observe_arm_value", b"\x01" + ob.SerializeToString())
    ob = g.ObserveRequest(action=g.Action(tool="email_bulk"), context=g.Context(session="s2"),
                          harmed=False)
    put("request", "observe_email", b"\x01" + ob.SerializeToString())
    put("request", "status", b"\x04" + g.StatusRequest().SerializeToString())
    put("request", "ping", b"\x06" + bench_pb2.PingRequest(delay_ms=1, payload=b"x").SerializeToString())
    put("request", "health", b"\x07" + health_pb2.HealthCheckRequest(service="bayesguard.v1.Guard")
        .SerializeToString())


def s(b):
    return struct.pack("<I", len(b)) + b


def record(guard, session, tool, feats=(), attrs=(), harmed=0, has_value=0, value=0.0):
    out = b"\x01" + s(guard) + s(session) + s(tool) + s(b"id") + s(b"{}")
    out += struct.pack("<I", len(feats)) + b"".join(struct.pack("<d", f) for f in feats)
    out += struct.pack("<I", len(attrs)) + b"".join(s(k) + s(v) for k, v in attrs)
    return out + bytes([harmed, has_value]) + struct.pack("<d", value)


def obs():
    recs = [
        record(b"email", b"s", b"send_email", harmed=1),
        record(b"payments", b"s", b"transfer_x", feats=(1.0, 0.5)),
        record(b"arms", b"", b"arm_1", feats=(1.0, 0.0, 1.0), has_value=1, value=2.0),
        record(b"shell", b"s", b"exec", attrs=((b"user", b"s"),)),
    ]
    for i, r in enumerate(recs):
        put("obs_record", "record%d" % i, r)
    # obs_log: flags 0 (CRCs rewritten by the harness), records framed.
    log = b"".join(struct.pack("<II", len(r), 0) + r for r in recs)
    put("obs_log", "four_records", b"\x00" + log)
    put("obs_log", "torn_tail", b"\x00" + log + struct.pack("<II", 100, 0) + b"\x01abc")
    put("obs_log", "empty", b"\x00")


def fleet():
    """fuzz_fleet_entry: entries (u16 string sid, a byte k, k field pairs);
    fuzz_fleet_snapshot: the BGFSNAP1 bytes."""
    def s16(b):
        return struct.pack("<H", len(b)) + b

    def entry(sid, fields):
        return s16(sid) + bytes([len(fields)]) + b"".join(s16(k) + s16(v) for k, v in fields)

    def fields(fid, guard, session, rec, origin=b"00000000000000aa"):
        return [(b"id", fid), (b"policy", guard), (b"revision", b"0000000000000000"),
                (b"session", session), (b"obs", rec), (b"origin", origin)]
    e1 = record(b"email", b"s", b"send_email", harmed=1)
    e2 = record(b"payments", b"a", b"transfer_x", feats=(1.0, 0.5))
    e3 = record(b"arms", b"", b"arm_1", feats=(1.0, 0.0, 1.0), has_value=1, value=2.0)
    three = (entry(b"1-0", fields(b"00000000000000aa-0", b"email", b"s", e1)) +
             entry(b"1-1", fields(b"00000000000000aa-1", b"payments", b"a", e2)) +
             entry(b"1-2", fields(b"00000000000000bb-7", b"arms", b"", e3, b"00000000000000bb")))
    put("fleet_entry", "three_peers", three)
    put("fleet_entry", "duplicate_id", entry(b"2-0", fields(b"00000000000000aa-0", b"email",
                                                           b"s", e1)) * 2)
    put("fleet_entry", "no_such_policy", entry(b"3-0", fields(b"00000000000000cc-1", b"nope",
                                                             b"s", e1)))
    put("fleet_entry", "policy_mismatch", entry(b"4-0", fields(b"00000000000000cc-2", b"shell",
                                                              b"s", e1)))
    snap = s(b"BGFSNAP1")
    for fid, g, sess, r in ((b"00000000000000aa-0", b"email", b"s", e1),
                            (b"00000000000000aa-1", b"payments", b"a", e2),
                            (b"00000000000000bb-7", b"arms", b"", e3)):
        snap += s(fid) + s(g) + s(sess) + s(r)
    put("fleet_snapshot", "three", snap)
    put("fleet_snapshot", "magic_only", s(b"BGFSNAP1"))
    put("fleet_snapshot", "cut_short", snap[:-5])


def metrics():
    put("metrics_http", "get_metrics", b"\xff" + b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    put("metrics_http", "head_index_split", b"\x03" + b"HEAD /?q=1 HTTP/1.0\r\nAccept: */*\r\n\r\n")
    put("metrics_http", "post_404", b"\x10" + b"\r\nPOST /x HTTP/1.1\nHost: a\nHost: b\n\n")


def ckpt(dim, hidden, layers, heads, kv, vocab, seq, shared, seed):
    rnd = random.Random(seed)
    hs = dim // heads
    kvd = kv * hs
    n = vocab * dim + layers * dim + layers * dim * dim + 2 * layers * kvd * dim + layers * dim * dim
    n += layers * dim + 3 * layers * hidden * dim + dim + seq * hs
    if not shared:
        n += vocab * dim
    hdr = struct.pack("<7i", dim, hidden, layers, heads, kv, vocab if shared else -vocab, seq)
    return hdr + b"".join(struct.pack("<f", rnd.uniform(-0.5, 0.5)) for _ in range(n))


def nn():
    put("nn_ckpt", "tiny_shared", ckpt(8, 16, 1, 2, 1, 8, 4, True, 1))
    put("nn_ckpt", "tiny_cls_gqa", ckpt(8, 12, 2, 4, 2, 5, 3, False, 2))
    put("nn_ckpt", "header_only", struct.pack("<7i", 8, 16, 1, 2, 1, 8, 4))


def train_files():
    """The adapter and optimizer-state files of fuzz_nn_train_files's trainer:
    model (8, 12, 1, 2, 1, 7, 4, shared), LoRA rank 2, alpha 2 (nn_train_io.c)."""
    import zlib
    rnd = random.Random(5)
    model = struct.pack("<7i", 8, 12, 1, 2, 1, 7, 4)
    dims = [("wq", 8, 8), ("wk", 8, 4), ("wv", 8, 4), ("wo", 8, 8), ("w1", 8, 12), ("w2", 12, 8),
            ("w3", 8, 12)]
    r = 2

    def rec(name, a, b, floats):
        return (name.encode().ljust(32, b"\0") + struct.pack("<II", a, b)
                + b"".join(struct.pack("<f", v) for v in floats))

    def image(magic, step, recs):
        body = magic + struct.pack("<I", 1) + model + struct.pack("<ifii", r, 2.0, step, len(recs))
        body += b"".join(recs)
        return body + struct.pack("<I", zlib.crc32(body) & 0xFFFFFFFF)

    lora, opt = [], []
    for p, i, o in dims:
        for suffix, a, b in ((".A", r, i), (".B", o, r)):
            vals = [rnd.uniform(-0.3, 0.3) for _ in range(a * b)]
            lora.append(rec("l0." + p + suffix, a, b, vals))
            mv = [rnd.uniform(0, 0.01) for _ in range(2 * a * b)]
            opt.append(rec("l0." + p + suffix, a * b, 3, vals + mv))
    adapters = image(b"BGLORA\0\0", 0, lora)
    state = image(b"BGNNOPT\0", 3, opt)
    put("nn_train_files", "adapters", b"\x00" + adapters)
    put("nn_train_files", "state", b"\x01" + state)
    put("nn_train_files", "adapters_crc_fixed", b"\x02" + adapters)
    put("nn_train_files", "state_truncated", b"\x03" + state[:300])


def tokenizers():
    """llama2.c tokenizer.bin files (nn_tok.c): i32 max length, then per token
    f32 score, i32 length, bytes."""
    def tok(pieces):
        out = struct.pack("<i", max(len(p) for p, _ in pieces))
        for p, s in pieces:
            out += struct.pack("<fi", s, len(p)) + p
        return out
    base = [(b"<unk>", 0.0), (b"\n<s>\n", 0.0), (b"\n</s>\n", 0.0)]
    bytes_ = [(bytes([b]), 0.0) for b in range(256)]
    put("nn_tok", "bytes_merges", tok(base + bytes_ + [(b" s", -1.0), (b"he", -2.0), (b" she", -3.0)]))
    put("nn_tok", "fallback", tok(base + [(b"<0x%02X>" % b, 0.0) for b in range(256)] + [(b" ", -1.0)]))
    put("nn_tok", "truncated", tok(base + [(b"abc", -1.0)])[:-2])


def policies():
    src = os.path.abspath(os.path.join(HERE, "../.."))
    for p in ("policies/email.yaml", "policies/payments.yaml", "tests/rpc/policies/rpc.yaml",
              "tests/policy/bad/duplicate_key.yaml", "tests/policy/bad/estimator_unknown_key.yaml"):
        with open(os.path.join(src, p), "rb") as f:
            text = b"".join(l for l in f.read().splitlines(True) if not l.lstrip().startswith(b"#"))
        put("policy", os.path.basename(os.path.dirname(p)) + "_" + os.path.basename(p), text)


ALL_KEYS_TEST = b"""policy: p
peer: anonymous
cases:
  - name: every key
    peer: {identity: "spiffe://x/agent"}
    steps:
      - observe: {tool: t, arguments: &a {n: 1, f: 2.5, b: true, z: null, s: "1", l: [1, x]},
                  features: [0.5, -1], attributes: {k: v}, session: s, agent: a,
                  peer: {uid: 7}, policy: p, harmed: false, value: 1.5, repeat: 3}
      - expect: {tool: t, arguments: *a, decision: ALLOW, harm_bound: {ge: 0, lt: 0.5},
                 posterior_predictive: 0.25, plausible_set_size: {gt: 1, le: 9},
                 observations: 3, cautious: {id: 2, label: x, posterior: {le: 1}, harm: 0.5},
                 bound_kind: EXACT, shadow: false}
      - expect: {tool: t, arguments_json: '{"x": [1, 2]}', error: "refused"}
"""


def policy_tests():
    src = os.path.abspath(os.path.join(HERE, "../.."))
    for p in ("policies/email_test.yaml", "policies/payments_test.yaml",
              "policies/shell_test.yaml"):
        with open(os.path.join(src, p), "rb") as f:
            text = b"".join(l for l in f.read().splitlines(True) if not l.lstrip().startswith(b"#"))
        put("policy_test", os.path.basename(p), text)
    put("policy_test", "all_keys.yaml", ALL_KEYS_TEST)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: make_seeds.py <build dir>")
    requests(sys.argv[1])
    obs()
    fleet()
    metrics()
    nn()
    train_files()
    policy_tests()
    tokenizers()
    policies()
