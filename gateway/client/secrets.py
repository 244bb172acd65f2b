"""Secrets for a training run, read through the gateway: `get_secret` and `get_secrets` (Azure ML's semantics).

    import mlflow
    from gateway.client import get_secret, get_secrets

    with mlflow.start_run():
        password = get_secret("db-password")                 # the workspace's default scope
        api_key = get_secret("partner-apis/api-key")         # a scope of its own: `scope/key`
        found = get_secrets(["db-user", "db-password", "partner-apis/token"])  # one call; None if missing

The read names the active MLflow run (or `run_id=`), goes to the tracking URI with the workspace and the
credentials the MLflow client uses (MLFLOW_TRACKING_URI, MLFLOW_WORKSPACE or `mlflow.set_workspace`,
MLFLOW_TRACKING_TOKEN or user and password, MLFLOW_TRACKING_INSECURE_TLS, certificates, retries): the
request goes through MLflow's own `http_request` with the tracking store's credentials.

Which scope: the name's `scope/` prefix, else `$FEDGATE_SECRET_SCOPE`, else the workspace's default scope
(`default_secret_scope`, set by an account admin). The REST calls behind it are in docs/secrets.md.

Only the standard library and `mlflow` (which brings `requests`); nothing of the gateway's server. Values
are never printed, logged or put in an exception.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Iterable
from typing import Any

SCOPE_ENV = "FEDGATE_SECRET_SCOPE"
MAX_NAMES = 100  # names per get_secrets call (the gateway's limit)
_NAME_RE = re.compile(r"^(?!\.\.?\Z)[A-Za-z0-9_.-]{1,128}\Z")  # the gateway's rule (SECRET_NAME_RE)
_RULE = "1 to 128 letters, digits, '_', '-' and '.', and not '.' or '..'"
_GET = "/api/2.0/secrets/get"
_GET_MANY = "/api/2.0/secrets/get-many"

__all__ = [
    "SCOPE_ENV",
    "NoActiveRun",
    "SecretError",
    "SecretNotFound",
    "SecretsUnavailable",
    "get_secret",
    "get_secrets",
    "split_name",
]


class SecretError(Exception):
    """A secret could not be read; the message says why and never carries a value."""


class SecretNotFound(SecretError, LookupError):
    """The secret does not exist, or the run may not read it (the gateway answers both alike)."""


class SecretsUnavailable(SecretError):
    """The gateway or the scope's vault did not answer: try again later (`retry_after` seconds, when known)."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class NoActiveRun(SecretError):
    """A secret is read by a running run: there is no active run and no `run_id` was given."""


def split_name(name: str) -> tuple[str | None, str]:
    """`"scope/key"` -> `("scope", "key")`, `"key"` -> `(None, "key")`; names are `[A-Za-z0-9_.-]{1,128}`, not
    `.` or `..`."""
    if not isinstance(name, str):
        raise TypeError(f"a secret's name is a str, got {type(name).__name__}")
    scope, qualified, key = name.partition("/")
    if not qualified:
        scope, key = "", name
    if (qualified and not _NAME_RE.match(scope)) or not _NAME_RE.match(key):
        shown = repr(name[:140]) + ("..." if len(name) > 140 else "")
        raise ValueError(f"{shown} is not a secret name: use 'key' or 'scope/key', each {_RULE}")
    return (scope if qualified else None), key


def get_secret(name: str, *, run_id: str | None = None) -> str:
    """The value of the secret `name` (`key` or `scope/key`), read by the active run (or `run_id`).

    Raises SecretNotFound naming the secret when it does not exist or the run may not read it,
    SecretsUnavailable when the gateway or the vault does not answer (try again), NoActiveRun outside a run,
    SecretError otherwise (a value that is not UTF-8 text, a refused request).
    """
    scope, key = split_name(name)
    reader = _reader(run_id, f"get_secret({name!r})")
    body: dict[str, Any] = {"key": key, "run_id": reader}
    chosen = scope or _scope_from_env()
    if chosen:
        body["scope"] = chosen
    status, answer, retry_after = _post(_GET, body)
    if status != 200:
        _raise(status, answer, retry_after, what=f"secret {name!r}", run_id=reader, scope=chosen)
    value = answer.get("value") if isinstance(answer, dict) else None
    if not isinstance(value, str):
        raise SecretError(f"The gateway's answer for secret {name!r} carries no value.")
    return _text(name, value)


def get_secrets(names: Iterable[str], *, run_id: str | None = None) -> dict[str, str | None]:
    """The values of several secrets in one HTTP call: name (as given) -> value, or None for a missing key.

    Each name is `key` or `scope/key`. A scope that does not exist or that the run may not read refuses
    the whole call (SecretNotFound naming the scope); otherwise as `get_secret`.
    """
    if isinstance(names, str):
        raise TypeError("get_secrets takes a list of names; for one secret use get_secret")
    wanted = list(dict.fromkeys(names))
    if not wanted:
        return {}
    if len(wanted) > MAX_NAMES:
        raise ValueError(f"get_secrets reads at most {MAX_NAMES} names in one call, got {len(wanted)}")
    for name in wanted:
        split_name(name)
    reader = _reader(run_id, "get_secrets(...)")
    body: dict[str, Any] = {"keys": wanted, "run_id": reader}
    chosen = _scope_from_env()
    if chosen:
        body["scope"] = chosen
    status, answer, retry_after = _post(_GET_MANY, body)
    if status != 200:
        _raise(status, answer, retry_after, what=f"secrets {wanted!r}", run_id=reader, scope=chosen)
    values = answer.get("values") if isinstance(answer, dict) else None
    if not isinstance(values, dict):
        raise SecretError("The gateway's answer to get_secrets carries no values.")
    result: dict[str, str | None] = {}
    for name in wanted:
        value = values.get(name)
        result[name] = _text(name, value) if isinstance(value, str) else None
    return result


