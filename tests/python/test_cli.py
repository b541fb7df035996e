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


def _wait_for_port(port_file: Path) -> str:
    import time
    for _ in range(200):
        if port_file.exists() and port_file.read_text().strip():
            return f"http://127.0.0.1:{port_file.read_text().strip()}"
        time.sleep(0.05)
    raise AssertionError("the gateway wrote no port file")


def test_serve_finds_the_gateway_of_the_build_without_being_told(tmp_path: Path) -> None:
    build = SAMPLES.parent
    port_file = tmp_path / "port"
    env = {k: v for k, v in os.environ.items() if k != "KCHAIN_GATEWAY"}
    env["KCHAIN_BUILD_DIR"] = str(build)
    proc = subprocess.Popen(
        [sys.executable, "-m", "kchain", "serve", "--port", "0", "--data-dir", str(tmp_path / "d"),
         "--device", "host", "--", "--port-file", str(port_file), "--isolation", "none"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=tmp_path)
    try:
        g = Gateway.__new__(Gateway)
        g.url = _wait_for_port(port_file)
        r = kchain(g, "ls")
        assert r.returncode == 0 and b"no functions" in r.stdout
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_serve_help_explains_every_option() -> None:
    r = subprocess.run([sys.executable, "-m", "kchain", "serve", "--help"], capture_output=True,
                       timeout=60)
    assert r.returncode == 0
    text = r.stdout.decode()
    for option in ("--port", "--data-dir", "--device", "--gateway"):
        line = next(l for l in text.splitlines() if l.strip().startswith(option))
        # Each option says what it does, on its line or the next.
        rest = text[text.index(line) + len(line):].splitlines()[1] if len(line.split()) < 3 else line
        assert len(rest.split()) >= 2, f"{option} has no help: {line!r}"


def test_a_reader_that_goes_away_is_no_error(gateway: Gateway) -> None:
    # `kchain ls | head -0`: the pipe closes before the CLI writes.
    env = dict(os.environ, KCHAIN_URL=gateway.url)
    proc = subprocess.Popen([sys.executable, "-m", "kchain", "ls"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()
    _, err = proc.communicate(timeout=60)
    assert b"Traceback" not in err, err.decode()
    assert proc.returncode == 0


def test_deploy_without_the_declared_constants_says_how_to_send_them(gateway: Gateway,
                                                                   tmp_path: Path) -> None:
    manifest = json.loads(sample("mnist_cnn").read_text())
    del manifest["constants"]
    folder = sample("mnist_cnn").parent
    manifest["library"] = {t: str(folder / f) for t, f in manifest["library"].items()}
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(manifest))
    r = kchain(gateway, "deploy", str(path), "--name", "no-weights")
    assert r.returncode == 2, r.stderr.decode()
    assert b"constant_bytes = 9372" in r.stderr and b"--constants" in r.stderr
    assert b"Traceback" not in r.stderr
    # Given them, it deploys.
    r = kchain(gateway, "deploy", str(path), "--name", "no-weights",
               "--constants", str(sample("mnist_cnn").parent / "weights.bin"))
    assert r.returncode == 0, r.stderr.decode()
    kchain(gateway, "rm", "no-weights")
