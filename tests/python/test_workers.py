"""Worker processes when the device refuses more of them.

On an H200 with CUDA's default of 8 work queues per context, about 100 CUDA contexts fit
whatever memory is free (63 when each has two streams in use); the next worker fails to start
(cudaSetDevice: out of memory). Here a wrapper around kchain-worker plays that device: it
refuses to start while two workers already live. Every deploy and invocation must still
succeed (idle workers are retired to make room), and the gateway reports the limit it learned.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import httpx

import kchain
from conftest import BUILD, Gateway, heldout, sample

TENANTS = [f"t{i}" for i in range(4)]
ADMIN_KEY = "ops-admin-key-0123456789"

WRAPPER = """#!{python}
# Stands in for a device that takes {limit} contexts: no start while {limit} workers live.
import os, sys
gateway, me, live = os.getppid(), os.getpid(), 0
for pid in os.listdir("/proc"):
    if not pid.isdigit() or int(pid) == me:
        continue
    try:
        with open(f"/proc/{{pid}}/stat") as f:
            state, ppid = f.read().rsplit(")", 1)[1].split()[:2]
    except OSError:
        continue
    if int(ppid) == gateway and state != "Z":
        live += 1
if live >= {limit}:
    sys.exit("no more contexts on this device (test wrapper)")
os.execv({real!r}, [{real!r}] + sys.argv[1:])
"""


def key(tenant: str) -> str:
    return f"{tenant}-key-0123456789"


def test_a_device_that_takes_no_more_workers_costs_no_request(tmp_path: Path) -> None:
    wrapper = tmp_path / "worker-wrapper"
    wrapper.write_text(WRAPPER.format(python=sys.executable, limit=2,
                                      real=str(BUILD / "bin" / "kchain-worker")))
    wrapper.chmod(0o755)
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps({"keys": [{"key": key(t), "tenant": t} for t in TENANTS] +
                                        [{"key": ADMIN_KEY, "tenant": "ops", "admin": True}]}))
    g = Gateway(tmp_path, "--isolation", "process", "--worker-path", str(wrapper),
                "--prestarted-workers", "1", "--api-keys", str(keys))
    try:
        images, labels, _ = heldout()
        for t in TENANTS:
            with kchain.Client(g.url, api_key=key(t)) as c:
                c.deploy("cnn", manifest=sample("mnist_cnn"))
        for round in range(2):
            for i, t in enumerate(TENANTS):
                with kchain.Client(g.url, api_key=key(t)) as c:
                    result = c.invoke("cnn", images[i])
                    assert int(result.output.argmax()) == labels[i], (t, round)
        info = httpx.get(g.url + "/v1", headers={"Authorization": f"Bearer {ADMIN_KEY}"}).json()
        workers = info["workers"]
        assert workers["limit"] == 2, workers
        assert workers["live"] <= 2, workers
        # Each tenant change retired one worker, and only one: 4 deploys and 8 invocations,
        # each needing the other tenant's worker, for the limit the device's refusal taught.
        evictions = sum(workers["evictions"].values())
        assert 4 <= evictions <= 4 + 2 * len(TENANTS), workers
        assert workers["evictions"].get("device_memory", 0) >= 1, workers
        assert workers["spawn_failures"] >= 1, workers
        assert workers["starts"]["count"] >= 3, workers
        assert workers["ends"]["count"] == evictions, workers
        assert "no more contexts" not in json.dumps(info)
    finally:
        g.stop()
