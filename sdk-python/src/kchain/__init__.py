"""kchain: Python SDK for the kchain serverless runtime for GPU kernel chains.

- :class:`Client` / :class:`AsyncClient`: deploy, invoke, describe functions on a gateway;
- :mod:`kchain.local`: run a chain in this process, no server;
- :mod:`kchain.errors`: one exception class per error code;
- the ``kchain`` command line (``kchain --help``).

Quick start::

    import numpy as np
    import kchain

    with kchain.Client("http://127.0.0.1:8080") as client:
        client.deploy(manifest="build/samples/mnist_cnn/manifest.json")
        result = client.invoke("mnist_cnn", np.zeros((28, 28), np.float32))
        print(result.output.argmax(), result.start, result.timings.total_us)
"""

from __future__ import annotations

from . import errors
from .client import DEFAULT_URL, AsyncClient, Client, InvokeResult, Timings
from .errors import (
    AlreadyExistsError,
    ApiError,
    DeadlineExceededError,
    FailedPreconditionError,
    InsufficientStorageError,
    InternalError,
    InvalidArgumentError,
    KchainError,
    KernelError,
    LengthRequiredError,
    MethodNotAllowedError,
    NotFoundError,
    PayloadTooLargeError,
    ResourceExhaustedError,
    TransportError,
    UnauthenticatedError,
    UnavailableError,
    UnimplementedError,
    error_from_code,
)
from .manifest import Manifest, load_manifest

__version__ = "0.1.0"

__all__ = [
    "Client",
    "AsyncClient",
    "InvokeResult",
    "Timings",
    "Manifest",
    "load_manifest",
    "DEFAULT_URL",
]
__all__ += errors.__all__  # one exception class per error code, and error_from_code
