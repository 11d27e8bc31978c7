#!/usr/bin/env python3
"""Helpers of bench/rules/run that talk to Prometheus's HTTP API. Stdlib only.

  backfill-plan   which recorded series the rule files read over a range (range selector,
                  subquery, offset), plus what those are computed from, as one rule file per
                  dependency level for `promtool tsdb create-blocks-from rules`
  wait-compacted  wait until a Prometheus has finished compacting its TSDB
  analyze         per rule group of each side: evaluation durations, interval, cost per minute,
                  samples read; process CPU; a markdown table on stdout, raw data to a directory
"""
import argparse
import json
import math
import os
import re
import statistics
import sys
import time
import urllib.parse
import urllib.request


def api(url, path, **params):
    data = urllib.parse.urlencode(params).encode()
    with urllib.request.urlopen(url + path, data=data if params else None, timeout=300) as r:
        body = json.load(r)
    if body.get("status") != "success":
        raise RuntimeError("%s%s: %s" % (url, path, body))
    return body["data"]


def rule_groups(url, file_suffix):
    """The groups Prometheus loaded from the rule file whose path ends with file_suffix."""
    groups = [g for g in api(url, "/api/v1/rules")["groups"] if g["file"].endswith(file_suffix)]
    if not groups:
        raise RuntimeError("no rule groups from %s at %s" % (file_suffix, url))
    return groups


# --- PromQL scanning: enough of a tokenizer to find which metric names are read over a range ---

TOKEN = re.compile(r"""
    (?P<str>"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|`[^`]*`)
  | (?P<id>[A-Za-z_:][A-Za-z0-9_:]*)
  | (?P<num>[0-9][0-9A-Za-z_.]*(?:[eE][+-]?[0-9]+)?)
  | (?P<ws>\s+|\#[^\n]*)
  | (?P<op>.)
""", re.X | re.S)


def tokens(expr):
    return [(m.lastgroup, m.group()) for m in TOKEN.finditer(expr) if m.lastgroup != "ws"]


def names_read_over_range(expr):
    """Metric names that expr reads over a time range: `name[..]`, `name{..}[..]`, the names
    inside a subquery `( .. )[..:..]`, and anything under `offset` or `@`."""
    toks = tokens(expr)
    match, stack = {}, []
    for i, (_, t) in enumerate(toks):
        if t in "([{" and _ == "op":
            stack.append(i)
        elif t in ")]}" and _ == "op":
            j = stack.pop()
            match[i], match[j] = j, i

    def before(i):
        kind, t = toks[i]
        if kind == "id":
            return {t}
        if kind == "op" and t == "}":
            j = match[i]
            return {toks[j - 1][1]} if j > 0 and toks[j - 1][0] == "id" else set()
        if kind == "op" and t == ")":
            return {x for k, x in toks[match[i]:i] if k == "id"}
        if kind == "op" and t == "]":
            return before(match[i] - 1) if match[i] > 0 else set()
        return set()

    out = set()
    for i, (kind, t) in enumerate(toks):
        if i == 0:
            continue
        if (kind == "op" and t in "[@") or (kind == "id" and t == "offset"):
            out |= before(i - 1)
    return out


def names_in(expr):
    return {t for k, t in tokens(expr) if k == "id"}


def cmd_backfill_plan(a):
    groups = rule_groups(a.url, a.rule_file)
    rules = [(g, r) for g in groups for r in g["rules"]]
    recorded = {r["name"] for g, r in rules if r["type"] == "recording"}
    wanted = set()
    for g, r in rules:
        wanted |= names_read_over_range(r["query"]) & recorded
    # Close over dependencies: to compute a wanted series, its recorded inputs need history too.
    todo = list(wanted)
    while todo:
        name = todo.pop()
        for g, r in rules:
            if r["type"] == "recording" and r["name"] == name:
                for dep in names_in(r["query"]) & recorded:
                    if dep not in wanted:
                        wanted.add(dep)
                        todo.append(dep)
    level = {}

    def level_of(name, seen=()):
        if name not in level:
            if name in seen:
                raise RuntimeError("recording rules depend on each other in a cycle: %s" % name)
            deps = set()
            for g, r in rules:
                if r["type"] == "recording" and r["name"] == name:
                    deps |= (names_in(r["query"]) & recorded) - {name}
            level[name] = 1 + max([level_of(d, seen + (name,)) for d in deps] or [0])
        return level[name]

    for n in wanted:
        level_of(n)
    os.makedirs(a.out_dir, exist_ok=True)
    summary = {"read_over_range_or_needed": sorted(wanted), "levels": {}}
    for lv in sorted(set(level.values())):
        out_groups = []
        for g in groups:
            sel = [{"record": r["name"], "expr": r["query"], **({"labels": r["labels"]} if r.get("labels") else {})}
                   for r in g["rules"]
                   if r["type"] == "recording" and r["name"] in wanted and level[r["name"]] == lv]
            if sel:
                out_groups.append({"name": g["name"], "interval": "%ds" % round(g["interval"]), "rules": sel})
        path = os.path.join(a.out_dir, "level%d.yml" % lv)
        with open(path, "w") as f:  # JSON is YAML
            json.dump({"groups": out_groups}, f, indent=1)
        summary["levels"][lv] = [(g["name"], g["interval"], [r["record"] for r in g["rules"]]) for g in out_groups]
        print(path)
    with open(os.path.join(a.out_dir, "plan.json"), "w") as f:
        json.dump(summary, f, indent=1)


