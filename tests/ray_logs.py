"""What a test server's Ray processes and session logs show: which processes belong to it (each has
the server's STT_USAGE_DB in its environment), its Ray session's log directory, and the log files
of each ingress replica. End-to-end tests only: this reads /proc through psutil."""

from __future__ import annotations

import re
from pathlib import Path

import psutil

INGRESS = "ServeReplica:stt:Ingress"  # the process title Ray gives an ingress replica
# Ray's own processes (raylet, GCS, dashboard, log monitor) are started with the session directory.
_SESSION_ARG = re.compile(r"^--(?:ray_)?session[-_]dir=(.+)$")


def server_processes(usage_db: str) -> list[psutil.Process]:
    """Every live process of the server whose STT_USAGE_DB is `usage_db`."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get("STT_USAGE_DB") == usage_db:
                found.append(proc)
        except psutil.Error:
            continue
    return found


def _cmdline(proc: psutil.Process) -> list[str]:
    try:
        return proc.cmdline()
    except psutil.Error:
        return []


def session_logs(usage_db: str) -> Path:
    """The `logs` directory of this server's Ray session, named by its own Ray processes (never by
    `session_latest`, which another Ray on the machine may have moved)."""
    dirs = {m.group(1) for p in server_processes(usage_db) for arg in _cmdline(p) if (m := _SESSION_ARG.match(arg))}
    assert len(dirs) == 1, f"expected one Ray session for {usage_db}, found {dirs}"
    logs = Path(dirs.pop()) / "logs"
    assert logs.is_dir(), logs
    return logs


def ingress_replica_logs(usage_db: str) -> dict[int, list[Path]]:
    """Each ingress replica's pid and its worker log files (Ray names them `worker-<id>-<job>-<pid>.out|err`)."""
    logs = session_logs(usage_db)
    pids = [p.pid for p in server_processes(usage_db) if INGRESS in " ".join(_cmdline(p))]
    return {pid: sorted(logs.glob(f"worker-*-{pid}.out")) + sorted(logs.glob(f"worker-*-{pid}.err")) for pid in pids}


def all_log_text(usage_db: str) -> dict[Path, str]:
    """Every file under the session's log directory, as text (binary bytes replaced)."""
    return {f: f.read_text(errors="replace") for f in session_logs(usage_db).rglob("*") if f.is_file()}
