"""Engine processes die with their replica.

vLLM runs its EngineCore, and that runs its workers, as processes of their own. When a replica dies
before vLLM's shutdown runs (killed, or stopped while its engine is still starting), nothing stops
them: an orphaned engine keeps gigabytes of memory (on a GPU, the memory the next replica needs).
`arm()` puts this folder's `sitecustomize` on the PYTHONPATH those processes inherit; Python imports
it at start-up, and it makes each of them watch its parent and kill itself once the parent is gone.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV = "STT_LIFELINE"  # set: every Python process started from here on watches its parent
CHECK_EVERY_S = 0.5


def arm() -> None:
    """Make every Python process this one starts from now on die with its parent (and theirs too)."""
    here = str(Path(__file__).resolve().parent)
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != here]
    os.environ["PYTHONPATH"] = os.pathsep.join([here, *paths])
    os.environ[ENV] = str(CHECK_EVERY_S)
