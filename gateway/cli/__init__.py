"""The `fedgate` command."""

from gateway.cli.main import build_parser, main, plan_for

__all__ = ["build_parser", "main", "plan_for"]
