#!/usr/bin/env python3
"""Synthetic request metrics of an API instrumented with redwatch's otel preset.

One deterministic model serves the history (pushed to Prometheus's remote-write receiver, or
written as OpenMetrics text for `promtool tsdb create-blocks-from openmetrics`) and the live
exporter (`/metrics` served to Prometheus), so the live counters continue exactly where the
backfilled ones stop.

Series: http_server_request_duration_seconds_{bucket,sum,count} with http_request_method,
http_route, http_response_status_code (200, 404, 500) and, in the history, job="redwatch" and
instance="api-N" (live, Prometheus adds those from the target labels). ROUTES routes x 3 codes x
INSTANCES instances label sets, 17 series each.

Model, per label set: request rate a * (1 + 0.4 sin(2 pi t / 1 day + phase_route)); counters are
the integral of that since ORIGIN, floored; each bucket holds a fixed lognormal share of the
count (route-specific median 5-300 ms), the sum is count x mean latency.

Stdlib only.
"""
import argparse
import http.server
import math
import os
import random
import socketserver
import sys

NAME = "http_server_request_duration_seconds"
BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10]
STATUSES = [("200", 0.93), ("404", 0.06), ("500", 0.01)]
DAY = 86400.0
AMPLITUDE = 0.4
METHODS = ["GET"] * 6 + ["POST"] * 2 + ["PUT", "DELETE"]


def le_text(le):
    return "%g" % le  # as redwatch exposes them in the text format: 0.005 ... 1 ... 10


class Model:
    def __init__(self, routes, instances, origin, total_rate, seed=1):
        rng = random.Random(seed)
        self.origin = float(origin)
        weights = [1.0 / (r + 1) ** 0.9 for r in range(routes)]
        norm = sum(weights)
        self.route_phase = []
        # per label set: (instance index, route index, rate, [cumulative shares], mean latency)
        self.sets = []
        route_info = []
        for r in range(routes):
            method = METHODS[rng.randrange(len(METHODS))]
            route = "/api/v1/svc%02d/res%d/{id}" % (r // 8, r % 8)
            median = 0.005 * math.exp(rng.uniform(0, math.log(60)))
            sigma = rng.uniform(0.5, 1.0)
            route_info.append((method, route, median, sigma))
            self.route_phase.append(rng.uniform(-0.3, 0.3))
        for i in range(instances):
            inst_share = 1.0 / instances * rng.uniform(0.9, 1.1)
            for r, (method, route, median, sigma) in enumerate(route_info):
                for code, share in STATUSES:
                    med = median / 3 if code == "404" else median
                    mu = math.log(med)
                    cum = [0.5 * (1 + math.erf((math.log(le) - mu) / (sigma * math.sqrt(2))))
                           for le in BUCKETS]
                    mean = math.exp(mu + sigma * sigma / 2)
                    rate = total_rate * weights[r] / norm * share * inst_share * rng.uniform(0.8, 1.2)
                    labels = ('http_request_method="%s",http_response_status_code="%s",'
                              'http_route="%s"' % (method, code, route))
                    self.sets.append((i, r, rate, cum, mean, labels))
        self.instances = instances

    def integral(self, r, t):
        """Integral over [origin, t] of 1 + A sin(2 pi s / DAY + phase_r) ds."""
        w = 2 * math.pi / DAY
        ph = self.route_phase[r]
        return (t - self.origin) - AMPLITUDE / w * (math.cos(w * t + ph) - math.cos(w * self.origin + ph))

    def template(self, instance, history):
        """A %-format string of one instance's 17 lines per label set, in set order."""
        out = []
        for (i, r, rate, cum, mean, labels) in self.sets:
            if i != instance:
                continue
            if history:
                labels = labels + ',instance="api-%d",job="redwatch"' % i
                tail = " @T@\n"
            else:
                tail = "\n"
            for le in BUCKETS:
                out.append('%s_bucket{%s,le="%s"} %%d%s' % (NAME, labels, le_text(le), tail))
            out.append('%s_bucket{%s,le="+Inf"} %%d%s' % (NAME, labels, tail))
            out.append("%s_sum{%s} %%.3f%s" % (NAME, labels, tail))
            out.append("%s_count{%s} %%d%s" % (NAME, labels, tail))
        return "".join(out)

    def values(self, instance, t):
        g = [self.integral(r, t) for r in range(len(self.route_phase))]
        vals = []
        ext = vals.extend
        for (i, r, rate, cum, mean, labels) in self.sets:
            if i != instance:
                continue
            c = rate * g[r]
            n = int(c)
            ext([int(p * c) for p in cum])
            ext((n, mean * c, n))
        return tuple(vals)


def model_from(args):
    return Model(args.routes, args.instances, args.origin, args.total_rate)


def cmd_history(args):
    """OpenMetrics text for timestamps start, start+step, ... < end (all instances)."""
    m = model_from(args)
    templates = [m.template(i, True) for i in range(m.instances)]
    t = args.start
    with open(args.out, "w", buffering=1 << 22) as f:
        while t < args.end:
            ts = "%d" % t
            for i in range(m.instances):
                f.write(templates[i].replace("@T@", ts) % m.values(i, t))
            t += args.step
        f.write("# EOF\n")


# --- remote write: Prometheus's protobuf WriteRequest, snappy-framed as one literal -----------

def varint(n):
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def pb_bytes(field, payload):
    return bytes([field << 3 | 2]) + varint(len(payload)) + payload


def pb_labels(pairs):
    return b"".join(pb_bytes(1, pb_bytes(1, n.encode()) + pb_bytes(2, v.encode())) for n, v in sorted(pairs))


def series_labels(m, instance):
    """Label sets of one instance's series in the order Model.values() yields them."""
    out = []
    for (i, r, rate, cum, mean, labels) in m.sets:
        if i != instance:
            continue
        base = [tuple(kv.split("=", 1)) for kv in labels.split('",')]
        base = [(k, v.strip('"')) for k, v in base] + [("instance", "api-%d" % i), ("job", "redwatch")]
        for le in [le_text(b) for b in BUCKETS] + ["+Inf"]:
            out.append(base + [("__name__", NAME + "_bucket"), ("le", le)])
        out.append(base + [("__name__", NAME + "_sum")])
        out.append(base + [("__name__", NAME + "_count")])
    return out


def snappy_literal(data):
    """A snappy block holding data as one literal (valid snappy, no compression)."""
    n = len(data)
    return varint(n) + bytes([63 << 2]) + (n - 1).to_bytes(4, "little") + data


def cmd_remote_write(args):
    """Push [start, end) every step seconds to a Prometheus remote-write receiver, batch_steps
    steps per request. Each instance's series go over their own connection, in time order, so
    Prometheus ingests them on several cores. Series must arrive in time order and no more than
    an hour behind the newest sample Prometheus holds: one batch in flight plus one queued per
    instance keeps the instances within two batches of each other."""
    import http.client
    import queue
    import struct
    import threading
    import urllib.parse
    m = model_from(args)
    labels = [[pb_labels(l) for l in series_labels(m, i)] for i in range(m.instances)]
    u = urllib.parse.urlparse(args.url)
    failed = []

    def sender(q):
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=600)
        while True:
            body = q.get()
            if body is None:
                return
            if failed:
                continue
            try:
                conn.request("POST", u.path, body=body, headers={
                    "Content-Encoding": "snappy", "Content-Type": "application/x-protobuf",
                    "X-Prometheus-Remote-Write-Version": "0.1.0"})
                r = conn.getresponse()
                text = r.read()
                if r.status // 100 != 2:
                    failed.append("HTTP %d: %s" % (r.status, text[:300].decode(errors="replace")))
            except Exception as e:  # noqa: BLE001 - reported below
                failed.append(repr(e))

    queues = [queue.Queue(maxsize=1) for _ in range(m.instances)]
    threads = [threading.Thread(target=sender, args=(q,), daemon=True) for q in queues]
    for th in threads:
        th.start()
    t = args.start
    while t < args.end and not failed:
        steps = list(range(t, min(args.end, t + args.batch_steps * args.step), args.step))
        # one sample: field 2 (length 16) { field 1: double value, field 2: varint ms }
        tails = [b"\x10" + varint(s * 1000) for s in steps]
        assert all(len(x) == 7 for x in tails), "timestamps outside the 6-byte varint range"
        pack = struct.Struct("<" + "3sd7s" * len(steps)).pack
        fields = [x for tail in tails for x in (b"\x12\x10\x09", 0.0, tail)]
        for i in range(m.instances):
            parts = []
            for lab, vs in zip(labels[i], zip(*[m.values(i, s) for s in steps])):
                fields[1::3] = vs
                parts.append(pb_bytes(1, lab + pack(*fields)))
            queues[i].put(snappy_literal(b"".join(parts)))
        t = steps[-1] + args.step
    for q in queues:
        q.put(None)
    for th in threads:
        th.join()
    if failed:
        raise SystemExit("remote write failed: %s" % failed[0])


