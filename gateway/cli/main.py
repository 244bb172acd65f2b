"""The `fedgate` command: serve, db upgrade, secrets (scopes over the API, vault keys), workspaces, demo."""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import math
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.cli.client import Call, CommandError, Plan, admin_call
from gateway.core.config import ConfigError, Settings, load_settings

if TYPE_CHECKING:
    from gateway.core.sealing import Keyring
    from gateway.secrets.builtin import Rotation


def _database(settings: Settings) -> tuple[str, Callable[[], None]]:
    """The database URL, and how to let go of it (stops the embedded server this process started)."""
    if settings.database.url:
        return settings.database.url, lambda: None
    from gateway.db.engine import start_embedded

    embedded = start_embedded(settings.database.data_dir)
    return embedded.url, embedded.stop


def _nothing() -> None:
    return None


def _exit_on_sigterm() -> None:
    """uvicorn re-raises the signal that stopped it; make SIGTERM a normal exit so clean-up runs."""
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))


def cmd_serve(args: argparse.Namespace) -> int:
    from gateway.authn.service import check_admin_token
    from gateway.observability.logging import configure_logging

    configure_logging()
    settings = load_settings(args.config)
    check_admin_token(settings.admin_token)  # fail fast on a missing or weak token, before anything starts
    _exit_on_sigterm()
    url, release = _database(settings)
    try:
        _prepare_schema(settings, url)
        _run_uvicorn(settings, args, url)
    finally:
        release()
    return 0


def _prepare_schema(settings: Settings, url: str) -> None:
    """Wait for the database (at most database.connect_timeout_seconds), then migrate it, or with
    database.migrate_on_start = false only check it: an older schema stops start-up (exit 2), naming both
    revisions; a newer one (a newer release migrated it during a rolling update) is served."""
    import logging

    from gateway.db.migrate import DatabaseUnreachable, schema_state, upgrade, wait_for_database

    log = logging.getLogger("gateway.cli")
    try:
        revision = wait_for_database(url, settings.database.connect_timeout_seconds)
    except DatabaseUnreachable as exc:
        raise ConfigError(f"database.url: {exc}") from None
    if settings.database.migrate_on_start:
        upgrade(url)
        return
    state = schema_state(revision)
    if not state.servable:
        raise ConfigError(
            f"the database schema is at revision {state.revision or 'none'} and this gateway needs {state.head}: "
            "run `fedgate db upgrade` (the migration Job) first, or set database.migrate_on_start = true"
        )
    if state.state == "newer":
        log.warning("the database schema is newer than this gateway's", extra=state.report())


def _run_uvicorn(settings: Settings, args: argparse.Namespace, url: str) -> None:
    import uvicorn

    from gateway.app import asgi_app
    from gateway.cli.http import CoalescingHttpToolsProtocol, RequestLimits

    host = args.host or settings.server.host
    port = args.port or settings.server.port
    workers = args.workers or settings.server.workers
    common = {
        "host": host,
        "port": port,
        "log_config": None,
        "access_log": False,
        "server_header": False,
        "proxy_headers": False,
        "timeout_keep_alive": 30,
        # uvicorn bounds neither a request's time to arrive nor its head's size: the protocol does (http.py).
        "http": functools.partial(CoalescingHttpToolsProtocol, limits=RequestLimits.of(settings.server)),
        # After SIGTERM (and server.shutdown_delay_seconds): how long requests in flight get to finish.
        "timeout_graceful_shutdown": math.ceil(settings.server.shutdown_grace_seconds),
    }
    if workers == 1:
        uvicorn.run(asgi_app(settings, url), **common)  # type: ignore[arg-type]
        return
    # Several worker processes share the database this process started (or was given).
    if args.config:
        os.environ["FEDGATE_CONFIG"] = str(args.config)
    os.environ["FEDGATE_DATABASE_URL"] = url
    uvicorn.run("gateway.app:asgi_from_env", factory=True, workers=workers, **common)  # type: ignore[arg-type]


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from gateway.db.migrate import upgrade

    settings = load_settings(args.config)
    url, release = _database(settings)
    try:
        upgrade(url)
    finally:
        release()
    print("database schema is up to date")
    return 0


def cmd_secrets_new_key(args: argparse.Namespace) -> int:
    from gateway.core.sealing import new_key_entry

    print(new_key_entry(args.kid))
    return 0


def cmd_secrets_rotate_key(args: argparse.Namespace) -> int:
    """Re-encrypt the built-in vault's values, and the webhook secrets sealed with its keys, under the active key
    (FEDGATE_VAULT_KEYS or its file).

    Each batch commits on its own: interrupted, the command is run again and goes on where it stopped;
    every value stays readable meanwhile as long as the old keys stay configured. Exit 0 once nothing is
    left under another key (the old keys may then be removed), 1 while something is.
    """
    from gateway.core.sealing import Keyring
    from gateway.db.migrate import upgrade

    settings = load_settings(args.config)
    keyring = Keyring.from_environment()
    url, release = _database(settings)
    try:
        upgrade(url)
        summary, done = asyncio.run(_rotate(url, keyring, args.batch_size))
    finally:
        release()
    print(summary)
    return 0 if done else 1


