"""The HTTP client against a real gateway: both samples, binary and JSON, the CNN's accuracy,
local runs equal served runs, async, uploads and progress."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import numpy as np
import pytest

import kchain
import kchain.local
from conftest import SAMPLES, Gateway, heldout, sample


def test_server_answers(client: kchain.Client) -> None:
    assert client.health() == {"status": "ok"}
    assert client.ready()["status"] == "ready"
    info = client.server_info()
    assert info["version"] == kchain.__version__
    assert info["device"]["kind"] in ("host", "cuda")


def test_deploy_and_invoke_the_cnn(client: kchain.Client) -> None:
    info = client.deploy(manifest=sample("mnist_cnn"))
    assert info["name"] == "mnist_cnn"
    assert info["state"] == "ready"
    images, labels, _ = heldout()
    first = client.invoke("mnist_cnn", images[0])
    assert isinstance(first.output, np.ndarray)
    assert first.output.dtype == np.float32 and first.output.shape == (10,)
    assert first.output.argmax() == labels[0]
    assert first.start in ("cold", "hot")
    assert first.timings.total_us > 0 and first.timings.client_us >= first.timings.total_us
    hot = client.invoke("mnist_cnn", images[0])
    assert hot.start == "hot"
    np.testing.assert_array_equal(hot.output, first.output)
    # JSON path, and raw bytes.
    as_json = client.invoke_json("mnist_cnn", images[0])
    np.testing.assert_allclose(as_json.output, first.output, rtol=1e-6)
    assert as_json.timings.run_us > 0
    raw = client.invoke("mnist_cnn", images[0].tobytes(), raw=True)
    assert raw.output == first.output.tobytes()


def test_the_cnn_classifies_the_heldout_digits_with_the_reported_accuracy(client: kchain.Client) -> None:
    client.deploy(manifest=sample("mnist_cnn"))
    images, labels, report = heldout()
    correct = sum(int(client.invoke("mnist_cnn", image).output.argmax() == label)
                  for image, label in zip(images, labels))
    assert correct == report["heldout_correct"]


def test_vecadd_binary_and_json(client: kchain.Client) -> None:
    client.deploy(manifest=sample("vecadd"))
    constants = np.fromfile(SAMPLES / "vecadd" / "constants.bin", np.float32)
    x = np.random.default_rng(0).uniform(-100, 100, 1_000_000).astype(np.float32)
    out = client.invoke("vecadd", x).output
    np.testing.assert_array_equal(out, x + constants)
    small = client.invoke_json("vecadd", x)
    np.testing.assert_array_equal(small.output, out)


def test_a_local_run_equals_the_served_run(client: kchain.Client) -> None:
    client.deploy(manifest=sample("mnist_cnn"))
    images, _, _ = heldout()
    local = kchain.local.load(sample("mnist_cnn"),
                              device=client.server_info()["device"]["kind"])
    for image in images[:20]:
        np.testing.assert_array_equal(local(image), client.invoke("mnist_cnn", image).output)


def test_describe_list_park_delete(client: kchain.Client) -> None:
    client.deploy("cnn-copy", manifest=sample("mnist_cnn"))
    client.invoke("cnn-copy", np.zeros((28, 28), np.float32))
    names = [f["name"] for f in client.functions()]
    assert "cnn-copy" in names
    d = client.describe("cnn-copy")
    assert d["instances"]["total"] >= 1 and d["starts"]["cold"] >= 1
    assert client.park("cnn-copy") == 1
    warm = client.invoke("cnn-copy", np.zeros((28, 28), np.float32))
    assert warm.start == "warm"
    # The binary path itemises the start in Server-Timing, as the JSON path does.
    breakdown = warm.timings.start_breakdown
    assert breakdown is not None and set(breakdown) == {"acquire", "library", "create", "constants"}
    assert warm.timings.start_us == pytest.approx(sum(breakdown.values()), abs=5.0)
    client.delete("cnn-copy")
    with pytest.raises(kchain.NotFoundError):
        client.describe("cnn-copy")


def test_large_deploys_go_through_uploads(client: kchain.Client) -> None:
    # progress=True sends the files as uploads first, then deploys by reference.
    info = client.deploy("vecadd-big", manifest=sample("vecadd"), progress=True)
    assert info["versions"][-1]["constants_bytes"] == 4_000_000
    x = np.ones(1_000_000, np.float32)
    assert client.invoke("vecadd-big", x).output[5] == 1.0 + 5 * 0.25
    client.delete("vecadd-big")


def test_a_replaced_function_is_reshaped_by_its_new_manifest(client: kchain.Client) -> None:
    client.deploy("shape-change", manifest=sample("mnist_cnn"))
    assert client.invoke("shape-change", np.zeros((28, 28), np.float32)).output.shape == (10,)
    # Another client replaces it with vecadd; this client's cached types must follow.
    with kchain.Client(client.url) as other:
        other.deploy("shape-change", manifest=sample("vecadd"))
    out = client.invoke("shape-change", np.zeros(1_000_000, np.float32)).output
    assert out.shape == (1_000_000,)
    client.delete("shape-change")


def test_the_async_client(gateway) -> None:
    async def main() -> None:
        async with kchain.AsyncClient(gateway.url) as client:
            await client.deploy("async-cnn", manifest=sample("mnist_cnn"))
            images, labels, _ = heldout()
            results = await asyncio.gather(*(client.invoke("async-cnn", images[i]) for i in range(8)))
            assert [int(r.output.argmax()) for r in results] == [int(l) for l in labels[:8]]
            assert (await client.invoke_json("async-cnn", images[0])).output.argmax() == labels[0]
            assert any(f["name"] == "async-cnn" for f in await client.functions())
            await client.delete("async-cnn")

    asyncio.run(main())


def test_the_async_client_uploads_large_deploys_with_progress(gateway, capfd) -> None:
    # The same operation as Client.deploy: files uploaded first (streamed, with a progress
    # bar on stderr), then a deploy by reference.
    async def main() -> None:
        async with kchain.AsyncClient(gateway.url) as client:
            info = await client.deploy("async-vecadd-big", manifest=sample("vecadd"), progress=True)
            assert info["versions"][-1]["constants_bytes"] == 4_000_000
            x = np.ones(1_000_000, np.float32)
            assert (await client.invoke("async-vecadd-big", x)).output[5] == 1.0 + 5 * 0.25
            upload_id = await client.upload(b"x" * 3000, "blob", progress=True)
            assert upload_id
            await client.delete("async-vecadd-big")

    asyncio.run(main())
    assert "constants" in capfd.readouterr().err  # tqdm's bar names what it sends


# One manifest parser: the SDK reads manifests with the gateway's own (kchain::ParseManifest,
# through the native module), so what it refuses a deploy refuses too, with the same words.
_BAD_MANIFESTS = [
    {"chain": []},
    {"chain": [{"kernel": "add", "grid": 0, "block": 1}],
     "input": {"dtype": "float32", "shape": [4]}, "output": {"dtype": "float32", "shape": [4]}},
    {"chain": [{"kernel": "add", "grid": 1, "block": 1}],
     "input": {"dtype": "float17", "shape": [4]}, "output": {"dtype": "float32", "shape": [4]}},
    {"chain": [{"kernel": "add", "grid": 1, "block": 1}], "max_input_bytes": 16,
     "input": {"dtype": "float32"}, "output": {"dtype": "float32"}},
    {"chain": [{"kernel": "add", "grid": 1, "block": 1}], "tmp_bytez": 4,
     "input": {"dtype": "float32", "shape": [4]}, "output": {"dtype": "float32", "shape": [4]}},
]


@pytest.mark.parametrize("bad", _BAD_MANIFESTS)
def test_the_sdk_refuses_a_manifest_as_a_deploy_does(gateway: Gateway, bad: dict) -> None:
    with pytest.raises(kchain.InvalidArgumentError) as local:
        kchain.load_manifest(bad)
    # The same manifest sent past the SDK, straight to the gateway.
    reply = httpx.put(f"{gateway.url}/v1/functions/bad-manifest",
                      files={"manifest": ("manifest.json", json.dumps(bad), "application/json"),
                             "library": ("kernel.so", b"\x7fELF", "application/octet-stream")})
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"]["message"] == local.value.message


def test_a_manifest_file_with_a_key_twice_is_refused_as_a_deploy_does(tmp_path: Path) -> None:
    text = sample("vecadd").read_text().replace('"chain"', '"tmp_bytes": 0, "tmp_bytes"', 1)
    path = tmp_path / "manifest.json"
    path.write_text(text)
    with pytest.raises(kchain.InvalidArgumentError, match="duplicate key 'tmp_bytes'"):
        kchain.load_manifest(path)
