"""Citus for the tests: the one installed in PostgreSQL's tree (Citus's own packages on a user's
machine), else built once from its source (`../shared/citus`, or CITUS_SOURCE) and installed
there. `make install` writes into the system PostgreSQL tree (PostgreSQL 15 has no extension
search path), so after one build every later run, and CI on the same machine, finds it
installed. The build tree is kept in a cache outside the checkout, under a lock, so two
suites starting at once build it once."""

import contextlib
import fcntl
import os
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

from cli import PROJECT

VERSION = "13.2.2"
TARBALL = f"citus-{VERSION}-notest.tar.gz"
PATCHES = ["pg15-createdb-privilege.patch"]
HOW_TO_GET_CITUS = (
    "Citus is needed: install Citus's package for your PostgreSQL (postgresql-15-citus-13.2, "
    "https://docs.citusdata.com/en/stable/installation/), or point CITUS_SOURCE at a folder with "
    f"{TARBALL} (see README, 'Distributed by user: Citus')."
)


class CitusUnavailable(RuntimeError):
    pass


def pg_config(bin_dir: Path) -> Path:
    """The pg_config of the server in `bin_dir` (a link such as /usr/local/bin/postgres followed)."""
    return (bin_dir / "postgres").resolve().parent / "pg_config"


def pkglibdir(bin_dir: Path) -> Path:
    answer = subprocess.run([pg_config(bin_dir), "--pkglibdir"], capture_output=True, text=True, check=True)
    return Path(answer.stdout.strip())


def installed(bin_dir: Path) -> bool:
    return (pkglibdir(bin_dir) / "citus.so").is_file()


def source_dir() -> Path:
    return Path(os.environ.get("CITUS_SOURCE") or PROJECT.parent / "shared" / "citus").resolve()


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tasks-api" / f"citus-{VERSION}"


@contextlib.contextmanager
def locked(directory: Path) -> Iterator[None]:
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def run(command: list[str], cwd: Path, log: Path) -> None:
    with open(log, "ab") as out:
        result = subprocess.run(command, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        raise CitusUnavailable(f"building Citus failed at `{' '.join(map(str, command))}`: see {log}")


def build_and_install(bin_dir: Path, source: Path, cache: Path) -> None:
    """About a minute on two cores: configure, make (without Debian's LLVM bitcode pass), install."""
    tree = cache / f"citus-{VERSION}"
    log = cache / "build.log"
    if not (tree / "src" / "backend" / "distributed" / "citus.so").exists():
        if not tree.exists():
            with tarfile.open(source / TARBALL) as archive:
                archive.extractall(cache, filter="data")
            for patch in PATCHES:
                run(["patch", "-p1", "-i", str(source / patch)], tree, log)
        run(["./configure", f"PG_CONFIG={pg_config(bin_dir)}", "--without-libcurl"], tree, log)
        run(["make", f"-j{os.cpu_count() or 2}", "with_llvm=no"], tree, log)
    run(["make", "install", "with_llvm=no"], tree, log)


def ensure_citus(bin_dir: Path) -> None:
    """Returns once the PostgreSQL in `bin_dir` can load Citus; raises with how to get it."""
    if installed(bin_dir):
        return
    source = source_dir()
    if not (source / TARBALL).is_file():
        raise CitusUnavailable(HOW_TO_GET_CITUS)
    if not os.access(pkglibdir(bin_dir), os.W_OK):
        raise CitusUnavailable(f"Citus is not installed and {pkglibdir(bin_dir)} is not writable: " + HOW_TO_GET_CITUS)
    cache = cache_dir()
    with locked(cache):
        if not installed(bin_dir):
            build_and_install(bin_dir, source, cache)
