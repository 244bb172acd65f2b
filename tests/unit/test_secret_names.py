"""Secret names a run reads: `key` or `scope/key`, split alike by the client module and by the gateway.

The gateway picks the scope of a name: its `scope/` prefix, else the request's `scope`, else the workspace's
default scope, else 400 saying how to name one. The client module (`gateway.client`) imports nothing of the
server and refuses to read outside a run, and no exception of it carries a value.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.authz.decide import Authorizer
from gateway.client import SCOPE_ENV, NoActiveRun, SecretError, get_secret, get_secrets, split_name
from gateway.client.secrets import _scope_from_env, _text
from gateway.core.errors import InvalidParameter
from gateway.core.links import WorkspaceLink
from gateway.core.principal import Principal
from gateway.secrets.service import SecretScopes

LINK = WorkspaceLink("team-a", 1001, "workspace", "a", "a", None)
ADMIN = Principal("admin", "bootstrap", account_admin=True)
NAMES = st.text(alphabet="abcXYZ019_.-", min_size=1, max_size=128).filter(lambda name: name not in (".", ".."))


def service() -> SecretScopes:
    none = cast(Any, None)  # naming a secret reaches neither the database nor the policy (an admin enters)
    return SecretScopes(none, none, Authorizer(none), none, {})


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("db-password", (None, "db-password")),
        ("db.creds/password", ("db.creds", "password")),
        ("A_b-1/x", ("A_b-1", "x")),
        ("s" * 128 + "/" + "k" * 128, ("s" * 128, "k" * 128)),
    ],
)
def test_a_name_is_a_key_or_a_scope_and_a_key(name: str, expected: tuple[str | None, str]) -> None:
    assert split_name(name) == expected


@pytest.mark.parametrize(
    "name",
    [
        *["", "/", "scope/", "/key", "a/b/c", "bad name", "key\n", "scope/key\n", "k" * 129, "s" * 129 + "/k", "ké"],
        *["..", ".", "../k", "./k", "s/..", "s/."],
    ],
)
def test_a_name_outside_the_rules_is_refused_before_any_call(name: str) -> None:
    with pytest.raises(ValueError, match="is not a secret name"):
        split_name(name)
    with pytest.raises(ValueError, match="is not a secret name"):
        get_secret(name, run_id="r1")  # refused before the run, the tracking URI or the network is looked at


def test_a_name_that_is_not_a_string_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        split_name(cast(Any, 5))
    with pytest.raises(TypeError, match="list of names"):
        get_secrets(cast(Any, "db-password"))


@given(scope=NAMES, key=NAMES, default=st.one_of(st.none(), NAMES))
def test_the_gateway_reads_a_qualified_name_in_its_own_scope_as_the_client_splits_it(
    scope: str, key: str, default: str | None
) -> None:
    link = replace(LINK, default_secret_scope="team-default")
    assert service()._named(ADMIN, link, f"{scope}/{key}", default) == (scope, key)
    assert split_name(f"{scope}/{key}") == (scope, key)


def test_an_unqualified_name_takes_the_request_scope_else_the_workspace_default() -> None:
    with_default = replace(LINK, default_secret_scope="team-default")
    assert service()._named(ADMIN, with_default, "password", "chosen") == ("chosen", "password")
    assert service()._named(ADMIN, with_default, "password", None) == ("team-default", "password")
    assert service()._named(ADMIN, LINK, "password", "chosen") == ("chosen", "password")


def test_no_scope_anywhere_is_400_saying_how_to_name_one() -> None:
    with pytest.raises(InvalidParameter) as refused:
        service()._named(ADMIN, LINK, "password", None)
    message = refused.value.message
    assert refused.value.status == 400 and refused.value.error_code == "INVALID_PARAMETER_VALUE"
    assert "'password'" in message and "'team-a' has no default secret scope" in message
    for way in ("'scope/key'", "'scope' field", "FEDGATE_SECRET_SCOPE", "default_secret_scope"):
        assert way in message


@pytest.mark.parametrize(
    ("name", "scope"),
    [
        *[("a/b/c", None), ("bad name", "s"), ("k", "bad scope"), ("k", "")],
        # `.` and `..` alone are path segments OpenBao resolves: one rule for every vault refuses them everywhere
        *[("..", "s"), (".", "s"), ("k", ".."), ("k", "."), ("../k", None), ("s/..", None)],
    ],
)
def test_the_gateway_refuses_names_outside_the_rules(name: str, scope: str | None) -> None:
    with pytest.raises(InvalidParameter, match="is not valid"):
        service()._named(ADMIN, LINK, name, scope)


def test_the_scope_from_the_environment_is_a_scope_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SCOPE_ENV, raising=False)
    assert _scope_from_env() is None
    monkeypatch.setenv(SCOPE_ENV, " ")
    assert _scope_from_env() is None
    monkeypatch.setenv(SCOPE_ENV, "ops.creds")
    assert _scope_from_env() == "ops.creds"
    monkeypatch.setenv(SCOPE_ENV, "ops/creds")
    with pytest.raises(ValueError, match=SCOPE_ENV):
        _scope_from_env()
    monkeypatch.setenv(SCOPE_ENV, "..")
    with pytest.raises(ValueError, match=SCOPE_ENV):
        _scope_from_env()
    monkeypatch.setenv(SCOPE_ENV, "...")
    assert _scope_from_env() == "..."


def test_outside_a_run_the_read_is_refused_saying_how_to_start_one() -> None:
    import mlflow

    assert mlflow.active_run() is None
    with pytest.raises(NoActiveRun, match=r"get_secret\('db-password'\) needs an active MLflow run") as refused:
        get_secret("db-password")
    assert "mlflow.start_run()" in str(refused.value) and "run_id=" in str(refused.value)
    with pytest.raises(NoActiveRun, match=r"get_secrets\(\.\.\.\) needs an active MLflow run"):
        get_secrets(["db-password"])


def test_a_binary_value_is_refused_without_any_of_it_in_the_exception() -> None:
    value = b"\xff\xfe-binary-s3cr3t-\x00"
    with pytest.raises(SecretError, match="'blob' is not UTF-8 text") as refused:
        _text("blob", base64.b64encode(value).decode())
    seen: BaseException | None = refused.value
    while seen is not None:
        assert "s3cr3t" not in str(seen) and "s3cr3t" not in repr(seen) and not getattr(seen, "object", None)
        seen = seen.__cause__ or seen.__context__
    assert _text("text", base64.b64encode("pässword".encode()).decode()) == "pässword"


def test_the_client_module_imports_nothing_of_the_server() -> None:
    """A training environment has mlflow, not the gateway's server dependencies."""
    probe = (
        "import sys, gateway.client\n"
        "server = ('litestar', 'msgspec', 'sqlalchemy', 'asyncpg', 'aiohttp', 'uvicorn', 'alembic', 'cryptography',"
        " 'gateway.core', 'gateway.secrets', 'gateway.app', 'adapters')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in server or m.startswith(server)))\n"
    )
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root)}
    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", done.stdout
