"""The gateway's rooms depend one way (docs/architecture.md): http -> core -> exec -> runtime,
and the worker binary on the runtime alone. CMake links them so; this keeps the headers so."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
INCLUDE = re.compile(r'^#include "gateway/(\w+)/', re.M)

# What each room may include of the others.
ALLOWED = {
    "exec": {"exec", "worker"},  # the worker protocol header is shared
    "core": {"core", "exec", "worker"},
    "http": {"http", "core", "exec", "worker"},
    "worker": {"worker"},
}


def test_the_gateway_rooms_include_only_what_they_may() -> None:
    wrong = []
    for room, allowed in ALLOWED.items():
        files = sorted((ROOT / "gateway" / room).glob("*.[ch]*"))
        assert files, f"gateway/{room} is empty"
        for path in files:
            for other in INCLUDE.findall(path.read_text()):
                if other not in allowed:
                    wrong.append(f"{path.relative_to(ROOT)} includes gateway/{other}/")
    assert not wrong, "\n".join(wrong)


def test_exec_and_the_worker_compile_against_neither_http_nor_json() -> None:
    for room in ("exec", "worker"):
        for path in sorted((ROOT / "gateway" / room).glob("*.[ch]*")):
            text = path.read_text()
            assert "<httplib.h>" not in text and "nlohmann" not in text, path