async def _rotate(url: str, keyring: Keyring, batch_size: int) -> tuple[str, bool]:
    from gateway.alerts.service import reseal_secrets as reseal_alerts
    from gateway.db.engine import make_engine, make_sessionmaker
    from gateway.delivery.secrets import SubscriberSecrets
    from gateway.registry.webhooks import reseal_secrets as reseal_webhooks
    from gateway.secrets.builtin import BuiltinVault

    engine = make_engine(url, pool_size=2)
    try:
        vault = BuiltinVault(make_sessionmaker(engine), keyring)

        async def progress(rotation: Rotation) -> None:
            print(f"batch {rotation.batches}: {rotation.rotated} re-encrypted so far", file=sys.stderr)

        rotation = await vault.rotate(batch_size=batch_size, on_batch=progress)
        # Webhook secrets of registry webhooks and SQL alerts are sealed with the same keys.
        subscriber_secrets = SubscriberSecrets(keyring)
        lines, done = [rotation.summary()], rotation.done
        for what, reseal in (("registry webhook", reseal_webhooks), ("SQL alert", reseal_alerts)):
            resealed = await reseal(make_sessionmaker(engine), subscriber_secrets)
            left = ", ".join(f"{n} under {kid!r}" for kid, n in sorted(resealed.remaining.items())) or "none"
            lines.append(
                f"{resealed.rotated} {what} secret(s) re-encrypted under {keyring.active!r}, "
                f"{resealed.unreadable} unreadable; remaining: {left}"
            )
            done = done and not resealed.remaining
        return "\n".join(lines), done
    finally:
        await engine.dispose()


def cmd_vaults_check(args: argparse.Namespace) -> int:
    """Each vault reachable and the gateway authorised, one line each; exit 1 when one is not."""
    from gateway.core.config import builtin_vault_configured
    from gateway.db.migrate import upgrade

    settings = load_settings(args.config)
    url: str | None = None
    release: Callable[[], None] = _nothing
    if builtin_vault_configured(settings.vaults, os.environ):
        url, release = _database(settings)
    try:
        if url is not None:
            upgrade(url)
        results = asyncio.run(_check_vaults(settings, url))
    finally:
        release()
    print(f"{'VAULT':20} {'KIND':16} {'STATE':7} DETAIL")
    for name, kind, ok, detail in results:
        print(f"{name:20} {kind:16} {'ok' if ok else 'FAILED':7} {detail}")
    if not results:
        print("no vault: set FEDGATE_VAULT_KEYS for the built-in one, or declare [vaults.NAME]")
    return 0 if results and all(ok for _, _, ok, _ in results) else 1


async def _check_vaults(settings: Settings, url: str | None) -> list[tuple[str, str, bool, str]]:
    from gateway.app import build_vaults
    from gateway.db.engine import make_engine, make_sessionmaker

    engine = make_engine(url, pool_size=1) if url is not None else None
    results: list[tuple[str, str, bool, str]] = []
    try:
        vaults = build_vaults(settings, make_sessionmaker(engine) if engine is not None else None)
        for name, vault in vaults.items():
            kind = settings.vaults[name].__struct_config__.tag if name in settings.vaults else "builtin"
            try:
                results.append((name, str(kind), True, await vault.check()))
            except Exception as exc:  # each adapter's failure names the problem, never a credential
                results.append((name, str(kind), False, f"{type(exc).__name__}: {exc}"))
            finally:
                await vault.close()
    finally:
        if engine is not None:
            await engine.dispose()
    return results


