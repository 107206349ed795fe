"""Run, migrate and try the service: `python cli.py --help`."""

import argparse
import os
import secrets
import sys
import warnings
from pathlib import Path

from alembic import command
from alembic.config import Config

# Connexion imports Starlette's test client at start-up, which warns about httpx on every start.
warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient` is deprecated")

PROJECT = Path(__file__).resolve().parent
DATA_DIR = PROJECT / ".data"
DEV_USER = "dev-user"
DEV_FRONTEND = "http://localhost:3000"  # where `next dev` serves a frontend


def alembic_config(database_url: str) -> Config:
    config = Config(str(PROJECT / "alembic.ini"))
    config.attributes["database_url"] = database_url
    return config


def migrate(database_url: str) -> None:
    """Brings the database to the newest schema revision."""
    command.upgrade(alembic_config(database_url), "head")


def dev_secret() -> str:
    """The secret tokens are signed with in development: kept in .data so tokens survive restarts."""
    path = DATA_DIR / "dev-secret"
    if not path.exists():
        DATA_DIR.mkdir(exist_ok=True)
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    return path.read_text().strip()


def serve(settings, host: str, port: int) -> None:
    from app import create_app
    from service.logs import configure_logging
    from service.server import serve as serve_app

    configure_logging(settings.log_level, settings.log_format)
    serve_app(create_app(settings), settings, host, port)


def cmd_serve(args) -> None:
    """Production: everything from the environment, nothing applied to the database."""
    from service.settings import Settings

    serve(Settings.from_env(), args.host, args.port)


def cmd_dev(args) -> None:
    """Development: a project-local PostgreSQL (unless DATABASE_URL), migrations, a token."""
    from db.local_server import LocalPostgres
    from service.auth import TokenVerifier
    from service.settings import Settings

    server = None
    database_url = os.environ.get("DATABASE_URL")
    if not database_url:
        server = LocalPostgres(DATA_DIR / "postgres").start()
        database_url = server.url
    try:
        if server is not None or args.migrate:
            migrate(database_url)
        secret = os.environ.get("BETTER_AUTH_SECRET") or os.environ.get("JWT_SECRET") or dev_secret()
        cors_origins = os.environ.get("CORS_ORIGINS", DEV_FRONTEND)
        settings = Settings.from_env(
            database_url=database_url,
            jwt_secret=secret,
            cors_origins=tuple(origin.strip() for origin in cors_origins.split(",") if origin.strip()),
        )
        token = TokenVerifier(settings).mint(DEV_USER, lifetime_seconds=24 * 3600)
        base = f"http://{args.host}:{args.port}"
        print(
            f"\nTasks API   {base}/api/{DEV_USER}/tasks\n"
            f"Docs        {base}/api/docs\n"
            f"Database    {'PostgreSQL in ' + str(server.data_dir) if server else 'DATABASE_URL'}\n"
            f"CORS        {', '.join(settings.cors_origins) or 'no browser origin'} (CORS_ORIGINS)\n"
            f"Token       {token}  (user {DEV_USER}, 24 h)\n\n"
            f"Try it:\n"
            f"  curl -s -X POST {base}/api/{DEV_USER}/tasks -H 'Authorization: Bearer {token}' "
            f"-H 'Content-Type: application/json' -d '{{\"title\": \"Buy milk\"}}'\n"
            f"  curl -s {base}/api/{DEV_USER}/tasks -H 'Authorization: Bearer {token}'\n",
            flush=True,
        )
        serve(settings, args.host, args.port)
    finally:
        if server is not None:
            server.stop()


def cmd_migrate(args) -> None:
    """Applies migrations to DATABASE_URL, or to the project-local PostgreSQL with --local."""
    from db.local_server import LocalPostgres

    if args.local:
        server = LocalPostgres(DATA_DIR / "postgres").start()
        try:
            migrate(server.url)
        finally:
            server.stop()
        return
    database_url = os.environ.get("DATABASE_URL")
    if not database_url:
        raise SystemExit("DATABASE_URL is not set: point it at the database to migrate (or use --local).")
    migrate(database_url)


def cmd_token(args) -> None:
    """Prints a token for a user, signed with BETTER_AUTH_SECRET (or the development secret)."""
    from service.auth import TokenVerifier
    from service.settings import Settings

    secret = os.environ.get("BETTER_AUTH_SECRET") or os.environ.get("JWT_SECRET") or dev_secret()
    settings = Settings.from_env(database_url="unused", jwt_secret=secret)
    print(TokenVerifier(settings).mint(args.user_id, lifetime_seconds=args.minutes * 60))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="cli.py", description=__doc__)
    commands = parser.add_subparsers(required=True)
    for name, handler in {"dev": cmd_dev, "serve": cmd_serve}.items():
        sub = commands.add_parser(name, help=handler.__doc__)
        sub.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
        sub.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
        sub.set_defaults(handler=handler)
    commands.choices["dev"].add_argument("--migrate", action="store_true", help="also migrate DATABASE_URL")
    migrate_parser = commands.add_parser("migrate", help=cmd_migrate.__doc__)
    migrate_parser.add_argument("--local", action="store_true", help="the project-local PostgreSQL in .data/")
    migrate_parser.set_defaults(handler=cmd_migrate)
    token_parser = commands.add_parser("token", help=cmd_token.__doc__)
    token_parser.add_argument("user_id")
    token_parser.add_argument("--minutes", type=int, default=60)
    token_parser.set_defaults(handler=cmd_token)

    args = parser.parse_args(argv)
    from service.settings import ConfigError

    try:
        args.handler(args)
    except ConfigError as error:
        print(f"tasks-api: {error}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
