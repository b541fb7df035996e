"""The benchmark harness itself works: bench/run.sh --quick on the host backend writes a results
file with every section, a JSON document with sane numbers, and the plots. (Speed is never
asserted here; the numbers only have to be present and consistent.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import BUILD, REPO


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bench-results")
    env = dict(os.environ, KCHAIN_BUILD_DIR=str(BUILD), PYTHON=sys.executable)
    proc = subprocess.run(
        ["bash", "bench/run.sh", "--quick", "--device", "host", "--out-dir", str(out)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:] + "\n" + proc.stderr[-4000:]
    return out


def test_quick_run_writes_every_section(quick_run: Path) -> None:
    (md,) = quick_run.glob("*-quick.md")
    text = md.read_text()
    for heading in ("## Headline", "## PyPlover's tables", "## Micro-benchmarks",
                    "### Chain length", "### Input size", "## Process isolation",
                    "## Hot latency distribution", "## Throughput against concurrency",
                    "## Large payloads", "## Many functions", "## Where the hot CNN's time goes",
                    "## Plots"):
        assert heading in text, heading
    assert "QUICK run" in text


def test_quick_run_json_is_consistent(quick_run: Path) -> None:
    (path,) = quick_run.glob("*-quick.json")
    r = json.loads(path.read_text())
    assert r["env"]["device_kind"] == "host" and r["env"]["commit"]
    load = r["load"]
    for sample in ("mnist_cnn", "vecadd"):
        for mode in ("process", "none"):
            for start in ("cold", "warm", "hot"):
                b = load["pyplover"][sample][mode][start]
                assert b["total"]["median"] > 0
                assert b["total"]["min"] <= b["total"]["median"] <= b["total"]["max"]
                # The parts never exceed the whole the client saw.
                parts = sum(b[k]["median"] for k in ("load_kernel", "load_constants",
                                                     "run_kernel"))
                assert parts <= b["total"]["max"]
            cold = load["pyplover"][sample][mode]["cold"]
            if mode == "process":
                assert cold["load_kernel"]["median"] > 0  # a worker was taken and loaded
    for fn in ("mnist_cnn", "tiny"):
        for mode in ("process", "none"):
            levels = load["throughput"][fn][mode]
            assert sorted(int(c) for c in levels) == [1, 2, 4]
            for lv in levels.values():
                assert lv["failures"] == 0 and lv["rps"]["median"] > 0
                assert lv["p99_us"]["median"] >= lv["p50_us"]["median"]
    for mode in ("process", "none"):
        assert load["payload"][mode][str(1 << 20)]["client_gbps"]["median"] > 0
    many = load["many"]
    assert sum(s["count"] for s in many["starts"].values()) == many["calls"]
    assert many["starts"]["cold"]["count"] >= 1
    for mode in ("process", "none"):
        p = load["latency"][mode]["binary"]["all"]
        assert p["p50"] <= p["p99"] <= p["p999"]
    assert r["isolation"]["http"]["process"]["median_us"] > 0
    names = {b.get("run_name", b["name"]) for b in r["micro"]["benchmarks"]}
    assert any(n.startswith("chain_len/") for n in names)
    assert any(n.startswith("copy_size/") for n in names)


def test_quick_run_draws_the_plots(quick_run: Path) -> None:
    pytest.importorskip("matplotlib")  # in the CI venv (scripts/python-env.sh); not everywhere
    pngs = sorted(p.name for p in quick_run.glob("*-quick/*.png"))
    assert pngs == ["chain_length.png", "cnn_breakdown.png", "latency_cdf.png", "payload.png",
                    "throughput.png"]
    for p in quick_run.glob("*-quick/*.png"):
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_redraws_from_a_results_file(quick_run: Path, tmp_path: Path) -> None:
    (path,) = quick_run.glob("*-quick.json")
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "report.py"), "--from", str(path),
                           "--out-dir", str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / path.name).exists()
    assert (tmp_path / path.name.replace(".json", ".md")).read_text() == \
        path.with_suffix(".md").read_text()
