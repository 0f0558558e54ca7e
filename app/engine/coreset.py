"""Greedy k-center coreset subsampling of the memory bank, as in PatchCore.

Farthest-point traversal over a Johnson-Lindenstrauss random projection: each
step adds the patch farthest from every patch chosen so far. Memory stays
O(N * projection_dim); no N x N matrix is ever built.

The plain traversal reads all N patches at every step, which makes it
memory-bound and the slowest part of a fit. This version takes the steps in
batches with lazy evaluation. Distances to the chosen set only shrink, so the
current distance of every patch is an upper bound on its distance later in
the batch. A batch takes the M patches farthest from the chosen set and
continues the traversal among them exactly, updating their distances after
each pick. It stops when the farthest candidate falls below the (M+1)-th
patch, because until then no patch outside the batch can beat it. The whole
bank is then updated once with all the batch's centers in one matrix product.
The selected set and its order are those of the plain traversal, except where
floating-point rounding breaks a near-tie between two distances differently.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

# Dimension of the random projection used only for selecting the coreset; 128
# is PatchCore's default.
DEFAULT_PROJECTION_DIM = 128

# Candidates examined per batch: larger batches take more steps per pass over
# the bank, at M x M memory.
_CANDIDATES = 2048

# Rows per block of the bank update, so the block of distances stays in cache.
_BLOCK_ROWS = 4096


def _project(features: np.ndarray, dim: int, seed: int) -> np.ndarray:
    features = np.asarray(features, dtype=np.float32)
    if features.shape[1] <= dim:
        return np.ascontiguousarray(features)
    rng = np.random.default_rng(seed)
    matrix = rng.standard_normal((features.shape[1], dim)).astype(np.float32)
    return np.ascontiguousarray(features @ (matrix / np.float32(np.sqrt(dim))))


def _shrink_distances(
    points: np.ndarray, sq_norms: np.ndarray, centers: np.ndarray, dist2: np.ndarray
) -> None:
    """Lower `dist2` (squared distance to the chosen set) by new centers."""
    center_terms = np.einsum("ij,ij->i", centers, centers)
    for lo in range(0, points.shape[0], _BLOCK_ROWS):
        hi = lo + _BLOCK_ROWS
        block = points[lo:hi] @ centers.T
        block *= -2.0
        block += center_terms
        nearest = block.min(axis=1)
        nearest += sq_norms[lo:hi]
        np.minimum(dist2[lo:hi], nearest, out=dist2[lo:hi])


def _traverse_candidates(
    candidates: np.ndarray, dist2: np.ndarray, floor: float, budget: int
) -> list[int]:
    """Continue the traversal among `candidates` while it provably matches."""
    sq = np.einsum("ij,ij->i", candidates, candidates)
    within = sq[:, None] - 2.0 * (candidates @ candidates.T) + sq[None, :]
    current = dist2.copy()
    picked = []
    while len(picked) < budget:
        best = int(np.argmax(current))
        if picked and (current[best] < floor or current[best] <= 0.0):
            break
        picked.append(best)
        np.minimum(current, within[best], out=current)
    return picked


def greedy_coreset(
    features: np.ndarray,
    size: int,
    *,
    projection_dim: int = DEFAULT_PROJECTION_DIM,
    seed: int = 0,
    should_stop: Callable[[], bool] | None = None,
) -> np.ndarray:
    """Select `size` rows of `features` (N, D) by greedy k-center traversal.

    Args:
        features: patch features, one row per patch.
        size: number of rows to select, 1 <= size <= N.
        projection_dim: dimension of the random projection that distances are
            measured in.
        seed: seed of the projection and of the first center.
        should_stop: optional callable polled once per batch; when it returns
            True the selection raises InterruptedError.

    Returns:
        Indices of the selected rows, in selection order.
    """
    count = features.shape[0]
    if not 1 <= size <= count:
        msg = f"coreset size must be between 1 and {count}, got {size}"
        raise ValueError(msg)

    points = _project(features, projection_dim, seed)
    sq_norms = np.einsum("ij,ij->i", points, points)
    first = int(np.random.default_rng(seed).integers(count))
    dist2 = np.full(count, np.inf, dtype=np.float32)
    _shrink_distances(points, sq_norms, points[first : first + 1], dist2)
    selected = [first]

    while len(selected) < size:
        if should_stop is not None and should_stop():
            raise InterruptedError("coreset selection stopped")
        if dist2.max() <= 0.0:
            # Every patch left duplicates a chosen one, so any of them will do.
            rest = np.setdiff1d(np.arange(count), selected)[: size - len(selected)]
            selected.extend(rest.tolist())
            break
        pool = min(_CANDIDATES, count - 1)
        order = np.argpartition(-dist2, pool)
        candidates = order[:pool]
        floor = float(dist2[order[pool]])
        picked = _traverse_candidates(
            points[candidates], dist2[candidates], floor, size - len(selected)
        )
        chosen = candidates[picked]
        selected.extend(chosen.tolist())
        _shrink_distances(points, sq_norms, points[chosen], dist2)
    return np.asarray(selected, dtype=np.int64)
