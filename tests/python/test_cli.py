"""The kchain command line, end to end against a real gateway."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from conftest import SAMPLES, Gateway, heldout, sample


def kchain(gateway: Gateway, *args: str, input: bytes = b"") -> subprocess.CompletedProcess:
    env = dict(os.environ, KCHAIN_URL=gateway.url)
    return subprocess.run([sys.executable, "-m", "kchain", *args], input=input, env=env,
                          capture_output=True, timeout=120)


def test_deploy_invoke_ls_describe_rm(gateway: Gateway, tmp_path: Path) -> None:
    r = kchain(gateway, "deploy", str(sample("mnist_cnn")), "--name", "cli-cnn")
    assert r.returncode == 0, r.stderr.decode()
    assert b"deployed cli-cnn version 1" in r.stdout

    images, labels, _ = heldout()
    digit = tmp_path / "digit.npy"
    np.save(digit, images[0])
    out = tmp_path / "out.npy"
    r = kchain(gateway, "invoke", "cli-cnn", "--input", str(digit), "--output", str(out))
    assert r.returncode == 0, r.stderr.decode()
    assert np.load(out).argmax() == labels[0]
    assert b"start cold" in r.stderr or b"start hot" in r.stderr

    # From standard input, over the JSON path, printed as JSON.
    buffer = tmp_path / "stdin.npy"
    np.save(buffer, images[1])
    r = kchain(gateway, "invoke", "cli-cnn", "--input", "-", "--json", "--json-output",
               input=buffer.read_bytes())
    assert r.returncode == 0, r.stderr.decode()
    result = json.loads(r.stdout)
    assert int(np.argmax(result["output"])) == labels[1] and result["start"] == "hot"

    r = kchain(gateway, "ls")
    assert r.returncode == 0 and b"cli-cnn" in r.stdout
    r = kchain(gateway, "describe", "cli-cnn")
    assert r.returncode == 0 and json.loads(r.stdout)["name"] == "cli-cnn"
    r = kchain(gateway, "bench", "cli-cnn", "-n", "50", "--json")
    assert r.returncode == 0, r.stderr.decode()
    bench = json.loads(r.stdout)
    assert bench["hot"]["count"] >= 50 and bench["warm"]["count"] == 1
    r = kchain(gateway, "rm", "cli-cnn")
    assert r.returncode == 0 and b"deleted cli-cnn" in r.stdout


def test_exit_codes(gateway: Gateway, tmp_path: Path) -> None:
    r = kchain(gateway, "describe", "nope")
    assert r.returncode == 1
    assert b"not_found (HTTP 404): no function 'nope'" in r.stderr
    r = kchain(gateway, "invoke", "nope", "--input", str(tmp_path / "missing.npy"))
    assert r.returncode == 2 and b"cannot read the input" in r.stderr
    r = kchain(gateway, "frobnicate")
    assert r.returncode == 2
    env_gone = Gateway.__new__(Gateway)
    env_gone.url = "http://127.0.0.1:9"  # nothing listens on the discard port
    r = kchain(env_gone, "ls")
    assert r.returncode == 3 and b"cannot reach" in r.stderr


def test_serve_finds_and_runs_a_gateway(tmp_path: Path) -> None:
    build = SAMPLES.parent
    port_file = tmp_path / "port"
    proc = subprocess.Popen(
        [sys.executable, "-m", "kchain", "serve", "--port", "0", "--data-dir", str(tmp_path / "d"),
         "--device", "host", "--gateway", str(build / "bin" / "kchain-gateway"), "--",
         "--port-file", str(port_file), "--isolation", "none"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        import time
        for _ in range(200):
            if port_file.exists() and port_file.read_text().strip():
                break
            time.sleep(0.05)
        url = f"http://127.0.0.1:{port_file.read_text().strip()}"
        g = Gateway.__new__(Gateway)
        g.url = url
        r = kchain(g, "ls")
        assert r.returncode == 0 and b"no functions" in r.stdout
    finally:
        proc.terminate()
        proc.wait(timeout=30)
