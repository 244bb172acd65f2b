"""Names and ids the gateway checks with a pattern are refused with a trailing newline.

Python's `$` also matches before a final newline, so `^...$` with `re.match` let `scope\\n`,
`experiment:w1/5\\n` or a run id followed by a newline through to grants, vault paths and stores.
The patterns end in `\\Z`; each one here accepts a valid value and refuses the same value with `\\n`.
"""

from __future__ import annotations

import re

import pytest

from gateway.authz import levels
from gateway.core import config, paths
from gateway.federation import service as forwarding
from gateway.federation.guard import checks
from gateway.index import account, search
from gateway.principals import names
from gateway.secrets import service as secrets
from gateway.sql import service as sql
from gateway.sql import statements

VALID: list[tuple[re.Pattern[str], str]] = [
    (secrets.NAME_RE, "db-creds"),
    (levels.OBJECT_RE, "experiment:w1001/5"),
    (levels.DOMAIN_RE, "w1001"),
    (levels.PRIVILEGE_RE, "CAN_READ"),
    (forwarding.RUN_ID_RE, "a" * 32),
    (forwarding.SEGMENT_RE, "m-123"),
    (checks.EXPERIMENT_ID_RE, "5"),
    (checks.RUN_ID_RE, "b" * 32),
    (paths._RUN_ID, "c" * 32),
    (account.RUN_ID_RE, "run1"),
    (search.ACCOUNT_EXPERIMENT_ID_RE, "1001-5"),
    (names.USER_NAME_RE, "ada@example.com"),
    (names.GROUP_NAME_RE, "data science"),
    (names.SERVICE_PRINCIPAL_NAME_RE, "ci-bot"),
    (config.WORKSPACE_NAME_RE, "team-a"),
    (config.STORE_NAME_RE, "central"),
    (sql.WAIT_RE, "30s"),
    (sql.DECIMAL_RE, "DECIMAL(10, 2)"),
    (statements.NAME_PART_RE, "mlflow"),
    (statements.PARAMETER_NAME_RE, "workspace"),
]


@pytest.mark.parametrize(("pattern", "value"), VALID, ids=[p.pattern for p, _ in VALID])
def test_a_valid_value_passes_and_the_same_value_with_a_trailing_newline_does_not(
    pattern: re.Pattern[str], value: str
) -> None:
    assert pattern.match(value)
    assert not pattern.match(value + "\n")


def test_a_grant_value_with_a_trailing_newline_is_not_stored() -> None:
    assert levels.valid_value("object", "experiment:w1/5")
    assert not levels.valid_value("object", "experiment:w1/5\n")
