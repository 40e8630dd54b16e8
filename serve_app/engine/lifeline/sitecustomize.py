"""Imported by Python at start-up in processes started by an armed replica (see __init__.py): a
daemon thread kills this process when its parent is gone, whether the parent exited, crashed or was
killed. Forked children watch their own parent again (threads do not survive a fork)."""

import os
import signal
import threading
import time


def _watch(parent: int, every_s: float) -> None:
    while os.getppid() == parent:
        time.sleep(every_s)
    os.kill(os.getpid(), signal.SIGKILL)  # no cleanup to wait for: the parent that needed it is gone


def _start() -> None:
    every_s = float(os.environ.get("STT_LIFELINE") or 0)
    if every_s > 0:
        threading.Thread(target=_watch, args=(os.getppid(), every_s), name="lifeline", daemon=True).start()


_start()
os.register_at_fork(after_in_child=_start)
