"""Domain errors that carry their MLflow error_code and HTTP status; one handler renders them."""

from __future__ import annotations

from collections.abc import Mapping


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


class InvalidParameter(GatewayError):
    error_code = "INVALID_PARAMETER_VALUE"
    status = 400


class AlreadyExists(GatewayError):
    error_code = "RESOURCE_ALREADY_EXISTS"
    status = 400


class InvalidState(GatewayError):
    """The request is valid but conflicts with work still under way (e.g. an undrained outbox)."""

    error_code = "INVALID_STATE"
    status = 409


class ResourceNotFound(GatewayError):
    error_code = "RESOURCE_DOES_NOT_EXIST"
    status = 404


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


class StoreTimeout(GatewayError):
    error_code = "DEADLINE_EXCEEDED"
    status = 504