def cmd_workspaces(args: argparse.Namespace) -> int:
    base = "/api/3.0/mlflow/workspaces"
    if args.action == "list":
        workspaces = (admin_call(args, "GET", base) or {}).get("workspaces", [])
        print(f"{'NAME':24} {'ID':>6}  {'MODE':9} {'STORE':20} {'UPSTREAM':20} {'VAULT':12} SECRET SCOPE")
        for ws in workspaces:
            print(
                f"{ws['name']:24} {ws.get('workspace_id', ''):>6}  {ws.get('mode', ''):9} "
                f"{ws.get('store', ''):20} {ws.get('upstream_workspace', '') or '-':20} "
                f"{ws.get('vault', '') or 'builtin':12} {ws.get('default_secret_scope', '') or '-'}"
            )
        return 0
    if args.action == "unlink":
        admin_call(args, "DELETE", f"{base}/{args.name}")
        print(f"unlinked {args.name} (the store and its data are untouched)")
        return 0
    fields = {
        "store": args.store,
        "mode": args.mode,
        "workspace_id": args.id,
        "upstream_workspace": args.upstream_workspace,
        "description": args.description,
        "vault": args.vault,
        "default_secret_scope": args.default_secret_scope,
    }
    body = {key: value for key, value in fields.items() if value is not None}
    if args.action == "link":
        answer = admin_call(args, "POST", base, {"name": args.name, **body})
    else:
        answer = admin_call(args, "PATCH", f"{base}/{args.name}", body)
    print(json.dumps(answer["workspace"], indent=2))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from gateway.cli.demo import run_demo

    return run_demo(Path(args.dir), port=args.port)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fedgate", description="One MLflow tracking URI for many workspaces.")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the gateway")
    serve.add_argument("--config", help="TOML config file (default: $FEDGATE_CONFIG)")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int, help="worker processes (default: server.workers)")
    serve.set_defaults(func=cmd_serve)

    db = commands.add_parser("db", help="database schema")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    db_upgrade = db_commands.add_parser("upgrade", help="apply migrations")
    db_upgrade.add_argument("--config")
    db_upgrade.set_defaults(func=cmd_db_upgrade)

    url = os.environ.get("FEDGATE_URL", "http://127.0.0.1:8080")
    secrets = commands.add_parser(
        "secrets", help="secret scopes, their secrets and ACLs (over the API); keys of the built-in vault"
    )
    secrets.add_argument("--url", default=url, help="the gateway (default: $FEDGATE_URL or %(default)s)")
    secrets_commands = secrets.add_subparsers(dest="action", required=True, metavar="ACTION")
    new_key = secrets_commands.add_parser(
        "new-key", help="print a new key entry for FEDGATE_VAULT_KEYS (or its file), with the given key id"
    )
    new_key.add_argument("kid", help="key id: letters, digits, '.', '_' or '-' (at most 32)")
    new_key.set_defaults(func=cmd_secrets_new_key)
    rotate = secrets_commands.add_parser(
        "rotate-key", help="re-encrypt every value under the active key; resumable, online"
    )
    rotate.add_argument("--config", default=None)
    rotate.add_argument("--batch-size", type=int, default=100)
    rotate.set_defaults(func=cmd_secrets_rotate_key)
    from gateway.cli.secrets import add_secret_scope_commands  # scopes, secrets and ACLs, over the API

    add_secret_scope_commands(secrets_commands)

    vaults = commands.add_parser("vaults", help="the vaults secret scopes keep their values in")
    vault_commands = vaults.add_subparsers(dest="action", required=True)
    vaults_check = vault_commands.add_parser("check", help="each vault reachable and the gateway authorised")
    vaults_check.add_argument("--config", default=None)
    vaults_check.set_defaults(func=cmd_vaults_check)

    workspaces = commands.add_parser("workspaces", help="list, link, relink and unlink workspaces")
    workspaces.add_argument("--url", default=url)
    ws_actions = workspaces.add_subparsers(dest="action", required=True)
    ws_actions.add_parser("list", help="every linked workspace")
    for action, text in (("link", "link a new workspace"), ("relink", "change a workspace's link")):
        sub = ws_actions.add_parser(action, help=text)
        sub.add_argument("name")
        sub.add_argument("--store")
        sub.add_argument("--mode", choices=["workspace", "dual", "central"])
        sub.add_argument("--id")
        sub.add_argument("--upstream-workspace")
        sub.add_argument("--description")
        sub.add_argument("--vault", help="where its new secret scopes keep their values: a [vaults] name or builtin")
        sub.add_argument(
            "--default-secret-scope", help="the scope a run's secret read uses when it names none ('' for none)"
        )
    unlink = ws_actions.add_parser("unlink", help="unlink a workspace (its store is untouched)")
    unlink.add_argument("name")
    workspaces.set_defaults(func=cmd_workspaces)

    demo = commands.add_parser("demo", help="start a local stack and train through the gateway")
    demo.add_argument("--dir", default=".fedgate/demo", help="where the demo keeps its data")
    demo.add_argument("--port", type=int, default=8080)
    demo.set_defaults(func=cmd_demo)

    from gateway.cli.access import add_access_commands  # users, groups, tokens, permissions, grants, audit

    add_access_commands(commands, url)
    from gateway.cli.links import add_links_commands  # links status, dead letters, reconcile

    add_links_commands(commands, url)
    from gateway.cli.index import add_index_commands  # index status, sync

    add_index_commands(commands, url)
    from gateway.cli.sql import add_sql_command  # SQL over the system tables

    add_sql_command(commands, url)
    from gateway.cli.queries import add_queries_commands  # saved queries: list, show, create, run, share, delete

    add_queries_commands(commands, url)
    from gateway.cli.registry import add_registry_commands  # activity logs and open transition requests

    add_registry_commands(commands, url)
    from gateway.cli.alerts import add_alerts_commands  # SQL alerts: list, create, run, history

    add_alerts_commands(commands, url)
    return parser


def plan_for(argv: list[str]) -> list[Call]:
    """The calls a command line would make, without making them."""
    args = build_parser().parse_args(argv)
    plan: Plan = args.plan
    return plan(args)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result: int = args.func(args)
        return result
    except ConfigError as exc:
        print(f"fedgate: {exc}", file=sys.stderr)
        return 2
    except CommandError as exc:
        print(f"fedgate: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:  # e.g. a missing or weak FEDGATE_ADMIN_TOKEN
        print(f"fedgate: {exc}", file=sys.stderr)
        return 2
