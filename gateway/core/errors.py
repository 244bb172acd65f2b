"""Domain errors that carry their MLflow error_code and HTTP status; one handler renders them.

Also what counts as a malformed request body: `body_error` turns any failure to decode one (msgspec,
the json module, bytes that are not UTF-8, nesting deeper than the decoder's recursion limit) into a
400 answer, so a client's bad body is never a 500 with a traceback in the log.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Mapping
from typing import Any

import msgspec

# What an MLflow 3.17 server adds to an error of each code (`MlflowException.serialize_as_json`: the error class
# derived from the code, the SQLSTATE from the class): the stock client keeps both on the exception it raises
# (`e.error_class`, `e.sqlstate`), and without them fills in others of its own. A code MLflow derives nothing from
# (UNAUTHENTICATED, RESOURCE_EXHAUSTED, ...) gets neither, as from MLflow.
_CLASSIFIED: dict[str, tuple[str, str]] = {
    "BAD_REQUEST": ("KAM00", "INVALID_PARAMETER_VALUE"),
    "CUSTOMER_UNAUTHORIZED": ("KAM00", "PERMISSION_DENIED"),
    "ENDPOINT_NOT_FOUND": ("KAM00", "RESOURCE_NOT_FOUND"),
    "FEATURE_DISABLED": ("KAM00", "FEATURE_DISABLED"),
    "INTERNAL_ERROR": ("XXM00", "CLIENT_INTERNAL_ERROR"),
    "INVALID_PARAMETER_VALUE": ("KAM00", "INVALID_PARAMETER_VALUE"),
    "INVALID_STATE": ("XXM00", "CLIENT_INTERNAL_ERROR"),
    "NOT_FOUND": ("KAM00", "RESOURCE_NOT_FOUND"),
    "PERMISSION_DENIED": ("KAM00", "PERMISSION_DENIED"),
    "RESOURCE_ALREADY_EXISTS": ("KAM00", "RESOURCE_ALREADY_EXISTS"),
    "RESOURCE_DOES_NOT_EXIST": ("KAM00", "RESOURCE_NOT_FOUND"),
    "TEMPORARILY_UNAVAILABLE": ("XXM00", "CLIENT_INTERNAL_ERROR"),
}


def mlflow_error(error_code: str, message: str) -> dict[str, str]:
    """An error body as an MLflow server writes it: the code, the message, and what MLflow derives from the code.

    The gateway's refusal of a hidden object is then the store's answer for a missing one, field for field."""
    document = {"error_code": error_code, "message": message}
    if (classified := _CLASSIFIED.get(error_code)) is not None:
        document["sqlstate"], document["error_class"] = classified
    return document


def error_bytes(document: Mapping[str, Any]) -> bytes:
    """An error body encoded as MLflow's handlers encode theirs (`json.dumps` with its default separators)."""
    return json.dumps(document).encode()


class GatewayError(Exception):
    """A decision of the gateway's own, answered as an MLflow-style JSON error body."""

    error_code = "INTERNAL_ERROR"
    status = 500
    denied = False  # a refusal by access control, whatever it answers as (audited)

    def __init__(
        self,
        message: str,
        *,
        error_code: str | None = None,
        status: int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if error_code is not None:
            self.error_code = error_code
        if status is not None:
            self.status = status
        self.headers: dict[str, str] = dict(headers or {})

    def document(self) -> dict[str, Any]:
        """The answer's body: MLflow's error shape."""
        return mlflow_error(self.error_code, self.message)


class InvalidParameter(GatewayError):
    error_code = "INVALID_PARAMETER_VALUE"
    status = 400


class AlreadyExists(GatewayError):
    error_code = "RESOURCE_ALREADY_EXISTS"
    status = 400


class InvalidState(GatewayError):
    """The request is valid but conflicts with the current state: work still under way (e.g. an undrained outbox), or
    what it would leave (e.g. an account without an active account admin)."""

    error_code = "INVALID_STATE"
    status = 409


class ResourceNotFound(GatewayError):
    error_code = "RESOURCE_DOES_NOT_EXIST"
    status = 404


def hidden(message: str) -> ResourceNotFound:
    """A refusal answered exactly like a missing object, and audited as a denial."""
    error = ResourceNotFound(message)
    error.denied = True
    return error


class GraphqlNotFound(ResourceNotFound):
    """An object a GraphQL query names that does not exist or that the caller may not read, answered as an
    MLflow server answers a missing object there: 200, the query's field null and the message in `errors`
    (the web UI then says the object does not exist). Audited like the 404 it stands for."""

    status = 200

    def __init__(self, field: str, missing: ResourceNotFound) -> None:
        super().__init__(missing.message)
        self.field = field
        self.denied = missing.denied

    def document(self) -> dict[str, Any]:
        return {"data": {self.field: None}, "errors": [self.message]}


class EndpointNotFound(GatewayError):
    error_code = "ENDPOINT_NOT_FOUND"
    status = 404


class Unauthenticated(GatewayError):
    error_code = "UNAUTHENTICATED"
    status = 401

    def __init__(self, message: str = "Credentials were not supplied or are not valid.") -> None:
        super().__init__(message, headers={"WWW-Authenticate": 'Basic realm="fedgate", Bearer'})


class PermissionDenied(GatewayError):
    error_code = "PERMISSION_DENIED"
    status = 403


class MalformedRequest(InvalidParameter):
    """A body that cannot be decoded at all (not JSON, not UTF-8, nested too deeply).

    INVALID_PARAMETER_VALUE, as the forwarded routes answer a malformed body and as MLflow's own server
    answers one it cannot parse.
    """


class RateLimited(GatewayError):
    """Too many refusals from one client address; MLflow's client retries 429 after Retry-After."""

    error_code = "REQUEST_LIMIT_EXCEEDED"
    status = 429

    def __init__(self, retry_after_seconds: float) -> None:
        retry_after = max(1, math.ceil(retry_after_seconds))
        super().__init__(
            f"Too many requests without valid credentials from this address; retry in {retry_after} s.",
            headers={"Retry-After": str(retry_after)},
        )


class BodyTooLarge(GatewayError):
    # 413 is not in the client's retry set, so an oversize body fails once, clearly.
    error_code = "INVALID_PARAMETER_VALUE"
    status = 413


class StoreUnavailable(GatewayError):
    """The store could not be reached: a real, transient failure, so 503 with Retry-After."""

    error_code = "TEMPORARILY_UNAVAILABLE"
    status = 503

    def __init__(self, message: str, retry_after: int = 5) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after)})