def metrics_text(url):
    with urllib.request.urlopen(url + "/metrics", timeout=30) as r:
        return r.read().decode()


def metric_value(text, name):
    total = None
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            total = (total or 0) + float(line.rsplit(" ", 1)[1])
    return total


def cmd_wait_compacted(a):
    """Done when the compaction loop has run at least once (about a minute after start), then no
    compaction is in flight (no *.tmp-for-creation dir) and the count stood still for 3 polls."""
    deadline = time.time() + a.timeout
    stable, last = 0, None
    while time.time() < deadline:
        text = metrics_text(a.url)
        triggered = metric_value(text, "prometheus_tsdb_compactions_triggered_total") or 0
        done = (metric_value(text, "prometheus_tsdb_compactions_total") or 0,
                metric_value(text, "prometheus_tsdb_vertical_compactions_total") or 0,
                metric_value(text, "prometheus_tsdb_blocks_loaded"))
        busy = any(d.endswith(".tmp-for-creation") for d in os.listdir(a.data_dir))
        stable = stable + 1 if (triggered >= 1 and not busy and done == last) else 0
        last = done
        if stable >= 3:
            print("compacted: %d compactions, %d blocks" % (done[0], done[2]))
            return
        time.sleep(2)
    raise SystemExit("timed out waiting for compaction")


# --- analysis ---

def quantile(xs, q):
    xs = sorted(xs)
    if not xs:
        return float("nan")
    k = (len(xs) - 1) * q
    lo, hi = math.floor(k), math.ceil(k)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def raw_series(url, selector, start, end):
    """Raw samples of selector in (start, end], via a range-vector instant query."""
    rng = "%ds" % max(1, round(end - start))
    res = api(url, "/api/v1/query", query="%s[%s]" % (selector, rng), time="%.3f" % end)
    return res["result"]


def gname(series):
    """The group name of a rule_group label ("<file>;<group>")."""
    return series["metric"].get("rule_group", "").split(";", 1)[-1]


def data_check(url, history_start, end):
    """The live series continue the backfilled ones: as many count series over history + run as
    label sets, and no counter reset anywhere."""
    rng = "%ds" % round(end - history_start)
    q = lambda e: api(url, "/api/v1/query", query=e, time="%.3f" % end)["result"]
    sel = 'http_server_request_duration_seconds_count{job="redwatch"}[%s]' % rng
    series = q("count(count_over_time(%s))" % sel)
    resets = q("sum(resets(%s))" % sel)
    live = q('count(http_server_request_duration_seconds_count{job="redwatch"})')
    val = lambda r: int(float(r[0]["value"][1])) if r else 0
    return {"count_series_whole_range": val(series), "count_series_now": val(live), "counter_resets": val(resets)}


