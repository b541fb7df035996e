"""Triton's own clients against a real kchain gateway over the KServe v2 / Open Inference
Protocol: tritonclient's InferenceServerClient (from PyPI, unchanged) for health, metadata,
readiness, the model repository and inference on both samples with JSON and binary tensor
data, API keys; and a perf_analyzer smoke run.

perf_analyzer is looked for in $PERF_ANALYZER, next to this Python (the venv's, from
tritonclient's wheel: scripts/python-env.sh) and on PATH. Without one the test is skipped,
except under CI=true, where it fails so that CI really runs it.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Optional

import numpy as np
import pytest

import kchain
from conftest import KEYS, SAMPLES, heldout, sample

IN_CI = os.environ.get("CI") == "true"
if IN_CI:
    import tritonclient.http as httpclient  # CI installs it: missing must fail, not skip
else:
    httpclient = pytest.importorskip("tritonclient.http")
from tritonclient.utils import InferenceServerException  # noqa: E402


def host_port(url: str) -> str:
    return url.removeprefix("http://")


@pytest.fixture(scope="module")
def deployed(gateway) -> str:
    """Both samples deployed (through the kchain SDK), as tc-cnn and tc-vecadd."""
    with kchain.Client(gateway.url) as c:
        c.deploy("tc-cnn", manifest=sample("mnist_cnn"))
        c.deploy("tc-vecadd", manifest=sample("vecadd"))
    return gateway.url


@pytest.fixture()
def triton(deployed: str):
    client = httpclient.InferenceServerClient(host_port(deployed))
    yield client
    client.close()


def cnn_infer(client, image: np.ndarray, binary_in: bool, binary_out: bool, **kwargs):
    tensor = httpclient.InferInput("input", list(image.shape), "FP32")
    tensor.set_data_from_numpy(image, binary_data=binary_in)
    output = httpclient.InferRequestedOutput("output", binary_data=binary_out)
    return client.infer("tc-cnn", [tensor], outputs=[output], **kwargs)


def test_server_health_and_metadata(triton) -> None:
    assert triton.is_server_live()
    assert triton.is_server_ready()
    meta = triton.get_server_metadata()
    assert meta["name"] == "kchain" and meta["version"] == kchain.__version__
    assert {"binary_tensor_data", "model_repository"} <= set(meta["extensions"])


def test_model_metadata_config_and_readiness(deployed, triton) -> None:
    with kchain.Client(deployed) as c:
        version = str(c.describe("tc-cnn")["version"])
    meta = triton.get_model_metadata("tc-cnn")
    assert meta["platform"] == "kchain"
    assert meta["versions"] == [version]
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [28, 28]}]
    assert meta["outputs"] == [{"name": "output", "datatype": "FP32", "shape": [10]}]
    assert triton.get_model_metadata("tc-cnn", version)["name"] == "tc-cnn"
    config = triton.get_model_config("tc-cnn")
    assert config["max_batch_size"] == 0 and config["input"][0]["dims"] == [28, 28]
    assert triton.is_model_ready("tc-cnn")
    assert triton.is_model_ready("tc-cnn", version)
    assert not triton.is_model_ready("tc-cnn", str(int(version) + 1))
    assert not triton.is_model_ready("no-such-model")
    with pytest.raises(InferenceServerException) as e:
        triton.get_model_metadata("no-such-model")
    assert e.value.status() == "404" and "unknown model 'no-such-model'" in e.value.message()


@pytest.mark.parametrize("binary_in", [False, True])
@pytest.mark.parametrize("binary_out", [False, True])
def test_cnn_json_and_binary_agree_with_the_sdk(deployed, triton, binary_in, binary_out) -> None:
    images, labels, _ = heldout()
    with kchain.Client(deployed) as c:
        expected = c.invoke("tc-cnn", images[0]).output
    result = cnn_infer(triton, images[0], binary_in, binary_out, request_id="digit-0")
    logits = result.as_numpy("output")
    assert logits.dtype == np.float32 and logits.shape == (10,)
    np.testing.assert_array_equal(logits, expected)
    assert logits.argmax() == labels[0]
    response = result.get_response()
    assert response["id"] == "digit-0" and response["model_name"] == "tc-cnn"
    assert ("binary_data_size" in response["outputs"][0].get("parameters", {})) == binary_out


def test_a_batch_dimension_of_one_is_accepted(triton) -> None:
    images, labels, _ = heldout()
    result = cnn_infer(triton, images[1][np.newaxis], True, True)
    assert result.as_numpy("output").shape == (1, 10)
    assert result.as_numpy("output")[0].argmax() == labels[1]


def test_the_cnn_classifies_the_heldout_digits_over_v2(triton) -> None:
    images, labels, report = heldout()
    correct = sum(int(cnn_infer(triton, image, True, True).as_numpy("output").argmax() == label)
                  for image, label in zip(images, labels))
    assert correct == report["heldout_correct"]


@pytest.mark.parametrize("binary", [True, False])
def test_vecadd(triton, binary: bool) -> None:
    constants = np.fromfile(SAMPLES / "vecadd" / "constants.bin", np.float32)
    x = np.random.default_rng(1).uniform(-100, 100, 1_000_000).astype(np.float32)
    tensor = httpclient.InferInput("input", [1_000_000], "FP32")
    tensor.set_data_from_numpy(x, binary_data=binary)
    # No outputs named: tritonclient asks for every output in binary (binary_data_output).
    result = triton.infer("tc-vecadd", [tensor])
    np.testing.assert_array_equal(result.as_numpy("output"), x + constants)


def test_errors_carry_the_status_and_message(triton) -> None:
    wrong_shape = httpclient.InferInput("input", [784], "FP32")
    wrong_shape.set_data_from_numpy(np.zeros(784, np.float32))
    with pytest.raises(InferenceServerException) as e:
        triton.infer("tc-cnn", [wrong_shape])
    assert e.value.status() == "400" and "takes [28, 28]" in e.value.message()
    wrong_type = httpclient.InferInput("input", [28, 28], "FP64")
    wrong_type.set_data_from_numpy(np.zeros((28, 28), np.float64))
    with pytest.raises(InferenceServerException) as e:
        triton.infer("tc-cnn", [wrong_type])
    assert "has datatype FP64; model 'tc-cnn' takes FP32" in e.value.message()
    good = httpclient.InferInput("input", [28, 28], "FP32")
    good.set_data_from_numpy(np.zeros((28, 28), np.float32))
    with pytest.raises(InferenceServerException) as e:
        triton.infer("tc-cnn", [good], outputs=[httpclient.InferRequestedOutput("probs")])
    assert e.value.status() == "400" and "unknown output 'probs'" in e.value.message()
    with pytest.raises(InferenceServerException) as e:
        triton.infer("no-such-model", [good])
    assert e.value.status() == "404"


def test_repository_index_unload_and_load(deployed, triton) -> None:
    with kchain.Client(deployed) as c:
        c.deploy("tc-repo", manifest=sample("mnist_cnn"))
    entries = {m["name"]: m for m in triton.get_model_repository_index()}
    assert entries["tc-repo"]["state"] == "READY"
    triton.unload_model("tc-repo")
    assert not triton.is_model_ready("tc-repo")
    entries = {m["name"]: m for m in triton.get_model_repository_index()}
    assert entries["tc-repo"] == {"name": "tc-repo", "version": "1", "state": "UNAVAILABLE",
                                  "reason": "unloaded"}
    tensor = httpclient.InferInput("input", [28, 28], "FP32")
    tensor.set_data_from_numpy(np.zeros((28, 28), np.float32))
    with pytest.raises(InferenceServerException) as e:
        triton.infer("tc-repo", [tensor])
    assert e.value.status() == "503"
    triton.load_model("tc-repo")
    assert triton.is_model_ready("tc-repo")
    assert triton.infer("tc-repo", [tensor]).as_numpy("output").shape == (10,)
    with pytest.raises(InferenceServerException) as e:
        triton.load_model("no-such-model")
    assert e.value.status() == "404"


def test_api_keys_and_tenants(keyed_gateway) -> None:
    with kchain.Client(keyed_gateway.url, api_key=KEYS["alpha"]) as c:
        c.deploy("tc-keyed", manifest=sample("mnist_cnn"))
    alpha = {"Authorization": f"Bearer {KEYS['alpha']}"}
    beta = {"Authorization": f"Bearer {KEYS['beta']}"}
    client = httpclient.InferenceServerClient(host_port(keyed_gateway.url))
    try:
        # Probes are open, like /healthz and /readyz.
        assert client.is_server_live() and client.is_server_ready()
        with pytest.raises(InferenceServerException) as e:
            client.get_model_metadata("tc-keyed")
        assert e.value.status() == "401"
        assert client.get_model_metadata("tc-keyed", headers=alpha)["name"] == "tc-keyed"
        images, labels, _ = heldout()
        tensor = httpclient.InferInput("input", [28, 28], "FP32")
        tensor.set_data_from_numpy(images[2], binary_data=True)
        result = client.infer("tc-keyed", [tensor], headers=alpha)
        assert result.as_numpy("output").argmax() == labels[2]
        # Another tenant's model is unknown to beta.
        with pytest.raises(InferenceServerException) as e:
            client.infer("tc-keyed", [tensor], headers=beta)
        assert e.value.status() == "404"
        assert not client.is_model_ready("tc-keyed", headers=beta)
        assert client.get_model_repository_index(headers=beta) == []
    finally:
        client.close()


# --- perf_analyzer ---------------------------------------------------------------------------


def find_perf_analyzer() -> Optional[str]:
    candidates = [os.environ.get("PERF_ANALYZER"), str(Path(sys.executable).parent / "perf_analyzer"),
                  shutil.which("perf_analyzer")]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def perf_analyzer_env() -> dict:
    """The environment for perf_analyzer: tritonclient's build of it loads libcudart.so.12,
    which nvidia-cuda-runtime-cu12 (from PyPI) provides when it is installed."""
    env = dict(os.environ)
    spec = importlib.util.find_spec("nvidia.cuda_runtime")
    if spec is not None and spec.submodule_search_locations:
        lib = Path(list(spec.submodule_search_locations)[0]) / "lib"
        env["LD_LIBRARY_PATH"] = os.pathsep.join(
            p for p in (str(lib), env.get("LD_LIBRARY_PATH", "")) if p)
    return env


@pytest.fixture(scope="module")
def perf_analyzer() -> str:
    binary = find_perf_analyzer()
    why = None
    if binary is None:
        why = "no perf_analyzer ($PERF_ANALYZER, next to this Python, or on PATH)"
    else:
        probe = subprocess.run([binary, "--version"], env=perf_analyzer_env(), capture_output=True,
                               text=True, timeout=60)
        if probe.returncode != 0:
            why = f"{binary} does not run here: {(probe.stderr or probe.stdout).strip()[:500]}"
    if why is not None:
        if IN_CI:
            pytest.fail(why + " (CI=true: scripts/python-env.sh and setup-deps.sh install it)")
        pytest.skip(why)
    return binary


def run_perf_analyzer(binary: str, url: str, *extra: str) -> "tuple[str, list[float]]":
    # A smoke run, not a measurement: small windows, and any three count as stable (-s 1000),
    # so that a busy machine cannot make it fail with "Failed to obtain stable measurement".
    command = [binary, "-m", "mnist_cnn", "-u", host_port(url), "-i", "http",
               "--measurement-mode", "count_windows", "--measurement-request-count", "20",
               "--max-trials", "10", "-s", "1000", *extra]
    done = subprocess.run(command, env=perf_analyzer_env(), capture_output=True, text=True,
                          timeout=240)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    return output, [float(x) for x in re.findall(r"Throughput: ([0-9.]+) infer/sec", output)]


def test_perf_analyzer_runs_against_the_gateway(gateway, perf_analyzer) -> None:
    with kchain.Client(gateway.url) as c:
        c.deploy("mnist_cnn", manifest=sample("mnist_cnn"))
    output, throughputs = run_perf_analyzer(perf_analyzer, gateway.url, "--concurrency-range", "1:2")
    assert len(throughputs) == 2 and all(t > 0 for t in throughputs), output
    # perf_analyzer read the server-side statistics (the statistics extension) too.
    assert re.search(r"Server:\s*\n\s+Inference count: [1-9]", output), output
    print("\n" + "\n".join(line for line in output.splitlines()
                           if "throughput:" in line or "p99 latency" in line))


def test_perf_analyzer_sends_the_api_key(keyed_gateway, perf_analyzer) -> None:
    with kchain.Client(keyed_gateway.url, api_key=KEYS["beta"]) as c:
        c.deploy("mnist_cnn", manifest=sample("mnist_cnn"))
    _, throughputs = run_perf_analyzer(perf_analyzer, keyed_gateway.url, "--concurrency-range", "1",
                                       "-H", f"Authorization: Bearer {KEYS['beta']}")
    assert len(throughputs) == 1 and throughputs[0] > 0
