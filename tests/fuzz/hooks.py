"""Schemathesis hooks: a fresh token for the path's user on every request, `If-Match: *` on
generated writes, and a check that the same request with another user's token is refused with
403."""

import functools
import os

import schemathesis

from service.auth import TokenVerifier
from service.settings import Settings

STRANGER = "someone-else"
LIMITS_FIRST = {413, 414, 431}


@functools.cache
def _tokens() -> TokenVerifier:
    """Signs with the secret the service under test was given."""
    return TokenVerifier(Settings.from_env(database_url="unused", jwt_secret=os.environ["BETTER_AUTH_SECRET"]))


@schemathesis.auth(refresh_interval=None)
class PathUserToken:
    """Signs in as whoever the generated path names, so every /api request is the owner's."""

    def get(self, case, context):
        return _tokens().mint(str((case.path_parameters or {}).get("user_id", "anonymous")))

    def set(self, case, data, context):
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


@schemathesis.hook
def map_headers(ctx, headers):
    """A generated If-Match is never the task's ETag: every write would be a 412 and none would
    reach the handler. `*` lets them through; the links carry real ETags in the stateful phase,
    and tests/test_conditional_requests.py covers stale ones."""
    if headers and "If-Match" in headers:
        headers["If-Match"] = "*"
    return headers


@schemathesis.check
def another_users_token_is_forbidden(ctx, response, case):
    """The same request signed by someone else must be a 403, whatever else is wrong with it."""
    user_id = (case.path_parameters or {}).get("user_id")
    if user_id in (None, STRANGER) or "Authorization" not in response.request.headers:
        return None  # not an /api path, or a probe schemathesis sends without credentials on purpose
    if response.status_code == 405 or (response.status_code == 404 and response.json().get("code") == "NOT_FOUND"):
        return None  # no route for this method or path: routing answers before auth
    if response.status_code in LIMITS_FIRST or (
        response.status_code == 400 and response.json().get("code") == "TOO_MANY_PARAMETERS"
    ):
        return None  # over a request limit: refused before anything, auth included, is looked at
    signed_by_stranger = case.derive(headers={**case.headers, "Authorization": f"Bearer {_tokens().mint(STRANGER)}"})
    stranger = signed_by_stranger.call()
    if stranger.status_code != 403:
        raise AssertionError(f"another user's token got {stranger.status_code}, expected 403")
    return None
