"""Model registry on disk: products, good samples, model versions, active pointer.

Layout under the store root::

    <product>/product.json               name, creation time, engine settings
    <product>/samples/<sha256>.<ext>     original bytes of one good image
    <product>/samples/<sha256>.json      its metadata (file name, size, ...)
    <product>/models/<version>/          StructCoreModel.save output + meta.json
    <product>/models/<version>/override.json   optional threshold override
    <product>/active.json                {"version": "v3"}, the version serving
    <product>/last_version.json          highest version number ever used
    .lock                                flock of the process serving the store

A version is written into ``models/.tmp-*`` and renamed into place once every
file is synced, and JSON files are replaced atomically, so a crash leaves
either the old state or the new one. `recover` deletes what a crash left.
One process serves a store: `lock` takes an exclusive lock on ``.lock``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import shutil
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from app.engine.model import StructCoreModel

logger = logging.getLogger(__name__)

PRODUCT_NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
# PRODUCT_NAME_PATTERN in words, for error messages.
PRODUCT_NAME_RULE = (
    "use 1 to 64 lowercase letters, digits, '-' or '_', starting with a letter or digit"
)
VERSION_PATTERN = r"^v[1-9][0-9]{0,8}$"
SAMPLE_ID_LENGTH = 16

_PRODUCT_NAME_RE = re.compile(PRODUCT_NAME_PATTERN)
_VERSION_RE = re.compile(VERSION_PATTERN)
_SAMPLE_ID_RE = re.compile(r"^[0-9a-f]{16,64}$")
_TEMP_PREFIX = ".tmp-"
_LOCK_FILE = ".lock"

# Store locks this process holds: resolved root -> [lock file descriptor,
# number of ModelStore objects holding it]. Stores in one process share the
# lock, so a test can open a second app on a store as after a restart.
_held_locks: dict[Path, list[int]] = {}
_held_locks_guard = threading.Lock()


class StoreError(Exception):
    """Base class of registry errors; `reason` is a short machine code."""

    reason = "store_error"


class ProductNotFoundError(StoreError):
    reason = "product_not_found"


class ProductExistsError(StoreError):
    reason = "product_exists"


class SampleNotFoundError(StoreError):
    reason = "sample_not_found"


class VersionNotFoundError(StoreError):
    reason = "version_not_found"


class ActiveVersionError(StoreError):
    reason = "version_active"


class StoreInUseError(StoreError):
    """Another process holds the store's lock file."""

    reason = "store_in_use"


@dataclass(frozen=True)
class Product:
    name: str
    created: str
    settings: dict[str, Any]


@dataclass(frozen=True)
class Sample:
    id: str
    sha256: str
    filename: str
    format: str
    width: int
    height: int
    size_bytes: int
    added: str
    path: Path


@dataclass(frozen=True)
class VersionInfo:
    version: str
    created: str
    meta: dict[str, Any]
    override: dict[str, Any] | None
    path: Path


def utc_now() -> str:
    """Return the current UTC time as an ISO 8601 string."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def is_valid_product_name(name: str) -> bool:
    return _PRODUCT_NAME_RE.fullmatch(name) is not None


def is_valid_version(version: str) -> bool:
    return _VERSION_RE.fullmatch(version) is not None


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write `data` to a temporary file beside `path`, sync it, os.replace it."""
    temp = path.with_name(f"{_TEMP_PREFIX}{uuid.uuid4().hex}-{path.name}")
    with open(temp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temp, path)
    _fsync_dir(path.parent)


