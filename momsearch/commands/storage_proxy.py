"""Serve one study storage to many workers through Optuna's gRPC storage proxy (workers: --storage grpc://HOST:PORT)."""

from __future__ import annotations

import argparse

DEFAULT_PORT = 13000
DEFAULT_THREADS = 10


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``momsearch storage-proxy URL [--host H] [--port P] [--threads N] [--retry-seconds S]``."""
    parser.add_argument("url", help="the storage behind the proxy, e.g. postgresql://USER@HOST:PORT/DB")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0: every "
                             "interface; the proxy has no authentication: listen only on a trusted network)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port to listen on (default {DEFAULT_PORT})")
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS,
                        help=f"requests served at once; each holds at most one database connection "
                             f"(default {DEFAULT_THREADS})")
    parser.add_argument("--retry-seconds", type=float, default=None,
                        help="how long a request waits for a database that went away (default 60)")


def main(args: argparse.Namespace) -> int:
    """Run ``optuna.storages.run_grpc_proxy_server`` in front of the storage until SIGINT/SIGTERM."""
    import signal
    import sys
    import warnings
    from concurrent.futures import ThreadPoolExecutor

    from ..errors import ConfigError
    from ..search.storage import GRPC_SCHEME, STORAGE_RETRY_SECONDS, open_storage, redact_url

    if not 1 <= args.port <= 65535:
        raise ConfigError(f"--port={args.port}: must be in [1, 65535]")
    if args.threads < 1:
        raise ConfigError(f"--threads={args.threads}: must be >= 1")
    retry = STORAGE_RETRY_SECONDS if args.retry_seconds is None else args.retry_seconds
    if retry < 0:
        raise ConfigError(f"--retry-seconds={args.retry_seconds}: must be >= 0")
    if args.url.startswith(GRPC_SCHEME):
        raise ConfigError(f"storage {args.url!r}: a proxy serves a database URL (postgresql://..., sqlite:///...), "
                          "not another proxy")
    try:
        import grpc  # noqa: F401
    except ImportError as exc:
        raise ConfigError(f"the gRPC server is missing ({exc}); pip install grpcio protobuf") from None

    import optuna

    optuna.logging.set_verbosity(optuna.logging.INFO)  # Optuna says "Server started at HOST:PORT" once bound
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    # A long-lived server: after an outage longer than ``retry`` a request fails, the next one tries again.
    storage = open_storage(args.url, retry_seconds=retry, give_up_for_good=False)

    def stop(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    print(f"momsearch storage-proxy: serving {redact_url(args.url)} at grpc://{args.host}:{args.port} "
          f"(workers: --storage grpc://{args.host}:{args.port})", file=sys.stderr, flush=True)
    try:
        optuna.storages.run_grpc_proxy_server(storage, host=args.host, port=args.port,
                                              thread_pool=ThreadPoolExecutor(max_workers=args.threads))
    except RuntimeError as exc:  # grpc cannot bind the address
        raise ConfigError(f"--host {args.host} --port {args.port}: cannot listen there ({exc})") from None
    except KeyboardInterrupt:
        print("momsearch storage-proxy: stopped", file=sys.stderr, flush=True)
    finally:
        storage.close()
    return 0
