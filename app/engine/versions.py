"""Versions of the libraries that a fitted model's scores depend on."""

from __future__ import annotations

import platform
from importlib import metadata

_PACKAGES = ("torch", "timm", "faiss-cpu", "numpy", "pillow")


def collect() -> dict[str, str]:
    """Return {package: version} for the scoring stack, plus Python's."""
    found = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found
