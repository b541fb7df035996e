#!/usr/bin/env python3
"""Turns the benchmarks' raw output into bench/results/<date>-<device>.md and .json, and PNG
plots in bench/results/<date>-<device>/ (bench/run.sh calls this).

    report.py --env E.json --micro M.json --isolation I.json --load L.json [--out-dir DIR]
    report.py --from bench/results/<name>.json     # redraw the .md and plots from a results file

Plots need matplotlib; without it the .md and .json are written and the plots are skipped with
a message (redraw them later with --from on a machine that has it). Standard library only
otherwise.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
from typing import Any, Dict, Iterable, List, Optional

# PyPlover's own figures (the paper, Table 2 and section 6), in milliseconds.
PAPER = {
    "mnist_cnn": {"cold": 2155.74, "warm": 94.14, "hot": 1.04},
    "vecadd": {"total_s": 2.915},
}
FINDINGS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "findings.md")


# ---------------------------------------------------------------------------------------------
# Formatting


def ms(us: Optional[float]) -> str:
    if us is None:
        return "-"
    v = us / 1000.0
    if v >= 100:
        return f"{v:.0f}"
    if v >= 10:
        return f"{v:.1f}"
    if v >= 1:
        return f"{v:.2f}"
    return f"{v:.3f}"


def usf(us: Optional[float]) -> str:
    if us is None:
        return "-"
    if us >= 100:
        return f"{us:.0f}"
    return f"{us:.1f}" if us >= 10 else f"{us:.2f}"


def spread_us(s: Optional[Dict[str, Any]], unit: str = "us") -> str:
    """'median (min-max)' of a {"median","min","max"} spread."""
    if not s or s.get("median") is None:
        return "-"
    f = usf if unit == "us" else ms
    if s.get("n", 1) <= 1 or s["min"] == s["max"]:
        return f(s["median"])
    return f"{f(s['median'])} ({f(s['min'])}-{f(s['max'])})"


def table(header: List[str], rows: Iterable[List[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


# ---------------------------------------------------------------------------------------------
# Google Benchmark output


def micro_runs(micro: Dict[str, Any]) -> Dict[str, Dict[str, Any]]:
    """run_name -> {"median_us", "min_us", "max_us", "counters"} over the repetitions."""
    reps: Dict[str, List[Dict[str, Any]]] = {}
    medians: Dict[str, Dict[str, Any]] = {}
    for b in micro.get("benchmarks", []):
        if b.get("error_occurred"):
            continue
        scale = {"ns": 1e-3, "us": 1.0, "ms": 1e3, "s": 1e6}[b.get("time_unit", "ns")]
        name = b.get("run_name", b["name"]).removesuffix("/real_time")
        if b.get("run_type") == "aggregate":
            if b.get("aggregate_name") == "median":
                medians[name] = b | {"real_us": b["real_time"] * scale}
        else:
            reps.setdefault(name, []).append(b | {"real_us": b["real_time"] * scale})
    out = {}
    for name in set(reps) | set(medians):
        times = [r["real_us"] for r in reps.get(name, [])]
        med = medians.get(name, {}).get("real_us", statistics.median(times) if times else None)
        src = medians.get(name) or reps[name][0]
        counters = {k: v for k, v in src.items() if isinstance(v, (int, float)) and k not in (
            "real_time", "cpu_time", "iterations", "repetitions", "repetition_index", "threads",
            "family_index", "per_family_instance_index", "real_us")}
        out[name] = {"median_us": med, "min_us": min(times) if times else med,
                     "max_us": max(times) if times else med, "counters": counters}
    return out


def micro_cell(run: Optional[Dict[str, Any]]) -> str:
    if not run:
        return "-"
    if run["min_us"] == run["max_us"]:
        return usf(run["median_us"])
    return f"{usf(run['median_us'])} ({usf(run['min_us'])}-{usf(run['max_us'])})"


# ---------------------------------------------------------------------------------------------
# Sections of the results file


def section_headline(r: Dict[str, Any]) -> str:
    load = r.get("load", {})
    cnn = load.get("pyplover", {}).get("mnist_cnn", {})
    runs = micro_runs(r.get("micro", {}))
    rows = []
    for start in ("cold", "warm", "hot"):
        row = [start]
        for mode in ("process", "none"):
            row.append(ms(cnn.get(mode, {}).get(start, {}).get("total", {}).get("median")))
        native = cnn.get("native", {})
        key = {"cold": "process_wall_us", "warm": "warm_us", "hot": "hot_us"}[start]
        nat = native.get(key, {}).get("median") if native else None
        row.append(ms(nat))
        proc = cnn.get("process", {}).get(start, {}).get("total", {}).get("median")
        row.append(f"{PAPER['mnist_cnn'][start]:.2f}")
        row.append(f"{PAPER['mnist_cnn'][start] / (proc / 1000):.0f}x" if proc else "-")
        rows.append(row)
    text = ["## Headline: the CNN, cold / warm / hot (milliseconds, client-observed medians)", "",
            table(["start", "kchain process", "kchain none", "native CUDA", "PyPlover paper",
                   "paper / kchain process"], rows), ""]
    text.append("Native CUDA: cold is a fresh process (spawn, context, buffers and weights, first "
                "run), warm re-allocates and re-uploads in a live process, hot is a graph replay "
                "with pinned copies; all in the same run as kchain's figures.")
    hot_native = runs.get("mnist_cnn/native_graph")
    hot_kchain = next((runs.get(n) for n in ("mnist_cnn/kchain_cuda_graph",
                                             "mnist_cnn/kchain_host_direct") if runs.get(n)), None)
    if hot_native and hot_kchain:
        text.append(
            f"\nIn-process hot run (no HTTP): native graph {usf(hot_native['median_us'])} us, "
            f"kchain graph {usf(hot_kchain['median_us'])} us, ratio "
            f"{hot_kchain['median_us'] / hot_native['median_us']:.2f}x.")
    best = best_rps_under(load.get("throughput", {}), 1000.0)
    if best:
        text.append("\nRequests per second with p99 under 1 ms (CNN, binary invoke, keep-alive "
                    "HTTP): " + "; ".join(f"{mode}: {rps:,.0f} req/s at {c} clients "
                                          f"(p99 {p99:.0f} us)" for mode, (rps, c, p99)
                                          in best.items()) + ".")
    return "\n".join(text) + "\n"


def best_rps_under(thr: Dict[str, Any], p99_limit_us: float) -> Dict[str, Any]:
    out = {}
    for mode, levels in thr.get("mnist_cnn", {}).items():
        best = None
        for c, lv in levels.items():
            p99, rps = lv["p99_us"]["median"], lv["rps"]["median"]
            if p99 is not None and p99 < p99_limit_us and lv["failures"] == 0 and (
                    best is None or rps > best[0]):
                best = (rps, int(c), p99)
        if best:
            out[mode] = best
    return out


def section_pyplover(r: Dict[str, Any]) -> str:
    py = r.get("load", {}).get("pyplover")
    if not py:
        return ""
    text = ["## PyPlover's tables: where the time of one invocation goes", "",
            "Milliseconds, client-observed; median over repetitions (min-max for the total). "
            "load kernel = taking a pre-initialized worker + loading the library in it "
            "(cold only; with --isolation=none the library is loaded at deploy, so 0 here); "
            "load constants = device buffers, stream and staging + the constants upload; "
            "run kernel = the server's run (copies, chain, one sync); overhead = the rest "
            "(HTTP, gateway, worker round trip).", ""]
    for sample in ("mnist_cnn", "vecadd"):
        if sample not in py:
            continue
        rows = []
        for start in ("cold", "warm", "hot"):
            for mode in ("process", "none"):
                b = py[sample].get(mode, {}).get(start)
                if not b:
                    continue
                rows.append([start, f"kchain {mode}"] + [
                    ms(b[k]["median"]) for k in ("load_kernel", "load_constants", "run_kernel",
                                                 "overhead")] + [spread_us(b["total"], "ms")])
            nat = py[sample].get("native")
            if nat:
                if start == "cold":
                    rows.append(["cold", "native CUDA", ms(nat["context_us"]["median"]) +
                                 " (context)", ms(nat["constants_us"]["median"]),
                                 ms(nat["first_run_us"]["median"]),
                                 ms(nat["process_wall_us"]["median"] -
                                    nat["cold_in_process_us"]["median"]) + " (process start)",
                                 spread_us(nat["process_wall_us"], "ms")])
                elif start == "warm":
                    rows.append(["warm", "native CUDA", "0", ms(nat["warm_constants_us"]["median"]),
                                 ms(nat["warm_run_us"]["median"]), "0",
                                 spread_us(nat["warm_us"], "ms")])
                else:
                    rows.append(["hot", "native CUDA", "0", "0", ms(nat["hot_us"]["median"]), "0",
                                 spread_us(nat["hot_us"], "ms")])
        if sample == "mnist_cnn":
            for start in ("cold", "warm", "hot"):
                rows.append([start, "PyPlover paper", "", "", "", "",
                             f"{PAPER['mnist_cnn'][start]:.2f}"])
        else:
            rows.append(["(not given)", "PyPlover paper", "", "", "", "",
                         f"{PAPER['vecadd']['total_s'] * 1000:.0f}"])
        title = {"mnist_cnn": "CNN (PyPlover Table 1)", "vecadd": "vecadd, n = 1,000,000"}[sample]
        text += [f"### {title}", "",
                 table(["start", "who", "load kernel", "load constants", "run kernel",
                        "overhead", "total"], rows), ""]
    return "\n".join(text)


def section_micro(r: Dict[str, Any]) -> str:
    runs = micro_runs(r.get("micro", {}))
    if not runs:
        return ""
    text = ["## Micro-benchmarks (one process, one run; microseconds)", "",
            "Median over repetitions (min-max). Google Benchmark, `kchain_micro_bench`.", ""]
    for sample in ("mnist_cnn", "vecadd"):
        names = sorted(n for n in runs if n.startswith(sample + "/"))
        native = runs.get(sample + "/native_direct")
        rows = []
        for n in names:
            ratio = f"{runs[n]['median_us'] / native['median_us']:.2f}x" if native else "-"
            rows.append([n.split("/", 1)[1], micro_cell(runs[n]), ratio])
        if rows:
            text += [f"### Hot path: {sample}", "",
                     table(["variant", "us per run", "vs native direct"], rows), ""]
    # Chain length and size scaling (bench/micro: chain_len/<N>/..., size/<bytes>/...).
    chain = {n: v for n, v in runs.items() if n.startswith("chain_len/")}
    if chain:
        lengths = sorted({int(n.split("/")[1]) for n in chain})
        variants = sorted({n.split("/", 2)[2] for n in chain})
        rows = [[str(L)] + [micro_cell(chain.get(f"chain_len/{L}/{v}")) for v in variants]
                for L in lengths]
        text += ["### Chain length (trivial stages)", "", table(["stages"] + variants, rows), ""]
    sizes = {n: v for n, v in runs.items() if n.startswith("copy_size/")}
    if sizes:
        tokens = sorted({n.split("/")[1] for n in sizes}, key=parse_bytes)
        variants = sorted({n.split("/", 2)[2] for n in sizes})

        def cell(run: Optional[Dict[str, Any]]) -> str:
            if not run:
                return "-"
            c = run["counters"].get("bytes_per_second")
            return micro_cell(run) + (f" us, {c / 1e9:.2f} GB/s" if c else " us")
        rows = [[t] + [cell(sizes.get(f"copy_size/{t}/{v}")) for v in variants] for t in tokens]
        text += ["### Input size: H2D + copy stage + D2H", "",
                 "GB/s counts the bytes that crossed (Google Benchmark's bytes_per_second).", "",
                 table(["input"] + variants, rows), ""]
    return "\n".join(text)


def parse_bytes(token: str) -> int:
    """'4KiB' / '16MiB' / '4096' -> bytes."""
    m = re.fullmatch(r"(\d+)\s*(B|KiB|MiB|GiB)?", token)
    if not m:
        return 0
    return int(m.group(1)) * {None: 1, "B": 1, "KiB": 1 << 10, "MiB": 1 << 20,
                              "GiB": 1 << 30}[m.group(2)]


def human_bytes(b: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if b >= size:
            return f"{b / size:g} {unit}"
    return f"{b} B"


def section_isolation(r: Dict[str, Any]) -> str:
    iso = r.get("isolation")
    if not iso:
        return ""
    rows = []
    for level in ("executor", "http"):
        for mode, s in iso.get(level, {}).items():
            rows.append([level, mode, usf(s["median_us"]), usf(s["p90_us"]), usf(s["p99_us"]),
                         f"{s['minus_none_median_us']:+.1f}"])
    return "\n".join([
        "## Process isolation against none, hot CNN (`kchain_isolation_bench`)", "",
        f"{iso.get('rounds')} interleaved rounds x {iso.get('calls')} calls; microseconds. "
        "process+spin: workers also spin 200 us for the next request.", "",
        table(["level", "isolation", "median", "p90", "p99", "median vs none"], rows), ""])


def section_latency(r: Dict[str, Any]) -> str:
    lat = r.get("load", {}).get("latency")
    if not lat:
        return ""
    rows = []
    for mode in ("process", "none"):
        for path in ("binary", "json", "binary_server_total"):
            p = lat.get(mode, {}).get(path, {}).get("rounds")
            if p:
                label = {"binary": "binary, client", "json": "JSON, client",
                         "binary_server_total": "binary, server total"}[path]
                rows.append([f"kchain {mode}", label] +
                            [spread_us(p[k]) for k in ("p50", "p90", "p99", "p999")])
    if "native" in lat:
        p = lat["native"]["rounds"]
        rows.append(["native CUDA", "graph replay, in process"] +
                    [spread_us(p[k]) for k in ("p50", "p90", "p99", "p999")])
    return "\n".join([
        "## Hot latency distribution, CNN, keep-alive HTTP (microseconds)", "",
        "Each cell: the median over rounds of that round's percentile (min-max over rounds).", "",
        table(["who", "path", "p50", "p90", "p99", "p99.9"], rows), ""])


def section_throughput(r: Dict[str, Any]) -> str:
    thr = r.get("load", {}).get("throughput")
    if not thr:
        return ""
    text = ["## Throughput against concurrency", "",
            f"Binary invokes, one keep-alive connection per client, each client calling in a "
            f"loop. Gateway flags: `{' '.join(thr.get('gateway_flags', []))}`. Requests/s and "
            f"p99 in microseconds (median over rounds). GPU busy: "
            f"{thr.get('gpu_busy_source')}. Native: one CUDA stream and buffer set per thread.",
            ""]
    for fn in ("mnist_cnn", "tiny"):
        if fn not in thr:
            continue
        modes = [m for m in ("process", "none", "native") if m in thr[fn]]
        levels = sorted({int(c) for m in modes for c in thr[fn][m]})
        rows = []
        for c in levels:
            row = [str(c)]
            for m in modes:
                lv = thr[fn][m].get(str(c))
                if not lv:
                    row += ["-", "-"]
                    continue
                busy = f", busy {lv['gpu_busy'] * 100:.0f}%" if lv.get("gpu_busy") is not None \
                    else ""
                fail = f", {lv['failures']} failed" if lv["failures"] else ""
                row += [f"{lv['rps']['median']:,.0f}{busy}{fail}", usf(lv["p99_us"]["median"])]
            rows.append(row)
        header = ["clients"]
        for m in modes:
            header += [f"{m} req/s", f"{m} p99"]
        title = {"mnist_cnn": "CNN", "tiny": "tiny chain (one trivial stage, 4 bytes)"}[fn]
        text += [f"### {title}", "", table(header, rows), ""]
    return "\n".join(text)


def section_payload(r: Dict[str, Any]) -> str:
    pay = r.get("load", {}).get("payload")
    if not pay:
        return ""
    sizes = sorted({int(b) for m in ("process", "none") for b in pay.get(m, {})})
    rows = []
    for b in sizes:
        row = [human_bytes(b)]
        for m in ("process", "none"):
            p = pay.get(m, {}).get(str(b))
            row.append(spread_gbps(p["client_gbps"]) if p else "-")
            row.append(spread_gbps(p["server_run_gbps"]) if p else "-")
        nat = pay.get("native_pinned_memcpy", {}).get(str(b))
        row.append(spread_gbps(nat["gbps"]) if nat else "-")
        rows.append(row)
    return "\n".join([
        "## Large payloads: binary invoke of a copy kernel (GB/s, input + output bytes)", "",
        "client: the whole HTTP round trip; server run: H2D + copy stage + D2H as the server "
        "timed it; native: cudaMemcpyAsync H2D + D2H from and to pinned memory, same process.",
        "", table(["input", "process client", "process run", "none client", "none run",
                   "native pinned memcpy"], rows), ""])


def spread_gbps(s: Dict[str, Any]) -> str:
    if s.get("median") is None:
        return "-"
    if s["min"] == s["max"]:
        return f"{s['median']:.2f}"
    return f"{s['median']:.2f} ({s['min']:.2f}-{s['max']:.2f})"


def section_many(r: Dict[str, Any]) -> str:
    many = r.get("load", {}).get("many")
    if not many:
        return ""
    rows = []
    for start in ("cold", "warm", "hot"):
        s = many["starts"][start]
        lat = s["latency_us"]
        rows.append([start, f"{s['share'] * 100:.1f}%", str(s["count"]),
                     usf(lat["p50"]) if s["count"] else "-",
                     usf(lat["p99"]) if s["count"] else "-"])
    return "\n".join([
        "## Many functions under a memory budget", "",
        f"{many['functions']} copies of the CNN deployed; a device memory budget of "
        f"{many['budget_bytes']:,} bytes ({many['budget_bytes'] // many['instance_bytes']} "
        f"instances of {many['instance_bytes']:,} bytes); {many['calls']} invocations in a "
        f"uniformly random order (seeded), one client, --isolation={many['isolation']}. "
        "Latency in microseconds, client-observed.", "",
        table(["start", "share", "count", "p50", "p99"], rows), ""])


def gib(b: Optional[float]) -> str:
    return "-" if b is None else f"{b / (1 << 30):.2f} GiB"


def section_tenants(r: Dict[str, Any]) -> str:
    ten = r.get("load", {}).get("tenants")
    if not ten:
        return ""
    text = ["## Tenant workers (process isolation, one worker per tenant)", ""]
    d = ten.get("density")
    if d:
        text += [f"### {d['functions']} functions of one tenant", "",
                 f"Each deployed and invoked once (cold), then again (hot), one client. Cold: "
                 f"{d['cold_ok']}/{d['functions']} succeeded, p50 {usf(d['cold_latency_us']['p50'])} us; "
                 f"hot: {d['hot_ok']}/{d['functions']}, p50 {usf(d['hot_latency_us']['p50'])} us. "
                 f"Workers live {d['workers_live']:.0f} (bound {d['workers_bound']}), one context "
                 f"{gib(d['context_bytes'])}. Device memory the gateway's processes came to hold: "
                 f"{gib(d.get('device_memory_held_bytes'))}, of it beyond the contexts: "
                 f"{gib(d.get('beyond_contexts_bytes'))} (NVML; '-' where it is not available).",
                 ""]
    m = ten.get("many_tenants")
    if m:
        rows = []
        for start in ("cold", "warm", "hot"):
            st = m["starts"][start]
            rows.append([start, f"{st['share'] * 100:.1f}%", str(st["count"]),
                         usf(st["latency_us"]["p50"]) if st["count"] else "-"])
        ev = ", ".join(f"{k} {v}" for k, v in m.get("evictions", {}).items()) or "none"
        text += [f"### {m['tenants']} tenants, {m['functions']} functions", "",
                 f"{m['calls']} invocations in a random order from 8 clients: "
                 f"{m['calls'] - m['failures']} succeeded, {m['failures']} failed. Workers "
                 f"retired: {ev}; live at the end {m['workers_live']} (bound "
                 f"{m['workers_bound']}).", "",
                 table(["start", "share", "count", "p50 (us)"], rows), ""]
    c = ten.get("containment")
    if c:
        q, n = c["without_faults"], c["with_faults"]
        statuses = ", ".join(f"{k}: {v}" for k, v in c.get("fault_statuses", {}).items())
        text += ["### Containment under load", "",
                 f"Tenant A's CNN at {c['clients']} clients; tenant B invokes kernels that make "
                 f"an illegal address, `__trap()`, and never end (killed at the 1.5 s timeout), "
                 f"over and over (B's answers: {statuses}).", "",
                 table(["", "A req/s", "A p99 (us)", "A failures"],
                       [["without B's faults", f"{q['rps']:,.0f}", usf(q["p99_us"]),
                         str(q["failures"])],
                        ["with B's faults", f"{n['rps']:,.0f}", usf(n["p99_us"]),
                         str(n["failures"])]]),
                 "", f"A's throughput with the faults: {c['ratio']:.2f}x of without.", ""]
    return "\n".join(text)


def section_where(r: Dict[str, Any]) -> str:
    """Where the hot CNN's time goes, from numbers of this run."""
    runs = micro_runs(r.get("micro", {}))
    lat = r.get("load", {}).get("latency", {})
    py = r.get("load", {}).get("pyplover", {}).get("mnist_cnn", {})
    rows = []
    native = runs.get("mnist_cnn/native_graph") or runs.get("mnist_cnn/native_direct")
    kchain = runs.get("mnist_cnn/kchain_cuda_graph") or runs.get("mnist_cnn/kchain_host_direct")
    if native:
        rows.append(["native CUDA run (graph, in process)", usf(native["median_us"])])
    if kchain:
        rows.append(["kchain runtime run (in process)", usf(kchain["median_us"])])
    for mode in ("none", "process"):
        hot = py.get(mode, {}).get("hot")
        if hot:
            rows.append([f"server run, --isolation={mode}", usf(hot["run_kernel"]["median"])])
            rows.append([f"server total, --isolation={mode}", usf(hot["server_total"]["median"])])
        p = lat.get(mode, {}).get("binary", {}).get("rounds")
        if p:
            rows.append([f"client round trip, binary, --isolation={mode}",
                         usf(p["p50"]["median"])])
    if not rows:
        return ""
    text = ["## Where the hot CNN's time goes (this run; medians in microseconds)", "",
            table(["measured", "us"], rows), ""]
    if os.path.exists(FINDINGS):
        with open(FINDINGS, encoding="utf-8") as f:
            text += [f.read().strip(), ""]
    return "\n".join(text)


