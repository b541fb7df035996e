"""docs/tutorial.md and the SDK README's tour run as written, on the backend under test.

The tutorial builds against an installed kchain (cmake --install into a scratch prefix) from
outside the tree: its kernel libraries with kchain_add_kernel_library() and a C++ program
linked with kchain::runtime. Both documents' files must also be the ones in the tree.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import doc_steps
from conftest import BUILD, REPO, Gateway

TUTORIAL = REPO / "docs" / "tutorial.md"
SDK_README = REPO / "sdk-python" / "README.md"

pytestmark = pytest.mark.skipif(shutil.which("cmake") is None or shutil.which("curl") is None,
                                reason="needs cmake and curl (scripts/setup-deps.sh installs them)")


def _assert_files_match(markdown: Path, folder: Path) -> None:
    files = [s for s in doc_steps.steps(markdown.read_text()) if s.kind == "file"]
    assert files, f"{markdown} shows no files"
    for step in files:
        assert step.text == (folder / step.name).read_text(), (
            f"{markdown.name}'s {step.name} differs from {folder / step.name}")


def test_the_tutorial_shows_the_files_in_the_tree() -> None:
    _assert_files_match(TUTORIAL, REPO / "docs" / "tutorial" / "normalize")


def test_the_sdk_readme_shows_the_files_in_the_tree() -> None:
    _assert_files_match(SDK_README, REPO / "sdk-python" / "examples" / "scale")


def _env(gateway: Gateway, **extra: str) -> dict:
    # The kchain command of the Python under test, and no proxy between it and the gateway.
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    return {"KCHAIN_URL": gateway.url, "PATH": path, "NO_PROXY": "127.0.0.1",
            "no_proxy": "127.0.0.1", **extra}


def test_the_tutorial_runs_from_an_installed_kchain(tmp_path: Path) -> None:
    prefix = tmp_path / "prefix"
    install = subprocess.run(["cmake", "--install", str(BUILD), "--prefix", str(prefix)],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert install.returncode == 0, install.stdout
    assert (prefix / "lib" / "cmake" / "kchain" / "kchainConfig.cmake").is_file()
    assert (prefix / "bin" / "kchain-gateway").is_file()
    work = tmp_path / "work"
    work.mkdir()
    gateway = Gateway(tmp_path, "--isolation", "process")
    try:
        out = doc_steps.run(TUTORIAL.read_text(), work, _env(
            gateway, KCHAIN_PREFIX=str(prefix), PATH=f"{prefix / 'bin'}{os.pathsep}"
            f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"))
    finally:
        gateway.stop()
    # What the tutorial says its steps print.
    assert "out[0..3] = -3.0550 -2.1822 -1.3093 -0.4364" in out, out
    assert "X-Kchain-Start: cold" in out, out
    assert "[-3.05" in out, out
    assert "refused: input is 40 bytes; 'normalize' takes exactly 4096" in out, out
    assert "deployed normalize version 1" in out, out


def test_the_sdk_readme_tour_runs_as_written(tmp_path: Path) -> None:
    # The tour runs from sdk-python/examples/scale of a checkout whose build folder is build/.
    (tmp_path / "build").symlink_to(BUILD, target_is_directory=True)
    folder = tmp_path / "sdk-python" / "examples" / "scale"
    folder.mkdir(parents=True)
    gateway = Gateway(tmp_path)
    try:
        out = doc_steps.run(SDK_README.read_text(), folder, _env(gateway))
    finally:
        gateway.stop()
    assert "[0. 2. 4. 6.]" in out, out
    assert "cold" in out and "hot" in out and "warm" in out, out
    assert "deployed scale version 2" in out, out  # the SDK deployed version 1
