"""Tests for app.engine.memory_bank.MemoryBank against brute-force numpy search."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from app.engine.memory_bank import MemoryBank

DIM = 16


def brute_force_scores(bank: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Mean L2 distance (not squared) of each query to its k nearest rows."""
    diff = queries[:, None, :].astype(np.float64) - bank[None, :, :]
    distances = np.sqrt((diff**2).sum(axis=2))
    return np.sort(distances, axis=1)[:, :k].mean(axis=1)


def clustered_bank(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """12 tight clusters of 250 rows each, and their centers."""
    rng = np.random.default_rng(seed)
    centers = 10.0 * rng.normal(size=(12, DIM))
    bank = np.repeat(centers, 250, axis=0) + 0.3 * rng.normal(size=(3000, DIM))
    return bank.astype(np.float32), centers


@pytest.fixture(scope="module")
def ivfpq_bank() -> tuple[MemoryBank, np.ndarray]:
    """An IVF-PQ bank over clustered rows (trained once), and the centers."""
    bank, centers = clustered_bank()
    # One OpenMP thread: on a busy 2-core runner faiss's spinning threads make
    # the k-means training several times slower.
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        return MemoryBank(bank, "ivfpq", 1), centers
    finally:
        faiss.omp_set_num_threads(threads)


def clustered_queries(centers: np.ndarray, spread: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    picked = centers[rng.integers(len(centers), size=50)]
    return (picked + spread * rng.normal(size=picked.shape)).astype(np.float32)


@pytest.mark.parametrize("k", [1, 3])
def test_flat_scores_match_brute_force(k):
    rng = np.random.default_rng(1)
    bank = rng.normal(size=(400, DIM)).astype(np.float32)
    queries = rng.normal(size=(60, DIM)).astype(np.float32)

    scores = MemoryBank(bank, "flat", k).patch_scores(queries)

    np.testing.assert_allclose(scores, brute_force_scores(bank, queries, k), rtol=1e-4)


def test_flat_score_of_bank_row_is_zero():
    bank = np.random.default_rng(2).normal(size=(50, DIM)).astype(np.float32)

    scores = MemoryBank(bank, "flat", 1).patch_scores(bank[:5])

    np.testing.assert_allclose(scores, 0.0, atol=1e-3)


def test_flat_scores_in_l2_units():
    bank = np.zeros((1, 4), dtype=np.float32)
    queries = np.array([[3.0, 4.0, 0.0, 0.0]], dtype=np.float32)

    scores = MemoryBank(bank, "flat", 1).patch_scores(queries)

    assert scores[0] == pytest.approx(5.0)  # not the squared distance 25


@pytest.mark.parametrize("k", [1, 3])
def test_ivfpq_scores_close_to_exact(ivfpq_bank, k):
    trained, centers = ivfpq_bank
    near = clustered_queries(centers, spread=0.3, seed=3)
    far = clustered_queries(centers, spread=3.0, seed=4)
    queries = np.concatenate([near, far])

    memory_bank = MemoryBank(trained.features, "ivfpq", k, index=trained.index)
    scores = memory_bank.patch_scores(queries)

    assert len(memory_bank) == len(trained.features)
    exact = brute_force_scores(trained.features, queries, k)
    np.testing.assert_allclose(scores, exact, rtol=0.1)
    assert scores[50:].min() > scores[:50].max()


def test_ivfpq_small_bank():
    rng = np.random.default_rng(5)
    bank = rng.normal(size=(200, DIM)).astype(np.float32)
    queries = rng.normal(size=(10, DIM)).astype(np.float32)

    scores = MemoryBank(bank, "ivfpq", 1).patch_scores(queries)

    np.testing.assert_allclose(scores, brute_force_scores(bank, queries, 1), rtol=0.25)


@pytest.mark.parametrize("k", [1, 3])
def test_ivfflat_scores_match_exact_near_clusters(k):
    bank, centers = clustered_bank(seed=5)
    queries = clustered_queries(centers, spread=0.3, seed=6)

    memory_bank = MemoryBank(bank, "ivfflat", k)
    scores = memory_bank.patch_scores(queries)

    assert memory_bank.index_type == "ivfflat"
    assert memory_bank.index.nlist > 1
    # Inverted lists hold full vectors: a found neighbour's distance is exact.
    np.testing.assert_allclose(scores, brute_force_scores(bank, queries, k), rtol=1e-4)


@pytest.mark.parametrize("index_type", ["flat", "ivfflat", "ivfpq"])
def test_bank_save_load_round_trip(tmp_path, ivfpq_bank, index_type):
    trained, centers = ivfpq_bank
    queries = clustered_queries(centers, spread=1.0, seed=7)
    index = trained.index if index_type == "ivfpq" else None
    memory_bank = MemoryBank(trained.features, index_type, 3, index=index)

    memory_bank.save(tmp_path)
    loaded = MemoryBank.load(tmp_path, index_type, 3)

    assert len(loaded) == len(memory_bank)
    np.testing.assert_array_equal(loaded.features, memory_bank.features)
    np.testing.assert_allclose(
        loaded.patch_scores(queries), memory_bank.patch_scores(queries), rtol=1e-6
    )


def test_subset_searches_rows_exactly():
    rng = np.random.default_rng(8)
    bank = rng.normal(size=(300, DIM)).astype(np.float32)
    queries = rng.normal(size=(20, DIM)).astype(np.float32)
    rows = np.arange(0, 300, 3)

    subset = MemoryBank(bank, "flat", 2).subset(rows)

    assert len(subset) == 100
    np.testing.assert_allclose(
        subset.patch_scores(queries),
        brute_force_scores(bank[rows], queries, 2),
        rtol=1e-4,
    )


def test_bank_unknown_index_type():
    bank = np.zeros((10, DIM), dtype=np.float32)

    with pytest.raises(ValueError, match="hnsw"):
        MemoryBank(bank, "hnsw", 1)


@pytest.mark.parametrize("k", [0, 11])
def test_bank_invalid_num_neighbors(k):
    bank = np.zeros((10, DIM), dtype=np.float32)

    with pytest.raises(ValueError, match="num_neighbors"):
        MemoryBank(bank, "flat", k)
