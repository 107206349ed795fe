"""Run, migrate and try the service: `python cli.py --help`."""

import argparse
import contextlib
import hashlib
import os
import secrets
import shutil
import signal
import socket
import stat
import sys
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

from alembic import command
from alembic.config import Config

# Connexion imports Starlette's test client at start-up, which warns about httpx on every start.
warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient` is deprecated")

PROJECT = Path(__file__).resolve().parent
DATA_DIR = Path(os.environ.get("TASKS_API_DATA_DIR") or PROJECT / ".data")  # development data


class CommandError(Exception):
    """What stops a command, said in one line."""


def local_postgres_dir() -> Path:
    """Where the development PostgreSQL keeps its data: `.data/postgres`, unless the account the
    server runs as (root's `postgres`) cannot reach the checkout, as under a private /root:
    then a directory of this checkout's own under /var/tmp, which that account can reach."""
    from db.local_server import server_account

    if server_account() is None or all(os.stat(d).st_mode & stat.S_IXOTH for d in DATA_DIR.resolve().parents):
        return DATA_DIR / "postgres"
    return Path("/var/tmp") / f"tasks-api-{hashlib.sha1(str(DATA_DIR).encode()).hexdigest()[:12]}" / "postgres"


DEV_USER = "dev-user"
DEV_FRONTEND = "http://localhost:3000"  # where `next dev` serves a frontend


def alembic_config(database_url: str) -> Config:
    config = Config(str(PROJECT / "alembic.ini"))
    config.attributes["database_url"] = database_url
    return config


def migrate(database_url: str) -> None:
    """Brings the database to the newest schema revision; a database that cannot be reached or
    refuses the login is one line, not Alembic's traceback."""
    from sqlalchemy.exc import DBAPIError

    from db.start_check import postgres_url, refusal, where

    url = postgres_url(database_url)
    try:
        command.upgrade(alembic_config(database_url), "head")
    except (OSError, DBAPIError) as error:
        what, remedy = refusal(error)
        raise CommandError(f"cannot migrate: the database at {where(url)} {what}: {remedy}.") from None


def dev_secret() -> str:
    """The secret tokens are signed with in development: kept in .data so tokens survive restarts."""
    path = DATA_DIR / "dev-secret"
    if not path.exists():
        DATA_DIR.mkdir(exist_ok=True)
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    return path.read_text().strip()


def port_in_use(host: str, port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return True
    return False


def serve(settings, host: str, port: int, workers: int = 1) -> None:
    from app import create_app
    from service.logs import configure_logging
    from service.server import serve as serve_app

    configure_logging(settings.log_level, settings.log_format)
    if workers == 1:
        serve_app(create_app(settings), settings, host, port)
        return
    if settings.metrics_enabled:  # every worker counts into files that /metrics sums
        os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="tasks-api-metrics-"))
    serve_app("cli:worker_app", settings, host, port, workers=workers)


def worker_app():
    """What each of several worker processes serves: the app, configured from the environment."""
    from app import create_app
    from service.logs import configure_logging
    from service.settings import Settings

    settings = Settings.from_env()
    configure_logging(settings.log_level, settings.log_format)
    return create_app(settings)


def cmd_serve(args) -> None:
    """Production: everything from the environment, nothing applied to the database."""
    from service.settings import Settings

    settings = Settings.from_env()
    refuse_a_taken_port(args.host, args.port)
    check_database(settings, wait=args.wait_for_database or settings.wait_for_database, fix="python3 cli.py migrate")
    serve(settings, args.host, args.port, workers=args.workers)


def rerun(arguments: str) -> str:
    """This command again with other arguments, as the reader ran it: under tox or not."""
    if os.environ.get("TOX_ENV_NAME"):
        return f"python3 -m tox -e {os.environ['TOX_ENV_NAME']} -- {arguments}"
    return f"python3 cli.py {sys.argv[1] if len(sys.argv) > 1 else 'serve'} {arguments}"


def check_database(settings, *, wait: bool, fix: str) -> None:
    """Refuses to serve a database that is unreachable, unmigrated or behind, in one line that
    says what fixes it, unless told to wait for it: then every call is a 503 until it is ready."""
    from db.start_check import DatabaseNotReady, check

    try:
        check(settings)
    except DatabaseNotReady as error:
        remedy = error.remedy or f"run `{fix}` first"
        if not wait:
            raise CommandError(
                f"{error}: {remedy}, or start with --wait-for-database to answer 503 until then."
            ) from None
        print(f"tasks-api: {error}: answering 503 until it is ready ({remedy}).", file=sys.stderr)


def refuse_a_taken_port(host: str, port: int, *, local_data: Path | None = None) -> None:
    """One line with the whole way round: under tox the port goes after `--`, and a second copy
    of the development server needs data of its own as well (its PostgreSQL holds `local_data`)."""
    if not port_in_use(host, port):
        return
    from db.local_server import LocalPostgres

    other = port + 1
    if local_data is not None and LocalPostgres(local_data, bin_dir=Path("/")).running_pid() is not None:
        raise CommandError(
            f"port {port} on {host} is in use, and another copy of this API runs on {local_data}; stop it "
            f"(Ctrl-C), or start a second copy with a port and data of its own: "
            f"`TASKS_API_DATA_DIR=.data-{other} {rerun(f'--port {other}')}`."
        )
    raise CommandError(
        f"port {port} on {host} is in use; pick another: `{rerun(f'--port {other}')}` (or PORT={other})."
    )


@contextlib.contextmanager
def ctrl_c_comes_here() -> Iterator[None]:
    """In a terminal, takes Ctrl-C for this process alone, as a shell gives it to its foreground
    job: under `tox -e serve` the terminal would interrupt tox too, and tox 4 then reports an
    interrupted environment (`SKIP`, "evaluation failed", exit 1) however cleanly the API
    stopped. Gives the terminal back on the way out."""
    terminal = sys.stdin.fileno() if sys.stdin is not None and sys.stdin.isatty() else None
    if terminal is None or os.getsid(0) == os.getpid():  # no terminal, or this process leads its session
        yield
        return
    previous = os.tcgetpgrp(terminal)
    signal.signal(signal.SIGTTOU, signal.SIG_IGN)  # a background group may then set the foreground
    os.setpgid(0, 0)
    os.tcsetpgrp(terminal, os.getpgrp())
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            os.tcsetpgrp(terminal, previous)


def cmd_dev(args) -> None:
    """Development: a project-local PostgreSQL (unless DATABASE_URL), migrations, a token."""
    from db.local_server import LocalPostgres
    from service.auth import TokenVerifier
    from service.settings import Settings

    database_url = os.environ.get("DATABASE_URL")
    refuse_a_taken_port(args.host, args.port, local_data=None if database_url else local_postgres_dir())
    server = None
    if database_url:
        from db.start_check import postgres_url

        postgres_url(database_url)  # one line for a URL that cannot work, before anything starts
    else:
        server = LocalPostgres(local_postgres_dir()).start()
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
        if server is None and not args.migrate:
            check_database(settings, wait=args.wait_for_database or settings.wait_for_database, fix=rerun("--migrate"))
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
        if args.workers > 1:  # each worker reads the environment (cli:worker_app): give it what this chose
            os.environ.update(DATABASE_URL=database_url, BETTER_AUTH_SECRET=secret, CORS_ORIGINS=cors_origins)
        with ctrl_c_comes_here():
            serve(settings, args.host, args.port, workers=args.workers)
    finally:
        if server is not None:
            server.stop()


def cmd_migrate(args) -> None:
    """Applies migrations to DATABASE_URL, or to the project-local PostgreSQL with --local."""
    from db.local_server import LocalPostgres

    if args.local:
        server = LocalPostgres(local_postgres_dir()).start()
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


def cmd_database_url(args) -> None:
    """Prints the URL of the development PostgreSQL while `tox -e serve` runs it, for `cli.py serve`."""
    from db.local_server import LocalPostgres

    data = local_postgres_dir()
    if LocalPostgres(data, bin_dir=Path("/")).running_pid() is None:
        raise CommandError(
            f"the development PostgreSQL ({data}) is not running: start `python3 -m tox -e serve` first."
        )
    socket_dir = (data / "postmaster.pid").read_text().splitlines()[4]  # where it listens, as PostgreSQL wrote it
    print(f"postgresql://postgres@/postgres?host={socket_dir}")


def cmd_reset(args) -> None:
    """Wipes the development data: the local PostgreSQL's tasks and the development secret."""
    from db.local_server import LocalPostgres

    data = local_postgres_dir()
    if LocalPostgres(data, bin_dir=Path("/")).running_pid() is not None:
        raise CommandError(f"the development PostgreSQL in {data} is running: stop `tox -e serve` first.")
    for path in (data, DATA_DIR / "dev-secret"):
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    print(f"Removed the development data ({data} and the development secret); the next start begins afresh.")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="cli.py", description=__doc__)
    commands = parser.add_subparsers(required=True)
    for name, handler in {"dev": cmd_dev, "serve": cmd_serve}.items():
        sub = commands.add_parser(name, help=handler.__doc__)
        sub.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
        sub.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
        sub.add_argument(
            "--wait-for-database",
            action="store_true",
            help="start even if the database is unreachable or not migrated, answering 503 until it is ready",
        )
        sub.set_defaults(handler=handler)
    commands.choices["dev"].add_argument("--migrate", action="store_true", help="also migrate DATABASE_URL")
    for name in ("dev", "serve"):
        commands.choices[name].add_argument(
            "--workers", type=int, default=int(os.environ.get("WEB_CONCURRENCY", "1")), help="worker processes"
        )
    migrate_parser = commands.add_parser("migrate", help=cmd_migrate.__doc__)
    migrate_parser.add_argument("--local", action="store_true", help="the project-local PostgreSQL in .data/")
    migrate_parser.set_defaults(handler=cmd_migrate)
    token_parser = commands.add_parser("token", help=cmd_token.__doc__)
    token_parser.add_argument("user_id")
    token_parser.add_argument("--minutes", type=int, default=60)
    token_parser.set_defaults(handler=cmd_token)
    commands.add_parser("reset", help=cmd_reset.__doc__).set_defaults(handler=cmd_reset)
    commands.add_parser("database-url", help=cmd_database_url.__doc__).set_defaults(handler=cmd_database_url)

    args = parser.parse_args(argv)
    from db.local_server import LocalPostgresError
    from service.settings import ConfigError

    # Ctrl-C and SIGTERM are a clean stop: uvicorn shuts down gracefully, hands the signal back,
    # and this unwinds to exit 0, stopping the local PostgreSQL in order on the way.
    for stop in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop, _exit_cleanly)
    try:
        args.handler(args)
    except (ConfigError, CommandError, LocalPostgresError) as error:
        print(f"tasks-api: {error}", file=sys.stderr)
        raise SystemExit(2) from None


def _exit_cleanly(_signal: int, _frame) -> None:
    raise SystemExit(0)


if __name__ == "__main__":
    main()
