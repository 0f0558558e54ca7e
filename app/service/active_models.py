"""In-memory cache of each product's active model, loaded once per version."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from app.engine.model import StructCoreModel
from app.service.metrics import ServiceMetrics
from app.service.store import ModelStore, StoreError

logger = logging.getLogger(__name__)


class NoActiveModelError(StoreError):
    reason = "no_active_model"


class ModelLoadError(StoreError):
    """A stored version exists but cannot be loaded (damaged or incompatible)."""

    reason = "model_load_failed"


class ActiveModels:
    """Cache of the model that serves scoring requests for each product.

    The first request for a product loads its active version from the store.
    Concurrent first requests wait on a per-product lock, so each version is
    loaded once. A switch of version (fit, activation, threshold change) swaps
    the entry under the same lock, and requests already holding the previous
    model finish with it.
    """

    def __init__(self, store: ModelStore, device: str, metrics: ServiceMetrics) -> None:
        self.store = store
        self.device = device
        self.metrics = metrics
        self._entries: dict[str, tuple[str, StructCoreModel]] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    @contextmanager
    def _locked(self, product: str) -> Iterator[None]:
        with self._guard:
            lock = self._locks.setdefault(product, threading.Lock())
        with lock:
            yield

    def get(self, product: str) -> tuple[str, StructCoreModel]:
        """Return (version, model) of the product's active version.

        Raises:
            ProductNotFoundError: the product does not exist.
            NoActiveModelError: the product has no active version yet.
        """
        entry = self._entries.get(product)
        if entry is not None:
            return entry

        with self._locked(product):
            entry = self._entries.get(product)
            if entry is not None:
                return entry
            version = self.store.active_version(product)
            if version is None:
                msg = (
                    f"product {product!r} has no active model; fit one with "
                    f"POST /products/{product}/fit"
                )
                raise NoActiveModelError(msg)
            model = self._load(product, version)
            logger.info("loaded model %s/%s", product, version)
            return self._install(product, version, model)

    def activate(self, product: str, version: str) -> tuple[str, StructCoreModel]:
        """Load a stored version, point the store at it and serve it."""
        with self._locked(product):
            model = self._load(product, version)
            self.store.set_active(product, version)
            logger.info("activated model %s/%s", product, version)
            return self._install(product, version, model)

    def activate_new(self, product: str, version: str, model: StructCoreModel) -> None:
        """Activate a version that was just fitted, reusing the model in memory."""
        with self._locked(product):
            self.store.set_active(product, version)
            logger.info("activated model %s/%s", product, version)
            self._install(product, version, model)

    def replace_if_active(
        self, product: str, version: str, model: StructCoreModel
    ) -> None:
        """Serve `model` (a new threshold) if `version` is the one in memory."""
        with self._locked(product):
            entry = self._entries.get(product)
            if entry is not None and entry[0] == version:
                self._entries[product] = (version, model)

    def cached(self, product: str) -> tuple[str, StructCoreModel] | None:
        return self._entries.get(product)

    def forget(self, product: str) -> None:
        with self._locked(product):
            self._entries.pop(product, None)
        self.metrics.forget_product(product)

    def _load(self, product: str, version: str) -> StructCoreModel:
        try:
            return self.store.load_model(product, version, self.device)
        except StoreError:
            raise
        # The engine raises ValueError for an incompatible format or backbone,
        # BackboneWeightsError (a RuntimeError) for missing weights, and numpy
        # and faiss raise OSError or RuntimeError for damaged files.
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            logger.exception("loading model %s/%s failed", product, version)
            msg = (
                f"model {product}/{version} could not be loaded: {exc}; activate "
                "another version or fit a new one"
            )
            raise ModelLoadError(msg) from exc

    def _install(
        self, product: str, version: str, model: StructCoreModel
    ) -> tuple[str, StructCoreModel]:
        entry = (version, model)
        self._entries[product] = entry
        bank_size = model.summary().get("bank_size")
        if isinstance(bank_size, int):
            self.metrics.bank_size.labels(product).set(bank_size)
        return entry
