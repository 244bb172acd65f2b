"""The `fedgate` command: serve, db upgrade, demo."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from gateway.config import ConfigError, Settings, load_settings


def _database_url(settings: Settings) -> str:
    if settings.database.url:
        return settings.database.url
    from gateway.db.engine import start_embedded

    return start_embedded(settings.database.data_dir).url


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from gateway.app import asgi_app
    from gateway.db.migrate import upgrade
    from gateway.observability.logging import configure_logging

    configure_logging()
    settings = load_settings(args.config)
    host = args.host or settings.server.host
    port = args.port or settings.server.port
    workers = args.workers or settings.server.workers
    url = _database_url(settings)
    upgrade(url)
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
        from gateway.authn.service import Authenticator

        Authenticator(settings.admin_token)  # fail fast, before binding the port
        uvicorn.run(asgi_app(settings, url), **common)  # type: ignore[arg-type]
        return 0
    # Several worker processes share the database this process started (or was given).
    if args.config:
        os.environ["FEDGATE_CONFIG"] = str(args.config)
    os.environ["FEDGATE_DATABASE_URL"] = url
    uvicorn.run("gateway.app:asgi_from_env", factory=True, workers=workers, **common)  # type: ignore[arg-type]
    return 0


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from gateway.db.migrate import upgrade

    settings = load_settings(args.config)
    upgrade(_database_url(settings))
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
