"""The process a local Dask cluster's workers are forked from, started early with what they run imported.

A spawned worker is a fresh interpreter that imports Dask, pandas, pyarrow and onnxruntime before its first task:
for two workers on two cores, 1.3-1.5 s after the command had read the registry, and about 0.5 s more to stop them.
Python's forkserver imports those modules once, in a process started before the command reads the registry, so on
a second core it works beside it; each worker is then forked from it in a moment. A worker holds none of the
command's own memory (MLflow, the registry's engine): its resident memory as it starts is a spawned worker's, which
the memory rules of ``core.csv_blocks`` were measured on.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.forkserver
import os

SCORING_WORKER_MODULE = "driftloop.io.partition_scoring"  # what a scoring worker runs (its preload)
_IMPORTED = ("distributed", SCORING_WORKER_MODULE)
# Dask's MALLOC_TRIM_THRESHOLD_ (which start_worker_template passes on) also fixes glibc's threshold for serving an
# allocation by mmap at its 128 KB default, so each batch's arrays (50,000 rows: 0.2-3 MB apiece) were mapped and
# unmapped anew, page-faulting every time: with 2 workers on 2 cores, 1M rows scored in 5.2-5.5 s. Below 4 MB they
# come from the heap, which the trim threshold keeps small between batches: 4.8-4.9 s, each worker's peak
# 362 → 366-379 MB (unset trim: 4.8 s, 396-418 MB). A value already in the environment is kept.
MMAP_THRESHOLD_VARIABLE = "MALLOC_MMAP_THRESHOLD_"
MMAP_THRESHOLD_BYTES = 4 * 2**20
_FORKSERVER = "forkserver"
_SPAWN = "spawn"


def start_worker_template() -> str:
    """Start the forkserver scoring workers fork from, if this platform has one; the method to give Dask.

    Returns ``"forkserver"``, or ``"spawn"`` where there is none (Windows) or Dask is not installed (the command
    says so where it needs Dask). Once it runs (an earlier call in this process), it is reused as it is.
    """
    if _FORKSERVER not in multiprocessing.get_all_start_methods():
        return _SPAWN
    try:
        import dask.config
        import distributed  # noqa: F401  (its configuration's defaults, read below)
    except ImportError:
        return _SPAWN
    # What Dask's nanny sets before it spawns a worker (OMP_NUM_THREADS=1, MALLOC_TRIM_THRESHOLD_, ...) must be in
    # the server's environment: a forked worker has the server's, not the one the nanny sets later in this process.
    spawn_environment = dask.config.get("distributed.nanny.pre-spawn-environ", {}) or {}
    os.environ.update({str(name): str(value) for name, value in spawn_environment.items()})
    os.environ.setdefault(MMAP_THRESHOLD_VARIABLE, str(MMAP_THRESHOLD_BYTES))
    multiprocessing.get_context(_FORKSERVER).set_forkserver_preload(list(_IMPORTED))
    multiprocessing.forkserver.ensure_running()
    return _FORKSERVER
