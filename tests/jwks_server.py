"""Signing keys of our own and a small JWKS server that can misbehave on demand (down, slow,
garbage), for the key-handling and attack tests. Better Auth itself is in tests/better_auth/."""

import contextlib
import json
import threading
import time
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

ALGORITHMS = {
    "EdDSA": lambda: ed25519.Ed25519PrivateKey.generate(),
    "ES256": lambda: ec.generate_private_key(ec.SECP256R1()),
    "ES512": lambda: ec.generate_private_key(ec.SECP521R1()),
    "RS256": lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
    "PS256": lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
}


class SigningKey:
    """A private key, its `kid`, and tokens signed with it as Better Auth would sign them."""

    def __init__(self, alg: str = "EdDSA") -> None:
        self.alg = alg
        self.kid = uuid.uuid4().hex
        self.private = ALGORITHMS[alg]()

    @property
    def public_jwk(self) -> dict:
        algorithm = jwt.get_algorithm_by_name(self.alg)
        return {**json.loads(algorithm.to_jwk(self.private.public_key())), "alg": self.alg, "kid": self.kid}

    def token(self, claims: dict | None = None, **header) -> str:
        now = int(time.time())
        body = {"sub": "alice", "iat": now, "exp": now + 900, **(claims or {})}
        return jwt.encode(
            {k: v for k, v in body.items() if v is not None}, self.private, self.alg, {"kid": self.kid, **header}
        )


class JwksServer:
    """Serves `keys` at /jwks on a loopback port; `mode` is "ok", "slow" (10 s) or "garbage", and
    `go_down()` / `come_back()` close and reopen the port. `answer`, when set, answers instead:
    it is given the request handler, to write whatever a hostile server would."""

    def __init__(self, keys: list[SigningKey]) -> None:
        self.keys = keys
        self.mode = "ok"
        self.answer: Callable[[BaseHTTPRequestHandler], None] | None = None
        self.fetches = 0
        self._http = self._listen(0)
        self.port = self._http.server_port
        self.url = f"http://127.0.0.1:{self.port}/jwks"

    def _listen(self, port: int) -> ThreadingHTTPServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                server.fetches += 1
                if server.answer is not None:
                    with contextlib.suppress(ConnectionError):
                        server.answer(self)
                    return
                if server.mode == "slow":
                    time.sleep(10)
                body = b"<html>not a key set" if server.mode == "garbage" else json.dumps(server.key_set).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                with contextlib.suppress(ConnectionError):
                    self.wfile.write(body)

            def log_message(self, *args):
                pass

        http = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        http.daemon_threads = True
        threading.Thread(target=http.serve_forever, daemon=True).start()
        return http

    @property
    def key_set(self) -> dict:
        return {"keys": [key.public_jwk for key in self.keys]}

    def go_down(self) -> None:
        self._http.shutdown()
        self._http.server_close()

    def come_back(self) -> None:
        self._http = self._listen(self.port)

    def stop(self) -> None:
        self.go_down()
