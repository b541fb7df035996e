"""HTTP clients for the kchain gateway: :class:`Client` and :class:`AsyncClient`.

Both keep connections alive (and set TCP_NODELAY, so that a small invocation is not held back
by Nagle's algorithm), send invocations on the binary fast path, and return numpy arrays shaped
and typed by the function's manifest. Failures raise the classes in :mod:`kchain.errors`.
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import (Any, AsyncIterator, Dict, Generator, Iterator, List, Mapping,
                    Optional, Tuple, TypeVar, Union)

import httpx
import numpy as np

from .errors import ApiError, InvalidArgumentError, KchainError, TransportError, error_from_code
from .manifest import Manifest, ManifestSource, TensorType, load_manifest

__all__ = ["Client", "AsyncClient", "InvokeResult", "Timings", "DEFAULT_URL"]

DEFAULT_URL = "http://127.0.0.1:8080"
# Larger deploys upload their files first, with a progress bar, then deploy by reference.
_UPLOAD_THRESHOLD = 8 << 20
_CHUNK = 1 << 20

BytesSource = Union[str, os.PathLike, bytes, bytearray, memoryview, np.ndarray]
ArrayLike = Union[np.ndarray, bytes, bytearray, memoryview, List[Any]]


@dataclass(frozen=True)
class Timings:
    """Where an invocation's time went, in microseconds.

    ``total_us`` is the server's own measure (request parsed to response ready); ``client_us``
    the round trip as this client saw it. The stage figures (``input_copy_us``, ``chain_us``,
    ``output_copy_us``) are present on the runs the server timed (sampled on hot runs, always
    on cold and warm ones); ``start_us`` only on cold and warm starts.
    """

    total_us: float
    queue_us: float
    run_us: float
    client_us: float
    start_us: Optional[float] = None
    start_breakdown: Optional[Dict[str, float]] = None  # acquire, library, create, constants
    input_copy_us: Optional[float] = None
    chain_us: Optional[float] = None
    output_copy_us: Optional[float] = None

    @classmethod
    def from_server_timing(cls, header: str, client_us: float) -> "Timings":
        """From a Server-Timing header ("queue;dur=0.002, run;dur=0.030, ..." in ms)."""
        values: Dict[str, float] = {}
        for entry in header.split(","):
            name, _, rest = entry.strip().partition(";")
            if rest.startswith("dur="):
                try:
                    values[name] = float(rest[4:]) * 1000.0
                except ValueError:
                    pass
        breakdown = {k: values[k] for k in ("acquire", "library", "create", "constants")
                     if k in values}
        return cls(total_us=values.get("total", 0.0), queue_us=values.get("queue", 0.0),
                   run_us=values.get("run", 0.0), client_us=client_us,
                   start_us=values.get("start"), start_breakdown=breakdown or None,
                   input_copy_us=values.get("input_copy"),
                   chain_us=values.get("chain"), output_copy_us=values.get("output_copy"))

    @classmethod
    def from_json(cls, t: Mapping[str, Any], client_us: float) -> "Timings":
        start = t.get("start")
        return cls(total_us=t.get("total", 0.0), queue_us=t.get("queue", 0.0),
                   run_us=t.get("run", 0.0), client_us=client_us,
                   start_us=sum(start.values()) if start else None,
                   start_breakdown=dict(start) if start else None,
                   input_copy_us=t.get("input_copy"), chain_us=t.get("chain"),
                   output_copy_us=t.get("output_copy"))


@dataclass(frozen=True)
class InvokeResult:
    """The output of one invocation and how it ran.

    ``output`` is a numpy array shaped and typed by the function's manifest (read-only: it
    shares the response's memory; ``.copy()`` it to modify), or ``bytes`` when ``raw=True``.
    ``start`` is "cold", "warm" or "hot" (see the kchain design: cold = no instance existed,
    warm = a parked instance was woken, hot = a resident one ran at once).
    """

    output: Union[np.ndarray, bytes]
    start: str
    version: int
    exec_mode: str
    timings: Timings


@dataclass(frozen=True)
class _Types:
    version: int
    input: TensorType
    output: TensorType


def _error_from(response: httpx.Response) -> ApiError:
    try:
        error = response.json()["error"]
        return error_from_code(error["code"], error["message"], response.status_code)
    except Exception:  # not one of ours: a proxy, a crash page
        return error_from_code("unknown", f"HTTP {response.status_code}: {response.text[:300]}",
                               response.status_code)


def _check(response: httpx.Response) -> httpx.Response:
    if response.status_code >= 400:
        raise _error_from(response)
    return response


def _read_bytes(source: Optional[BytesSource], what: str) -> bytes:
    if source is None:
        return b""
    if isinstance(source, np.ndarray):
        return np.ascontiguousarray(source).tobytes()
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source)
    try:
        return Path(source).read_bytes()
    except OSError as e:
        raise InvalidArgumentError(f"cannot read the {what} {str(source)!r}: {e.strerror}") from None


def _types_from_info(info: Mapping[str, Any]) -> _Types:
    manifest = Manifest(info["manifest"])
    return _Types(int(info["version"]), manifest.input, manifest.output)


def _input_body(data: ArrayLike, types: Optional[_Types]) -> bytes:
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    if types is None:  # the function's types are unknown (it failed to load): as given
        return np.ascontiguousarray(data).tobytes()
    array = np.asarray(data)
    if array.dtype != types.input.dtype:
        if not np.can_cast(array.dtype, types.input.dtype, casting="same_kind"):
            raise InvalidArgumentError(
                f"input of dtype {array.dtype} cannot become the function's {types.input.dtype}")
        array = array.astype(types.input.dtype)
    return np.ascontiguousarray(array).tobytes()


def _json_input(data: ArrayLike, types: Optional[_Types]) -> Dict[str, Any]:
    if isinstance(data, (bytes, bytearray, memoryview)):
        import base64
        return {"input_base64": base64.b64encode(bytes(data)).decode("ascii")}
    return {"input": np.asarray(data).tolist()}


def _binary_result(response: httpx.Response, types: Optional[_Types], raw: bool,
                   client_us: float) -> InvokeResult:
    body = response.content
    output: Union[np.ndarray, bytes] = body
    if not raw and types is not None:
        output = np.frombuffer(body, dtype=types.output.dtype).reshape(
            types.output.shape_for(len(body)))
    return InvokeResult(output=output,
                        start=response.headers.get("X-Kchain-Start", ""),
                        version=int(response.headers.get("X-Kchain-Version", "0")),
                        exec_mode=response.headers.get("X-Kchain-Exec-Mode", ""),
                        timings=Timings.from_server_timing(
                            response.headers.get("Server-Timing", ""), client_us))


def _json_result(response: httpx.Response, types: Optional[_Types],
                 client_us: float) -> InvokeResult:
    body = response.json()
    if types is None:
        output = np.asarray(body["output"])
    else:
        output = np.asarray(body["output"], dtype=types.output.dtype).reshape(
            types.output.shape_for(len(body["output"]) * types.output.dtype.itemsize))
    return InvokeResult(output=output, start=body["start"], version=int(body["version"]),
                        exec_mode=body.get("exec_mode", ""),
                        timings=Timings.from_json(body["timings_us"], client_us))


def _progress_chunks(data: bytes, label: str, show: bool) -> Iterator[bytes]:
    from tqdm import tqdm

    with tqdm(total=len(data), unit="B", unit_scale=True, unit_divisor=1024, desc=label,
              disable=not show, leave=False) as bar:
        for at in range(0, len(data), _CHUNK):
            chunk = data[at:at + _CHUNK]
            bar.update(len(chunk))
            yield chunk


async def _async_chunks(chunks: Iterator[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


def _socket_options() -> List[Tuple[int, int, int]]:
    return [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]


def _manifest_json(m: Manifest) -> str:
    return json.dumps(m.data)


@dataclass
class _Call:
    """One HTTP request an operation needs: what a client sends, sync or async."""

    method: str
    path: str
    kw: Dict[str, Any] = field(default_factory=dict)


T = TypeVar("T")
# An operation, written once for both clients (sans-IO): a generator that yields the requests
# it needs, is sent each response (already checked: errors are raised by the client), and
# returns its result. Client and AsyncClient differ only in how they send a _Call.
_Op = Generator[_Call, httpx.Response, T]


class _Base:
    def __init__(self, url: Optional[str], api_key: Optional[str], tenant: Optional[str]) -> None:
        self.url = (url or os.environ.get("KCHAIN_URL") or DEFAULT_URL).rstrip("/")
        key = api_key if api_key is not None else os.environ.get("KCHAIN_API_KEY")
        self._headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._params = {"tenant": tenant} if tenant else {}
        self._types: Dict[str, _Types] = {}
        self._info: Optional[Dict[str, Any]] = None

    @staticmethod
    def _fn(name: str, suffix: str = "") -> str:
        return f"/v1/functions/{name}{suffix}"

    def _request_kw(self, call: _Call) -> Dict[str, Any]:
        kw = dict(call.kw)
        kw.setdefault("params", self._params)
        return kw

    # The operations.

    def _server_info(self) -> _Op[Dict[str, Any]]:
        self._info = (yield _Call("GET", "/v1", {"params": {}})).json()
        return self._info

    def _server_get(self, path: str) -> _Op[httpx.Response]:
        return (yield _Call("GET", path, {"params": {}}))

    def _deploy(self, name: Optional[str], manifest: Union[ManifestSource, Manifest],
                library: Optional[BytesSource], constants: Optional[BytesSource],
                progress: Optional[bool]) -> _Op[Dict[str, Any]]:
        target = None
        if library is None:
            target = (self._info or (yield from self._server_info()))["device"]["kind"]
        m, lib, const = self._deploy_parts(manifest, library, constants, target)
        name = name or m.name
        if not name:
            raise InvalidArgumentError("the manifest has no name: pass name=...")
        total = len(lib) + len(const)
        show = progress if progress is not None else (total > _UPLOAD_THRESHOLD and os.isatty(2))
        if total > _UPLOAD_THRESHOLD or progress:
            body: Dict[str, Any] = {"manifest": m.data,
                                    "library": (yield from self._upload(lib, "library", show))}
            if const:
                body["constants"] = yield from self._upload(const, "constants", show)
            response = yield _Call("PUT", self._fn(name), {"json": body})
        else:
            files = {"manifest": ("manifest.json", _manifest_json(m), "application/json"),
                     "library": ("kernel.so", lib, "application/octet-stream")}
            if const:
                files["constants"] = ("constants.bin", const, "application/octet-stream")
            response = yield _Call("PUT", self._fn(name), {"files": files})
        info = response.json()
        self._types[name] = _types_from_info(info)
        return info

    def _upload(self, data: BytesSource, label: str, progress: bool) -> _Op[str]:
        payload = _read_bytes(data, label)
        response = yield _Call("POST", "/v1/uploads", {
            "content": _progress_chunks(payload, label, progress),
            "headers": {"Content-Type": "application/octet-stream",
                        "Content-Length": str(len(payload))}})
        return response.json()["upload_id"]

    def _functions(self) -> _Op[List[Dict[str, Any]]]:
        return (yield _Call("GET", "/v1/functions")).json()["functions"]

    def _describe(self, name: str) -> _Op[Dict[str, Any]]:
        info = (yield _Call("GET", self._fn(name))).json()
        if "manifest" in info:
            self._types[name] = _types_from_info(info)
        return info

    def _delete(self, name: str) -> _Op[None]:
        yield _Call("DELETE", self._fn(name))
        self._types.pop(name, None)

    def _park(self, name: str) -> _Op[int]:
        return int((yield _Call("POST", self._fn(name, "/park"))).json()["parked"])

    def _types_of(self, name: str, fresh: bool = False) -> _Op[Optional[_Types]]:
        """The function's input and output types; None when the server cannot tell (a stored
        function that failed to load): the invocation then goes out as given and the server's
        answer (an error) is raised."""
        if fresh:
            self._types.pop(name, None)
        if name not in self._types:
            yield from self._describe(name)
        return self._types.get(name)

    def _invoke(self, name: str, data: ArrayLike, raw: bool) -> _Op[InvokeResult]:
        types = yield from self._types_of(name)
        body = _input_body(data, types)
        start = time.perf_counter()
        response = yield _Call("POST", self._fn(name, "/invoke"), {
            "content": body, "headers": {"Content-Type": "application/octet-stream"}})
        client_us = (time.perf_counter() - start) * 1e6
        if types is None or int(response.headers.get("X-Kchain-Version", 0)) != types.version:
            types = yield from self._types_of(name, fresh=True)
        return _binary_result(response, types, raw or types is None, client_us)

    def _invoke_json(self, name: str, data: ArrayLike) -> _Op[InvokeResult]:
        types = yield from self._types_of(name)
        start = time.perf_counter()
        response = yield _Call("POST", self._fn(name, "/invoke"),
                               {"json": _json_input(data, types)})
        client_us = (time.perf_counter() - start) * 1e6
        if types is None or int(response.json().get("version", 0)) != types.version:
            types = yield from self._types_of(name, fresh=True)
        return _json_result(response, types, client_us)

    def _deploy_parts(self, manifest: Union[ManifestSource, Manifest],
                      library: Optional[BytesSource], constants: Optional[BytesSource],
                      target: Optional[str]) -> Tuple[Manifest, bytes, bytes]:
        m = load_manifest(manifest)
        if library is None:
            if target is None:
                raise InvalidArgumentError("pass library=... (the server's target is unknown)")
            library = m.library_path(target)
        declared = int(m.parsed["constant_bytes"])
        if constants is None:
            constants = m.constants_path()
            if constants is None and declared > 0:
                raise InvalidArgumentError(
                    f"the manifest declares constant_bytes = {declared} but names no constants "
                    "file: add \"constants\": \"FILE\" to it, or pass constants=... "
                    "(--constants FILE on the command line)")
        const = _read_bytes(constants, "constants")
        if len(const) != declared:
            where = f" ({constants})" if isinstance(constants, (str, Path)) else ""
            raise InvalidArgumentError(
                f"the constants{where} are {len(const)} bytes but the manifest declares "
                f"constant_bytes = {declared}")
        return m, _read_bytes(library, "library"), const


class Client(_Base):
    """A client of a kchain gateway.

    ``url`` defaults to ``$KCHAIN_URL`` or http://127.0.0.1:8080, ``api_key`` to
    ``$KCHAIN_API_KEY``. ``tenant`` (admins only) acts on another tenant's functions. The
    client keeps its connections; close it (or use it as a context manager) when done.
    Thread-safe (httpx's client is).
    """

    def __init__(self, url: Optional[str] = None, api_key: Optional[str] = None,
                 timeout: float = 60.0, *, tenant: Optional[str] = None) -> None:
        super().__init__(url, api_key, tenant)
        self._http = httpx.Client(
            base_url=self.url, timeout=timeout, headers=self._headers,
            transport=httpx.HTTPTransport(socket_options=_socket_options()))

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _send(self, call: _Call) -> httpx.Response:
        try:
            return _check(self._http.request(call.method, call.path, **self._request_kw(call)))
        except httpx.TransportError as e:
            raise TransportError(f"cannot reach {self.url}: {e}") from e

    def _request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        """One checked request, for what no method covers."""
        return self._send(_Call(method, path, kw))

    def _run(self, op: _Op[T]) -> T:
        try:
            call = next(op)
            while True:
                call = op.send(self._send(call))
        except StopIteration as done:
            return done.value

    # Server.

    def server_info(self) -> Dict[str, Any]:
        """GET /v1: version, device, isolation, who the caller is."""
        return self._run(self._server_info())

    def health(self) -> Dict[str, Any]:
        """GET /healthz: raises if the server does not answer."""
        return self._run(self._server_get("/healthz")).json()

    def ready(self) -> Dict[str, Any]:
        """GET /readyz: raises :class:`~kchain.errors.UnavailableError` when not ready."""
        return self._run(self._server_get("/readyz")).json()

    def metrics(self) -> str:
        """GET /metrics: the Prometheus text (needs an admin key when keys are configured)."""
        return self._run(self._server_get("/metrics")).text

    # Functions.

    def deploy(self, name: Optional[str] = None, *, manifest: Union[ManifestSource, Manifest],
               library: Optional[BytesSource] = None, constants: Optional[BytesSource] = None,
               progress: Optional[bool] = None) -> Dict[str, Any]:
        """Deploys (or replaces) a function and returns its description.

        ``manifest`` is a manifest file, a dict or JSON text. ``library`` and ``constants`` are
        paths, bytes or (constants) a numpy array; when left out, the files the manifest names
        are used, the library chosen for the server's device. ``name`` defaults to the
        manifest's. Deploys larger than 8 MiB upload their files first, with a progress bar on
        a terminal (``progress=True`` forces it, ``False`` hides it).
        """
        return self._run(self._deploy(name, manifest, library, constants, progress))

    def upload(self, data: BytesSource, label: str = "upload", progress: bool = False) -> str:
        """POST /v1/uploads: stores bytes for a later deploy; returns the upload id."""
        return self._run(self._upload(data, label, progress))

    def functions(self) -> List[Dict[str, Any]]:
        """GET /v1/functions: the caller's functions (every tenant's, for an admin)."""
        return self._run(self._functions())

    def describe(self, name: str) -> Dict[str, Any]:
        """GET /v1/functions/{name}: versions, manifest, instances, start counters."""
        return self._run(self._describe(name))

    def delete(self, name: str) -> None:
        """DELETE /v1/functions/{name}."""
        self._run(self._delete(name))

    def park(self, name: str) -> int:
        """Parks the function's idle instances (its next start is warm); returns how many."""
        return self._run(self._park(name))

    def invoke(self, name: str, data: ArrayLike, *, raw: bool = False) -> InvokeResult:
        """Runs the function on ``data`` over the binary fast path.

        ``data`` is a numpy array (converted to the function's input type when that is a safe
        cast), a list, or raw bytes. The output comes back as a numpy array shaped and typed by
        the manifest, or as bytes with ``raw=True``.
        """
        return self._run(self._invoke(name, data, raw))

    def invoke_json(self, name: str, data: ArrayLike) -> InvokeResult:
        """Runs the function over the JSON path (``{"input": [...]}``; bytes go as base64)."""
        return self._run(self._invoke_json(name, data))


