"""How big a block of a CSV each scoring task reads, when the user does not say; how little memory a worker may have.

A CSV is read as text (every cell a Python string, so a row set aside is kept as written), then typed: a block
takes about 14 times its size in a worker's memory (measured: 8 MB → 516 MB, 16 MB → 624 MB at a worker's peak,
a random forest of 13 columns; trial 16). With a fixed 64 MB block a worker capped at 700 MB or 1 GB died on every
try, and Dask makes floor(size / block) blocks: a 107 MB file was one task, whatever the number of workers.

The model counts too: onnxruntime's session of a random forest took 11 to 15 times its serialized ONNX graph
(measured on 2-33 MB graphs), and each task carries the graph's bytes. A 29 MB forest could not be scored under
700 MB per worker with any block (trial 17), and 1 GB worked.
"""

from __future__ import annotations

import math

MB = 2**20
MAX_BLOCK = 64 * MB  # Dask's own default: larger blocks gain nothing in speed
MIN_BLOCK = 1 * MB
SPREAD_FLOOR = 4 * MB  # below this, more blocks only add tasks: a small file stays one or a few blocks
BLOCK_MEMORY_FACTOR = 20  # a block's peak in a worker, over its size: 14 measured, with room for wider rows
WORKER_BASE = 400 * MB  # a scoring worker's libraries and a small model before any row, with room to spare
WORKER_LEAST = 260 * MB  # the same, with none: 175 MB as a worker starts, 259 MB once it has scored 2,000 rows
GRAPH_MEMORY_FACTOR = 13  # a worker's memory for the model over its ONNX graph's size: the session's 11, the bytes
USABLE_SHARE = 0.7  # of a worker's limit: Dask pauses a worker at 80% and restarts it at 95%
RESTART_SHARE = 0.95
BLOCKS_PER_WORKER = 2  # so that every worker has work, and a slow block does not hold the run


def worker_base(graph_bytes: int) -> int:
    """A scoring worker's memory before any row: its libraries, and the model of a ``graph_bytes`` ONNX graph."""
    return WORKER_BASE + GRAPH_MEMORY_FACTOR * graph_bytes


def least_worker_memory(graph_bytes: int) -> int:
    """The smallest worker limit that holds the model and one smallest block before Dask restarts the worker.

    From what a worker was measured to take, without the room to spare of the block rule: below it a worker dies
    on every try (trial 17's 29 MB forest under 700 MB), just above it a run may still be slow or die.
    """
    need = WORKER_LEAST + GRAPH_MEMORY_FACTOR * graph_bytes + BLOCK_MEMORY_FACTOR * MIN_BLOCK
    return math.ceil(need / RESTART_SHARE)


def csv_block_bytes(file_bytes: int, workers: int, worker_memory: int | None, graph_bytes: int = 0) -> int:
    """The block size for a CSV of ``file_bytes`` on ``workers`` workers of ``worker_memory`` bytes each.

    As large as it may be (up to ``MAX_BLOCK``) while one block fits in a worker's limit beside the model (of a
    ``graph_bytes`` ONNX graph) and every worker gets ``BLOCKS_PER_WORKER`` blocks of a file big enough;
    ``worker_memory`` None: no limit is known.
    """
    block = float(MAX_BLOCK)
    if worker_memory is not None:
        block = min(block, (USABLE_SHARE * worker_memory - worker_base(graph_bytes)) / BLOCK_MEMORY_FACTOR)
    spread = -(-file_bytes // (BLOCKS_PER_WORKER * max(workers, 1)))  # rounded up: not one block too many
    block = min(block, max(spread, SPREAD_FLOOR))
    return max(int(block), MIN_BLOCK)


def at_most(file_bytes: int, wanted: int) -> int:
    """The size to give Dask so that no block is over ``wanted``.

    Dask cuts a file into floor(size / blocksize) blocks: asked for 64 MB, a 116 MB file was one block of 116 MB
    (trial 17). This asks for ceil(size / wanted) blocks instead.
    """
    blocks = max(-(-file_bytes // max(wanted, 1)), 1)
    return max(file_bytes // blocks, 1)
