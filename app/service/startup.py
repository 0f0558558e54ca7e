"""Checks that `structcore-serve` runs before serving, each failing in one line.

The order matters: the port is bound before the store is locked and
recovered, so a second server started by mistake touches no store.
"""

from __future__ import annotations

import socket

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from app.service.settings import Settings
from app.service.store import ModelStore, StoreInUseError

# Exit statuses of structcore-serve: a setting to fix, or a resource in use.
EXIT_CONFIG = 2
EXIT_IN_USE = 1
_SECRET_FIELDS = frozenset({"api_key"})


class StartupError(Exception):
    """A reason not to start, as message lines and the exit status to use."""

    def __init__(self, exit_status: int, *lines: str) -> None:
        super().__init__("; ".join(lines))
        self.exit_status = exit_status
        self.lines = lines


def load_settings() -> Settings:
    """Read the STRUCTCORE_* variables, naming each invalid one and its fix."""
    try:
        return Settings()
    except ValidationError as exc:
        lines = [_describe_setting_error(error) for error in exc.errors()]
        raise StartupError(EXIT_CONFIG, *lines) from None


def _describe_setting_error(error: ErrorDetails) -> str:
    field = str(error["loc"][0]) if error["loc"] else ""
    variable = f"STRUCTCORE_{field.upper()}"
    shown = "" if field in _SECRET_FIELDS else f"={error.get('input')!r}"
    info = Settings.model_fields.get(field)
    default = info.default if info is not None else None
    fix = "unset it" if default is None else f"unset it to use the default {default}"
    return f"{variable}{shown} is invalid: {error['msg']}; fix it or {fix}"


def bind_socket(host: str, port: int) -> socket.socket:
    """Bind the listening address as uvicorn would, or explain why it is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        msg = (
            f"cannot listen on {host}:{port} ({exc.strerror}); stop the process "
            "that uses the port or set STRUCTCORE_PORT to a free port"
        )
        raise StartupError(EXIT_IN_USE, msg) from None
    return sock


def lock_store(store: ModelStore) -> None:
    """Take the store's lock file, or explain who holds it."""
    try:
        store.lock()
    except StoreInUseError as exc:
        raise StartupError(EXIT_IN_USE, str(exc)) from None
    except OSError as exc:
        msg = (
            f"store {store.root} cannot be opened ({exc}); set "
            "STRUCTCORE_STORE_DIR to a folder this user can write"
        )
        raise StartupError(EXIT_CONFIG, msg) from None
