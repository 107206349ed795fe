"""One pass per request, from a plan built once per operation.

Connexion's stock path sends a request through a security layer, a validation layer and a
context layer, each looking the operation up again, and then through decorators that build a
parameter validator, two URI parsers and a body validator, parse the query string three times,
read the body twice and parse it twice, on every request. `OnePass` takes the place of those
layers (`SecurityMiddleware`, `RequestValidationMiddleware` and the handler call behind
`ContextMiddleware`) and does the same steps, in the same order, once each:

1. security from the contract (`bearer.bearer_verification`, or Connexion's own verification
   function for a requirement that is not one bearer scheme);
2. path, query and header parameters, coerced by the URI parser and validated;
3. the media type against the operation's `consumes` (415);
4. the body read once, parsed once, validated (`validation.RequestBodyValidator.read`);
5. the handler called with its arguments (`pipeline.arguments_for`) and Connexion's context set,
   so `connexion.request` and `connexion.context.operation` work in handlers as before
   (`connexion.request` is the request this pass made, not a new one on each use of it);
6. the response built as Connexion builds it, its JSON as bytes when the jsonifier can make them.

What the stock path would answer, this answers: `tests/contract/test_adapter_one_pass.py` sends the
same requests through both and compares status, headers and bodies. Response validation, when
on (tests, the fuzz run), stays Connexion's own layer in front of this one; in production that
layer is not in the stack at all.
"""

import asyncio
import copy
import typing as t
from contextvars import ContextVar
from urllib.parse import parse_qsl

from connexion import context as connexion_context
from connexion.context import _context, _operation, _receive, _scope
from connexion.datastructures import MediaTypeDict, NoContent
from connexion.decorators import parameter as connexion_parameters
from connexion.decorators.parameter import CONTEXT_NAME, pythonic, unwrap_decorators
from connexion.decorators.response import BaseResponseDecorator
from connexion.exceptions import UnsupportedMediaTypeProblem
from connexion.frameworks.starlette import Starlette as StarletteFramework
from connexion.http_facts import FORM_CONTENT_TYPES
from connexion.jsonifier import Jsonifier
from connexion.lifecycle import ConnexionRequest, ConnexionResponse
from connexion.middleware.abstract import RoutedAPI, RoutedMiddleware
from connexion.middleware.request_validation import RequestValidationMiddleware
from connexion.middleware.response_validation import ResponseValidationMiddleware
from connexion.middleware.routing import RoutingMiddleware
from connexion.middleware.security import SecurityMiddleware, SecurityOperation
from connexion.operations import AbstractOperation
from connexion.security import SecurityHandlerFactory
from connexion.utils import is_json_mimetype, is_null, is_nullable, split_content_type
from connexion.validators import VALIDATOR_MAP as CONNEXION_VALIDATOR_MAP
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import State
from starlette.responses import Response
from starlette.types import Receive, Scope, Send
from werkzeug.local import LocalProxy, _ProxyLookup

from service.contract import media_types, parameters, pipeline
from service.contract.bearer import bearer_verification
from service.errors import PROBLEM_JSON

_cast = parameters.connexion_get_val_from_param  # with definitions given one type once, in the plan
_unpack = BaseResponseDecorator._unpack_handler_response
_update_headers = BaseResponseDecorator._update_headers
_request: ContextVar[ConnexionRequest | None] = ContextVar("request", default=None)


def current_request() -> ConnexionRequest:
    """What `connexion.request` stands for: Connexion makes a new request object (and a new
    Starlette request, headers and state under it) each time a handler uses it; this is the one
    the current pass made, or Connexion's own where no pass made one for this scope."""
    request, scope = _request.get(), _scope.get(None)
    if request is not None and request.scope is scope:
        return request
    return ConnexionRequest(connexion_context.scope, connexion_context.receive)  # unbound: RuntimeError, as werkzeug's


class PlannedRequest(ConnexionRequest):
    """Connexion's request, with what security and handlers read of the Starlette request under
    it as properties: `ConnexionRequest` reaches each through `__getattr__`, after a failed
    look-up, on every use."""

    @property
    def scope(self) -> Scope:
        return self._starlette_request.scope

    @property
    def receive(self) -> Receive:
        return self._starlette_request.receive

    @property
    def headers(self):
        return self._starlette_request.headers

    @property
    def state(self) -> State:
        """The lifespan's state, its values found as attributes: Starlette's `State` answers each
        through `__getattr__`, after a failed look-up. Still the scope's dict underneath."""
        return AttributeState(self.scope.setdefault("state", {}))

    @property
    def client(self):
        return self._starlette_request.client


