"""Bearer tokens: who is calling (401 if we cannot tell) and whether the path is theirs (403).

The contract names `bearer_info` as `x-bearerInfoFunc`; Connexion calls it before any
validation, with the request already routed, so `{user_id}` is known here.
"""

import time

import jwt
from connexion.lifecycle import ConnexionRequest

from service.errors import NotAuthenticated, WrongUser
from service.settings import Settings

ALGORITHMS = ["HS256"]


class TokenVerifier:
    """Checks a JWT signed with the shared secret and tells whose it is."""

    def __init__(self, settings: Settings) -> None:
        self._key = settings.jwt_secret
        self._issuer = settings.jwt_issuer
        self._audience = settings.jwt_audience
        self._leeway = settings.jwt_leeway_seconds

    def user_of(self, token: str) -> str:
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=ALGORITHMS,
                issuer=self._issuer,
                audience=self._audience,
                leeway=self._leeway,
                options={"require": ["exp"], "verify_aud": self._audience is not None},
            )
        except jwt.ExpiredSignatureError:
            raise NotAuthenticated("The token has expired.") from None
        except jwt.PyJWTError:
            raise NotAuthenticated("The token is malformed, wrongly signed or not for this service.") from None
        user = claims.get("sub") or claims.get("user_id")
        if not isinstance(user, str) or not user:
            raise NotAuthenticated("The token names no user (no sub or user_id claim).")
        return user

    def mint(self, user_id: str, *, lifetime_seconds: int = 3600) -> str:
        """A token as Better Auth would sign it with this secret; for development and tests."""
        now = int(time.time())
        claims = {"sub": user_id, "iat": now, "exp": now + lifetime_seconds}
        if self._issuer:
            claims["iss"] = self._issuer
        if self._audience:
            claims["aud"] = self._audience
        return jwt.encode(claims, self._key, algorithm=ALGORITHMS[0])


async def bearer_info(token: str, request: ConnexionRequest) -> dict:
    user = request.state.token_verifier.user_of(token)
    await request.state.rate_limiter.charge_user(user)
    path_user = request.path_params.get("user_id")
    if path_user is not None and path_user != user:
        raise WrongUser("This token belongs to another user than the one in the path.")
    return {"sub": user}
