"""Manifests: the JSON description of a function (docs/manifest.md in the kchain repo).

The gateway validates manifests itself; this module reads them far enough to deploy them
(which library and constants files they name) and to shape inputs and outputs as numpy arrays.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import numpy as np

from .errors import InvalidArgumentError

__all__ = ["Manifest", "TensorType", "load_manifest", "numpy_dtype"]

_DTYPES: Dict[str, np.dtype] = {
    "float32": np.dtype("<f4"),
    "float64": np.dtype("<f8"),
    "int8": np.dtype("i1"),
    "int16": np.dtype("<i2"),
    "int32": np.dtype("<i4"),
    "int64": np.dtype("<i8"),
    "uint8": np.dtype("u1"),
    "uint16": np.dtype("<u2"),
    "uint32": np.dtype("<u4"),
    "uint64": np.dtype("<u8"),
    "bool": np.dtype("?"),
}

ManifestSource = Union[str, os.PathLike, Mapping[str, Any], bytes]


def numpy_dtype(name: str) -> np.dtype:
    """The numpy dtype of a manifest element type ("float32", "int64", ...)."""
    try:
        return _DTYPES[name]
    except KeyError:
        raise InvalidArgumentError(f"unknown element type {name!r}") from None


@dataclass(frozen=True)
class TensorType:
    """An input's or output's element type and shape (shape None: a flat vector)."""

    dtype: np.dtype
    shape: Optional[Tuple[int, ...]]
    nbytes: int

    def shape_for(self, nbytes: int) -> Tuple[int, ...]:
        """The array shape for ``nbytes`` bytes of this type."""
        return self.shape if self.shape is not None else (nbytes // self.dtype.itemsize,)


@dataclass(frozen=True)
class Manifest:
    """A parsed manifest and the folder its relative paths are relative to."""

    data: Dict[str, Any]
    base_dir: Optional[Path] = None

    @property
    def name(self) -> Optional[str]:
        return self.data.get("name")

    @property
    def chain(self) -> List[Tuple[str, int, int]]:
        return [(s["kernel"], int(s["grid"]), int(s["block"])) for s in self.data["chain"]]

    def _tensor(self, key: str, size_key: str) -> TensorType:
        spec = self.data.get(key)
        if not isinstance(spec, Mapping) or "dtype" not in spec:
            raise InvalidArgumentError(f"manifest: {key} must be an object with a dtype")
        dtype = numpy_dtype(spec["dtype"])
        shape = tuple(int(d) for d in spec["shape"]) if spec.get("shape") else None
        if size_key in self.data:
            nbytes = int(self.data[size_key])
        elif shape is not None:
            nbytes = int(np.prod(shape)) * dtype.itemsize
        else:
            raise InvalidArgumentError(f"manifest: {size_key} is required when {key}.shape is not given")
        return TensorType(dtype, shape, nbytes)

    @property
    def input(self) -> TensorType:
        return self._tensor("input", "max_input_bytes")

    @property
    def output(self) -> TensorType:
        return self._tensor("output", "out_bytes")

    def library_path(self, target: str) -> Path:
        """The library file for a target ("cuda" or "host"), resolved against the manifest's folder."""
        libraries = self.data.get("library") or {}
        if target not in libraries:
            have = ", ".join(sorted(libraries)) or "none"
            raise InvalidArgumentError(
                f"the manifest names no {target!r} library (it has: {have}); pass library=...")
        return self._resolve(libraries[target])

    def constants_path(self) -> Optional[Path]:
        """The constants file, resolved against the manifest's folder (None if there is none)."""
        path = self.data.get("constants")
        return self._resolve(path) if path else None

    def _resolve(self, path: str) -> Path:
        p = Path(path)
        return p if p.is_absolute() or self.base_dir is None else self.base_dir / p

    def spec(self) -> Dict[str, Any]:
        """The function spec as the native module takes it."""
        inp, out = self.input, self.output
        return {
            "chain": self.chain,
            "max_input_bytes": inp.nbytes,
            "tmp_bytes": int(self.data.get("tmp_bytes", 0)),
            "out_bytes": out.nbytes,
            "constant_bytes": int(self.data.get("constant_bytes", 0)),
            "input_dtype": self.data["input"]["dtype"],
            "input_shape": list(inp.shape or ()),
            "output_dtype": self.data["output"]["dtype"],
            "output_shape": list(out.shape or ()),
        }


def load_manifest(source: Union[ManifestSource, Manifest]) -> Manifest:
    """Reads a manifest from a file path, a dict, or JSON text/bytes."""
    if isinstance(source, Manifest):
        return source
    if isinstance(source, Mapping):
        return Manifest(dict(source))
    if isinstance(source, bytes) or (isinstance(source, str) and source.lstrip().startswith("{")):
        try:
            return Manifest(json.loads(source))
        except json.JSONDecodeError as e:
            raise InvalidArgumentError(f"manifest: not valid JSON: {e}") from None
    path = Path(source)
    try:
        text = path.read_text()
    except OSError as e:
        raise InvalidArgumentError(f"cannot read the manifest {str(path)!r}: {e.strerror}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise InvalidArgumentError(f"{path}: not valid JSON: {e}") from None
    if not isinstance(data, dict) or "chain" not in data:
        raise InvalidArgumentError(f"{path}: not a kchain manifest (no chain)")
    return Manifest(data, path.resolve().parent)
