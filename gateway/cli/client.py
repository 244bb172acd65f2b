"""What every `fedgate` command that talks to a running gateway shares: the HTTP call, plans and printing.

Every command is two pure halves and one shared executor: a *plan* turns the parsed arguments into the HTTP
calls to make (a list of `Call`), a *show* function prints the last answer; `run` sends the calls in between.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gateway.core.config import ConfigError


class CommandError(Exception):
    """A command that reached the gateway (or tried to) and failed; printed without a traceback."""


def admin_call(
    args: argparse.Namespace,
    method: str,
    path: str,
    body: dict[str, Any] | None = None,
    *,
    token: str | None = None,
    workspace: str | None = None,
    query: Mapping[str, str] | None = None,
) -> Any:
    """One call to a running gateway's API; MLflow errors are printed as such.

    The token is `token`, else `$FEDGATE_TOKEN`, else the admin token `$FEDGATE_ADMIN_TOKEN`; `workspace` is sent
    as `X-MLFLOW-WORKSPACE`.
    """
    token = token or os.environ.get("FEDGATE_TOKEN") or os.environ.get("FEDGATE_ADMIN_TOKEN", "")
    if not token:
        raise ConfigError("FEDGATE_ADMIN_TOKEN (or FEDGATE_TOKEN) must be set to talk to the gateway")
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    if workspace:
        headers["X-MLFLOW-WORKSPACE"] = workspace
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(  # noqa: S310 (the operator's own gateway URL)
        args.url.rstrip("/") + path + (f"?{urllib.parse.urlencode(query)}" if query else ""),
        data=data,
        method=method,
        headers=headers,
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            text = response.read().decode()
            if warning := response.headers.get("X-Fedgate-Warning"):
                print(f"warning: {warning}", file=sys.stderr)
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode()
        try:
            error = json.loads(detail)
            detail = f"{error['error_code']}: {error['message']}"
        except (ValueError, KeyError, TypeError):
            pass
        raise CommandError(f"{method} {path} failed ({exc.code}) {detail}") from exc
    except urllib.error.URLError as exc:
        raise CommandError(f"cannot reach the gateway at {args.url}: {exc.reason}") from exc
    return json.loads(text) if text else None


@dataclass(frozen=True)
class Call:
    """One HTTP call to the gateway. `then`, if set, turns this call's answer into the calls that follow it."""

    method: str
    path: str
    body: dict[str, Any] | None = None
    query: dict[str, str] | None = None
    workspace: str | None = None
    then: Callable[[Any], list[Call]] | None = field(default=None, compare=False, repr=False)


Plan = Callable[[argparse.Namespace], list[Call]]
Show = Callable[[argparse.Namespace, Any], None]


def execute(args: argparse.Namespace, calls: list[Call]) -> Any:
    """Send `calls` in order (following `then`); the answer of the last one."""
    answer: Any = None
    for call in calls:
        answer = admin_call(args, call.method, call.path, call.body, workspace=call.workspace, query=call.query)
        if call.then is not None:
            answer = execute(args, call.then(answer))
    return answer


def run(args: argparse.Namespace) -> int:
    answer = execute(args, args.plan(args))
    if getattr(args, "json", False):
        print(json.dumps(answer, indent=2))
    else:
        args.show(args, answer)
    return 0


def table(headers: Sequence[str] | None, rows: Iterable[Sequence[object]]) -> None:
    """Print rows as aligned columns (the last one unpadded), under `headers` if given."""
    lines = [[cell(value) for value in row] for row in rows]
    if headers:
        lines.insert(0, list(headers))
    if not lines:
        return
    widths = [max(len(line[i]) for line in lines if i < len(line)) for i in range(max(map(len, lines)))]
    for line in lines:
        print("  ".join(value.ljust(width) for value, width in zip(line, widths, strict=False)).rstrip())


def cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ", ".join(cell(item) for item in value)
    return str(value)


def print_text(text: str) -> Show:
    """A show function that prints `text` formatted with the arguments and the answer (`{args.x}`, `{answer[y]}`)."""
    return lambda args, answer: print(text.format(args=args, answer=answer or {}))


def leaf(
    actions: Any, name: str, text: str, plan: Plan, show: Show, *, as_json: bool = False, epilog: str = ""
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = actions.add_parser(
        name, help=text, description=text, epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", default=argparse.SUPPRESS, help="the gateway (also accepted before ACTION)")
    if as_json:
        parser.add_argument("--json", action="store_true", help="print the raw JSON answer")
    parser.set_defaults(func=run, plan=plan, show=show)
    return parser


def group(commands: Any, name: str, text: str, url: str, epilog: str = "") -> Any:
    parser = commands.add_parser(
        name, help=text, description=text, epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", default=url, help="the gateway (default: $FEDGATE_URL or %(default)s)")
    return parser.add_subparsers(dest="action", required=True, metavar="ACTION")
