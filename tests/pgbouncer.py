"""A real PgBouncer (Debian's `pgbouncer`) in transaction pool mode in front of a throwaway
PostgreSQL, on a loopback port, for the tests that run the service through a pooler."""

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from db.local_server import LocalPostgres
from tests.live_server import free_port, wait_until

POOL_SIZE = 5


def listening(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        return True
    return False


@contextlib.contextmanager
def pgbouncer(database: LocalPostgres) -> Iterator[str]:
    """The URL of a transaction-mode PgBouncer in front of `database`."""
    binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
    assert Path(binary).exists(), "pgbouncer is needed: apt-get install pgbouncer"
    port = free_port()
    home = Path(tempfile.mkdtemp(prefix="tasks-pgbouncer-"))
    (home / "users.txt").write_text('"postgres" ""\n')
    (home / "pgbouncer.ini").write_text(
        f"""[databases]
postgres = host={database.socket_dir} dbname=postgres user=postgres

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {home}/users.txt
pool_mode = transaction
default_pool_size = {POOL_SIZE}
max_client_conn = 500
query_wait_timeout = 5
server_connect_timeout = 2
server_login_retry = 1
logfile = {home}/pgbouncer.log
pidfile = {home}/pgbouncer.pid
"""
    )
    account = database.account  # PgBouncer, like PostgreSQL, will not run as root
    if account is not None:
        for path in [home, *home.iterdir()]:
            os.chown(path, account.pw_uid, account.pw_gid)
    as_account = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []} if account else {}
    process = subprocess.Popen([binary, str(home / "pgbouncer.ini")], stdout=subprocess.DEVNULL, **as_account)
    try:
        wait_until(lambda: listening(port), f"pgbouncer (log: {home}/pgbouncer.log)", process, seconds=10)
        yield f"postgresql+asyncpg://postgres@127.0.0.1:{port}/postgres"
    finally:
        process.terminate()
        process.wait(10)
