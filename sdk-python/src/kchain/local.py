"""Local runs: the kchain runtime inside this Python process, no server.

This is how an author tests a chain before deploying it (PyPlover's "local" column)::

    import numpy as np
    import kchain.local

    cnn = kchain.local.load("build/samples/mnist_cnn/manifest.json")   # device="auto"
    scores = cnn(np.zeros((28, 28), np.float32))       # a (10,) float32 array
    result = cnn.run(image)                            # output and timing breakdown

Inputs and outputs cross as buffers: the input is copied once into the instance's staging
buffer and the output once into the returned array, with the GIL released meanwhile.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Union

import numpy as np

from . import _core
from .errors import InvalidArgumentError
from .manifest import Manifest, ManifestSource, load_manifest

__all__ = ["LocalFunction", "LocalResult", "load", "device_info"]


@dataclass(frozen=True)
class LocalResult:
    """One local run's output and timing breakdown (microseconds)."""

    output: np.ndarray
    mode: str  # "direct" or "graph" (CUDA graph replay)
    total_us: float
    input_copy_us: Optional[float]
    chain_us: Optional[float]
    output_copy_us: Optional[float]


def device_info(device: str = "auto", ordinal: int = 0) -> Dict[str, Any]:
    """Opens (once per process) and describes a device: "auto", "cuda" or "host"."""
    return _core.device_info(device, ordinal)


class LocalFunction:
    """A function loaded in this process: library, spec, constants, one instance.

    ``manifest`` is a manifest file, dict or JSON text; ``library`` and ``constants`` default
    to the files the manifest names (the library for the device's target). Thread-safe:
    concurrent calls are serialized on the one instance.
    """

    def __init__(self, manifest: Union[ManifestSource, Manifest], *,
                 library: Optional[Union[str, os.PathLike]] = None,
                 constants: Optional[Union[str, os.PathLike, bytes, np.ndarray]] = None,
                 device: str = "auto", ordinal: int = 0, stage_timing_period: int = 1,
                 graph: bool = True) -> None:
        self.manifest = load_manifest(manifest)
        info = device_info(device, ordinal)
        if library is None:
            library = self.manifest.library_path(info["kind"])
        if constants is None:
            constants = self.manifest.constants_path()
        blob = _constants_bytes(constants)
        self._input = self.manifest.input
        self._output = self.manifest.output
        self._native = _core.LocalFunction(info["kind"], ordinal, str(library),
                                           json.dumps(self.manifest.data), blob, stage_timing_period,
                                           graph)

    def run(self, data: Union[np.ndarray, bytes], out: Optional[np.ndarray] = None) -> LocalResult:
        """Runs the chain on ``data``; the output goes into ``out`` when given (it must be a
        writable C-contiguous array of the output's size), else into a new array."""
        if isinstance(data, (bytes, bytearray, memoryview)):
            array = np.frombuffer(data, dtype=np.uint8)
        else:
            array = np.ascontiguousarray(data, dtype=self._input.dtype)
        if out is None:
            out = np.empty(self._output.shape_for(self._output.nbytes), dtype=self._output.dtype)
        elif not out.flags.c_contiguous or not out.flags.writeable or out.nbytes < self._output.nbytes:
            raise InvalidArgumentError(
                f"out must be a writable C-contiguous array of at least {self._output.nbytes} bytes")
        t = self._native.run(array, out)
        timed = t["stages_timed"]
        return LocalResult(output=out, mode=t["mode"], total_us=t["total_us"],
                           input_copy_us=t["input_copy_us"] if timed else None,
                           chain_us=t["chain_us"] if timed else None,
                           output_copy_us=t["output_copy_us"] if timed else None)

    def __call__(self, data: Union[np.ndarray, bytes]) -> np.ndarray:
        """Runs the chain and returns the output array."""
        return self.run(data).output

    def park(self) -> None:
        """Frees the device buffers, keeping the constants in pinned host memory."""
        self._native.park()

    def wake(self) -> None:
        """Re-allocates the device buffers and re-uploads the constants."""
        self._native.wake()

    def info(self) -> Dict[str, Any]:
        """Device, state, execution mode, load and upload timings, run counters."""
        return self._native.info()


def load(manifest: Union[ManifestSource, Manifest], **kwargs: Any) -> LocalFunction:
    """Loads a function for local runs (see :class:`LocalFunction`)."""
    return LocalFunction(manifest, **kwargs)


def _constants_bytes(constants: Any) -> bytes:
    if constants is None:
        return b""
    if isinstance(constants, np.ndarray):
        return np.ascontiguousarray(constants).tobytes()
    if isinstance(constants, (bytes, bytearray, memoryview)):
        return bytes(constants)
    try:
        return Path(constants).read_bytes()
    except OSError as e:
        raise InvalidArgumentError(f"cannot read the constants {str(constants)!r}: {e.strerror}") from None
