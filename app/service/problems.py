"""RFC 9457 problem details for every error the service returns."""

from __future__ import annotations

import http
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

logger = logging.getLogger(__name__)

PROBLEM_MEDIA_TYPE = "application/problem+json"

# Types of the validators in schemas.py, whose message is a whole sentence
# that names the value.
_SENTENCE_TYPES = frozenset(
    {"invalid_product_name", "invalid_version", "unknown_setting"}
)
_JSON_HEADER = "Content-Type: application/json"
# Location parts that name a member type of a union, not a field.
_TYPE_TAGS = frozenset({"int", "float", "str", "bool"})

# Problem type URIs are this prefix plus the `reason` member.
TYPE_PREFIX = "urn:structcore:problem:"


class ProblemError(StarletteHTTPException):
    """An error returned as an application/problem+json response.

    It subclasses Starlette's HTTPException so that FastAPI passes it through
    unchanged when it is raised while the request body is being read.
    """

    def __init__(
        self,
        status: int,
        reason: str,
        detail: str,
        *,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(status_code=status, detail=detail, headers=headers)
        self.reason = reason
        self.extra = extra

    def to_body(self, instance: str) -> dict[str, Any]:
        """Return the problem object for a request to `instance`."""
        return problem_body(
            self.status_code,
            self.detail,
            instance,
            reason=self.reason,
            **self.extra,
        )


def problem_body(
    status: int,
    detail: str,
    instance: str,
    *,
    reason: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """Build a problem object: type, title, status, detail, instance, extras."""
    body: dict[str, Any] = {
        "type": TYPE_PREFIX + reason if reason else "about:blank",
        "title": http.HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "instance": instance,
    }
    if reason:
        body["reason"] = reason
    body.update(jsonable_encoder(extra))
    return body


def problem_response(
    body: dict[str, Any], headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        body,
        status_code=body["status"],
        media_type=PROBLEM_MEDIA_TYPE,
        headers=headers,
    )


async def _handle_problem(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ProblemError)
    return problem_response(exc.to_body(request.url.path), exc.headers)


async def _handle_http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 404:
        detail = f"no route matches {request.method} {request.url.path}; see /docs"
        reason = "route_not_found"
    elif exc.status_code == 405:
        detail = f"{request.method} is not allowed on {request.url.path}; see /docs"
        reason = "method_not_allowed"
    else:
        detail = str(exc.detail)
        reason = None
    body = problem_body(exc.status_code, detail, request.url.path, reason=reason)
    return problem_response(body, exc.headers)


async def _handle_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = []
    sentences = []
    located = []
    for error in exc.errors():
        loc = list(error.get("loc", ()))
        message, is_sentence = _describe_error(error, exc.body)
        errors.append({"loc": loc, "msg": message, "type": error.get("type", "")})
        if is_sentence:
            sentences.append(message)
        else:
            located.append(f"{_field_location(loc)}: {message}")
    if located:
        sentences.append("invalid request: " + "; ".join(located))

    body = problem_body(
        422,
        "; ".join(sentences),
        request.url.path,
        reason="validation_failed",
        errors=errors,
    )
    return problem_response(body)


def _describe_error(error: Any, body: Any) -> tuple[str, bool]:
    """Return one validation error's message and whether it is a sentence.

    A sentence names the value itself, so the detail shows it without the
    field location. Pydantic's messages are reworded where they are vague for
    an HTTP client.
    """
    kind = error.get("type", "")
    loc = tuple(error.get("loc", ()))
    if kind in _SENTENCE_TYPES:
        return str(error.get("msg", "")), True
    if kind == "json_invalid":
        return _json_error_message(error, body), True
    if loc == ("body",) and kind == "missing":
        return "request body is missing; send a JSON object with " + _JSON_HEADER, True
    if loc == ("body",) and kind in ("model_attributes_type", "dict_type"):
        message = "request body must be a JSON object; send one with " + _JSON_HEADER
        return message, True
    if kind == "extra_forbidden" and len(loc) > 1:
        field = ".".join(str(part) for part in loc[1:])
        return f"unknown field {field!r} in the request {loc[0]}; see /docs", True
    message = str(error.get("msg", ""))
    value = error.get("input")
    if isinstance(value, str | int | float | bool) and len(repr(value)) <= 80:
        message += f", got {value!r}"
    return message, False


def _field_location(loc: list) -> str:
    """Join a location, without the type tags pydantic adds inside unions."""
    parts = [str(part) for part in loc]
    while len(parts) > 1 and (parts[-1] in _TYPE_TAGS or "[" in parts[-1]):
        parts.pop()
    return ".".join(parts)


def _json_error_message(error: Any, body: Any) -> str:
    """Describe a JSON syntax error with its line and column in the body."""
    loc = error.get("loc", ())
    position = loc[-1] if loc and isinstance(loc[-1], int) else None
    reason = error.get("ctx", {}).get("error", "syntax error")
    where = ""
    if position is not None and isinstance(body, str):
        line = body.count("\n", 0, position) + 1
        column = position - (body.rfind("\n", 0, position) + 1) + 1
        where = f" at line {line}, column {column} (character {position})"
    return f"request body is not valid JSON: {reason}{where}"


async def _handle_unexpected(request: Request, exc: Exception) -> JSONResponse:
    logger.exception(
        "unhandled error on %s %s", request.method, request.url.path, exc_info=exc
    )
    body = problem_body(
        500,
        "internal server error; the server log has the traceback",
        request.url.path,
        reason="internal_error",
    )
    return problem_response(body)


def install_problem_handlers(app: FastAPI) -> None:
    """Make every error the app returns a problem+json object."""
    app.add_exception_handler(ProblemError, _handle_problem)
    app.add_exception_handler(StarletteHTTPException, _handle_http_error)
    app.add_exception_handler(RequestValidationError, _handle_validation_error)
    app.add_exception_handler(Exception, _handle_unexpected)


# OpenAPI schema of a problem response, for the `responses=` of routes.
PROBLEM_SCHEMA = {
    "type": "object",
    "properties": {
        "type": {"type": "string", "example": TYPE_PREFIX + "product_not_found"},
        "title": {"type": "string", "example": "Not Found"},
        "status": {"type": "integer", "example": 404},
        "detail": {
            "type": "string",
            "example": "product 'bottle' not found; create it with POST /products",
        },
        "instance": {"type": "string", "example": "/products/bottle"},
        "reason": {"type": "string", "example": "product_not_found"},
    },
    "required": ["type", "title", "status", "detail", "instance"],
}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """Return an OpenAPI `responses` mapping of each status to a problem."""
    return {
        status: {
            "description": http.HTTPStatus(status).phrase,
            "content": {PROBLEM_MEDIA_TYPE: {"schema": PROBLEM_SCHEMA}},
        }
        for status in statuses
    }
