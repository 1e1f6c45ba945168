"""A throwaway PostgreSQL cluster on 127.0.0.1 for tests (Debian's ``postgresql`` package, installed by .ci/run).

``initdb`` + ``pg_ctl`` in a temporary directory on a free port; as root the server runs as the ``postgres``
user. Stopped and removed afterwards.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

USER = "momsearch"


def server_bin() -> Path | None:
    """The newest Debian PostgreSQL server binary directory, or None if the package is not installed."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    return Path(found[-1]).parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """Start with :meth:`start`, connect with :attr:`url`, stop with :meth:`stop` (which also removes it);
    :meth:`stop_server` and :meth:`start_server` take the server away and bring it back."""

    def __init__(self, max_connections: int = 100):
        self.max_connections = max_connections
        self.bin = server_bin()
        self.dir = Path(tempfile.mkdtemp(prefix="momsearch-pg-"))
        self.port = _free_port()
        self.url = f"postgresql://{USER}@127.0.0.1:{self.port}/{USER}"

    def _run(self, *args: str) -> None:
        cmd = [str(self.bin / args[0]), *args[1:]]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)

    def start(self) -> Cluster:
        data = self.dir / "data"
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres")
            self.dir.chmod(0o755)
        self._run("initdb", "-D", str(data), "-A", "trust", "-U", USER)
        self.start_server()
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", USER, USER)
        return self

    def start_server(self) -> None:
        """Start the server of the cluster (again, after :meth:`stop_server`) on the same port."""
        opts = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c max_connections={self.max_connections}"
        self._run("pg_ctl", "-D", str(self.dir / "data"), "-o", opts, "-l", str(self.dir / "log"), "-w", "start")

    def running(self) -> bool:
        """Whether the server is up (``pg_ctl status``)."""
        cmd = [str(self.bin / "pg_ctl"), "-D", str(self.dir / "data"), "status"]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, capture_output=True, timeout=120).returncode == 0

    def stop_server(self) -> None:
        """Stop the server at once (as a crash or a pulled cable would), keeping its data for
        :meth:`start_server`: clients see their connections dropped and new ones refused."""
        self._run("pg_ctl", "-D", str(self.dir / "data"), "-m", "immediate", "-w", "stop")

    def stop(self) -> None:
        try:
            if self.running():
                self._run("pg_ctl", "-D", str(self.dir / "data"), "-m", "immediate", "stop")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
