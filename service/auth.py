"""Bearer tokens: who is calling (401 if we cannot tell) and whether the path is theirs (403).

Tokens are verified with the keys the settings name, several at once if need be: a JWKS
endpoint (`JWT_JWKS_URL`, Better Auth's `/api/auth/jwks`: EdDSA, ES256, ES512, RS256, PS256,
chosen by the token's `kid`), a static public key (`JWT_PUBLIC_KEY_FILE`), and the shared
secret (`BETTER_AUTH_SECRET`: HS256). The accepted algorithm always comes from the key, never
from the token, so `none` and HS256 signed with a public key fail; `jku`, `x5u` and `jwk`
headers are never read.

The contract names `bearer_info` as `x-bearerInfoFunc`; Connexion calls it before any
validation, with the request already routed, so `{user_id}` is known here.
"""

import hashlib
import time
from collections import OrderedDict
from pathlib import Path

import jwt
from connexion.lifecycle import ConnexionRequest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from service.errors import NotAuthenticated, WrongUser
from service.jwks import JwksKeys
from service.settings import ConfigError, Settings

SECRET_ALGORITHM = "HS256"
VERIFIED_TOKENS_KEPT = 50_000
"""Tokens whose signature is not checked again while they last, the least recently used
dropped first: about 320 bytes each (16 MB full, measured with tracemalloc; 28 MB with
255-character user ids). Tokens used in turn by more callers than this are all dropped before
their next use: at 10,000, every request of the benchmark's 20,000 users checked a signature."""
_CURVES = {"secp256r1": ["ES256"], "secp384r1": ["ES384"], "secp521r1": ["ES512"]}


def load_public_key(path: str) -> tuple[object, list[str]]:
    """A PEM public key and the algorithms it verifies."""
    try:
        key = load_pem_public_key(Path(path).read_bytes())
    except (OSError, ValueError) as error:
        raise ConfigError(f"JWT_PUBLIC_KEY_FILE={path} is not a readable PEM public key: {error}") from None
    if isinstance(key, ed25519.Ed25519PublicKey):
        return key, ["EdDSA"]
    if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name in _CURVES:
        return key, _CURVES[key.curve.name]
    if isinstance(key, rsa.RSAPublicKey):
        return key, ["RS256", "PS256"]
    raise ConfigError(f"JWT_PUBLIC_KEY_FILE={path} holds a key of a type tokens are not signed with.")


class TokenVerifier:
    """Checks a JWT against the configured keys and tells whose it is."""

    def __init__(self, settings: Settings, *, max_user_id_length: int | None = None) -> None:
        """`max_user_id_length` is the contract's for `{user_id}`: a longer `sub` names nobody."""
        self._max_user_id_length = max_user_id_length
        self._secret = settings.jwt_secret or None
        self._public_key = load_public_key(settings.jwt_public_key_file) if settings.jwt_public_key_file else None
        self.jwks = (
            JwksKeys(
                settings.jwt_jwks_url,
                cache_seconds=settings.jwt_jwks_cache_seconds,
                min_refresh_seconds=settings.jwt_jwks_min_refresh_seconds,
                timeout_seconds=settings.jwt_jwks_timeout_seconds,
                max_bytes=settings.jwt_jwks_max_bytes,
                max_keys=settings.jwt_jwks_max_keys,
            )
            if settings.jwt_jwks_url
            else None
        )
        self._issuer = settings.jwt_issuer
        self._audience = settings.jwt_audience
        self._leeway = settings.jwt_leeway_seconds
        self._verified: OrderedDict[bytes, tuple[str, float]] = OrderedDict()  # token digest: (user, exp)

    def remembered(self, token: str) -> tuple[bytes, str | None]:
        """The token's digest, and its user if it was verified before and has not expired: such a
        token costs no signature check."""
        digest = hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()
        known = self._verified.get(digest)
        if known is not None and known[1] > time.time():
            self._verified.move_to_end(digest)
            return digest, known[0]
        return digest, None

    async def user_of(self, token: str) -> str:
        digest, user = self.remembered(token)
        return user if user is not None else await self.verified_user(token, digest)

    async def verified_user(self, token: str, digest: bytes) -> str:
        """The token's user, its signature and claims checked; remembered under `digest`."""
        try:
            key, algorithms = await self._key_for(jwt.get_unverified_header(token))
            claims = jwt.decode(
                token,
                key,
                algorithms=algorithms,
                issuer=self._issuer,
                audience=self._audience,
                leeway=self._leeway,
                options={"require": ["exp"], "verify_aud": self._audience is not None},
            )
        except jwt.ExpiredSignatureError:
            raise NotAuthenticated("The token has expired.") from None
        except jwt.ImmatureSignatureError:
            raise NotAuthenticated("The token is not valid yet.") from None
        except jwt.PyJWTError:
            raise NotAuthenticated("The token is malformed, wrongly signed or not for this service.") from None
        user = claims.get("sub") or claims.get("user_id")
        too_long = self._max_user_id_length is not None and len(user or "") > self._max_user_id_length
        if not isinstance(user, str) or not user or too_long:
            raise NotAuthenticated("The token names no user this service knows (no sub or user_id claim, or too long).")
        self._remember(digest, user, claims["exp"])
        return user

    async def _key_for(self, header: dict) -> tuple[object, list[str]]:
        """The key the token claims to be signed with, and the algorithms that key allows."""
        if header.get("alg") == SECRET_ALGORITHM:
            if self._secret is None:
                raise NotAuthenticated("Tokens signed with a shared secret are not accepted here.")
            return self._secret, [SECRET_ALGORITHM]
        kid = header.get("kid")
        if self.jwks is not None and isinstance(kid, str) and kid:
            published = await self.jwks.key(kid)
            if published is not None:
                return published.key, [published.algorithm_name]
        if self._public_key is not None:
            return self._public_key
        raise NotAuthenticated("The token is signed with a key this service does not know.")

    def _remember(self, digest: bytes, user: str, expires: float) -> None:
        self._verified[digest] = (user, float(expires))
        if len(self._verified) > VERIFIED_TOKENS_KEPT:
            self._verified.popitem(last=False)

    def mint(self, user_id: str, *, lifetime_seconds: int = 3600) -> str:
        """A token as Better Auth would sign it with the shared secret; for development and tests."""
        if self._secret is None:
            raise ConfigError("Minting a token needs BETTER_AUTH_SECRET (or JWT_SECRET).")
        now = int(time.time())
        claims = {"sub": user_id, "iat": now, "exp": now + lifetime_seconds}
        if self._issuer:
            claims["iss"] = self._issuer
        if self._audience:
            claims["aud"] = self._audience
        return jwt.encode(claims, self._secret, algorithm=SECRET_ALGORITHM)


async def bearer_info(token: str, request: ConnexionRequest) -> dict:
    if len(request.headers.getlist("authorization")) > 1:
        raise NotAuthenticated("Send one Authorization header, not several.")
    verifier, limiter = request.state.token_verifier, request.state.rate_limiter
    digest, user = verifier.remembered(token)
    if user is None:  # an address over its failed-authentication rate gets no signature check
        await limiter.refuse_failing_address(request.client.host if request.client else None)
        user = await verifier.verified_user(token, digest)
    await limiter.charge_user(user)
    path_user = request.path_params.get("user_id")
    if path_user is not None and path_user != user:
        raise WrongUser("This token belongs to another user than the one in the path.")
    return {"sub": user}
