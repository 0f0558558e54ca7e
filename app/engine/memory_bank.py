"""Nearest-neighbour search of patch features against the memory bank (faiss)."""

from __future__ import annotations

import logging
from pathlib import Path

import faiss
import numpy as np

logger = logging.getLogger(__name__)

INDEX_TYPES = ("flat", "ivfflat", "ivfpq")

# IVF-Flat layout: about 2 * sqrt(M) inverted lists of full vectors, of which
# a query scans the nearest _IVFFLAT_PROBES. The distances it returns are
# exact, but a neighbour that sits in an unprobed list is missed.
_IVFFLAT_PROBES = 8

# Minimum rows for IVF-PQ: 8-bit product quantisation trains 256 centroids per
# sub-vector, and faiss warns below 39 training points per centroid.
MIN_IVFPQ_ROWS = 256 * 39

# IVF-PQ layout: about 4 * sqrt(M) inverted lists (a common faiss rule of thumb)
# and 8-bit codes of up to 16 sub-vectors. Probing more lists per query raises
# recall and costs speed.
_IVF_PROBES = 8
_PQ_BITS = 8


def _ivfflat_index(bank: np.ndarray) -> faiss.Index:
    count, dim = bank.shape
    lists = max(1, min(int(2 * np.sqrt(count)), count // 39))
    quantizer = faiss.IndexFlatL2(dim)
    index = faiss.IndexIVFFlat(quantizer, dim, lists)
    index.train(bank)
    index.nprobe = min(_IVFFLAT_PROBES, lists)
    return index


def _ivfpq_index(bank: np.ndarray) -> faiss.Index:
    count, dim = bank.shape
    lists = max(1, min(int(4 * np.sqrt(count)), count // 39))
    sub_vectors = next(m for m in (16, 8, 4, 2, 1) if dim % m == 0)
    quantizer = faiss.IndexFlatL2(dim)
    index = faiss.IndexIVFPQ(quantizer, dim, lists, sub_vectors, _PQ_BITS)
    index.train(bank)
    index.nprobe = min(_IVF_PROBES, lists)
    return index


class MemoryBank:
    """Coreset patch features with a faiss index; distances in L2 units.

    Args:
        features: (M, D) float32 coreset features.
        index_type: "flat" (exact IndexFlatL2), "ivfflat" (inverted lists over
            the full vectors: exact distances, faster search, rare misses) or
            "ivfpq" (compressed vectors, for banks too big for exact search).
        num_neighbors: k; a patch's score is the mean L2 distance to its k
            nearest bank entries (k = 1 is PatchCore's nearest-neighbour
            distance).
    """

    def __init__(
        self,
        features: np.ndarray,
        index_type: str = "flat",
        num_neighbors: int = 1,
        index: faiss.Index | None = None,
    ) -> None:
        if index_type not in INDEX_TYPES:
            msg = f"index_type must be one of {INDEX_TYPES}, got {index_type!r}"
            raise ValueError(msg)
        features = np.ascontiguousarray(features, dtype=np.float32)
        if num_neighbors < 1 or num_neighbors > len(features):
            msg = f"num_neighbors must be between 1 and {len(features)}"
            raise ValueError(msg)
        self.features = features
        self.index_type = index_type
        self.num_neighbors = num_neighbors
        if index is None:
            if index_type == "flat":
                index = faiss.IndexFlatL2(features.shape[1])
                index.add(features)
            elif index_type == "ivfflat":
                index = _ivfflat_index(features)
                index.add(features)
            elif len(features) < MIN_IVFPQ_ROWS:
                # Exact search is cheap at this size and IVF-PQ cannot train.
                logger.warning(
                    "memory bank has %d rows, fewer than the %d IVF-PQ needs; "
                    "using exact search",
                    len(features),
                    MIN_IVFPQ_ROWS,
                )
                self.index_type = "flat"
                index = faiss.IndexFlatL2(features.shape[1])
                index.add(features)
            else:
                index = _ivfpq_index(features)
                index.add(features)
        self.index = index

    def __len__(self) -> int:
        return self.index.ntotal

    def subset(self, rows: np.ndarray) -> MemoryBank:
        """Return an exact-search bank over some of this bank's rows."""
        return MemoryBank(self.features[rows], "flat", self.num_neighbors)

    def patch_scores(self, queries: np.ndarray) -> np.ndarray:
        """Return the mean L2 distance of each query row to its k nearest."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        squared, _ = self.index.search(queries, self.num_neighbors)
        return np.sqrt(np.maximum(squared, 0.0)).mean(axis=1)

    def save(self, directory: Path) -> None:
        np.save(directory / "bank.npy", self.features)
        if self.index_type != "flat":
            faiss.write_index(self.index, str(directory / "bank.faiss"))

    @classmethod
    def load(cls, directory: Path, index_type: str, num_neighbors: int) -> MemoryBank:
        features = np.load(directory / "bank.npy")
        index = None
        if (directory / "bank.faiss").is_file():
            index = faiss.read_index(str(directory / "bank.faiss"))
        stored_type = index_type if index is not None else "flat"
        return cls(features, stored_type, num_neighbors, index=index)
