"""A throwaway PostgreSQL cluster for tests and CI: ``initdb`` + ``pg_ctl`` on a temporary directory.

Unix socket only (``listen_addresses=''``), so nothing listens on the network and two clusters never
fight over a port. initdb refuses to run as root; as root the cluster is owned by and run as an
unprivileged user (``DETBENCH_PG_USER``, else ``postgres`` when the Debian package created it, else
``nobody``) through ``setpriv`` (util-linux, present on every Debian/Ubuntu image). The data directory
is created with mkdtemp directly under the temp dir (pytest's own base temp is root-only, 0700).

Command line (what scripts/pg.sh runs)::

    python tests/_support/postgres.py start DIR   # prints the URL
    python tests/_support/postgres.py stop DIR
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

PG_BIN_ENV = "DETBENCH_PG_BIN"
PG_USER_ENV = "DETBENCH_PG_USER"
DB_USER = "detbench"
DB_NAME = "postgres"
PORT = 5432  # only names the socket file (.s.PGSQL.5432): no TCP listener


def pg_bin_dir() -> Path | None:
    """Where initdb/pg_ctl live: DETBENCH_PG_BIN, the newest /usr/lib/postgresql/*/bin, or PATH."""
    candidates = []
    if os.environ.get(PG_BIN_ENV):
        candidates.append(Path(os.environ[PG_BIN_ENV]))
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: _major(p.parent.name))
    candidates += reversed(versions)
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(Path(on_path).parent)
    return next((d for d in candidates if (d / "initdb").is_file() and (d / "pg_ctl").is_file()), None)


def _major(name: str) -> int:
    return int(name) if name.isdigit() else -1


def missing_reason() -> str | None:
    """Why a cluster cannot be started here, or None when it can."""
    if pg_bin_dir() is None:
        return (
            "PostgreSQL server binaries (initdb, pg_ctl) not found in /usr/lib/postgresql/*/bin, "
            f"${PG_BIN_ENV} or PATH; install them with apt-get install postgresql"
        )
    if os.geteuid() == 0 and _run_as_user() is None:
        return "running as root and no unprivileged user (postgres, nobody) to own the cluster"
    return None


def _run_as_user() -> pwd.struct_passwd | None:
    for name in (os.environ.get(PG_USER_ENV), "postgres", "nobody"):
        if name:
            try:
                return pwd.getpwnam(name)
            except KeyError:
                continue
    return None


@dataclass
class Cluster:
    """One cluster in ``root`` (data in root/data, socket in root, log in root/server.log)."""

    root: Path
    bin_dir: Path

    @property
    def url(self) -> str:
        return f"postgresql://{DB_USER}@/{DB_NAME}?host={self.root}&port={PORT}"

    @property
    def log(self) -> Path:
        return self.root / "server.log"

    def _cmd(self, tool: str, *args: str) -> list[str]:
        cmd = [str(self.bin_dir / tool), *args]
        if os.geteuid() == 0:
            user = _run_as_user()
            assert user is not None, missing_reason()
            cmd = ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups", *cmd]
        return cmd

    def _run(self, tool: str, *args: str, timeout: float = 120) -> None:
        done = subprocess.run(self._cmd(tool, *args), capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            tail = (done.stdout + done.stderr).strip()[-1500:]
            log = self.log.read_text(errors="replace")[-1500:] if self.log.exists() else ""
            raise RuntimeError(f"{tool} {' '.join(args[:2])} failed ({done.returncode}): {tail}\n{log}")

    def init(self) -> None:
        if os.geteuid() == 0:
            user = _run_as_user()
            assert user is not None, missing_reason()
            os.chown(self.root, user.pw_uid, user.pw_gid)
        # trust on the socket only: the directory is private to its owner and root.
        self._run(
            "initdb", "-D", str(self.root / "data"), "-U", DB_USER, "--auth=trust", "-E", "UTF8", "--no-sync"
        )
        conf = self.root / "data" / "postgresql.conf"
        with conf.open("a") as f:
            f.write(
                f"\nlisten_addresses = ''\nunix_socket_directories = '{self.root}'\nport = {PORT}\n"
                "fsync = off\n"  # a throwaway cluster: speed over crash safety of the server itself
            )

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.root / "data"), "-l", str(self.log), "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.root / "data"), "-m", mode, "-w", "-t", "60", "stop")

    def running(self) -> bool:
        done = subprocess.run(
            self._cmd("pg_ctl", "-D", str(self.root / "data"), "status"), capture_output=True
        )
        return done.returncode == 0

    def restart(self) -> None:
        self.stop()
        self.start()

    def create_database(self, name: str) -> str:
        """A fresh database on this cluster; returns its URL."""
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url.replace(f"/{DB_NAME}?", f"/{name}?")


def start_cluster(root: Path | None = None) -> Cluster:
    """initdb (unless root/data exists) and start; the caller stops it (``cluster.stop()``)."""
    reason = missing_reason()
    if reason:
        raise RuntimeError(reason)
    bin_dir = pg_bin_dir()
    assert bin_dir is not None
    if root is None:
        # Short path: a Unix socket path must fit in 107 bytes.
        root = Path(tempfile.mkdtemp(prefix="detbench-pg-", dir="/tmp" if Path("/tmp").is_dir() else None))
    root.mkdir(parents=True, exist_ok=True)
    cluster = Cluster(root.resolve(), bin_dir)
    if not (cluster.root / "data" / "PG_VERSION").exists():
        cluster.init()
    cluster.start()
    return cluster


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) not in (1, 2) or args[0] not in ("start", "stop", "url"):
        print("usage: python tests/_support/postgres.py start|stop|url [DIR]", file=sys.stderr)
        return 2
    root = Path(args[1]) if len(args) == 2 else None
    try:
        if args[0] == "start":
            cluster = start_cluster(root)
        else:
            if root is None:
                print(f"{args[0]} needs the cluster's DIR", file=sys.stderr)
                return 2
            bin_dir = pg_bin_dir()
            if bin_dir is None:
                print(missing_reason(), file=sys.stderr)
                return 1
            cluster = Cluster(root.resolve(), bin_dir)
            if args[0] == "stop":
                cluster.stop()
                return 0
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        print(f"pg: {exc}", file=sys.stderr)
        return 1
    print(cluster.url)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
