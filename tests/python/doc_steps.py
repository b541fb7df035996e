"""Runs a markdown document's steps as a reader would: the tutorial and the SDK README's tour.

A document marks its fenced code blocks with an HTML comment on the line before:

- ``<!-- file: NAME -->``: the reader writes this file (the block's text) in the current folder;
- ``<!-- run -->``: a shell step, run with bash (``set -euo pipefail``); a ``cd`` carries over;
- ``<!-- python -->``: a Python step, run with this interpreter;
- ``<!-- python: continued -->``: appended to the previous Python step and run with it;
- ``<!-- setup -->``: a step the test does its own way (building and installing kchain).

Unmarked blocks (output, commands for another terminal) are not run.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List

_BLOCK = re.compile(r"^<!-- (file: [\w.\-]+|run|python|python: continued|setup) -->\n"
                    r"```[\w+]*\n(.*?)^```\n", re.M | re.S)


@dataclass
class Step:
    kind: str  # "file", "run", "python", "setup"
    text: str
    name: str = ""  # the file name, for "file"


def steps(markdown: str) -> List[Step]:
    out: List[Step] = []
    for marker, text in _BLOCK.findall(markdown):
        if marker.startswith("file: "):
            out.append(Step("file", text, marker[len("file: "):]))
        elif marker == "python: continued":
            assert out and out[-1].kind == "python", "a continued block follows no python block"
            out[-1].text += text
        else:
            out.append(Step(marker, text))
    return out


def run(markdown: str, folder: Path, env: Dict[str, str], timeout: float = 600) -> str:
    """Runs every step from `folder`; returns what the steps printed. Fails on the first step
    that exits non-zero, with its output."""
    cwd = folder
    cwd_file = folder / ".doc-steps-cwd"
    printed = []
    for step in steps(markdown):
        if step.kind == "file":
            (cwd / step.name).write_text(step.text)
            continue
        if step.kind == "setup":
            continue
        if step.kind == "run":
            argv = ["bash", "-c", f"set -euo pipefail\n{step.text}\npwd > '{cwd_file}'"]
        else:
            argv = [sys.executable, "-c", step.text]
        proc = subprocess.run(argv, cwd=cwd, env={**os.environ, **env}, timeout=timeout,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        printed.append(proc.stdout)
        assert proc.returncode == 0, (
            f"this {step.kind} step failed (exit {proc.returncode}) in {cwd}:\n{step.text}\n"
            f"--- its output:\n{proc.stdout}")
        if step.kind == "run":
            cwd = Path(cwd_file.read_text().strip())
    return "".join(printed)
