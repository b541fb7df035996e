"""The ``kchain`` command line.

::

    kchain deploy MANIFEST [--name NAME] [--library PATH] [--constants PATH]
    kchain invoke NAME --input FILE.npy|- [--json] [--output FILE.npy]
    kchain ls
    kchain describe NAME
    kchain rm NAME
    kchain bench NAME [--input FILE.npy] [-n 1000]
    kchain serve [--port 8080] [--data-dir DIR] [--device auto] [--gateway PATH] [-- FLAGS...]

``--url`` (or ``$KCHAIN_URL``) names the gateway, ``--api-key`` (or ``$KCHAIN_API_KEY``) the key.

Exit status: 0 success; 1 the gateway refused or failed the request (its error code and message
are printed); 2 bad usage or bad local input; 3 the gateway could not be reached.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from .client import Client, InvokeResult
from .errors import ApiError, InvalidArgumentError, KchainError, TransportError
from .manifest import load_manifest

EXIT_OK, EXIT_API, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3


def _client(args: argparse.Namespace) -> Client:
    return Client(args.url, args.api_key, timeout=args.timeout)


def _read_input(path: str) -> np.ndarray:
    """A .npy file, or one on standard input ("-")."""
    try:
        if path == "-":
            return np.load(io.BytesIO(sys.stdin.buffer.read()), allow_pickle=False)
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise InvalidArgumentError(f"cannot read the input {path!r} as a .npy array: {e}") from None


def _print_result(result: InvokeResult, as_json: bool) -> None:
    t = result.timings
    if as_json:
        print(json.dumps({"output": np.asarray(result.output).tolist(), "start": result.start,
                          "version": result.version, "exec_mode": result.exec_mode,
                          "timings_us": {k: v for k, v in t.__dict__.items() if v is not None}}))
        return
    with np.printoptions(precision=6, threshold=20, edgeitems=5):
        print(np.asarray(result.output))
    parts = [f"start {result.start}", f"version {result.version}", f"{result.exec_mode}",
             f"client {t.client_us:.1f} us", f"server {t.total_us:.1f} us",
             f"queue {t.queue_us:.1f}", f"run {t.run_us:.1f}"]
    if t.start_us is not None:
        parts.append(f"start-up {t.start_us:.1f}")
    if t.chain_us is not None:
        parts.append(f"chain {t.chain_us:.1f}")
    print("  " + ", ".join(parts), file=sys.stderr)


def cmd_deploy(args: argparse.Namespace) -> int:
    with _client(args) as client:
        info = client.deploy(args.name, manifest=args.manifest, library=args.library,
                             constants=args.constants,
                             progress=None if not args.quiet else False)
    print(f"deployed {info['name']} version {info['version']} "
          f"(instance: {info['instance_device_bytes']} bytes of device memory; "
          f"library loaded in {info['load_us']['library']:.0f} us)")
    return EXIT_OK


def cmd_invoke(args: argparse.Namespace) -> int:
    data = _read_input(args.input)
    with _client(args) as client:
        result = client.invoke_json(args.name, data) if args.json else client.invoke(args.name, data)
    if args.output:
        np.save(args.output, np.asarray(result.output))
    _print_result(result, args.json_output)
    return EXIT_OK


def cmd_ls(args: argparse.Namespace) -> int:
    with _client(args) as client:
        functions = client.functions()
    if args.json:
        print(json.dumps(functions, indent=2))
        return EXIT_OK
    if not functions:
        print("no functions")
        return EXIT_OK
    print(f"{'NAME':24} {'TENANT':12} {'VERSION':>7} {'STATE':12} {'INSTANCES':>9} "
          f"{'COLD':>6} {'WARM':>6} {'HOT':>8}")
    for f in functions:
        starts = f.get("starts", {})
        print(f"{f['name']:24} {f['tenant']:12} {f['version']:>7} {f['state']:12} "
              f"{f.get('instances', {}).get('total', 0):>9} {starts.get('cold', 0):>6} "
              f"{starts.get('warm', 0):>6} {starts.get('hot', 0):>8}")
    return EXIT_OK


def cmd_describe(args: argparse.Namespace) -> int:
    with _client(args) as client:
        print(json.dumps(client.describe(args.name), indent=2))
    return EXIT_OK


def cmd_rm(args: argparse.Namespace) -> int:
    with _client(args) as client:
        client.delete(args.name)
    print(f"deleted {args.name}")
    return EXIT_OK


def _percentile(values: List[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def cmd_bench(args: argparse.Namespace) -> int:
    """Cold (if the function has no instance yet), warm (after parking) and hot starts."""
    with _client(args) as client:
        info = client.describe(args.name)
        if args.input:
            data: Any = _read_input(args.input)
        else:
            spec = load_manifest(info["manifest"]).input
            data = np.zeros(spec.shape_for(spec.nbytes), dtype=spec.dtype)
        rows: Dict[str, List[InvokeResult]] = {"cold": [], "warm": [], "hot": []}
        first = client.invoke(args.name, data)
        rows[first.start].append(first)
        client.park(args.name)
        warm = client.invoke(args.name, data)
        rows[warm.start].append(warm)
        for _ in range(args.n):
            r = client.invoke(args.name, data)
            rows[r.start].append(r)
    if args.json:
        out = {start: {"count": len(rs),
                       "client_p50_us": _percentile([r.timings.client_us for r in rs], 0.5),
                       "client_p99_us": _percentile([r.timings.client_us for r in rs], 0.99),
                       "server_p50_us": _percentile([r.timings.total_us for r in rs], 0.5),
                       "server_p99_us": _percentile([r.timings.total_us for r in rs], 0.99)}
               for start, rs in rows.items() if rs}
        print(json.dumps(out, indent=2))
        return EXIT_OK
    print(f"{args.name}: {args.n} hot runs after one {first.start} and one {warm.start} start")
    print(f"{'START':6} {'COUNT':>6} {'CLIENT P50 US':>14} {'CLIENT P99 US':>14} "
          f"{'SERVER P50 US':>14} {'SERVER P99 US':>14}")
    for start, rs in rows.items():
        if not rs:
            continue
        c = [r.timings.client_us for r in rs]
        s = [r.timings.total_us for r in rs]
        print(f"{start:6} {len(rs):>6} {_percentile(c, 0.5):>14.1f} {_percentile(c, 0.99):>14.1f} "
              f"{_percentile(s, 0.5):>14.1f} {_percentile(s, 0.99):>14.1f}")
    return EXIT_OK


def _gateway_candidates(explicit: Optional[str]) -> List[Optional[str]]:
    """Where kchain-gateway may be, most specific first."""
    candidates = [explicit, os.environ.get("KCHAIN_GATEWAY")]
    if os.environ.get("KCHAIN_BUILD_DIR"):
        candidates.append(str(Path(os.environ["KCHAIN_BUILD_DIR"]) / "bin" / "kchain-gateway"))
    candidates.append(shutil.which("kchain-gateway"))
    # Beside this Python (an install prefix), and the build folder a venv lives in
    # (scripts/python-env.sh makes build/venv).
    prefix = Path(sys.prefix)
    candidates += [str(prefix / "bin" / "kchain-gateway"),
                   str(prefix.parent / "bin" / "kchain-gateway")]
    # The checkout this package was built from, and the working folder's, upwards.
    try:
        from ._build_info import CHECKOUT  # written by the package's build
        roots = [Path(CHECKOUT)]
    except ImportError:  # a source tree used without building
        roots = []
    here = Path.cwd()
    roots += [here, *here.parents]
    for root in roots:
        candidates.append(str(root / "build" / "bin" / "kchain-gateway"))
    return candidates


def _find_gateway(explicit: Optional[str]) -> str:
    if explicit and not (Path(explicit).is_file() and os.access(explicit, os.X_OK)):
        raise InvalidArgumentError(f"--gateway {explicit}: not an executable file")
    for c in _gateway_candidates(explicit):
        if c and Path(c).is_file() and os.access(c, os.X_OK):
            return c
    raise InvalidArgumentError(
        "kchain-gateway not found: build kchain (scripts/build.sh), then pass --gateway PATH, "
        "set $KCHAIN_GATEWAY or $KCHAIN_BUILD_DIR, or put it on the PATH")


def cmd_serve(args: argparse.Namespace) -> int:
    """Runs a gateway in the foreground for development (exec: Ctrl-C stops it)."""
    gateway = _find_gateway(args.gateway)
    argv = [gateway, "--listen", f"{args.host}:{args.port}", "--data-dir", args.data_dir,
            "--device", args.device, *args.gateway_args]
    print("exec " + " ".join(argv), file=sys.stderr)
    sys.stderr.flush()
    os.execv(gateway, argv)
    return EXIT_OK  # not reached


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kchain", description="Deploy and invoke kchain functions.",
        epilog="exit status: 0 ok, 1 the gateway reported an error, 2 bad usage or input, "
               "3 the gateway could not be reached")
    parser.add_argument("--url", default=None, help="gateway URL (default $KCHAIN_URL or http://127.0.0.1:8080)")
    parser.add_argument("--api-key", default=None, help="API key (default $KCHAIN_API_KEY)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per request (default 60)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("deploy", help="deploy or replace a function from its manifest")
    p.add_argument("manifest", help="manifest.json (names its library and constants files)")
    p.add_argument("--name", help="function name (default: the manifest's)")
    p.add_argument("--library", help="kernel library (default: the manifest's, for the server's device)")
    p.add_argument("--constants", help="constants file (default: the manifest's)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_deploy)

    p = sub.add_parser("invoke", help="run a function on an input array")
    p.add_argument("name")
    p.add_argument("--input", required=True, help="a .npy file, or - for a .npy on standard input")
    p.add_argument("--json", action="store_true", help="use the JSON path instead of binary")
    p.add_argument("--output", help="save the output array as .npy")
    p.add_argument("--json-output", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_invoke)

    p = sub.add_parser("ls", help="list functions")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_ls)

    p = sub.add_parser("describe", help="describe a function (JSON)")
    p.add_argument("name")
    p.set_defaults(func=cmd_describe)

    p = sub.add_parser("rm", help="delete a function")
    p.add_argument("name")
    p.set_defaults(func=cmd_rm)

    p = sub.add_parser("bench", help="time cold/warm/hot invocations (p50, p99)")
    p.add_argument("name")
    p.add_argument("--input", help="a .npy input (default: zeros of the function's input)")
    p.add_argument("-n", type=int, default=1000, help="hot runs (default 1000)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser(
        "serve", help="run a local gateway for development (foreground)",
        description="Runs kchain-gateway in the foreground (Ctrl-C stops it). The gateway is "
                    "--gateway, else $KCHAIN_GATEWAY, $KCHAIN_BUILD_DIR/bin, the PATH, this "
                    "Python's prefix and the build folder of the checkout this package was "
                    "built from. Flags after -- go to the gateway (kchain-gateway --help).")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="port to listen on (default 8080)")
    p.add_argument("--data-dir", default="kchain-data",
                   help="folder for deployed functions, kept across restarts (default kchain-data)")
    p.add_argument("--device", default="auto", choices=["auto", "cuda", "host"],
                   help="auto: the GPU when there is one, else the host backend (default auto)")
    p.add_argument("--gateway", help="the kchain-gateway executable (default: searched, see above)")
    p.add_argument("gateway_args", nargs=argparse.REMAINDER,
                   help="after --: more kchain-gateway flags, e.g. -- --isolation process")
    p.set_defaults(func=cmd_serve)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "serve" and args.gateway_args[:1] == ["--"]:
        args.gateway_args = args.gateway_args[1:]
    try:
        status = args.func(args)
        sys.stdout.flush()  # here, so that a closed pipe is caught below
        return status
    except BrokenPipeError:
        # The reader went away (kchain describe f | head): not an error of ours. Point stdout at
        # /dev/null so that the interpreter's final flush does not fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
    except TransportError as e:
        print(f"kchain: {e}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except ApiError as e:
        if e.status is None:  # raised here, about local input
            print(f"kchain: {e}", file=sys.stderr)
            return EXIT_USAGE
        print(f"kchain: {e.code} (HTTP {e.status}): {e}", file=sys.stderr)
        return EXIT_API
    except KchainError as e:
        print(f"kchain: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