def side_data(name, url, rule_file, start, end, interval_default, history_start=None):
    sel = '{job="prometheus"}'
    dur = raw_series(url, "prometheus_rule_group_last_duration_seconds" + sel, start, end)
    evts = raw_series(url, "prometheus_rule_group_last_evaluation_timestamp_seconds" + sel, start, end)
    itv = api(url, "/api/v1/query", query="prometheus_rule_group_interval_seconds" + sel, time="%.3f" % end)["result"]
    missed = raw_series(url, "prometheus_rule_group_iterations_missed_total" + sel, start, end)
    failures = raw_series(url, "prometheus_rule_evaluation_failures_total" + sel, start, end)
    cpu = raw_series(url, "process_cpu_seconds_total" + sel, start, end)
    compactions = raw_series(url, "prometheus_tsdb_compactions_total" + sel, start, end)
    groups = {}
    ev_by_group = {gname(s): {float(t): float(v) for t, v in s["values"]} for s in evts}
    for s in dur:
        g = gname(s)
        evs = ev_by_group.get(g, {})
        per_eval = {}
        for t, v in s["values"]:
            e = evs.get(float(t))
            if e is None or e <= 0:
                continue
            per_eval[e] = float(v)  # one value per evaluation, however often we scraped it
        groups[g] = {"durations": [per_eval[e] for e in sorted(per_eval)], "eval_times": sorted(per_eval)}
    for s in itv:
        groups.setdefault(gname(s), {"durations": [], "eval_times": []})["interval"] = float(s["value"][1])

    def delta(series):
        out = {}
        for s in series:
            v = [float(x) for _, x in s["values"]]
            out[gname(s)] = v[-1] - v[0] if v else 0.0
        return out

    for g, d in delta(missed).items():
        groups.setdefault(g, {"durations": [], "eval_times": []})["missed"] = d
    fails = {}
    for s in failures:
        v = [float(x) for _, x in s["values"]]
        fails[gname(s)] = fails.get(gname(s), 0) + (v[-1] - v[0] if v else 0)
    for g, d in fails.items():
        groups.setdefault(g, {"durations": [], "eval_times": []})["failures"] = d
    cpu_v = [(float(t), float(x)) for t, x in cpu[0]["values"]] if cpu else []
    cpu_s = cpu_v[-1][1] - cpu_v[0][1] if len(cpu_v) > 1 else float("nan")
    cpu_span = cpu_v[-1][0] - cpu_v[0][0] if len(cpu_v) > 1 else float("nan")
    # Samples each rule reads per evaluation: each rule's expression as one instant query at the
    # end of the run, with the engine's own count (stats=all -> totalQueryableSamples).
    samples = {}
    per_rule = {}
    for g in rule_groups(url, rule_file):
        n = 0
        per_rule[g["name"]] = []
        for r in g["rules"]:
            st = api(url, "/api/v1/query", query=r["query"], time="%.3f" % end, stats="all")
            k = st["stats"]["samples"]["totalQueryableSamples"]
            n += k
            per_rule[g["name"]].append({"name": r["name"], "type": r["type"], "samples": k})
        samples[g["name"]] = n
        groups.setdefault(g["name"], {"durations": [], "eval_times": []})
        groups[g["name"]].setdefault("interval", float(g["interval"]))
        groups[g["name"]]["rules"] = len(g["rules"])
    for g, d in groups.items():
        d["samples_per_eval"] = samples.get(g)
        d["rule_samples"] = per_rule.get(g, [])
        d.setdefault("interval", interval_default)
        xs = d["durations"]
        d["evals"] = len(xs)
        d["median"] = statistics.median(xs) if xs else float("nan")
        d["p90"] = quantile(xs, 0.9)
        d["cost_per_min"] = d["median"] * 60 / d["interval"]
        d["samples_per_min"] = (d["samples_per_eval"] or 0) * 60 / d["interval"]
    comp = [float(x) for _, x in compactions[0]["values"]] if compactions else []
    return {"name": name, "url": url, "groups": groups, "cpu_seconds": cpu_s, "cpu_span": cpu_span,
            "compactions_in_window": comp[-1] - comp[0] if comp else None,
            "data_check": data_check(url, history_start, end) if history_start else None}


def fmt_s(x):
    if x != x:
        return "—"
    if x >= 1:
        return "%.2f s" % x
    if x >= 0.001:
        return "%.1f ms" % (x * 1e3)
    return "%.0f µs" % (x * 1e6)


def fmt_n(x):
    return "{:,}".format(int(round(x))).replace(",", " ")


