"""A real Better Auth server (the npm package `better-auth`, pinned in package.json), started on
a loopback port for a test and stopped after it: users sign up with email and password and
fetch their JWT from `/api/auth/token`, exactly as a Next.js frontend does."""

import contextlib
import json
import secrets
import shutil
import subprocess
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from http.cookiejar import CookieJar
from pathlib import Path

from tests.live_server import answers, free_port, wait_until

SERVER = Path(__file__).parent / "server.mjs"
PROJECT = SERVER.parents[2]


@dataclass
class SignedUp:
    id: str
    token: str


class BetterAuth:
    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.jwks_url = f"{base_url}/api/auth/jwks"

    def sign_up(self, name: str) -> SignedUp:
        """A new user signs up; their browser session then asks for a JWT."""
        cookies = CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(cookies))
        body = {
            "email": f"{name}-{secrets.token_hex(4)}@example.com",
            "password": secrets.token_urlsafe(16),
            "name": name,
        }
        request = urllib.request.Request(
            f"{self.base_url}/api/auth/sign-up/email",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json", "Origin": self.base_url},
        )
        with opener.open(request, timeout=10) as response:
            user = json.load(response)["user"]
        with opener.open(f"{self.base_url}/api/auth/token", timeout=10) as response:
            token = json.load(response)["token"]
        return SignedUp(user["id"], token)


@contextlib.contextmanager
def better_auth_server(alg: str = "EdDSA", trusted_origins: tuple[str, ...] = ()) -> Iterator[BetterAuth]:
    node = shutil.which("node")
    assert node, "Node.js is needed for the Better Auth server"
    assert (PROJECT / "node_modules" / "better-auth").is_dir(), "run `npm ci` first (tox does)"
    port = free_port()
    env = {
        "PATH": str(Path(node).parent),
        "PORT": str(port),
        "BETTER_AUTH_SECRET": secrets.token_urlsafe(32),
        "JWT_ALG": alg,
        "TRUSTED_ORIGINS": ",".join(trusted_origins),
    }
    server = subprocess.Popen([node, str(SERVER)], cwd=PROJECT, env=env, stdout=subprocess.DEVNULL)
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: answers(f"{base_url}/api/auth/ok"), "the Better Auth server", server)
        yield BetterAuth(base_url)
    finally:
        server.terminate()
        server.wait(10)
