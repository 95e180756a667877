"""Prometheus text exposition (format 0.0.4) for the tests: a strict
parser, HTTP by hand over a socket, and the daemon's metrics address.
Used by tests/metrics and by any test that checks a metric over the wire."""
import re
import socket
import time

# ------------------------------------------------------------ the parser

SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? (\S+)$")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|\})')
TYPES = ("counter", "gauge", "histogram", "summary", "untyped")


def unescape(v):
    out, i = [], 0
    while i < len(v):
        if v[i] == "\\":
            nxt = v[i + 1]
            assert nxt in ('\\', '"', 'n'), "bad escape \\%s in %r" % (nxt, v)
            out.append("\n" if nxt == "n" else nxt)
            i += 2
        else:
            out.append(v[i])
            i += 1
    return "".join(out)


def parse_labels(text, line):
    labels, i = {}, 1
    if text == "{}":
        return labels
    while i < len(text):
        m = LABEL.match(text, i)
        assert m, "bad labels in %r" % line
        assert m.group(1) not in labels, "label %s twice in %r" % (m.group(1), line)
        labels[m.group(1)] = unescape(m.group(2))
        i = m.end()
        if m.group(3) == "}":
            assert i == len(text), "text after the labels in %r" % line
    return labels


def parse_value(v, line):
    if v in ("+Inf", "-Inf", "NaN"):
        return float(v.replace("Inf", "inf").replace("NaN", "nan"))
    assert re.match(r"^-?[0-9.]+(e[-+]?[0-9]+)?$", v), "bad value %r in %r" % (v, line)
    return float(v)


def parse(text):
    """Strict text format 0.0.4 -> {family: {"type", "help", "samples": [(name, labels, v)]}}."""
    assert text.endswith("\n"), "the exposition must end with a newline"
    fams, cur, seen_samples = {}, None, set()
    for line in text[:-1].split("\n"):
        assert line, "empty line in the exposition"
        if line.startswith("# HELP "):
            name, _, help_ = line[7:].partition(" ")
            fams.setdefault(name, {"type": None, "help": None, "samples": []})
            assert fams[name]["help"] is None, "HELP twice for " + name
            fams[name]["help"] = help_
            continue
        if line.startswith("# TYPE "):
            name, _, typ = line[7:].partition(" ")
            assert typ in TYPES, line
            f = fams.setdefault(name, {"type": None, "help": None, "samples": []})
            assert f["type"] is None and not f["samples"], "TYPE late or twice: " + line
            f["type"] = typ
            cur = name
            continue
        assert not line.startswith("#"), "unexpected comment " + line
        m = SAMPLE.match(line)
        assert m, "sample line does not parse: %r" % line
        name, labels = m.group(1), parse_labels(m.group(2) or "{}", line)
        value = parse_value(m.group(3), line)
        fam = cur
        suffixes = ("_bucket", "_sum", "_count") if fams[cur]["type"] == "histogram" else ()
        if name != cur:
            assert any(name == cur + s for s in suffixes), \
                "sample %s outside its family (%s): every family must be typed and its " \
                "samples together" % (name, cur)
        key = (name, tuple(sorted(labels.items())))
        assert key not in seen_samples, "duplicate series " + line
        seen_samples.add(key)
        fams[fam]["samples"].append((name, labels, value))
    for name, f in fams.items():
        assert f["type"] is not None, "family %s has no TYPE" % name
        if f["type"] == "histogram":
            check_histogram(name, f["samples"])
    return fams


def check_histogram(name, samples):
    series = {}
    for n, labels, v in samples:
        rest = tuple(sorted((k, x) for k, x in labels.items() if k != "le"))
        series.setdefault(rest, {"buckets": [], "sum": None, "count": None})
        if n == name + "_bucket":
            series[rest]["buckets"].append((parse_value(labels["le"], n), v))
        elif n == name + "_sum":
            series[rest]["sum"] = v
        else:
            series[rest]["count"] = v
    for rest, s in series.items():
        les = [le for le, _ in s["buckets"]]
        assert les == sorted(les) and les[-1] == float("inf"), (name, rest, les)
        counts = [c for _, c in s["buckets"]]
        assert counts == sorted(counts), "%s%s: buckets not cumulative: %s" % (name, rest, counts)
        assert s["count"] == counts[-1], "%s%s: _count %s != +Inf bucket %s" % (
            name, rest, s["count"], counts[-1])
        assert s["sum"] is not None and s["sum"] >= 0, (name, rest)


def value(fams, name, **labels):
    """The value of the one sample `name` (a family, or a histogram's
    name_bucket/_sum/_count) with exactly these labels."""
    family = name if name in fams else re.sub(r"_(bucket|sum|count)$", "", name)
    hits = [v for n, l, v in fams[family]["samples"] if n == name and l == labels]
    assert len(hits) == 1, "%s%s: %d samples (have %s)" % (
        name, labels, len(hits), [l for n, l, _ in fams[family]["samples"]][:12])
    return hits[0]


# ------------------------------------------------------------ HTTP by hand

def http(addr, raw, timeout=10.0):
    """Send raw bytes, read until the server closes; (status, headers, body)."""
    host, port = addr.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=timeout) as s:
        s.sendall(raw)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    status = int(lines[0].split(" ")[1])
    assert lines[0].startswith("HTTP/1.1 "), lines[0]
    headers = {}
    for l in lines[1:]:
        k, _, v = l.partition(":")
        headers[k.strip().lower()] = v.strip()
    return status, headers, body


def get(addr, path="/metrics", method="GET"):
    return http(addr, ("%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: bgtest\r\n\r\n"
                       % (method, path, addr)).encode())


def scrape(addr):
    status, headers, body = get(addr)
    assert status == 200, (status, body[:200])
    assert headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8", headers
    assert int(headers["content-length"]) == len(body), (headers, len(body))
    assert headers["connection"] == "close", headers
    return parse(body.decode("utf-8"))


def metrics_addr(d):
    m = re.search(r"metrics on (\S+)", d.log())
    assert m, "no 'metrics on ADDR' in the log:\n" + d.log_text_tail()
    return m.group(1)


def open_idle(addr):
    host, port = addr.rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=30)
    return s


def wait_closed(s, timeout):
    """Seconds until the server closed s (EOF or reset); fails after timeout."""
    t0 = time.monotonic()
    s.settimeout(timeout)
    try:
        data = s.recv(4096)
        assert data == b"", data
    except ConnectionResetError:
        pass
    except socket.timeout:
        raise AssertionError("the server did not close the connection within %.1f s" % timeout)
    return time.monotonic() - t0