# -- the call ---------------------------------------------------------------------------------------------


def _scope_from_env() -> str | None:
    scope = os.environ.get(SCOPE_ENV, "").strip()
    if scope and not _NAME_RE.match(scope):
        raise ValueError(f"{SCOPE_ENV}={scope[:140]!r} is not a scope name ({_RULE})")
    return scope or None


def _reader(run_id: str | None, call: str) -> str:
    """The run that reads: `run_id`, else the active MLflow run of this thread."""
    if run_id:
        return run_id
    import mlflow

    active = mlflow.active_run()
    if active is None:
        raise NoActiveRun(
            f"{call} needs an active MLflow run: secrets are read by a running run. Call it inside "
            "`with mlflow.start_run():` (or pass run_id= of a RUNNING run you may edit)."
        )
    return str(active.info.run_id)


def _post(endpoint: str, body: dict[str, Any]) -> tuple[int, Any, float | None]:
    """POST to the tracking server with the MLflow client's credentials, TLS settings and retries.

    Returns the status, the decoded JSON answer (None if it is not JSON) and Retry-After. A body is decoded
    here and nowhere shown: an answer of 200 carries values.
    """
    from mlflow.exceptions import MlflowException
    from mlflow.utils.rest_utils import http_request

    creds = _host_creds()
    try:
        response = http_request(creds, endpoint, "POST", json=body, raise_on_status=False)  # type: ignore[no-untyped-call]
    except MlflowException as exc:  # the network failed; its message names the URL, never a value
        raise SecretsUnavailable(
            f"The gateway at {creds.host} could not be reached: {exc.message}. Try again."
        ) from None
    try:
        answer = response.json()
    except ValueError:  # not JSON (decoding errors hold the body: not kept)
        answer = None
    return int(response.status_code), answer, _seconds(response.headers.get("Retry-After"))


def _host_creds() -> Any:
    """The tracking store's host and credentials, as the MLflow client builds them for each of its calls."""
    import mlflow
    from mlflow.tracking._tracking_service.utils import _get_store

    store = _get_store()  # type: ignore[no-untyped-call]
    get_host_creds = getattr(store, "get_host_creds", None)
    if get_host_creds is None:
        raise SecretError(
            f"The tracking URI {mlflow.get_tracking_uri()!r} is not an HTTP tracking server: secrets are read "
            "through the fedgate gateway. Set MLFLOW_TRACKING_URI to the gateway's URL."
        )
    return get_host_creds()


def _raise(status: int, answer: Any, retry_after: float | None, *, what: str, run_id: str, scope: str | None) -> None:
    """The exception for an answer other than 200 (an error body: it never carries a value)."""
    from mlflow.utils.workspace_context import get_request_workspace

    error = answer if isinstance(answer, dict) else {}
    code = str(error.get("error_code", ""))
    said = str(error.get("message", ""))[:500]
    workspace = get_request_workspace() or "default"
    if status == 404 and code == "RESOURCE_DOES_NOT_EXIST":
        where = f"scope {scope!r}" if scope else "the scope named (or the workspace's default scope)"
        raise SecretNotFound(
            f"Could not read {what} from {where} in workspace {workspace!r}: it does not exist, or run {run_id} may "
            "not read it (the caller needs READ on the scope, and the run must be RUNNING in that workspace and "
            f"editable by the caller). The gateway said: {said}"
        )
    if status == 503:
        after = f" in {retry_after:g} s" if retry_after is not None else " later"
        raise SecretsUnavailable(
            f"Could not read {what} now: {said or 'the gateway is unavailable'} Try again{after}.", retry_after
        )
    if status == 404:
        raise SecretError(
            f"The tracking server does not serve secrets ({code or status}): is MLFLOW_TRACKING_URI the fedgate "
            "gateway?"
        )
    if status in (401, 403):
        raise SecretError(
            f"Could not read {what}: the gateway refused the credentials ({code or status}: {said}). The MLflow "
            "client's credentials are used: MLFLOW_TRACKING_TOKEN, or MLFLOW_TRACKING_USERNAME and PASSWORD."
        )
    raise SecretError(f"Could not read {what}: {code or 'HTTP ' + str(status)}: {said}")


def _text(name: str, encoded: str) -> str:
    """The value as text; a value that is not base64 UTF-8 is refused without showing any of it."""
    try:
        return base64.b64decode(encoded, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        pass  # the exceptions hold the value; raised below without them
    raise SecretError(
        f"Secret {name!r} is not UTF-8 text (a binary value): read its bytes with the REST call (docs/secrets.md)."
    )


def _seconds(header: str | None) -> float | None:
    try:
        return float(header) if header else None
    except ValueError:
        return None
