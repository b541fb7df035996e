"""Fixtures: a real kchain gateway on a free loopback port, started from the build folder.

Environment: KCHAIN_BUILD_DIR (default: <repo>/build), KCHAIN_TEST_DEVICE (default host; auto
on a GPU machine), KCHAIN_TEST_ISOLATION (default process).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Iterator, Optional

import numpy as np
import pytest

import kchain

REPO = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("KCHAIN_BUILD_DIR", REPO / "build")).resolve()
DEVICE = os.environ.get("KCHAIN_TEST_DEVICE", "host")
ISOLATION = os.environ.get("KCHAIN_TEST_ISOLATION", "process")
SAMPLES = BUILD / "samples"
TEST_KERNELS = BUILD / "tests" / "kernels"


class Gateway:
    """A kchain-gateway process for the tests."""

    def __init__(self, workdir: Path, *extra: str) -> None:
        binary = BUILD / "bin" / "kchain-gateway"
        if not binary.exists():
            pytest.fail(f"{binary} is missing: build kchain first (scripts/build.sh)")
        port_file = workdir / "port"
        port_file.unlink(missing_ok=True)  # a previous gateway's, in the same folder
        self.log_path = workdir / "gateway.log"
        self.log = open(self.log_path, "w")
        self.process = subprocess.Popen(
            [str(binary), "--listen", "127.0.0.1:0", "--port-file", str(port_file),
             "--data-dir", str(workdir / "data"), "--device", DEVICE, "--isolation", ISOLATION,
             "--log-level", "warning", *extra],
            stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while not port_file.exists() or not port_file.read_text().strip():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail("the gateway did not start:\n" + self.log_path.read_text())
            time.sleep(0.05)
        self.url = f"http://127.0.0.1:{port_file.read_text().strip()}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.log.close()


@pytest.fixture(scope="session")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    g = Gateway(tmp_path_factory.mktemp("gateway"), "--invoke-timeout-ms", "2000")
    yield g
    g.stop()


KEYS = {"alpha": "alpha-key-0123456789", "beta": "beta-key-0123456789",
        "admin": "admin-key-0123456789"}


@pytest.fixture(scope="session")
def keyed_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    workdir = tmp_path_factory.mktemp("keyed")
    keys = workdir / "keys.json"
    keys.write_text(json.dumps({"keys": [
        {"key": KEYS["alpha"], "tenant": "alpha"},
        {"key": KEYS["beta"], "tenant": "beta"},
        {"key": KEYS["admin"], "tenant": "ops", "admin": True}]}))
    g = Gateway(workdir, "--api-keys", str(keys))
    yield g
    g.stop()


@pytest.fixture()
def client(gateway: Gateway) -> Iterator[kchain.Client]:
    with kchain.Client(gateway.url) as c:
        yield c


def sample(name: str) -> Path:
    return SAMPLES / name / "manifest.json"


def heldout() -> "tuple[np.ndarray, np.ndarray, dict]":
    folder = SAMPLES / "mnist_cnn"
    images = np.fromfile(folder / "heldout_images.bin", np.float32).reshape(-1, 28, 28)
    labels = np.fromfile(folder / "heldout_labels.bin", np.uint8)
    report = json.loads((folder / "report.json").read_text())
    return images, labels, report


def test_library(name: Optional[str] = None) -> Path:
    kind = "host" if DEVICE == "host" else kchain.local.device_info(DEVICE)["kind"]
    return TEST_KERNELS / f"libtest_kernels_{kind}.so"
