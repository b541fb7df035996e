"""Manifests: the JSON description of a function (docs/manifest.md in the kchain repo).

A manifest is parsed and checked by the gateway's own parser (``kchain::ParseManifest``,
through the native module), so the SDK refuses exactly the manifests a deploy refuses, with
the same message. This module adds what Python needs on top: which library and constants
files a manifest names, resolved against its folder, and numpy shapes for inputs and outputs.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import numpy as np

from . import _core
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
    """A manifest, checked, and the folder its relative paths are relative to.

    ``data`` is the manifest as given (what a deploy sends); constructing a Manifest checks it
    with the gateway's parser and raises InvalidArgumentError for one a deploy would refuse.
    """

    data: Dict[str, Any]
    base_dir: Optional[Path] = None
    parsed: Dict[str, Any] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            text = json.dumps(self.data, allow_nan=False)
        except (TypeError, ValueError) as e:
            raise InvalidArgumentError(f"manifest: cannot be written as JSON: {e}") from None
        object.__setattr__(self, "parsed", _core.parse_manifest(text))

    @property
    def name(self) -> Optional[str]:
        return self.parsed["name"] or None

    @property
    def chain(self) -> List[Tuple[str, int, int]]:
        return [tuple(stage) for stage in self.parsed["chain"]]

    def _tensor(self, key: str, size_key: str) -> TensorType:
        spec = self.parsed[key]
        shape = tuple(spec["shape"]) if spec["shape"] else None
        return TensorType(numpy_dtype(spec["dtype"]), shape, int(self.parsed[size_key]))

    @property
    def input(self) -> TensorType:
        return self._tensor("input", "max_input_bytes")

    @property
    def output(self) -> TensorType:
        return self._tensor("output", "out_bytes")

    def library_path(self, target: str) -> Path:
        """The library file for a target ("cuda" or "host"), resolved against the manifest's folder."""
        libraries = self.parsed["library"]
        if target not in libraries:
            have = ", ".join(sorted(libraries)) or "none"
            raise InvalidArgumentError(
                f"the manifest names no {target!r} library (it has: {have}); pass library=...")
        return self._resolve(libraries[target])

    def constants_path(self) -> Optional[Path]:
        """The constants file, resolved against the manifest's folder (None if there is none)."""
        path = self.parsed["constants"]
        return self._resolve(path) if path else None

    def _resolve(self, path: str) -> Path:
        p = Path(path)
        return p if p.is_absolute() or self.base_dir is None else self.base_dir / p


def load_manifest(source: Union[ManifestSource, Manifest]) -> Manifest:
    """Reads a manifest from a file path, a dict, or JSON text/bytes, and checks it."""
    if isinstance(source, Manifest):
        return source
    if isinstance(source, Mapping):
        return Manifest(dict(source))
    if isinstance(source, bytes) or (isinstance(source, str) and source.lstrip().startswith("{")):
        return Manifest(_json_object(source, "manifest"))
    path = Path(source)
    try:
        text = path.read_bytes()
    except OSError as e:
        raise InvalidArgumentError(f"cannot read the manifest {str(path)!r}: {e.strerror}") from None
    return Manifest(_json_object(text, str(path)), path.resolve().parent)


def _json_object(text: Union[str, bytes], what: str) -> Dict[str, Any]:
    # The text itself is checked first (duplicate keys, depth, size), as a deploy checks it;
    # json.loads would keep the last of two equal keys without a word.
    try:
        _core.parse_manifest(text)
    except InvalidArgumentError as e:
        raise InvalidArgumentError(e.message if what == "manifest" else f"{what}: {e.message}") from None
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InvalidArgumentError(f"{what}: not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise InvalidArgumentError(f"{what}: a manifest is a JSON object")
    return data
