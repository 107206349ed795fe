"""Work Connexion redoes on every request, done once per operation: the handler's decorators
and URI parser (``AsyncOperation.fn`` builds them per call), the ``inspect.signature`` of the
handler and of the security function (several per request), handler arguments gathered from
parameter definitions and defaults looked up once per operation, parameter names sanitised
once, and the JSON body for the handler parsed by orjson as the validator parsed it."""

import copy
import functools
import typing as t

import orjson
from connexion import utils as connexion_utils
from connexion.apps.asynchronous import AsyncOperation
from connexion.context import receive, scope
from connexion.decorators import parameter as connexion_parameters
from connexion.decorators.main import StarletteDecorator
from connexion.lifecycle import ConnexionRequest

from service.contract.parameters import get_val_from_param


class OperationDecorator(StarletteDecorator):
    """Connexion's decorator, with the handler's parameter and response decorators and its URI
    parser built on the operation's first request instead of on every one. One instance wraps
    one operation's handler, so what it builds is the same every time."""

    def __call__(self, function: t.Callable) -> t.Callable:
        built: tuple | None = None

        @functools.wraps(function)
        async def wrapper(*_args, **_kwargs):
            nonlocal built
            if built is None:
                built = (self.uri_parser, self.decorate(function))
            uri_parser, decorated = built
            return await decorated(self.framework.get_request(uri_parser=uri_parser, scope=scope, receive=receive))

        return wrapper


@functools.cached_property
def operation_fn(self: AsyncOperation) -> t.Callable:
    """`AsyncOperation.fn`, built once per operation."""
    return OperationDecorator(pythonic_params=self.pythonic_params, jsonifier=self.jsonifier)(self._fn)


async def json_by_orjson(self: ConnexionRequest) -> t.Any:
    """The body for the handler, parsed by orjson as the validator parsed it (Connexion parses
    it a second time with the standard library)."""
    try:
        return orjson.loads(await self._starlette_request.body())
    except orjson.JSONDecodeError:
        return None


@functools.lru_cache(maxsize=256)
def _argument_plan(operation) -> tuple[dict, dict, dict]:
    """An operation's path and query parameters by name, and the query defaults."""
    path = {param["name"]: param for param in operation.parameters if param["in"] == "path"}
    query = {param["name"]: param for param in operation.parameters if param["in"] == "query"}
    return path, query, connexion_parameters._get_query_defaults(query)


def get_arguments(
    operation, *, path_params, query_params, body, files, arguments, has_kwargs, sanitize, content_type
) -> dict:
    """Connexion's `get_arguments` (decorators/parameter.py), with the parameter definitions and
    query defaults looked up once per operation instead of rebuilt, and deep-copied, per request."""
    return arguments_for(
        operation._get_current_object(),  # the context's proxy: one lookup, not one per use
        path_params=path_params,
        query_params=query_params,
        body=body,
        files=files,
        arguments=arguments,
        has_kwargs=has_kwargs,
        sanitize=sanitize,
        content_type=content_type,
    )


def arguments_for(
    operation, *, path_params, query_params, body, files, arguments, has_kwargs, sanitize, content_type
) -> dict:
    """The handler's arguments by name, for an operation (not the context's proxy of one)."""
    path_definitions, query_definitions, defaults = _argument_plan(operation)
    arguments_by_name = {}
    for name, value in path_params.items():
        definition = path_definitions.get(name)
        arguments_by_name[sanitize(name)] = value if definition is None else get_val_from_param(value, definition)
    if any(isinstance(value, dict) for value in [*defaults.values(), *query_params.values()]):  # deepObject
        query_arguments = connexion_utils.deep_merge(copy.deepcopy(defaults), query_params)
    else:
        query_arguments = {**defaults, **query_params}
    arguments_by_name.update(
        connexion_parameters._query_args_helper(query_definitions, query_arguments, arguments, has_kwargs, sanitize)
    )
    if operation.method.upper() == "TRACE":
        return arguments_by_name
    body_argument = connexion_parameters._get_body_argument(
        body,
        operation=operation,
        arguments=arguments,
        has_kwargs=has_kwargs,
        sanitize=sanitize,
        content_type=content_type,
    )
    arguments_by_name.update(body_argument)
    body_schema = operation.body_schema(content_type)
    arguments_by_name.update(connexion_parameters._get_file_arguments(files, arguments, body_schema, has_kwargs))
    return arguments_by_name


sanitized = functools.lru_cache(maxsize=1024)(connexion_parameters.sanitized)
"""By name: three regular expressions per parameter name, on every request, in Connexion."""

inspect_function_arguments = functools.lru_cache(maxsize=256)(connexion_utils.inspect_function_arguments)
"""By function: its signature does not change, and Connexion asks several times per request."""