class AsyncClient(_Base):
    """The asyncio twin of :class:`Client`: the same methods, awaited, built from the same
    operations (``aclose`` for ``close``)."""

    def __init__(self, url: Optional[str] = None, api_key: Optional[str] = None,
                 timeout: float = 60.0, *, tenant: Optional[str] = None) -> None:
        super().__init__(url, api_key, tenant)
        self._http = httpx.AsyncClient(
            base_url=self.url, timeout=timeout, headers=self._headers,
            transport=httpx.AsyncHTTPTransport(socket_options=_socket_options()))

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _send(self, call: _Call) -> httpx.Response:
        kw = self._request_kw(call)
        content = kw.get("content")
        if content is not None and not isinstance(content, (bytes, bytearray, memoryview, str)):
            kw["content"] = _async_chunks(content)  # httpx's async client streams async iterables
        try:
            return _check(await self._http.request(call.method, call.path, **kw))
        except httpx.TransportError as e:
            raise TransportError(f"cannot reach {self.url}: {e}") from e

    async def _request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        """One checked request, for what no method covers."""
        return await self._send(_Call(method, path, kw))

    async def _run(self, op: _Op[T]) -> T:
        try:
            call = next(op)
            while True:
                call = op.send(await self._send(call))
        except StopIteration as done:
            return done.value

    async def server_info(self) -> Dict[str, Any]:
        return await self._run(self._server_info())

    async def health(self) -> Dict[str, Any]:
        return (await self._run(self._server_get("/healthz"))).json()

    async def ready(self) -> Dict[str, Any]:
        return (await self._run(self._server_get("/readyz"))).json()

    async def metrics(self) -> str:
        return (await self._run(self._server_get("/metrics"))).text

    async def deploy(self, name: Optional[str] = None, *,
                     manifest: Union[ManifestSource, Manifest],
                     library: Optional[BytesSource] = None,
                     constants: Optional[BytesSource] = None,
                     progress: Optional[bool] = None) -> Dict[str, Any]:
        return await self._run(self._deploy(name, manifest, library, constants, progress))

    async def upload(self, data: BytesSource, label: str = "upload",
                     progress: bool = False) -> str:
        return await self._run(self._upload(data, label, progress))

    async def functions(self) -> List[Dict[str, Any]]:
        return await self._run(self._functions())

    async def describe(self, name: str) -> Dict[str, Any]:
        return await self._run(self._describe(name))

    async def delete(self, name: str) -> None:
        await self._run(self._delete(name))

    async def park(self, name: str) -> int:
        return await self._run(self._park(name))

    async def invoke(self, name: str, data: ArrayLike, *, raw: bool = False) -> InvokeResult:
        return await self._run(self._invoke(name, data, raw))

    async def invoke_json(self, name: str, data: ArrayLike) -> InvokeResult:
        return await self._run(self._invoke_json(name, data))