# ---------------------------------------------------------------------------------------------
# Plots


def plots(r: Dict[str, Any], folder: str, rel: str) -> List[str]:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("report.py: matplotlib is not installed; plots skipped (redraw with "
              "`python3 bench/report.py --from RESULTS.json` where it is)", file=sys.stderr)
        return []
    os.makedirs(folder, exist_ok=True)
    made = []
    device = r["env"]["device"]

    def save(fig: Any, name: str, title: str) -> None:
        fig.suptitle(f"{title}\n{device}, {r['env']['date']}", fontsize=10)
        fig.tight_layout()
        fig.savefig(os.path.join(folder, name), dpi=110)
        plt.close(fig)
        made.append(f"![{title}]({rel}/{name})")

    load = r.get("load", {})
    lat = load.get("latency")
    if lat:
        fig, ax = plt.subplots(figsize=(7, 4))
        for mode in ("process", "none"):
            for path in ("binary", "json"):
                cdf = lat.get(mode, {}).get(path, {}).get("cdf")
                if cdf:
                    ax.plot(cdf, [i / (len(cdf) - 1) for i in range(len(cdf))],
                            label=f"kchain {mode}, {path}")
        ax.set_xscale("log")
        ax.set_xlabel("client latency (us, log)")
        ax.set_ylabel("fraction of requests")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        save(fig, "latency_cdf.png", "Hot CNN latency, keep-alive HTTP")
    thr = load.get("throughput")
    if thr:
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        for fn in ("mnist_cnn", "tiny"):
            for mode, levels in thr.get(fn, {}).items():
                cs = sorted(int(c) for c in levels)
                label = f"{fn}, {mode}"
                axes[0].plot(cs, [levels[str(c)]["rps"]["median"] for c in cs], marker="o",
                             label=label)
                axes[1].plot(cs, [levels[str(c)]["p99_us"]["median"] for c in cs], marker="o",
                             label=label)
        for ax, ylabel in ((axes[0], "requests/s"), (axes[1], "p99 latency (us)")):
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xlabel("concurrent clients")
            ax.set_ylabel(ylabel)
            ax.grid(True, which="both", alpha=0.3)
        axes[1].axhline(1000, color="grey", linestyle="--", linewidth=1)
        axes[0].legend(fontsize=7)
        save(fig, "throughput.png", "Throughput and p99 against concurrency")
    pay = load.get("payload")
    if pay:
        fig, ax = plt.subplots(figsize=(7, 4))
        for key, label, field in (("process", "kchain process, client", "client_gbps"),
                                  ("none", "kchain none, client", "client_gbps"),
                                  ("process", "kchain process, server run", "server_run_gbps"),
                                  ("native_pinned_memcpy", "native pinned memcpy", "gbps")):
            if key in pay:
                bs = sorted(int(b) for b in pay[key])
                ax.plot([b / (1 << 20) for b in bs], [pay[key][str(b)][field]["median"]
                                                      for b in bs], marker="o", label=label)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("input MiB")
        ax.set_ylabel("GB/s (input + output)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        save(fig, "payload.png", "Large payloads, binary invoke")
    py = load.get("pyplover", {}).get("mnist_cnn")
    if py:
        fig, ax = plt.subplots(figsize=(9, 4))
        labels, parts = [], {k: [] for k in ("load_kernel", "load_constants", "run_kernel",
                                             "overhead")}
        for start in ("cold", "warm", "hot"):
            for mode in ("process", "none"):
                b = py.get(mode, {}).get(start)
                if b:
                    labels.append(f"{start}\n{mode}")
                    for k in parts:
                        parts[k].append(max(b[k]["median"], 0) / 1000)
        bottom = [0.0] * len(labels)
        for k, vals in parts.items():
            ax.bar(labels, vals, bottom=bottom, label=k.replace("_", " "))
            bottom = [a + b for a, b in zip(bottom, vals)]
        ax.set_yscale("log")
        ax.set_ylabel("ms (log)")
        ax.legend(fontsize=8)
        save(fig, "cnn_breakdown.png", "CNN: cold / warm / hot breakdown")
    runs = micro_runs(r.get("micro", {}))
    chain = {n: v for n, v in runs.items() if n.startswith("chain_len/")}
    if chain:
        fig, ax = plt.subplots(figsize=(7, 4))
        for v in sorted({n.split("/", 2)[2] for n in chain}):
            ls = sorted({int(n.split("/")[1]) for n in chain if n.endswith("/" + v)})
            ax.plot(ls, [chain[f"chain_len/{L}/{v}"]["median_us"] for L in ls], marker="o",
                    label=v)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("stages")
        ax.set_ylabel("us per run")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        save(fig, "chain_length.png", "Chain length: direct launches vs graph replay")
    return made


# ---------------------------------------------------------------------------------------------


def render(r: Dict[str, Any], out_dir: str) -> str:
    env = r["env"]
    name = f"{env['date']}-{slug(env['device'].split('(')[0]) or 'unknown'}"
    if env.get("quick"):
        name += "-quick"
    os.makedirs(out_dir, exist_ok=True)
    json_path = os.path.join(out_dir, name + ".json")
    with open(json_path, "w", encoding="utf-8") as f:
        json.dump(r, f, indent=1)
        f.write("\n")
    images = plots(r, os.path.join(out_dir, name), name)
    head = [f"# kchain benchmarks: {env['device']}, {env['date']}", "",
            f"- device: {env['device']} ({env['device_kind']} backend)"
            + (f", driver {env['driver']}, CUDA {env['cuda_driver_api']}" if env.get("driver")
               else ""),
            f"- commit: {env['commit']}; measured {env['time_utc']}; "
            f"{'QUICK run (tiny counts, checks the harness only)' if env.get('quick') else 'full run'}",
            f"- host: {env['host']['cpus']} CPUs, Linux {env['host']['kernel']}",
            f"- gateway {r.get('load', {}).get('gateway_version', '?')} on "
            f"{r.get('load', {}).get('device', {}).get('name', '?')}; load generator run took "
            f"{r.get('load', {}).get('seconds', 0):.0f} s",
            "- reproduce: `bench/run.sh` (see bench/README.md); raw numbers in "
            f"`{name}.json`", ""]
    body = [section_headline(r), section_pyplover(r), section_micro(r), section_isolation(r),
            section_latency(r), section_throughput(r), section_payload(r), section_many(r),
            section_tenants(r), section_where(r)]
    if images:
        body += ["## Plots", ""] + [i + "\n" for i in images]
    md_path = os.path.join(out_dir, name + ".md")
    with open(md_path, "w", encoding="utf-8") as f:
        f.write("\n".join(head) + "\n" + "\n".join(s for s in body if s))
    print(f"report.py: wrote {md_path}, {json_path}" +
          (f" and {len(images)} plots in {os.path.join(out_dir, name)}/" if images else ""))
    return md_path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--env")
    ap.add_argument("--micro")
    ap.add_argument("--isolation")
    ap.add_argument("--load")
    ap.add_argument("--from", dest="from_results", help="a results .json to redraw")
    ap.add_argument("--out-dir", default=None)
    a = ap.parse_args()
    if a.from_results:
        with open(a.from_results, encoding="utf-8") as f:
            r = json.load(f)
        render(r, a.out_dir or os.path.dirname(os.path.abspath(a.from_results)))
        return 0
    if not a.env:
        ap.error("give --env, --micro, --isolation and --load (or --from)")
    r: Dict[str, Any] = {}
    for key in ("env", "micro", "isolation", "load"):
        path = getattr(a, key)
        if path:
            with open(path, encoding="utf-8") as f:
                r[key] = json.load(f)
    render(r, a.out_dir or "bench/results")
    return 0


if __name__ == "__main__":
    sys.exit(main())
