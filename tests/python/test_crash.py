"""Crashes and a full disk, against the real gateway binary: kill -9 leaves nothing behind that a
restart does not clean, one data directory serves one gateway, a busy port is a clear error at
start, and a full disk is 507 for deploys while stored functions keep serving (also after a
kill -9 on the full disk)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

import kchain
from conftest import BUILD, DEVICE, Gateway, sample

BINARY = BUILD / "bin" / "kchain-gateway"


def kill9(g: Gateway) -> None:
    g.process.send_signal(signal.SIGKILL)
    g.process.wait(timeout=30)
    g.log.close()


def worker_folders(data: Path) -> "list[str]":
    workers = data / "workers"
    return sorted(p.name for p in workers.iterdir()) if workers.exists() else []


def workers_running(data: Path) -> "list[int]":
    """The pids of kchain-worker processes whose working folder is under `data`."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            state = (proc / "stat").read_text().split(") ", 1)[1][0]
        except OSError:
            continue
        if state != "Z" and cmdline and cmdline[0].endswith(b"kchain-worker") and \
                any(str(data).encode() in arg for arg in cmdline):
            pids.append(int(proc.name))
    return pids


def run_gateway(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """Runs a gateway that is expected to refuse to start."""
    return subprocess.run([str(BINARY), "--device", DEVICE, "--log-level", "warning", *args],
                          cwd=cwd, capture_output=True, timeout=60)


def test_kill9_leftovers_are_cleaned_at_restart(tmp_path: Path) -> None:
    g = Gateway(tmp_path, "--isolation", "process")
    with kchain.Client(g.url) as c:
        c.deploy(manifest=sample("mnist_cnn"), name="cnn")
        c.invoke("cnn", np.zeros((28, 28), np.float32))
    data = tmp_path / "data"
    before = worker_folders(data)
    assert before, "the gateway had no worker folders to leave behind"
    # Leftovers of interrupted atomic writes, as a crash mid-replace leaves them.
    function_dir = data / "tenants" / "default" / "functions" / "cnn"
    (function_dir / "function.json.tmp.12345").write_text("{half")
    uploads = data / "uploads" / "default"
    uploads.mkdir(parents=True, exist_ok=True)
    (uploads / ("a" * 64 + ".tmp.99")).write_bytes(b"half")
    kill9(g)
    # Its workers die with it (they hold device contexts): none outlives it for long.
    deadline = time.monotonic() + 5
    while workers_running(data) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not workers_running(data), workers_running(data)

    g = Gateway(tmp_path, "--isolation", "process")
    try:
        pid = g.process.pid
        after = worker_folders(data)
        assert not [name for name in after if not name.startswith(f"w{pid}-")], after
        assert not (function_dir / "function.json.tmp.12345").exists()
        assert not (uploads / ("a" * 64 + ".tmp.99")).exists()
        with kchain.Client(g.url) as c:  # the function survived
            assert c.invoke("cnn", np.zeros((28, 28), np.float32)).output.shape == (10,)
    finally:
        g.stop()


def test_one_data_directory_serves_one_gateway(tmp_path: Path) -> None:
    g = Gateway(tmp_path)
    try:
        r = run_gateway("--listen", "127.0.0.1:0", "--data-dir", str(tmp_path / "data"),
                        cwd=tmp_path)
        assert r.returncode == 1
        assert b"is in use by another kchain-gateway" in r.stderr, r.stderr
    finally:
        g.stop()


def test_a_data_directory_that_cannot_be_made_is_named_at_start(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    for where in ("/proc/kchain-nope", str(blocker / "data")):
        r = run_gateway("--listen", "127.0.0.1:0", "--data-dir", where, cwd=tmp_path)
        assert r.returncode == 1, r.stderr
        assert f"data directory '{where}'".encode() in r.stderr, r.stderr
        assert b"Traceback" not in r.stderr and b"terminate called" not in r.stderr


def test_a_busy_port_fails_at_start(tmp_path: Path) -> None:
    g = Gateway(tmp_path)
    try:
        port = g.url.rsplit(":", 1)[1]
        r = run_gateway("--listen", f"127.0.0.1:{port}", "--data-dir", str(tmp_path / "other"),
                        "--isolation", "none", cwd=tmp_path)
        assert r.returncode == 1
        assert f"cannot listen on 127.0.0.1:{port}".encode() in r.stderr, r.stderr
        # The first gateway still answers every request itself.
        for _ in range(20):
            assert httpx.get(g.url + "/healthz").status_code == 200
    finally:
        g.stop()


def test_a_bare_port_file_name_is_written_in_the_current_folder(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [str(BINARY), "--listen", "127.0.0.1:0", "--port-file", "port", "--data-dir", "data",
         "--device", DEVICE, "--isolation", "none", "--log-level", "warning"],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        port_file = tmp_path / "port"
        while not (port_file.exists() and port_file.read_text().strip()):
            assert process.poll() is None, process.stderr.read().decode()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        port = port_file.read_text().strip()
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture()
def small_disk(tmp_path: Path):
    """A 3 MiB tmpfs: needs root (CI runs as root)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs to fill needs root")
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(folder: Path) -> None:
    """Fills the disk to the last byte."""
    fd = os.open(folder / "filler", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        for chunk in (65536, 4096, 1):
            while True:
                try:
                    os.write(fd, b"\0" * chunk)
                except OSError:
                    break
    finally:
        os.close(fd)


def test_a_full_disk_is_507_and_survives_a_kill9(small_disk: Path, tmp_path: Path) -> None:
    # The gateway's log and port file stay off the small disk; its data directory is on it.
    args = ("--isolation", "none", "--data-dir", str(small_disk / "data"))
    g = Gateway(tmp_path, *args)
    with kchain.Client(g.url) as c:
        c.deploy(manifest=sample("mnist_cnn"), name="cnn")
    fill(small_disk)
    with kchain.Client(g.url) as c:
        with pytest.raises(kchain.InsufficientStorageError) as error:
            c.deploy(manifest=sample("mnist_cnn"), name="cnn2")
        assert error.value.status == 507
        r = httpx.post(g.url + "/v1/uploads", content=b"x" * 100000,
                       headers={"Content-Type": "application/octet-stream"})
        assert r.status_code == 507, r.text
        assert r.json()["error"]["code"] == "insufficient_storage"
        assert "Retry-After" not in r.headers
        # What is stored keeps serving.
        assert c.invoke("cnn", np.zeros((28, 28), np.float32)).output.shape == (10,)
    kill9(g)
    # Restart on the full disk: it starts, says why deploys will fail, and serves.
    g = Gateway(tmp_path, *args)
    try:
        with kchain.Client(g.url) as c:
            assert c.invoke("cnn", np.zeros((28, 28), np.float32)).output.shape == (10,)
            with pytest.raises(kchain.InsufficientStorageError):
                c.deploy(manifest=sample("mnist_cnn"), name="cnn2")
        assert "disk is full" in g.log_path.read_text()
        (small_disk / "filler").unlink()
        with kchain.Client(g.url) as c:  # space freed: deploys work again, no restart needed
            c.deploy(manifest=sample("mnist_cnn"), name="cnn2")
    finally:
        g.stop()
