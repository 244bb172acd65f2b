"""An alert's condition judged over results as the SQL service writes them, its schedules, and `fedgate alerts`."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.alerts.condition import Condition, ConditionError, Threshold, aggregate, judge, parse_written
from gateway.alerts.schedule import Schedule, ScheduleError
from gateway.cli import plan_for
from gateway.cli.client import Call, CommandError
from gateway.core.config import ConfigError, Settings, load_settings, validate_settings

RATIOS = ["experiment_id", "success_ratio", "run_count"]


def condition(text: str, empty: str = "UNKNOWN") -> Condition:
    written = parse_written(text)
    column = written["operand"]["column"]  # type: ignore[index]
    value = (written.get("threshold") or {}).get("value") or {}  # type: ignore[union-attr]
    kind, threshold = next(
        ((k.split("_")[0], v) for k, v in value.items()),  # type: ignore[union-attr]
        ("none", None),
    )
    return Condition(column["name"], column.get("aggregation"), str(written["op"]), Threshold(kind, threshold), empty)


def test_the_documented_reliability_condition_fires_on_the_worst_experiment() -> None:
    rows = [["1001-1", "1.0", "10"], ["1001-2", "0.75", "4"], ["1002-1", "0.95", "20"]]
    fired = judge(condition("MIN(success_ratio) < 0.9"), RATIOS, rows)
    assert (fired.state, fired.value, fired.row_count) == ("TRIGGERED", "0.75", 3)
    healthy = judge(condition("MIN(success_ratio) < 0.9"), RATIOS, [rows[0], rows[2]])
    assert (healthy.state, healthy.value) == ("OK", "0.95")
    # Without an aggregation the first row is judged (Databricks' legacy alerts).
    assert judge(condition("success_ratio < 0.9"), RATIOS, rows).state == "OK"
    assert judge(condition("AVG(success_ratio) >= 0.9"), RATIOS, rows).value == repr((1.0 + 0.75 + 0.95) / 3)
    assert judge(condition("SUM(run_count) = 34"), RATIOS, rows).state == "TRIGGERED"
    assert judge(condition("COUNT(experiment_id) > 2"), RATIOS, rows).state == "TRIGGERED"


def test_empty_results_nulls_strings_and_missing_columns() -> None:
    assert judge(condition("MIN(success_ratio) < 0.9", "OK"), RATIOS, []).state == "OK"
    assert judge(condition("MIN(success_ratio) < 0.9"), RATIOS, []).state == "UNKNOWN"
    # Nulls are skipped as SQL skips them; nothing left is null, and a comparison with null does not fire.
    assert judge(condition("MIN(success_ratio) < 0.9"), RATIOS, [["a", None, "1"], ["b", "0.5", "1"]]).value == "0.5"
    assert judge(condition("MIN(success_ratio) < 0.9"), RATIOS, [["a", None, "1"]]).state == "OK"
    assert judge(condition("MAX(success_ratio) IS NULL"), RATIOS, [["a", None, "1"]]).state == "TRIGGERED"
    assert judge(condition("experiment_id = '1001-1'"), RATIOS, [["1001-1", "1", "1"]]).state == "TRIGGERED"
    assert judge(condition("FIRST(Success_Ratio) > 0.5"), RATIOS, [["x", "0.6", "1"]]).state == "TRIGGERED"
    with pytest.raises(ConditionError, match="no column 'ratio'"):
        judge(condition("MIN(ratio) < 0.9"), RATIOS, [["a", "1", "1"]])
    with pytest.raises(ConditionError, match="not a number"):
        judge(condition("MIN(experiment_id) < 0.9"), RATIOS, [["a", "1", "1"]])


@given(st.lists(st.one_of(st.none(), st.floats(-1e6, 1e6, allow_nan=False)), min_size=1, max_size=30))
def test_aggregates_agree_with_python_over_the_non_null_values(values: list[float | None]) -> None:
    texts = [None if v is None else repr(v) for v in values]
    present = [v for v in values if v is not None]
    assert aggregate("COUNT", texts) == str(len(present))
    assert aggregate("FIRST", texts) == texts[0]
    if present:
        assert aggregate("MIN", texts) == repr(min(present))
        assert aggregate("MAX", texts) == repr(max(present))
    else:
        assert aggregate("MIN", texts) is None


def test_written_conditions_parse_or_are_refused() -> None:
    assert parse_written("MIN(success_ratio) < 0.9") == {
        "operand": {"column": {"name": "success_ratio", "aggregation": "MIN"}},
        "op": "LESS_THAN",
        "threshold": {"value": {"double_value": 0.9}},
    }
    assert parse_written("status <> 'FAILED'")["threshold"] == {"value": {"string_value": "FAILED"}}
    assert parse_written("healthy = true")["threshold"] == {"value": {"bool_value": True}}
    assert parse_written("max(x) is null") == {
        "operand": {"column": {"name": "x", "aggregation": "MAX"}},
        "op": "IS_NULL",
    }
    for bad in ("MIN(x)", "TOP(x) > 1", "x > abc", "< 3"):
        with pytest.raises(ValueError):
            parse_written(bad)


def test_quartz_schedules_in_their_time_zone() -> None:
    weekdays = Schedule.parse("0 0 8 ? * MON-FRI", "Europe/Berlin")
    # Saturday 5 December 2026: the next run is Monday 08:00 in Berlin, 07:00 UTC.
    assert weekdays.next_after(datetime(2026, 12, 5, 12, tzinfo=UTC)) == datetime(2026, 12, 7, 7, tzinfo=UTC)
    # Quartz numbers Sunday 1: `1` is Sunday 6 December.
    sundays = Schedule.parse("0 30 6 ? * 1", None)
    assert sundays.next_after(datetime(2026, 12, 5, tzinfo=UTC)) == datetime(2026, 12, 6, 6, 30, tzinfo=UTC)
    every = Schedule.parse("0 0/15 * * * ?", "UTC")
    assert every.next_after(datetime(2026, 1, 1, 0, 15, tzinfo=UTC)) == datetime(2026, 1, 1, 0, 30, tzinfo=UTC)
    assert every.shortest_interval(datetime(2026, 1, 1, tzinfo=UTC)) == 900
    assert Schedule.parse("*/2 * * * * ?", None).shortest_interval(datetime(2026, 1, 1, tzinfo=UTC)) == 2
    for bad, zone in (
        ("0 0 * * *", None),
        ("0 0 0 ? * ?", None),
        ("0 0 0 ? * 8", None),
        ("0 0 0 31 2 ?", None),
        ("0 0 0 * * ? 2030", None),
        ("0 0 8 * * ?", "Mars/Base"),
    ):
        with pytest.raises(ScheduleError):
            Schedule.parse(bad, zone)


def test_alerts_commands_plan_their_calls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOK_SECRET", "s3cr3t")
    assert plan_for(["alerts", "list"]) == [Call("GET", "/api/2.0/sql/alerts", query={"page_size": "200"})]
    assert plan_for(["alerts", "run", "a1"]) == [Call("POST", "/api/2.0/sql/alerts/a1/run")]
    assert plan_for(["alerts", "history", "a1", "--limit", "5"]) == [
        Call("GET", "/api/2.0/sql/alerts/a1/history", query={"page_size": "5"})
    ]
    [create] = plan_for(
        [
            "alerts", "create", "--name", "low experiment reliability", "--query", "SELECT 1 AS success_ratio",
            "--condition", "MIN(success_ratio) < 0.9", "--schedule", "0 0/15 * * * ?",
            "--webhook", "https://hooks.example.com/a", "--webhook-secret-env", "HOOK_SECRET", "--email", "o@x.com",
        ]
    )  # fmt: skip
    assert create.method == "POST" and create.path == "/api/2.0/sql/alerts"
    assert create.body == {
        "alert": {
            "display_name": "low experiment reliability",
            "query_text": "SELECT 1 AS success_ratio",
            "condition": {
                "operand": {"column": {"name": "success_ratio", "aggregation": "MIN"}},
                "op": "LESS_THAN",
                "threshold": {"value": {"double_value": 0.9}},
            },
            "schedule": {"quartz_cron_schedule": "0 0/15 * * * ?", "timezone_id": "UTC"},
            "subscriptions": [
                {"user_email": "o@x.com"},
                {"webhook": {"url": "https://hooks.example.com/a", "secret": "s3cr3t"}},
            ],
        }
    }
    with pytest.raises(CommandError):
        plan_for(["alerts", "create", "--name", "n", "--condition", "x > 1"])
    with pytest.raises(SystemExit):
        plan_for(["alerts", "create", "--name", "n", "--query", "SELECT 1", "--condition", "x >"])


@pytest.mark.parametrize(
    ("alerts", "smtp", "message"),
    [
        ({"poll_seconds": 0}, {}, "alerts.poll_seconds"),
        ({"min_interval_seconds": 0.5}, {}, "alerts.min_interval_seconds"),
        ({"max_attempts": 0}, {}, "alerts.max_attempts"),
        ({}, {"host": "smtp.example.com"}, "smtp.from_address"),
        ({}, {"host": "smtp.example.com", "from_address": "a@x.com", "tls": True}, "starttls or tls"),
        ({}, {"host": "smtp.example.com", "from_address": "a@x.com", "username": "u"}, "smtp.username"),
    ],
)
def test_alert_and_smtp_settings_out_of_range_are_refused(
    alerts: dict[str, object], smtp: dict[str, object], message: str
) -> None:
    settings = msgspec.convert({"alerts": alerts, "smtp": smtp}, Settings)
    with pytest.raises(ConfigError, match=message):
        validate_settings(settings)


def test_an_smtp_password_is_never_read_from_the_config_file(tmp_path: Path) -> None:
    config = tmp_path / "fedgate.toml"
    config.write_text('[smtp]\nhost = "smtp.example.com"\nfrom_address = "a@x.com"\npassword = "hunter2"\n')
    with pytest.raises(ConfigError) as refused:
        load_settings(config, environ={})
    assert "hunter2" not in str(refused.value)
    config.write_text(
        '[smtp]\nhost = "smtp.example.com"\nfrom_address = "a@x.com"\nusername = "u"\npassword_env = "SMTP_PASSWORD"\n'
    )
    assert load_settings(config, environ={}).smtp.password_env == "SMTP_PASSWORD"