class Exporter(http.server.BaseHTTPRequestHandler):
    model = None
    instance = 0
    template = ""

    def do_GET(self):
        import time
        if self.path.split("?")[0] != "/metrics":
            self.send_error(404)
            return
        body = (self.template % self.model.values(self.instance, time.time())).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


def cmd_serve(args):
    """Serve instance N's live counters on 127.0.0.1, an ephemeral port written to port_file."""
    m = model_from(args)
    Exporter.model = m
    Exporter.instance = args.instance
    Exporter.template = m.template(args.instance, False)
    srv = Server(("127.0.0.1", 0), Exporter)
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d\n" % srv.server_address[1])
    os.rename(tmp, args.port_file)
    srv.serve_forever()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--routes", type=int, default=200)
    ap.add_argument("--instances", type=int, default=2)
    ap.add_argument("--total-rate", type=float, default=400.0, help="requests/s, all instances")
    ap.add_argument("--origin", type=float, required=True, help="unix time where counters are 0")
    sub = ap.add_subparsers(dest="cmd", required=True)
    h = sub.add_parser("history")
    h.add_argument("--start", type=int, required=True)
    h.add_argument("--end", type=int, required=True)
    h.add_argument("--step", type=int, required=True)
    h.add_argument("--out", required=True)
    w = sub.add_parser("remote-write")
    w.add_argument("--url", required=True)
    w.add_argument("--start", type=int, required=True)
    w.add_argument("--end", type=int, required=True)
    w.add_argument("--step", type=int, required=True)
    w.add_argument("--batch-steps", type=int, default=10)
    s = sub.add_parser("serve")
    s.add_argument("--instance", type=int, required=True)
    s.add_argument("--port-file", required=True)
    args = ap.parse_args()
    {"history": cmd_history, "remote-write": cmd_remote_write, "serve": cmd_serve}[args.cmd](args)


if __name__ == "__main__":
    main()
