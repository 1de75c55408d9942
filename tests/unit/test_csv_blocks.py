"""core.csv_blocks: a CSV's block size from the file's size, the workers and their memory."""

from __future__ import annotations

import pytest

from driftloop.core.csv_blocks import (
    BLOCK_MEMORY_FACTOR,
    MAX_BLOCK,
    MB,
    MIN_BLOCK,
    SPREAD_FLOOR,
    USABLE_SHARE,
    WORKER_BASE,
    at_most,
    csv_block_bytes,
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
