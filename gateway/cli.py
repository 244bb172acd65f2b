"""The `fedgate` command: serve, db upgrade, demo."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from gateway.config import ConfigError, Settings, load_settings


def _database(settings: Settings) -> tuple[str, Callable[[], None]]:
    """The database URL, and how to let go of it (stops the embedded server this process started)."""
    if settings.database.url:
        return settings.database.url, lambda: None
    from gateway.db.engine import start_embedded

    embedded = start_embedded(settings.database.data_dir)
    return embedded.url, embedded.stop


def _exit_on_sigterm() -> None:
    """uvicorn re-raises the signal that stopped it; make SIGTERM a normal exit so clean-up runs."""
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))


def cmd_serve(args: argparse.Namespace) -> int:
    from gateway.authn.service import Authenticator
    from gateway.db.migrate import upgrade
    from gateway.observability.logging import configure_logging

    configure_logging()
    settings = load_settings(args.config)
    Authenticator(settings.admin_token)  # fail fast on a missing or weak token, before anything starts
    _exit_on_sigterm()
    url, release = _database(settings)
    try:
        upgrade(url)
        _run_uvicorn(settings, args, url)
    finally:
        release()
    return 0


def _run_uvicorn(settings: Settings, args: argparse.Namespace, url: str) -> None:
    import uvicorn

    from gateway.app import asgi_app

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


def cmd_demo(args: argparse.Namespace) -> int:
    from gateway.demo import run_demo

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

    demo = commands.add_parser("demo", help="start a local stack and train through the gateway")
    demo.add_argument("--dir", default=".fedgate/demo", help="where the demo keeps its data")
    demo.add_argument("--port", type=int, default=8080)
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result: int = args.func(args)
        return result
    except ConfigError as exc:
        print(f"fedgate: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:  # e.g. a missing or weak FEDGATE_ADMIN_TOKEN
        print(f"fedgate: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
