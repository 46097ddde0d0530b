"""Job targets for tests/test_forkserver.py: importable by name in a job process."""

from __future__ import annotations

import gc
import os
import sys
from typing import Any


def report(launcher: Any, conn: Any, launched_at: float) -> None:
    """Send back what the job process sees before it imports anything itself."""
    preloaded = "transformers.models.llama.modeling_llama" in sys.modules
    from runner import lockfile

    versions_read = lockfile._installed_once.cache_info().currsize == 1
    launcher.apply()
    import torch

    print(f"job {os.getpid()} writes to the launcher's stderr", file=sys.stderr, flush=True)
    conn.send(
        {
            "pid": os.getpid(),
            "preloaded": preloaded,
            "versions_read": versions_read,
            "cuda_initialized": torch.cuda.is_initialized(),
            "env": os.environ.get("RUNNER_TEST_FORKSERVER"),
            "left_by_earlier_job": getattr(torch, "_left_by_a_job", None),
            "gc_enabled": gc.isenabled(),
            "gc_frozen": gc.get_freeze_count(),
        }
    )
    torch._left_by_a_job = os.getpid()  # a job's change to library state
    conn.close()


def exit_with(code: int, launched_at: float) -> None:
    sys.exit(code)
