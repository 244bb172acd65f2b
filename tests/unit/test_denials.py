"""Refusals without a database: the audit queue's overflow, audit truncation, the anonymous-denial budget."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from prometheus_client import REGISTRY

from gateway.audit.trail import AuditTrail, entry
from gateway.core.config import ConfigError, load_settings


def _dropped() -> float:
    return REGISTRY.get_sample_value("fedgate_audit_dropped_total") or 0.0


def test_dropped_audit_rows_are_counted_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    trail = AuditTrail(None, max_pending=3)  # type: ignore[arg-type]  # nothing is written: no writer task
    before = _dropped()
    with caplog.at_level(logging.WARNING, logger="gateway.audit.trail"):
        for index in range(10):
            trail.record(entry("anonymous", "request.denied", f"GET /{index}", "denied"))
    assert trail.dropped == 7
    assert _dropped() - before == 7
    warnings = [r for r in caplog.records if "dropped" in r.getMessage()]
    assert len(warnings) == 1, [r.getMessage() for r in caplog.records]


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (*_strings(k), *_strings(v))]
    if isinstance(value, list | tuple):
        return [s for item in value for s in _strings(item)]
    return []


def test_audit_entries_truncate_untrusted_values() -> None:
    huge = "w" * 32 * 1024
    deep: Any = "x"
    for _ in range(5000):
        deep = [deep]
    row = entry(
        huge,
        "request.denied",
        f"GET /{huge}",
        "denied",
        {"workspace": huge, "user_agent": huge, "nested": [{"name": huge}] * 3, "deep": deep, huge: 1, "short": "ok"},
        "rid",
    )
    strings = _strings(row)
    assert strings and max(len(s) for s in strings) < 400
    assert row["details"]["workspace"].startswith("w" * 256)
    assert "truncated" in row["details"]["workspace"] and "32768" in row["details"]["workspace"]
    assert "truncated" in row["actor"] and "truncated" in row["target"]
    assert row["details"]["short"] == "ok" and row["action"] == "request.denied" and row["request_id"] == "rid"
    assert len(repr(row)) < 16_384
    # A short entry is left exactly as it was.
    small = entry("alice@example.com", "grant.owner", "experiment:w1/5", "ok", {"level": "CAN_MANAGE", "n": 2})
    assert small["details"] == {"level": "CAN_MANAGE", "n": 2} and small["actor"] == "alice@example.com"


def test_the_anonymous_denial_budget_is_a_token_bucket_per_client() -> None:
    from gateway.authn.middleware import DenialLimiter

    limiter = DenialLimiter(per_second=1.0, burst=3)
    assert [limiter.take("10.0.0.1", now=100.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = limiter.take("10.0.0.1", now=100.0)
    assert 0 < wait <= 1.0
    assert limiter.take("10.0.0.2", now=100.0) == 0.0  # another client has a budget of its own
    assert limiter.take("10.0.0.1", now=101.0) == 0.0  # refilled at one per second
    assert limiter.take("10.0.0.1", now=101.0) > 0
    assert limiter.exhausted("10.0.0.1", now=101.0)
    assert not limiter.exhausted("10.0.0.3", now=101.0)
    # One IPv6 /64 is one client: an attacker there cannot mint fresh budgets from its addresses.
    for suffix in range(3):
        assert limiter.take(f"2001:db8::{suffix + 1}", now=200.0) == 0.0
    assert limiter.take("2001:db8::ffff", now=200.0) > 0
    # The table of clients is bounded.
    small = DenialLimiter(per_second=1.0, burst=1, max_clients=10)
    for index in range(1000):
        small.take(f"10.1.{index // 256}.{index % 256}", now=300.0)
    assert len(small) <= 10
    # per_second 0 turns the limit off.
    off = DenialLimiter(per_second=0.0, burst=0)
    assert all(off.take("10.0.0.1", now=1.0) == 0.0 for _ in range(100))


def test_denial_budget_settings_and_their_env_override() -> None:
    settings = load_settings(
        environ={"FEDGATE_SERVER_ANONYMOUS_DENIALS_BURST": "5", "FEDGATE_SERVER_ANONYMOUS_DENIALS_PER_SECOND": "0.5"}
    )
    assert settings.server.anonymous_denials_burst == 5
    assert settings.server.anonymous_denials_per_second == 0.5
    defaults = load_settings(environ={})
    # Generous: the loopback test suite (every client is 127.0.0.1) must never meet it.
    assert defaults.server.anonymous_denials_burst >= 100 and defaults.server.anonymous_denials_per_second >= 10
    with pytest.raises(ConfigError, match="anonymous_denials"):
        load_settings(environ={"FEDGATE_SERVER_ANONYMOUS_DENIALS_BURST": "0"})


def test_body_errors_answer_400_and_unexpected_ones_log_one_line_without_trace(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import msgspec
    from litestar import Litestar, post
    from litestar.exceptions import HTTPException
    from litestar.testing import TestClient

    from gateway.app import _gateway_error, _http_exception, _malformed_body, _unexpected
    from gateway.core.errors import BODY_DECODE_ERRORS, GatewayError

    @post("/deep", status_code=200)
    async def deep(data: dict[str, Any]) -> dict[str, Any]:
        return data

    @post("/decode", status_code=200)
    async def decode(data: dict[str, Any]) -> None:
        msgspec.json.decode(b"{", type=dict)

    @post("/boom", status_code=200)
    async def boom(data: dict[str, Any]) -> None:
        raise KeyError("fgt_secret-in-a-message")

    app = Litestar(
        route_handlers=[deep, decode, boom],
        exception_handlers={
            GatewayError: _gateway_error,
            HTTPException: _http_exception,
            **dict.fromkeys(BODY_DECODE_ERRORS, _malformed_body),
            Exception: _unexpected,
        },
        logging_config=None,
        debug=False,
    )
    with caplog.at_level(logging.DEBUG), TestClient(app) as client:
        for path, body in (("/deep", b"[" * 5000 + b"]" * 5000), ("/deep", b"{bad"), ("/decode", b"{}")):
            answer = client.post(path, content=body, headers={"Content-Type": "application/json"})
            assert answer.status_code == 400, answer.text
            assert answer.json()["error_code"] == "INVALID_PARAMETER_VALUE", answer.text
        caplog.clear()
        answer = client.post("/boom", content=b'{"token": "fgt_body-secret"}', headers={"X-Request-Id": "rid-1"})
        assert answer.status_code == 500 and answer.json()["error_code"] == "INTERNAL_ERROR"
        assert "Traceback" not in answer.text and "secret" not in answer.text
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].exc_info is None
    # Everything the record carries but where the logging call sits (a checkout's path may say "secret").
    where = {"pathname", "filename", "module", "funcName", "lineno"}
    logged = str({key: value for key, value in errors[0].__dict__.items() if key not in where})
    assert "secret" not in logged and "KeyError" in logged