def _write_json_atomic(path: Path, value: Any) -> None:
    _write_bytes_atomic(path, json.dumps(value, indent=2).encode())


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def _flock_or_raise(root: Path) -> int:
    """Open and lock `root/.lock`, write this pid into it, return the fd."""
    fd = os.open(root / _LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        msg = (
            f"store {root} is in use by another structcore process (pid {holder}); "
            "stop it or use another STRUCTCORE_STORE_DIR"
        )
        raise StoreInUseError(msg) from None
    except BaseException:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _version_number(version: str) -> int:
    return int(version[1:])


class ModelStore:
    """Registry of products, good samples and model versions under `root`.

    Methods are safe to call from several threads. Mutations of one product
    hold that product's lock.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self._locks: dict[str, threading.RLock] = {}
        self._locks_guard = threading.Lock()
        # Resolved root while this object holds the store lock.
        self._lock_key: Path | None = None

    @contextmanager
    def product_lock(self, name: str) -> Iterator[None]:
        with self._locks_guard:
            lock = self._locks.setdefault(name, threading.RLock())
        with lock:
            yield

    def lock(self) -> None:
        """Take the exclusive lock on `<root>/.lock`, creating the root.

        The lock is fcntl.flock, non-blocking, and the kernel releases it when
        the process exits, even by SIGKILL. The file contains the holder's pid.
        A second call on this object is a no-op. ModelStore objects of one
        process share the lock, which is released when all have called `unlock`.

        Raises:
            StoreInUseError: another process holds the lock.
            OSError: the root cannot be created or the lock file opened.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        key = self.root.resolve()
        with _held_locks_guard:
            if self._lock_key is not None:
                return
            entry = _held_locks.get(key)
            if entry is not None:
                entry[1] += 1
            else:
                _held_locks[key] = [_flock_or_raise(key), 1]
            self._lock_key = key

    def unlock(self) -> None:
        """Release this object's hold on the store lock, if it has one."""
        with _held_locks_guard:
            if self._lock_key is None:
                return
            entry = _held_locks[self._lock_key]
            entry[1] -= 1
            if entry[1] == 0:
                del _held_locks[self._lock_key]
                os.close(entry[0])
            self._lock_key = None

    def recover(self) -> list[Path]:
        """Create the root and delete temporary files left by a crash."""
        self.root.mkdir(parents=True, exist_ok=True)
        leftovers = list(self.root.glob(f"{_TEMP_PREFIX}*"))
        leftovers += self.root.glob(f"*/{_TEMP_PREFIX}*")
        leftovers += self.root.glob(f"*/*/{_TEMP_PREFIX}*")
        for path in leftovers:
            logger.warning("deleting leftover temporary path %s", path)
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
        return leftovers

    # Products

    def _product_dir(self, name: str) -> Path:
        if not is_valid_product_name(name):
            msg = f"product name {name!r} is invalid; {PRODUCT_NAME_RULE}"
            raise ProductNotFoundError(msg)
        return self.root / name

    def _existing_product_dir(self, name: str) -> Path:
        path = self._product_dir(name)
        if not (path / "product.json").is_file():
            msg = f"product {name!r} not found; create it with POST /products"
            raise ProductNotFoundError(msg)
        return path

    def create_product(self, name: str, settings: dict[str, Any]) -> Product:
        """Create a product folder; raises ProductExistsError if it exists."""
        with self.product_lock(name):
            path = self._product_dir(name)
            if (path / "product.json").exists():
                msg = f"product {name!r} already exists; choose another name"
                raise ProductExistsError(msg)

            (path / "samples").mkdir(parents=True, exist_ok=True)
            (path / "models").mkdir(exist_ok=True)
            product = Product(name=name, created=utc_now(), settings=settings)
            record = {"name": name, "created": product.created, "settings": settings}
            _write_json_atomic(path / "product.json", record)
            _fsync_dir(self.root)
            return product

    def get_product(self, name: str) -> Product:
        record = _read_json(self._existing_product_dir(name) / "product.json")
        return Product(record["name"], record["created"], record["settings"])

    def list_products(self) -> list[Product]:
        names = sorted(
            path.parent.name
            for path in self.root.glob("*/product.json")
            if is_valid_product_name(path.parent.name)
        )
        products = []
        for name in names:
            # A product deleted by another thread since the glob is skipped.
            with contextlib.suppress(ProductNotFoundError, FileNotFoundError):
                products.append(self.get_product(name))
        return products

    def delete_product(self, name: str) -> None:
        """Remove a product with its samples and versions.

        The folder is first renamed to a temporary name, so the product
        disappears at once even if the removal is interrupted.
        """
        with self.product_lock(name):
            path = self._existing_product_dir(name)
            trash = self.root / f"{_TEMP_PREFIX}{name}-{uuid.uuid4().hex}"
            os.rename(path, trash)
            _fsync_dir(self.root)
            shutil.rmtree(trash)

    # Samples

    def add_sample(
        self,
        product: str,
        data: bytes,
        sha256: str,
        *,
        filename: str,
        image_format: str,
        width: int,
        height: int,
    ) -> tuple[Sample, bool]:
        """Store one good image once; returns (sample, was_duplicate)."""
        with self.product_lock(product):
            samples_dir = self._existing_product_dir(product) / "samples"
            meta_path = samples_dir / f"{sha256}.json"
            if meta_path.exists():
                return self._read_sample(meta_path), True

            extension = image_format.lower()
            _write_bytes_atomic(samples_dir / f"{sha256}.{extension}", data)
            record = {
                "sha256": sha256,
                "filename": filename,
                "format": extension,
                "width": width,
                "height": height,
                "size_bytes": len(data),
                "added": utc_now(),
            }
            _write_json_atomic(meta_path, record)
            return self._read_sample(meta_path), False

    def _read_sample(self, meta_path: Path) -> Sample:
        record = _read_json(meta_path)
        sha256 = record["sha256"]
        return Sample(
            id=sha256[:SAMPLE_ID_LENGTH],
            sha256=sha256,
            filename=record["filename"],
            format=record["format"],
            width=record["width"],
            height=record["height"],
            size_bytes=record["size_bytes"],
            added=record["added"],
            path=meta_path.with_name(f"{sha256}.{record['format']}"),
        )

    def list_samples(self, product: str) -> list[Sample]:
        samples_dir = self._existing_product_dir(product) / "samples"
        samples = []
        for path in samples_dir.glob("*.json"):
            if path.name.startswith(_TEMP_PREFIX):
                continue
            # A sample deleted by another thread since the glob is skipped.
            with contextlib.suppress(FileNotFoundError):
                samples.append(self._read_sample(path))
        return sorted(samples, key=lambda sample: (sample.added, sample.sha256))

    def count_samples(self, product: str) -> int:
        samples_dir = self._existing_product_dir(product) / "samples"
        return sum(
            1
            for path in samples_dir.glob("*.json")
            if not path.name.startswith(_TEMP_PREFIX)
        )

    def delete_sample(self, product: str, sample_id: str) -> None:
        """Delete the sample whose sha256 starts with `sample_id` (16+ hex)."""
        with self.product_lock(product):
            samples_dir = self._existing_product_dir(product) / "samples"
            matches = []
            if _SAMPLE_ID_RE.fullmatch(sample_id):
                matches = list(samples_dir.glob(f"{sample_id}*.json"))
            if len(matches) != 1:
                msg = (
                    f"sample {sample_id!r} not found in product {product!r}; "
                    f"list ids with GET /products/{product}/samples"
                )
                raise SampleNotFoundError(msg)

            sample = self._read_sample(matches[0])
            matches[0].unlink()
            sample.path.unlink(missing_ok=True)
            _fsync_dir(samples_dir)

    # Versions

    def write_version(
        self, product: str, model: StructCoreModel, meta: dict[str, Any]
    ) -> VersionInfo:
        """Save `model` as the product's next version and return it.

        The new folder becomes visible under its final name only after every
        file in it is synced to disk.
        """
        models_dir = self._existing_product_dir(product) / "models"
        temp = models_dir / f"{_TEMP_PREFIX}{uuid.uuid4().hex}"
        temp.mkdir()
        try:
            model.save(temp)
            with self.product_lock(product):
                version = f"v{self._last_version_number(product) + 1}"
                record = {**meta, "version": version, "created": utc_now()}
                (temp / "meta.json").write_text(json.dumps(record, indent=2))
                for path in temp.rglob("*"):
                    if path.is_file():
                        with open(path, "rb") as handle:
                            os.fsync(handle.fileno())
                _fsync_dir(temp)
                os.rename(temp, models_dir / version)
                _fsync_dir(models_dir)
        except BaseException:
            shutil.rmtree(temp, ignore_errors=True)
            raise
        return self.get_version(product, version)

    def _last_version_number(self, product: str) -> int:
        models_dir = self._existing_product_dir(product) / "models"
        numbers = [
            _version_number(path.name)
            for path in models_dir.iterdir()
            if _VERSION_RE.fullmatch(path.name)
        ]
        counter_path = models_dir.parent / "last_version.json"
        if counter_path.exists():
            numbers.append(_read_json(counter_path)["number"])
        return max(numbers, default=0)

    def _version_dir(self, product: str, version: str) -> Path:
        models_dir = self._existing_product_dir(product) / "models"
        path = models_dir / version
        if not _VERSION_RE.fullmatch(version) or not path.is_dir():
            msg = (
                f"version {version!r} of product {product!r} not found; "
                f"list versions with GET /products/{product}/models"
            )
            raise VersionNotFoundError(msg)
        return path

    def get_version(self, product: str, version: str) -> VersionInfo:
        path = self._version_dir(product, version)
        meta = _read_json(path / "meta.json")
        override_path = path / "override.json"
        override = _read_json(override_path) if override_path.exists() else None
        return VersionInfo(version, meta["created"], meta, override, path)

    def list_versions(self, product: str) -> list[VersionInfo]:
        models_dir = self._existing_product_dir(product) / "models"
        versions = sorted(
            (p.name for p in models_dir.iterdir() if _VERSION_RE.fullmatch(p.name)),
            key=_version_number,
        )
        infos = []
        for version in versions:
            # A version deleted by another thread since the listing is skipped.
            with contextlib.suppress(VersionNotFoundError, FileNotFoundError):
                infos.append(self.get_version(product, version))
        return infos

    def delete_version(self, product: str, version: str) -> None:
        """Delete a version that is not the active one."""
        with self.product_lock(product):
            path = self._version_dir(product, version)
            if self.active_version(product) == version:
                msg = (
                    f"version {version} is the active version of {product!r}; "
                    "activate another version first"
                )
                raise ActiveVersionError(msg)

            # Keep the number taken so a later fit never reuses it.
            counter_path = path.parent.parent / "last_version.json"
            number = self._last_version_number(product)
            _write_json_atomic(counter_path, {"number": number})
            trash = path.with_name(f"{_TEMP_PREFIX}{uuid.uuid4().hex}")
            os.rename(path, trash)
            _fsync_dir(path.parent)
            shutil.rmtree(trash)

    def load_model(
        self, product: str, version: str, device: str | None
    ) -> StructCoreModel:
        """Load a version from disk with its threshold override applied."""
        info = self.get_version(product, version)
        model = StructCoreModel.load(info.path, device=device)
        if info.override:
            model = model.with_threshold(threshold=info.override["threshold"])
        return model

    def set_override(
        self, product: str, version: str, override: dict[str, Any]
    ) -> None:
        """Store a threshold override; its "threshold" key is applied on load."""
        with self.product_lock(product):
            path = self._version_dir(product, version)
            _write_json_atomic(path / "override.json", override)

    # Active pointer

    def active_version(self, product: str) -> str | None:
        path = self._existing_product_dir(product) / "active.json"
        if not path.exists():
            return None
        version = _read_json(path)["version"]
        if not (path.parent / "models" / version).is_dir():
            logger.error(
                "active.json of product %s names missing version %s", product, version
            )
            return None
        return version

    def set_active(self, product: str, version: str) -> None:
        with self.product_lock(product):
            path = self._version_dir(product, version)
            pointer = path.parent.parent / "active.json"
            _write_json_atomic(pointer, {"version": version, "activated": utc_now()})