class AttributeState(State):
    """A `State` whose instance dictionary is the state dict itself, so that reading a value is a
    plain attribute look-up; writing one writes the dict, as `State` does."""

    _state = property(lambda self: self.__dict__)

    def __init__(self, state: dict) -> None:
        object.__setattr__(self, "__dict__", state)


class RequestProxy(LocalProxy):
    """`connexion.request` (a werkzeug proxy), with the attributes handlers read of the request
    as descriptors of its own: werkzeug's finds any other name through `__getattr__`, after a
    failed look-up, on every use."""

    __slots__ = ()
    scope = _ProxyLookup()
    headers = _ProxyLookup()
    state = _ProxyLookup()


request = RequestProxy(current_request)
"""The current request, for handlers: what `connexion.request` stands for, found faster."""


def _security_query_params(operation: AbstractOperation) -> list[str]:
    """Query parameters that carry credentials (Connexion's RequestValidationOperation)."""
    return [
        operation.security_schemes[name]["name"]
        for requirement in operation.security or []
        for name in requirement
        if operation.security_schemes[name]["type"] == "apiKey" and operation.security_schemes[name]["in"] == "query"
    ]


def _content_type(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The request's Content-Type (ASGI header names are lower case)."""
    for name, value in headers:
        if name == b"content-type":
            return value.decode("latin-1")
    return None


def _names_content_type(headers: dict) -> bool:
    return any(name.lower() == "content-type" for name in headers)


def _query_lists(query_string: bytes) -> dict[str, list[str]]:
    """Every value of every name, in one pass (Connexion calls `getlist` once per name), parsed
    as Starlette's `QueryParams` parses it."""
    grouped: dict[str, list[str]] = {}
    if not query_string:
        return grouped
    for name, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
        grouped.setdefault(name, []).append(value)
    return grouped


class OperationPass:
    """One operation's plan: what never changes between its requests, built once."""

    def __init__(
        self,
        operation: AbstractOperation,
        *,
        security_handler_factory: SecurityHandlerFactory,
        strict_validation: bool,
        validator_map: dict,
        uri_parser_class: type,
        jsonifier: t.Any,
        pythonic_params: bool,
    ) -> None:
        self.operation = operation
        self.verify = (
            (
                bearer_verification(operation, security_handler_factory)
                or SecurityOperation.from_operation(
                    operation, next_app=None, security_handler_factory=security_handler_factory
                ).verification_fn
            )
            if operation.security
            else None
        )
        self.uri_parser = uri_parser_class(operation.parameters, operation.body_definition())
        self.parameters = validator_map["parameter"](
            operation.parameters,
            uri_parser=self.uri_parser,
            strict_validation=strict_validation,
            security_query_params=_security_query_params(operation),
        )
        self.consumes = MediaTypeDict([(media.lower(), None) for media in operation.consumes])
        # Media types `consumes` names exactly (no range, no pattern): found without MediaTypeDict's
        # sort and fnmatch, which only ever match such a key by equality.
        self.consumed_exactly = frozenset(media for media in self.consumes if not any(c in media for c in "*?["))
        self._body_schemas: dict[str, dict] = {}  # by media type of `consumed_exactly`: bounded
        self.default_media_type = operation.consumes[0] if operation.consumes else "application/octet-stream"
        self.body_validators = validator_map["body"]
        self.strict_validation = strict_validation
        self._utf8_body_validators: dict[str, t.Any] = {}  # by media type of `consumes`: bounded

        function = operation.function
        self.function = function
        self.is_coroutine = asyncio.iscoroutinefunction(unwrap_decorators(function)) or asyncio.iscoroutinefunction(
            function
        )
        self.arguments, self.has_kwargs = pipeline.inspect_function_arguments(unwrap_decorators(function))
        self.sanitize = pythonic if pythonic_params else pipeline.sanitized
        self.takes_body = operation.is_request_body_defined and (
            self.has_kwargs or self.sanitize(operation.body_name("")) in self.arguments
        )
        self.dumps = getattr(jsonifier, "dumps_bytes", None) or jsonifier.dumps
        success_types = {media for media in operation.produces if media != PROBLEM_JSON}
        self.success_type = success_types.pop() if len(success_types) == 1 else None
        self.success_is_json = bool(self.success_type and is_json_mimetype(split_content_type(self.success_type)[0]))
        self._plan_arguments(operation)

    def _plan_arguments(self, operation: AbstractOperation) -> None:
        """Which parameters become which arguments, cast how: the common case of
        `pipeline.arguments_for`, decided once (None where that general path is kept)."""
        by_location: dict[str, dict] = {"path": {}, "query": {}}
        for definition in operation.parameters:
            if definition["in"] in by_location:
                typed = {**definition, "schema": parameters.single_type(definition.get("schema", {}))}
                by_location[definition["in"]][definition["name"]] = (self.sanitize(definition["name"]), typed)
        defaults = connexion_parameters._get_query_defaults(
            {name: typed for name, (_, typed) in by_location["query"].items()}
        )
        deep_objects = any(
            definition.get("style") == "deepObject" or definition.get("schema", {}).get("type") == "object"
            for definition in operation.parameters
        )
        self.argument_plan = None
        if not (self.has_kwargs or deep_objects or any(isinstance(value, dict) for value in defaults.values())):
            query = {name: plan for name, plan in by_location["query"].items() if plan[0] in self.arguments}
            # The defaults' arguments, cast once where the cast makes a value no handler can change.
            cast = {name: _cast(value, query[name][1]) for name, value in defaults.items() if name in query}
            immutable = {name: value for name, value in cast.items() if isinstance(value, str | int | float | None)}
            defaults = {name: value for name, value in defaults.items() if name not in immutable}
            default_arguments = {query[name][0]: value for name, value in immutable.items()}
            body_name = self.sanitize(operation.body_name(""))
            self.argument_plan = (
                by_location["path"],
                query,
                default_arguments,
                defaults,
                body_name if self.takes_body else None,
            )

    def _body_validator(self, media_type: str, encoding: str) -> t.Any:
        """The operation's body validator for this media type, or None when the body is not
        validated (no schema, or no validator for the media type: Connexion skips it too)."""
        known = self.takes_media_type(media_type.lower()) and encoding == "utf-8"
        if known and media_type in self._utf8_body_validators:
            return self._utf8_body_validators[media_type]
        schema = self.operation.body_schema(media_type)
        validator = None
        if schema:
            try:
                validator_class = self.body_validators[media_type]
            except KeyError:
                validator_class = None
            if validator_class is not None:
                validator = validator_class(
                    schema=schema,
                    required=self.operation.request_body.get("required", False),
                    nullable=is_nullable(self.operation.body_definition(media_type)),
                    encoding=encoding,
                    strict_validation=self.strict_validation,
                    uri_parser=self.uri_parser,
                )
        if known:
            self._utf8_body_validators[media_type] = validator
        return validator

    def takes_media_type(self, media_type: str) -> bool:
        """Whether `consumes` takes this (lower-case) media type, as MediaTypeDict decides."""
        return media_type in self.consumed_exactly or media_type in self.consumes

    def body_schema(self, media_type: str) -> dict:
        """`operation.body_schema`, which builds a MediaTypeDict and a copy of the schema each time."""
        schema = self._body_schemas.get(media_type)
        if schema is None:
            schema = self.operation.body_schema(media_type)
            if media_type in self.consumed_exactly:
                self._body_schemas[media_type] = schema
        return schema

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = PlannedRequest(scope, receive, uri_parser=self.uri_parser)
        if self.verify is not None:
            await self.verify(request)
        request._query_params = self.uri_parser.resolve_query(_query_lists(scope["query_string"]))
        self.parameters.validate_request(request)

        content_type = _content_type(scope["headers"])
        media_type, encoding = split_content_type(content_type)
        media_type = media_type or self.default_media_type
        encoding = encoding or "utf-8"
        if self.consumes and not self.takes_media_type(media_type.lower()):
            raise UnsupportedMediaTypeProblem(
                detail=f"Invalid Content-type ({media_type}), expected {self.operation.consumes}"
            )
        body = None
        validator = self._body_validator(media_type, encoding)
        if validator is not None:
            # The body as validated, also when it came without a Content-Type and was taken for
            # the operation's media type: Connexion handed such a body over as bytes (a 500).
            body, receive, scope = await validator.read(receive, scope)
        elif self.takes_body:
            body = await PlannedRequest(scope, receive, uri_parser=self.uri_parser).get_body()

        _context.set(scope.get("extensions", {}).get("connexion_context", {}))
        _operation.set(self.operation)
        _receive.set(receive)
        _scope.set(scope)
        # The handler's `connexion.request`, over the body as replayed (Connexion makes its own with no URI parser)
        _request.set(PlannedRequest(scope, receive) if receive is not request.receive else request)
        response = self.respond(await self.call_handler(request, body))
        await response(scope, receive, send)

    def planned_arguments(self, request: ConnexionRequest, body: t.Any) -> dict | None:
        """The handler's arguments by the plan; None where it does not apply (a form, a query
        parameter that is an object): Connexion's rules then, through `pipeline.arguments_for`."""
        if self.argument_plan is None or request.mimetype in FORM_CONTENT_TYPES:
            return None
        path_plan, query_plan, default_arguments, defaults, body_name = self.argument_plan
        query = request.query_params
        if any(isinstance(value, dict) for value in query.values()):
            return None
        kwargs = {}
        for name, value in request.path_params.items():
            plan = path_plan.get(name)
            kwargs[self.sanitize(name) if plan is None else plan[0]] = value if plan is None else _cast(value, plan[1])
        kwargs.update(default_arguments)
        for name, value in {**defaults, **query}.items():
            plan = query_plan.get(name)
            if plan is not None:
                kwargs[plan[0]] = _cast(value, plan[1])
        if body_name is not None:
            schema = self.body_schema(request.mimetype)
            if is_nullable(schema) and is_null(body):
                body = None
            elif body is None:
                body = copy.deepcopy(schema.get("default", {}))
            kwargs[body_name] = body
        return kwargs

    async def call_handler(self, request: ConnexionRequest, body: t.Any) -> t.Any:
        """Connexion's `prep_kwargs` and the call (decorators/parameter.py and main.py)."""
        kwargs = self.planned_arguments(request, body)
        if kwargs is None:
            kwargs = self.general_arguments(request, body)
        context = _context.get()
        for key, value in context.items():
            if self.has_kwargs or key in self.arguments:
                kwargs[key] = value
        if CONTEXT_NAME in self.arguments:
            kwargs[CONTEXT_NAME] = context
        if self.is_coroutine:
            return await self.function(**kwargs)
        return await run_in_threadpool(self.function, **kwargs)

    def general_arguments(self, request: ConnexionRequest, body: t.Any) -> dict:
        kwargs = pipeline.arguments_for(
            self.operation,
            path_params=request.path_params,
            query_params=request.query_params,
            body=body,
            files={},
            arguments=self.arguments,
            has_kwargs=self.has_kwargs,
            sanitize=self.sanitize,
            content_type=request.mimetype,
        )
        return {self.sanitize(name): value for name, value in kwargs.items()}

    def respond(self, handler_response: t.Any) -> Response:
        """Connexion's response decorator (decorators/response.py), with JSON as bytes."""
        if StarletteFramework.is_framework_response(handler_response):
            return handler_response
        if isinstance(handler_response, ConnexionResponse):
            return StarletteFramework.connexion_to_framework_response(handler_response)
        data, status_code, headers = _unpack(handler_response)
        if self.success_type and data is not None and data is not NoContent and not _names_content_type(headers):
            content_type = self.success_type  # what infer_content_type decides, decided once
        else:
            content_type = media_types.infer_content_type(data, headers)
        if data is None or data is NoContent:
            data = None
        elif content_type and is_json_mimetype(split_content_type(content_type)[0]):
            data = self.dumps(data)
        status_code = status_code or (204 if data is None else 200)
        headers = _update_headers(headers, content_type=content_type)
        return StarletteFramework.build_response(
            data, content_type=content_type, status_code=status_code, headers=headers
        )


class OnePassAPI(RoutedAPI[OperationPass]):
    def __init__(
        self,
        *args,
        strict_validation: bool = False,
        validator_map: dict | None = None,
        uri_parser_class: type | None = None,
        security_map: dict | None = None,
        jsonifier: t.Any = None,
        pythonic_params: bool = False,
        **kwargs,
    ) -> None:
        super().__init__(*args, uri_parser_class=uri_parser_class, **kwargs)
        self.options = {
            "security_handler_factory": SecurityHandlerFactory(security_map),
            "strict_validation": strict_validation,
            "validator_map": {**CONNEXION_VALIDATOR_MAP, **(validator_map or {})},
            "uri_parser_class": uri_parser_class,
            "jsonifier": jsonifier or Jsonifier(),  # Connexion's default, as in AsyncApi
            "pythonic_params": pythonic_params,
        }
        self.add_paths()

    def make_operation(self, operation: AbstractOperation) -> OperationPass:
        return OperationPass(operation, **self.options)


class OnePass(RoutedMiddleware[OnePassAPI]):
    """Security, request validation and the handler call, in one pass per request (module doc)."""

    api_cls = OnePassAPI


def one_pass_stack(stock: list, *, validate_responses: bool) -> list:
    """Connexion's middleware list with `OnePass` in place of its security and request validation
    layers, and its response validation layer only where responses are validated."""
    replaced = {SecurityMiddleware, RequestValidationMiddleware, ResponseValidationMiddleware}
    stack = [middleware for middleware in stock if middleware not in replaced]
    after_routing = stack.index(RoutingMiddleware) + 1
    stack[after_routing:after_routing] = [*([ResponseValidationMiddleware] if validate_responses else []), OnePass]
    return stack