def cmd_analyze(a):
    sides = []
    for spec in a.side:
        name, url, rule_file = spec.split("=", 2)[0], *spec.split("=", 2)[1].split(",", 1)
        sides.append(side_data(name, url, rule_file, a.start, a.end, a.default_interval, a.history_start))
    os.makedirs(a.out_dir, exist_ok=True)
    with open(os.path.join(a.out_dir, "groups.json"), "w") as f:
        json.dump({"start": a.start, "end": a.end, "sides": sides}, f, indent=1)
    lines = []
    w = lines.append
    minutes = (a.end - a.start) / 60
    w("Window: %.1f min of steady state (after %s warm-up); figures per rule group, per evaluation."
      % (minutes, a.warmup))
    w("")
    w("| design | rule group | rules | interval | evaluations | median duration | p90 duration | samples read / evaluation | cost per minute (median × 60 / interval) |")
    w("|---|---|---|---|---|---|---|---|---|")
    totals = {}
    for s in sides:
        cost = samples = 0.0
        for g in sorted(s["groups"], key=lambda g: (s["groups"][g]["interval"], g)):
            d = s["groups"][g]
            cost += d["cost_per_min"] if d["cost_per_min"] == d["cost_per_min"] else 0
            samples += d["samples_per_min"]
            extra = []
            if d.get("missed"):
                extra.append("%d missed" % d["missed"])
            if d.get("failures"):
                extra.append("%d failed" % d["failures"])
            w("| %s | `%s` | %s | %gs | %d%s | %s | %s | %s | %s |" % (
                s["name"], g, d.get("rules", "?"), d["interval"], d["evals"],
                " (%s)" % ", ".join(extra) if extra else "", fmt_s(d["median"]), fmt_s(d["p90"]),
                fmt_n(d["samples_per_eval"]) if d["samples_per_eval"] is not None else "—",
                fmt_s(d["cost_per_min"])))
        totals[s["name"]] = (cost, samples, s["cpu_seconds"] / s["cpu_span"] * 60 if s["cpu_span"] else float("nan"))
    w("")
    w("| design | rule evaluation per minute (sum of medians × evaluations/min) | samples read per minute | Prometheus process CPU per minute (whole process: also scraping, TSDB) |")
    w("|---|---|---|---|")
    for s in sides:
        c, n, cpu = totals[s["name"]]
        w("| %s | %s | %s | %s |" % (s["name"], fmt_s(c), fmt_n(n), fmt_s(cpu)))
    if len(sides) == 2:
        (n1, (c1, s1, p1)), (n2, (c2, s2, p2)) = [(s["name"], totals[s["name"]]) for s in sides]
        w("| **ratio %s / %s** | **%.2f×** | **%.2f×** | **%.2f×** |" % (n1, n2, c1 / c2 if c2 else float("nan"),
                                                                  s1 / s2 if s2 else float("nan"),
                                                                  p1 / p2 if p2 else float("nan")))
    w("")
    w("TSDB compactions during the window: %s." % ", ".join(
        "%s %s" % (s["name"], "?" if s["compactions_in_window"] is None else "%d" % s["compactions_in_window"])
        for s in sides))
    for s in sides:
        c = s["data_check"]
        if c:
            ok = c["count_series_whole_range"] == c["count_series_now"] and c["counter_resets"] == 0
            w("Data check, %s: %d `_count` series over history and run, %d live, %d counter resets%s." % (
                s["name"], c["count_series_whole_range"], c["count_series_now"], c["counter_resets"],
                "" if ok else " — MISMATCH: the live series do not continue the history"))
    text = "\n".join(lines) + "\n"
    with open(os.path.join(a.out_dir, "summary.md"), "w") as f:
        f.write(text)
    sys.stdout.write(text)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("backfill-plan")
    p.add_argument("--url", required=True)
    p.add_argument("--rule-file", required=True, help="path suffix of the loaded rule file")
    p.add_argument("--out-dir", required=True)
    p = sub.add_parser("wait-compacted")
    p.add_argument("--url", required=True)
    p.add_argument("--data-dir", required=True)
    p.add_argument("--timeout", type=float, default=600)
    p = sub.add_parser("analyze")
    p.add_argument("--side", action="append", required=True, help="name=url,rule-file-suffix")
    p.add_argument("--start", type=float, required=True)
    p.add_argument("--end", type=float, required=True)
    p.add_argument("--warmup", default="?")
    p.add_argument("--history-start", type=float, help="check the series from here to --end")
    p.add_argument("--default-interval", type=float, default=15)
    p.add_argument("--out-dir", required=True)
    a = ap.parse_args()
    {"backfill-plan": cmd_backfill_plan, "wait-compacted": cmd_wait_compacted, "analyze": cmd_analyze}[a.cmd](a)


if __name__ == "__main__":
    main()
