"""Every exception class, raised for its case: by a real gateway where one can produce it, by
the mapping itself for the two codes no route returns today (internal, unimplemented)."""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path
from typing import Tuple

import numpy as np
import pytest

import kchain
import kchain.errors as errors
import kchain.local
from conftest import DEVICE, KEYS, SAMPLES, Gateway, sample


def _kind(client: kchain.Client) -> str:
    return client.server_info()["device"]["kind"]


def _misbehaving(client: kchain.Client, name: str) -> Tuple[str, dict]:
    """Deploys a function that spins forever on demand; returns (name, {mode: input})."""
    kind = _kind(client)
    library = SAMPLES.parent / "tests" / "kernels" / f"libtest_kernels_{kind}.so"
    if kind == "host":
        manifest = {"chain": [{"kernel": "misbehave", "grid": 1, "block": 1}],
                    "input": {"dtype": "uint32", "shape": [4]},
                    "output": {"dtype": "uint32", "shape": [4]}}
        inputs = {"behave": np.array([0, 1, 2, 3], np.uint32),
                  "spin": np.array([3, 0, 0, 0], np.uint32)}
    else:  # the CUDA test library chooses by input length
        manifest = {"chain": [{"kernel": "misbehave_by_length", "grid": 1, "block": 1}],
                    "input": {"dtype": "uint8"}, "max_input_bytes": 32, "tmp_bytes": 64,
                    "output": {"dtype": "uint8", "shape": [4]}}
        inputs = {"behave": b"abcd", "spin": bytes(16)}
    client.deploy(name, manifest=manifest, library=library)
    return name, inputs


def test_every_code_has_its_class() -> None:
    for code, cls, status in [
            ("invalid_argument", kchain.InvalidArgumentError, 400),
            ("unauthenticated", kchain.UnauthenticatedError, 401),
            ("not_found", kchain.NotFoundError, 404),
            ("method_not_allowed", kchain.MethodNotAllowedError, 405),
            ("already_exists", kchain.AlreadyExistsError, 409),
            ("failed_precondition", kchain.FailedPreconditionError, 409),
            ("length_required", kchain.LengthRequiredError, 411),
            ("payload_too_large", kchain.PayloadTooLargeError, 413),
            ("resource_exhausted", kchain.ResourceExhaustedError, 429),
            ("internal", kchain.InternalError, 500),
            ("unimplemented", kchain.UnimplementedError, 501),
            ("kernel_error", kchain.KernelError, 502),
            ("unavailable", kchain.UnavailableError, 503),
            ("deadline_exceeded", kchain.DeadlineExceededError, 504)]:
        error = errors.error_from_code(code, "boom", status)
        assert type(error) is cls and error.code == code and error.http_status == status
        assert isinstance(error, kchain.ApiError) and isinstance(error, kchain.KchainError)
        assert str(error) == "boom"
    unknown = errors.error_from_code("something_new", "?")
    assert type(unknown) is kchain.ApiError and unknown.code == "something_new"


def test_invalid_argument_and_payload_too_large(client: kchain.Client) -> None:
    client.deploy(manifest=sample("mnist_cnn"))
    with pytest.raises(kchain.InvalidArgumentError, match="takes exactly 3136"):
        client.invoke("mnist_cnn", b"short")
    with pytest.raises(kchain.PayloadTooLargeError, match="accepts at most 3136"):
        client.invoke("mnist_cnn", bytes(4000))
    with pytest.raises(kchain.InvalidArgumentError, match="manifest"):
        client.deploy("broken", manifest={"chain": []}, library=b"\x7fELF")


def test_not_found(client: kchain.Client) -> None:
    with pytest.raises(kchain.NotFoundError, match="no function 'ghost'") as info:
        client.invoke("ghost", b"x")
    assert info.value.status == 404


def test_method_not_allowed_and_length_required(client: kchain.Client, gateway: Gateway) -> None:
    with pytest.raises(kchain.MethodNotAllowedError):
        client._request("GET", "/v1/functions/x/invoke")
    # What `curl -X POST` sends for an upload: no length, no body.
    host, port = gateway.url.split("//")[1].split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(b"POST /v1/uploads HTTP/1.1\r\nHost: x\r\n\r\n")
        reply = b""
        while not reply.endswith(b"}"):  # the JSON body may come in a second segment
            chunk = s.recv(4096)
            if not chunk:
                break
            reply += chunk
        reply = reply.decode()
    status = int(reply.split()[1])
    body = json.loads(reply.split("\r\n\r\n", 1)[1])
    error = errors.error_from_code(body["error"]["code"], body["error"]["message"], status)
    assert isinstance(error, kchain.LengthRequiredError) and status == 411


