"""Security from the contract, for an operation whose one requirement is one bearer scheme (as
every operation of this API's is): Connexion's checks for it in one function, planned once.

Connexion verifies through three wrappers built for any mix of schemes (`verify_security`, the
bearer handler's and `_generic_check`), and decides on every request which keyword arguments the
token function takes. `bearer_verification` does what they do for this one case, in the same
order and with the same problems; any other requirement keeps Connexion's function. Pinned by
`tests/contract/test_adapter_one_pass.py`, which sends the same headers through both paths.
"""

import asyncio
import logging
import typing as t

from connexion.exceptions import OAuthProblem, OAuthResponseProblem
from connexion.lifecycle import ConnexionRequest
from connexion.operations import AbstractOperation
from connexion.security import NO_VALUE, BearerSecurityHandler, SecurityHandlerFactory

from service.contract.pipeline import inspect_function_arguments

logger = logging.getLogger("connexion.security")  # Connexion's, for its one log line

Verification = t.Callable[[ConnexionRequest], t.Awaitable[None]]


def bearer_verification(operation: AbstractOperation, factory: SecurityHandlerFactory) -> Verification | None:
    """The operation's verification when it is one stock bearer scheme with a token function;
    None otherwise (then Connexion's own applies)."""
    requirements = operation.security or []
    if len(requirements) != 1 or len(requirements[0]) != 1:
        return None
    ((name, _scopes),) = requirements[0].items()  # a bearer scheme has none: Connexion passes None
    scheme = operation.security_schemes[name]
    is_bearer = scheme.get("type") == "http" and str(scheme.get("scheme", "")).lower() == "bearer"
    if not is_bearer or factory.security_handlers.get("bearer") is not BearerSecurityHandler:
        return None
    handler = BearerSecurityHandler()
    token_info_of = handler._resolve_func(scheme)
    if token_info_of is None:
        return None
    arguments, has_kwargs = inspect_function_arguments(token_info_of)
    passes_scopes = has_kwargs or handler.required_scopes_kw in arguments
    passes_request = has_kwargs or handler.request_kw in arguments

    async def verify(request: ConnexionRequest) -> None:
        authorization = request.headers.get("Authorization")
        token_info = NO_VALUE
        if authorization:
            try:
                auth_type, token = authorization.split(maxsplit=1)
            except ValueError:
                raise OAuthProblem(detail="Invalid authorization header") from None
            if auth_type.lower() == "bearer":
                kwargs = {}
                if passes_scopes:
                    kwargs[handler.required_scopes_kw] = None  # as Connexion passes it for bearer
                if passes_request:
                    kwargs[handler.request_kw] = request
                token_info = token_info_of(token, **kwargs)
                while asyncio.iscoroutine(token_info):
                    token_info = await token_info
                if token_info is None:
                    raise OAuthResponseProblem(detail="Provided token is not valid")
        if token_info is NO_VALUE:
            logger.info("... No auth provided. Aborting with 401.")
            raise OAuthProblem(detail="No authorization token provided")
        request.context.update({"user": token_info.get("sub", token_info.get("uid")), "token_info": token_info})

    return verify
