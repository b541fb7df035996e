"""Local runs through the native module: correct, shaped, no extra copies, GIL released."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

import kchain
import kchain.local
from conftest import DEVICE, SAMPLES, heldout, sample


def test_the_cnn_runs_locally_with_the_reported_accuracy() -> None:
    cnn = kchain.local.load(sample("mnist_cnn"), device=DEVICE)
    images, labels, report = heldout()
    correct = sum(int(cnn(image).argmax() == label) for image, label in zip(images, labels))
    assert correct == report["heldout_correct"]
    info = cnn.info()
    assert info["runs"] == len(labels) and info["constant_uploads"] == 1


def test_vecadd_locally_is_exact() -> None:
    vecadd = kchain.local.load(sample("vecadd"), device=DEVICE)
    constants = np.fromfile(SAMPLES / "vecadd" / "constants.bin", np.float32)
    x = np.random.default_rng(1).standard_normal(1_000_000).astype(np.float32)
    np.testing.assert_array_equal(vecadd(x), x + constants)


def test_results_carry_timings_and_shapes() -> None:
    cnn = kchain.local.load(sample("mnist_cnn"), device=DEVICE)
    result = cnn.run(np.zeros((28, 28), np.float32))
    assert result.output.shape == (10,) and result.output.dtype == np.float32
    assert result.total_us > 0 and result.chain_us is not None and result.chain_us > 0
    assert result.mode in ("direct", "graph")


def test_output_goes_into_the_callers_array_without_a_copy() -> None:
    cnn = kchain.local.load(sample("mnist_cnn"), device=DEVICE)
    out = np.full(10, np.nan, np.float32)
    result = cnn.run(np.zeros((28, 28), np.float32), out=out)
    assert result.output is out and not np.isnan(out).any()
    with pytest.raises(kchain.InvalidArgumentError):
        cnn.run(np.zeros((28, 28), np.float32), out=np.zeros(3, np.float32))


def test_inputs_are_converted_to_the_function_dtype() -> None:
    cnn = kchain.local.load(sample("mnist_cnn"), device=DEVICE)
    images, _, _ = heldout()
    np.testing.assert_array_equal(cnn(images[0].astype(np.float64)), cnn(images[0]))


def test_park_and_wake_keep_results() -> None:
    cnn = kchain.local.load(sample("mnist_cnn"), device=DEVICE)
    images, _, _ = heldout()
    before = cnn(images[3])
    cnn.park()
    assert cnn.info()["state"] == "parked"
    with pytest.raises(kchain.FailedPreconditionError):
        cnn(images[3])
    cnn.wake()
    np.testing.assert_array_equal(cnn(images[3]), before)
    assert cnn.info()["constant_uploads"] == 2


@pytest.mark.skipif(DEVICE != "host", reason="the slow test kernel is host-only")
def test_the_gil_is_released_during_a_run() -> None:
    library = SAMPLES.parent / "tests" / "kernels" / "libtest_kernels_host.so"
    slow = kchain.local.load({"chain": [{"kernel": "sleep_then_copy", "grid": 1, "block": 1}],
                              "input": {"dtype": "uint32", "shape": [4]},
                              "output": {"dtype": "uint32", "shape": [4]}},
                             library=library, device="host")
    ticks = []
    stop = threading.Event()

    def ticker() -> None:
        while not stop.is_set():
            ticks.append(time.monotonic())
            time.sleep(0.005)

    t = threading.Thread(target=ticker)
    t.start()
    slow(np.array([300, 1, 2, 3], np.uint32))  # sleeps 300 ms inside the kernel
    stop.set()
    t.join()
    # The other thread kept running meanwhile: many ticks, not one.
    assert len(ticks) > 20