def test_kernel_error(client: kchain.Client) -> None:
    library = SAMPLES.parent / "tests" / "kernels" / f"libtest_kernels_{_kind(client)}.so"
    client.deploy("reports-error", library=library, manifest={
        "chain": [{"kernel": "report_error", "grid": 1, "block": 1}],
        "input": {"dtype": "float32", "shape": [4]}, "output": {"dtype": "float32", "shape": [4]}})
    with pytest.raises(kchain.KernelError, match="kernel 'report_error'") as info:
        client.invoke("reports-error", np.zeros(4, np.float32))
    assert info.value.status == 502


def test_deadline_exceeded(client: kchain.Client) -> None:
    name, inputs = _misbehaving(client, "spins")
    with pytest.raises(kchain.DeadlineExceededError, match="did not finish within"):
        client.invoke(name, inputs["spin"])
    np.testing.assert_array_equal(np.asarray(client.invoke(name, inputs["behave"]).output).size, 4)


def test_resource_exhausted(tmp_path: Path) -> None:
    g = Gateway(tmp_path, "--max-instances", "1", "--max-queue", "0", "--invoke-timeout-ms", "1500")
    try:
        with kchain.Client(g.url) as client:
            name, inputs = _misbehaving(client, "busy")
            client.invoke(name, inputs["behave"])  # the one instance exists
            busy = threading.Thread(target=lambda: pytest.raises(
                kchain.DeadlineExceededError, client.invoke, name, inputs["spin"]))
            busy.start()
            for _ in range(200):  # until the spinning run holds the instance
                if client.describe(name)["instances"]["busy"] == 1:
                    break
            with pytest.raises(kchain.ResourceExhaustedError, match="queue"):
                with kchain.Client(g.url) as other:
                    other.invoke(name, inputs["behave"])
            busy.join()
    finally:
        g.stop()


def test_already_exists(client: kchain.Client) -> None:
    # Two deploys of one function at once: one of them is told the other is in progress.
    raised = []

    def deploy() -> None:
        try:
            with kchain.Client(client.url) as c:
                c.deploy("contended", manifest=sample("vecadd"))
        except kchain.AlreadyExistsError as e:
            raised.append(e)

    for _ in range(20):
        threads = [threading.Thread(target=deploy) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if raised:
            break
    assert raised and raised[0].status == 409
    assert "in progress" in str(raised[0])


def test_unauthenticated(keyed_gateway: Gateway) -> None:
    with kchain.Client(keyed_gateway.url, api_key="") as anonymous:
        with pytest.raises(kchain.UnauthenticatedError) as info:
            anonymous.functions()
    assert info.value.status == 401
    with kchain.Client(keyed_gateway.url, api_key="wrong-key-0000000000") as wrong:
        with pytest.raises(kchain.UnauthenticatedError, match="invalid API key"):
            wrong.functions()
    # Tenants: alpha's function is not beta's to see.
    with kchain.Client(keyed_gateway.url, api_key=KEYS["alpha"]) as alpha, \
            kchain.Client(keyed_gateway.url, api_key=KEYS["beta"]) as beta, \
            kchain.Client(keyed_gateway.url, api_key=KEYS["admin"], tenant="alpha") as admin:
        alpha.deploy(manifest=sample("mnist_cnn"))
        assert beta.functions() == []
        with pytest.raises(kchain.NotFoundError):
            beta.describe("mnist_cnn")
        assert admin.describe("mnist_cnn")["tenant"] == "alpha"


def test_unavailable(tmp_path: Path) -> None:
    # A stored function whose library was damaged while the server was down.
    g = Gateway(tmp_path)
    with kchain.Client(g.url) as client:
        client.deploy(manifest=sample("mnist_cnn"))
    g.stop()
    stored = tmp_path / "data" / "tenants" / "default" / "functions" / "mnist_cnn" / "v1" / "kernel.so"
    stored.write_bytes(b"damaged")
    g = Gateway(tmp_path)
    try:
        with kchain.Client(g.url) as client:
            with pytest.raises(kchain.UnavailableError, match="failed to load"):
                client.invoke("mnist_cnn", np.zeros((28, 28), np.float32))
    finally:
        g.stop()


def test_transport_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends
    with kchain.Client(f"http://127.0.0.1:{port}", timeout=2) as client:
        with pytest.raises(kchain.TransportError):
            client.health()


def test_local_runs_raise_the_same_classes() -> None:
    with pytest.raises(kchain.InvalidArgumentError, match="not an ELF"):
        kchain.local.load(sample("mnist_cnn"), library=__file__, device="host")
    cnn = kchain.local.load(sample("mnist_cnn"), device="host")
    with pytest.raises(kchain.PayloadTooLargeError) as info:
        cnn(np.zeros(1000, np.float32))
    assert info.value.status is None
    with pytest.raises(kchain.KernelError, match="28x28"):
        cnn(np.zeros(10, np.float32))
