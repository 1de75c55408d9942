"""core.csv_blocks: a CSV's block size from the file's size, the workers and their memory."""

from __future__ import annotations

import pytest

from driftloop.core.csv_blocks import (
    BLOCK_MEMORY_FACTOR,
    GRAPH_MEMORY_FACTOR,
    MAX_BLOCK,
    MB,
    MIN_BLOCK,
    SPREAD_FLOOR,
    USABLE_SHARE,
    WORKER_BASE,
    WORKER_LEAST,
    at_most,
    csv_block_bytes,
    least_worker_memory,
    worker_base,
)

GB = 2**30


@pytest.mark.parametrize("limit", [700 * MB, GB, 2 * GB, 4 * GB])
def test_a_block_at_its_measured_cost_fits_the_worker_s_limit(limit: int) -> None:
    block = csv_block_bytes(10 * GB, 2, limit)
    assert WORKER_BASE + BLOCK_MEMORY_FACTOR * block <= USABLE_SHARE * limit
    assert block <= MAX_BLOCK


def test_a_roomy_worker_reads_dask_s_default_block_of_a_big_file() -> None:
    assert csv_block_bytes(10 * GB, 2, 16 * GB) == MAX_BLOCK
    assert csv_block_bytes(10 * GB, 2, None) == MAX_BLOCK


@pytest.mark.parametrize("workers", [1, 2, 3, 8])
def test_a_mid_sized_file_gives_every_worker_two_blocks(workers: int) -> None:
    size = 107 * MB  # trial 16: one 64 MB block by Dask's rounding, one task for two workers
    block = csv_block_bytes(size, workers, 16 * GB)
    assert at_most(size, block) == size // (2 * workers) or block == SPREAD_FLOOR  # then cut by at_most


def test_a_small_file_is_not_cut_into_crumbs() -> None:
    assert csv_block_bytes(3 * MB, 8, 16 * GB) == SPREAD_FLOOR  # one block: 3 MB // 4 MB rounds to a single one
    assert csv_block_bytes(100 * MB, 1, WORKER_BASE) == MIN_BLOCK  # a limit below the libraries: the smallest


@pytest.mark.parametrize(
    ("size", "wanted"), [(116 * MB, 64 * MB), (10 * MB + 7, 3 * MB), (5 * MB, 64 * MB), (64 * MB, 64 * MB)]
)
def test_dask_cuts_no_block_over_the_size_asked_for(size: int, wanted: int) -> None:
    given = at_most(size, wanted)
    blocks = size // given  # Dask's rule: floor(size / blocksize) blocks of equal size
    assert size / blocks <= wanted
    assert blocks == max(-(-size // wanted), 1)  # and no more of them than that takes


@pytest.mark.parametrize("limit", [3 * GB // 2, 2 * GB])
def test_a_large_graph_leaves_less_room_for_a_block(limit: int) -> None:
    graph = 29 * MB  # trial 17's forest
    block = csv_block_bytes(10 * GB, 2, limit, graph)
    assert block < csv_block_bytes(10 * GB, 2, limit)
    assert WORKER_BASE + GRAPH_MEMORY_FACTOR * graph + BLOCK_MEMORY_FACTOR * block <= USABLE_SHARE * limit
    assert csv_block_bytes(10 * GB, 2, GB, graph) == MIN_BLOCK  # 1 GB holds the graph, with little room to spare


def test_the_least_worker_memory_follows_the_graph_as_trial_17_found_it() -> None:
    # A 29 MB forest died under 700 MB per worker whatever the block, and scored under 1 GB (peak 901 MB).
    assert 700 * 10**6 < least_worker_memory(29 * MB) <= GB
    # A 6 MB forest scored 400,000 rows of CSV under 512 MiB; a small model needs no more than the CLI's floor.
    assert least_worker_memory(6 * MB) <= 512 * MB
    assert least_worker_memory(MB // 2) <= 512 * MB
    assert least_worker_memory(0) > WORKER_LEAST  # a block of rows counts too
    assert least_worker_memory(29 * MB) < worker_base(29 * MB)  # the block rule keeps room to spare