class DatabaseUnavailable(GatewayError):
    """The gateway's own database could not be reached (refused, lost, shutting down): 503 with Retry-After."""

    error_code = "TEMPORARILY_UNAVAILABLE"
    status = 503

    def __init__(
        self, message: str = "The gateway's database is not available right now; try again later.", retry_after: int = 5
    ) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after)})


class StoreTimeout(GatewayError):
    error_code = "DEADLINE_EXCEEDED"
    status = 504


# Failures to decode a request body. msgspec and the json module both raise RecursionError on deep
# nesting (a 5,000-deep array) rather than a decode error of their own.
BODY_DECODE_ERRORS: tuple[type[Exception], ...] = (
    msgspec.DecodeError,  # msgspec.ValidationError is one
    json.JSONDecodeError,
    UnicodeDecodeError,
    RecursionError,
)


def body_error(exc: BaseException) -> GatewayError | None:
    """The 400 a body-decoding failure answers as, or None when `exc` is not one."""
    if isinstance(exc, RecursionError):
        return MalformedRequest("Malformed JSON in the request body: nested too deeply.")
    if isinstance(exc, msgspec.ValidationError):
        return InvalidParameter(f"Invalid request body: {_short(exc)}")
    if isinstance(exc, msgspec.DecodeError | json.JSONDecodeError):
        return MalformedRequest(f"Malformed JSON in the request body: {_short(exc)}")
    if isinstance(exc, UnicodeDecodeError):
        return MalformedRequest("Malformed JSON in the request body: not valid UTF-8.")
    return None


def malformed_json(raw: bytes, exc: msgspec.DecodeError) -> InvalidParameter:
    """The 400 INVALID_PARAMETER_VALUE a JSON request body msgspec could not decode answers as.

    JSON's `\\u` escapes may name half of a UTF-16 surrogate pair alone (`"\\ud800"`): Python's json module, and
    so MLflow's server, decodes it into text no UTF-8 can carry, while msgspec refuses the whole body as "Input data
    was truncated", which told the caller nothing. Such a body is still refused (the gateway's decoder cannot hold
    the text, so the guard could not decide on what the store would read), but in words that say what is wrong and
    where. Decoded a second time only on this failure's path."""
    found = None
    # Not JSON for the json module either (a UnicodeDecodeError is a ValueError): the decoder's own words.
    with contextlib.suppress(ValueError, RecursionError):
        found = _unpaired_surrogate(json.loads(raw), "")
    if found is None:
        return InvalidParameter(f"Malformed JSON request body: {_short(exc)}")
    where, text = found
    half = next(c for c in text if 0xD800 <= ord(c) <= 0xDFFF)
    return InvalidParameter(
        f"Invalid value for {where} supplied: it contains an unpaired surrogate (\\u{ord(half):04x}), half of a "
        "UTF-16 pair without its other half, which is no Unicode character. Send the text as UTF-8, or escape a "
        "character beyond U+FFFF as both halves of its pair."
    )


def _unpaired_surrogate(node: Any, path: str) -> tuple[str, str] | None:
    """(where, text) of the first string of a decoded document (a key or a value) holding a lone surrogate."""
    if isinstance(node, str):
        return (f"parameter '{path[:120] or '(the body)'}'", node) if _has_surrogate(node) else None
    if isinstance(node, list):
        for index, item in enumerate(node):
            if (found := _unpaired_surrogate(item, f"{path}[{index}]")) is not None:
                return found
    if isinstance(node, dict):
        for key, value in node.items():
            inner = f"{path}.{key}" if path else str(key)
            if _has_surrogate(key):
                shown = (f"{path}." if path else "") + key.encode("ascii", "backslashreplace").decode()
                return (f"a field name in '{shown[:80]}'", key)
            if (found := _unpaired_surrogate(value, inner)) is not None:
                return found
    return None


def _has_surrogate(text: str) -> bool:
    return any(0xD800 <= ord(c) <= 0xDFFF for c in text)


def _short(exc: BaseException) -> str:
    # Decoder messages name a position or a path, never the body; still, keep them short.
    text = str(exc)
    return text if len(text) <= 200 else text[:200] + "..."
