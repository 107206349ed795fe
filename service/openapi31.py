"""OpenAPI 3.1 for Connexion 3.3: what the framework lacks, in one place.

Written for Connexion 3.3.0 (``WRITTEN_FOR``); ``tests/test_openapi31.py`` pins each
behaviour below so that an upgrade which breaks one fails loudly.

- Connexion checks every document against its bundled 3.0 schema and rejects ``openapi:
  3.1.x`` (spec-first/connexion#1396): the check goes to openapi-spec-validator instead.
- Connexion validates with JSON Schema Draft 4, which ignores ``format: uuid`` and does not
  know type arrays: requests and responses are validated with Draft 2020-12, the dialect of
  OpenAPI 3.1, and every violation is reported (Connexion stops at the first).
- Type arrays such as ``[integer, "null"]`` in parameters are coerced from the query string
  (Connexion casts twice, for validation and for handler arguments; both learn it).
- A body that is not UTF-8, not JSON, or holds lone surrogates is a 400, not a 500 (#1860).
- A handler returning data from an operation whose errors are ``application/problem+json``
  gets the one success media type instead of a 500 (#1956).
- Media types are matched case-insensitively (``APPLICATION/JSON`` is JSON, not raw bytes).
- Work Connexion redoes on every request is done once per operation: the handler's decorators
  and URI parser (``AsyncOperation.fn`` builds them per call), and the ``inspect.signature``
  of the handler and of the security function (several per request); a request that is not
  a form is not parsed as one for its files; a JSON body is parsed by orjson; handler
  arguments are gathered from parameter definitions and defaults looked up once per
  operation; parameter names are sanitised once.
- Validation is linear in the size of the request: ``uniqueItems`` compares canonical forms
  in a set (jsonschema's fallback is quadratic), bodies nest at most ``max_json_depth``
  levels, at most ``MAX_LISTED_VIOLATIONS`` violations are collected, and a message quotes
  at most a short prefix of the offending value.
"""

import copy
import functools
import itertools
import re
import reprlib
import typing as t
from pathlib import Path

import orjson
import yaml
from connexion import security as connexion_security
from connexion import utils as connexion_utils
from connexion.apps.asynchronous import AsyncOperation
from connexion.context import operation, receive, scope
from connexion.datastructures import MediaTypeDict, NoContent
from connexion.decorators import parameter as connexion_parameters
from connexion.decorators.main import StarletteDecorator
from connexion.decorators.response import BaseResponseDecorator
from connexion.exceptions import InvalidSpecification, NonConformingResponseBody
from connexion.http_facts import FORM_CONTENT_TYPES
from connexion.lifecycle import ConnexionRequest
from connexion.spec import OpenAPISpecification
from connexion.uri_parsing import OpenAPIURIParser
from connexion.utils import extract_content_type
from connexion.validators import VALIDATOR_MAP as CONNEXION_VALIDATOR_MAP
from connexion.validators import (
    JSONRequestBodyValidator,
    JSONResponseBodyValidator,
    ParameterValidator,
)
from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import ValidationError
from openapi_spec_validator import validate as validate_openapi_document
from openapi_spec_validator.validation.exceptions import OpenAPIValidationError
from starlette.exceptions import HTTPException
from starlette.routing import compile_path

from service.errors import HTTP_METHODS, PROBLEM_JSON, InvalidRequest, MalformedBody

WRITTEN_FOR = "3.3.0"


def load_document(path: Path) -> dict:
    """The contract as written; Connexion gets this dict, readers get the file itself."""
    return yaml.safe_load(path.read_text(encoding="utf-8"))


# --- the document check -------------------------------------------------------------------


def _validate_with_openapi_spec_validator(cls, spec: dict) -> None:
    try:
        validate_openapi_document(spec)
    except OpenAPIValidationError as error:
        raise InvalidSpecification(str(error)) from error


# --- Draft 2020-12 validation with every violation ------------------------------------------

MAX_LISTED_VIOLATIONS = 50
_short = reprlib.Repr()  # how a message quotes a value: its first 40 characters or 4 items
_short.maxstring = _short.maxother = 40
_short.maxlist = _short.maxtuple = _short.maxdict = _short.maxset = 4
_short.maxlevel = 2


def _canonical(value: t.Any) -> t.Hashable:
    """A hashable form equal for values JSON Schema calls equal (1 == 1.0, but true != 1)."""
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, int | float):
        return ("number", value)
    if isinstance(value, list):
        return ("array", tuple(_canonical(item) for item in value))
    if isinstance(value, dict):
        return ("object", frozenset((key, _canonical(item)) for key, item in value.items()))
    return (type(value).__name__, value)


def _unique_items(validator, unique: bool, instance: t.Any, schema: dict):
    """uniqueItems in one pass over a set: jsonschema compares unhashable items pairwise."""
    if not unique or not validator.is_type(instance, "array"):
        return
    seen = set()
    for item in instance:
        key = _canonical(item)
        if key in seen:
            yield ValidationError(f"{_short.repr(instance)} has non-unique elements")
            return
        seen.add(key)


LinearValidator = validators.extend(Draft202012Validator, {"uniqueItems": _unique_items})

_validators: dict[int, tuple[dict, Draft202012Validator]] = {}
_ACCEPT_ANYTHING = LinearValidator({})


def validator_for(schema: dict) -> Draft202012Validator:
    """One compiled validator per schema object: Connexion asks again on every request. A
    response without a schema comes as a new `{}` each time: it gets the one that accepts all,
    or the cache would grow by one validator per such response."""
    if not schema:
        return _ACCEPT_ANYTHING
    cached = _validators.get(id(schema))
    if cached is None or cached[0] is not schema:
        cached = (schema, LinearValidator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER))
        _validators[id(schema)] = cached
    return cached[1]


def first_violations(errors: t.Iterable[ValidationError], describe: t.Callable) -> list[dict]:
    """The violations of the first errors found, at most MAX_LISTED_VIOLATIONS + 1 of them,
    in a stable order: enough to show every mistake a person makes, bounded for an attacker."""
    found = itertools.islice(errors, MAX_LISTED_VIOLATIONS + 1)
    ordered = sorted(found, key=lambda error: list(map(str, error.absolute_path)))
    violations = itertools.chain.from_iterable(describe(error) for error in ordered)
    return list(itertools.islice(violations, MAX_LISTED_VIOLATIONS + 1))


def _pointer(path: t.Iterable) -> str:
    return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in path)


def body_violations(error: ValidationError) -> list[dict]:
    """One violation per wrong field, pointing at the field itself where it can."""
    here = list(error.absolute_path)
    if error.validator == "required":
        for name in error.validator_value:
            if error.message == f"{name!r} is a required property":
                return [{"in": "body", "pointer": _pointer([*here, name]), "message": f"{name!r} is required"}]
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        known = error.schema.get("properties", {})
        return [
            {
                "in": "body",
                "pointer": _pointer([*here, name]),
                "message": f"{_short.repr(name)} is not a writable field",
            }
            for name in error.instance
            if name not in known
        ]
    return [{"in": "body", "pointer": _pointer(here), "message": _message(error)}]


def _message(error: ValidationError) -> str:
    """jsonschema's message quoting a short prefix of the value; a pattern is explained by its
    schema's description."""
    short = _short.repr(error.instance)
    if error.validator == "pattern" and "description" in error.schema:
        return f"{short} is not allowed: {error.schema['description']}"
    message = error.message
    if len(message) > 200:
        message = message.replace(repr(error.instance), short)
    return message


def _depth_exceeds(value: t.Any, limit: int) -> bool:
    """True if arrays and objects nest deeper than `limit`; level by level, so any depth is safe."""
    level, depth = [value], 0
    while level:
        containers = [item for item in level if isinstance(item, list | dict)]
        if not containers:
            return False
        depth += 1
        if depth > limit:
            return True
        level = [child for item in containers for child in (item.values() if isinstance(item, dict) else item)]
    return False


NO_BODY = object()
"""An empty body, unlike the JSON document `null`, which is validated like any other."""


class RequestBodyValidator(JSONRequestBodyValidator):
    """JSON request bodies: parsed strictly, validated with Draft 2020-12, all errors listed."""

    max_depth = 32  # install() sets the configured MAX_JSON_DEPTH

    async def _parse(self, stream: t.AsyncGenerator[bytes, None], scope) -> t.Any:
        raw = b"".join([chunk async for chunk in stream])
        if not raw:
            return NO_BODY
        try:
            if self._encoding.lower() not in {"utf-8", "utf8"}:
                raw = raw.decode(self._encoding).encode("utf-8")
            body = orjson.loads(raw)  # strict: no NaN, no invalid UTF-8, no lone surrogates
        except (UnicodeError, LookupError):
            raise MalformedBody("The body is not valid UTF-8 text.") from None
        except orjson.JSONDecodeError as error:
            reason = str(error)
            if "UTF-8" in reason or "surrogate" in reason:
                raise MalformedBody("The body is not valid UTF-8 text.") from None
            if reason.startswith("depth limit"):
                raise MalformedBody(f"The body nests deeper than {self.max_depth} levels.") from None
            raise MalformedBody(f"The body is not valid JSON: {reason}") from None
        if _depth_exceeds(body, self.max_depth):
            raise MalformedBody(f"The body nests deeper than {self.max_depth} levels.")
        return body

    def _validate(self, body: t.Any) -> None:
        if body is NO_BODY:
            if self._required:
                raise MalformedBody("The request needs a JSON body.")
            return
        violations = first_violations(validator_for(self._schema).iter_errors(body), body_violations)
        if violations:
            raise InvalidRequest(violations, limit=MAX_LISTED_VIOLATIONS)


class ResponseBodyValidator(JSONResponseBodyValidator):
    """JSON responses checked with Draft 2020-12: a drift from the contract is a 500 in tests."""

    def _validate(self, body: t.Any) -> None:
        messages = [
            f"{_pointer(error.absolute_path) or '/'}: {error.message}"
            for error in validator_for(self._schema).iter_errors(body)
        ]
        if messages:
            raise NonConformingResponseBody("Response breaks the contract: " + "; ".join(messages))


class RequestParameterValidator(ParameterValidator):
    """Path, query and header parameters with Draft 2020-12, all errors listed."""

    def __init__(self, parameters: list[dict], *args, **kwargs) -> None:
        # Connexion hands path-level parameters over once per middleware that parsed them.
        unique = {(param["in"], param["name"]): param for param in parameters}
        super().__init__(list(unique.values()), *args, **kwargs)

    def validate_request(self, request: ConnexionRequest) -> None:
        violations = []
        if self.strict_validation:
            for name in sorted(self.validate_query_parameter_list(request, self.security_query_params)):
                violations.append({"in": "query", "name": name, "message": "is not a parameter of this operation"})
        sources = {
            "path": request.path_params,
            "query": request.query_params,
            "header": request.headers,
        }
        for location, values in sources.items():
            for param in self.parameters.get(location, []):
                name = param["name"]
                value = values.get(name)
                if value is None:
                    if param.get("required"):
                        violations.append({"in": location, "name": name, "message": "is required"})
                    continue
                for error in validator_for(param["schema"]).iter_errors(value):
                    violations.append({"in": location, "name": name, "message": _message(error)})
        if violations:
            raise InvalidRequest(violations, limit=MAX_LISTED_VIOLATIONS)


class URIParser(OpenAPIURIParser):
    """Coerces parameters whose schema has a type array by its first non-null type."""

    def __init__(self, param_defns: list[dict], body_defn: dict) -> None:
        super().__init__(_coercible(param_defns), body_defn)


_coercible_by_list: dict[int, tuple[list, list]] = {}


def _coercible(param_defns: list[dict]) -> list[dict]:
    """The definitions with one type each, made once per operation's list (Connexion builds a
    parser, twice, on every request)."""
    cached = _coercible_by_list.get(id(param_defns))
    if cached is None or cached[0] is not param_defns:
        if len(_coercible_by_list) >= 1024:  # lists made per call would otherwise pile up
            _coercible_by_list.clear()
        cached = _coercible_by_list[id(param_defns)] = (
            param_defns,
            [{**defn, "schema": _single_type(defn.get("schema", {}))} for defn in param_defns],
        )
    return cached[1]


_connexion_get_val_from_param = connexion_parameters._get_val_from_param


def _get_val_from_param(value: t.Any, param_definitions: dict) -> t.Any:
    """Handler arguments are cast by a second path in Connexion: give it one type too."""
    schema = param_definitions.get("schema", param_definitions)
    return _connexion_get_val_from_param(value, {**param_definitions, "schema": _single_type(schema)})


def _single_type(schema: dict) -> dict:
    types = schema.get("type")
    if isinstance(types, list):
        concrete = [name for name in types if name != "null"]
        return {**schema, "type": concrete[0] if concrete else "null"}
    return schema


VALIDATOR_MAP = {
    "parameter": RequestParameterValidator,
    "body": MediaTypeDict({**CONNEXION_VALIDATOR_MAP["body"], "*/*json": RequestBodyValidator}),
    "response": MediaTypeDict({**CONNEXION_VALIDATOR_MAP["response"], "*/*json": ResponseBodyValidator}),
}


# --- response media type --------------------------------------------------------------------

_connexion_infer_content_type = BaseResponseDecorator._infer_content_type


@functools.lru_cache(maxsize=256)
def _success_types(operation) -> frozenset[str]:
    return frozenset(media for media in operation.produces if media != PROBLEM_JSON)


def _infer_content_type(data: t.Any, headers: dict) -> str | None:
    """Data a handler returns is a success: problem+json is only for raised errors."""
    if data is None or data is NoContent:
        return None
    if not extract_content_type(headers):
        success_types = _success_types(operation._get_current_object())
        if len(success_types) == 1:
            return next(iter(success_types))
    return _connexion_infer_content_type(data, headers)


# --- per-operation work, once -----------------------------------------------------------------


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
def _operation_fn(self: AsyncOperation) -> t.Callable:
    return OperationDecorator(pythonic_params=self.pythonic_params, jsonifier=self.jsonifier)(self._fn)


async def _json(self: ConnexionRequest) -> t.Any:
    """The body for the handler, parsed by orjson as the validator parsed it (Connexion parses
    it a second time with the standard library)."""
    try:
        return orjson.loads(await self._starlette_request.body())
    except orjson.JSONDecodeError:
        return None


_connexion_files = ConnexionRequest.files


async def _files(self: ConnexionRequest) -> dict:
    """Only a form carries files: every other request skips Connexion's form parsing."""
    if self.mimetype not in FORM_CONTENT_TYPES:
        return {}
    return await _connexion_files(self)


@functools.lru_cache(maxsize=256)
def _argument_plan(operation) -> tuple[dict, dict, dict]:
    """An operation's path and query parameters by name, and the query defaults."""
    path = {param["name"]: param for param in operation.parameters if param["in"] == "path"}
    query = {param["name"]: param for param in operation.parameters if param["in"] == "query"}
    return path, query, connexion_parameters._get_query_defaults(query)


def _get_arguments(
    operation, *, path_params, query_params, body, files, arguments, has_kwargs, sanitize, content_type
) -> dict:
    """Connexion's `get_arguments` (decorators/parameter.py), with the parameter definitions and
    query defaults looked up once per operation instead of rebuilt, and deep-copied, per request."""
    operation = operation._get_current_object()  # the context's proxy: one lookup, not one per use
    path_definitions, query_definitions, defaults = _argument_plan(operation)
    arguments_by_name = {}
    for name, value in path_params.items():
        definition = path_definitions.get(name)
        arguments_by_name[sanitize(name)] = value if definition is None else _get_val_from_param(value, definition)
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


_sanitized = functools.lru_cache(maxsize=1024)(connexion_parameters.sanitized)
"""By name: three regular expressions per parameter name, on every request, in Connexion."""

_inspect_function_arguments = functools.lru_cache(maxsize=256)(connexion_utils.inspect_function_arguments)
"""By function: its signature does not change, and Connexion asks several times per request."""


class ConcretePathsFirst:
    """A concrete path (`/tasks/changes`) is matched before a templated one (`/tasks/{task_id}`),
    as OpenAPI says; Connexion routes in document order and lets a method the concrete path does
    not declare fall through to the templated route (a 400 for a `task_id` of "changes"). This
    answers such a method with 405 instead."""

    def __init__(self, app, document: dict) -> None:
        self.app = app
        paths = {template: {m for m in item if m in HTTP_METHODS} for template, item in document["paths"].items()}
        patterns = {template: compile_path(template)[0] for template in paths}
        self.shadowing = [
            (patterns[template], {method.upper() for method in methods})
            for template, methods in paths.items()
            if any(other != template and patterns[other].match(re.sub(r"\{[^}]+\}", "x", template)) for other in paths)
        ]

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            for pattern, methods in self.shadowing:
                if pattern.match(scope["path"]) and scope["method"] not in methods | {"HEAD", "OPTIONS"}:
                    raise HTTPException(405)
        await self.app(scope, receive, send)


class CaseInsensitiveMediaTypes:
    """Lower-cases the media type of `Content-Type` before Connexion reads it: media types are
    case-insensitive (RFC 9110), Connexion's lookups are not, and `APPLICATION/JSON` reached a
    handler as raw bytes."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            for index, (name, value) in enumerate(scope["headers"]):
                if name == b"content-type":
                    media_type, separator, parameters = value.partition(b";")
                    if media_type != media_type.lower():
                        headers = list(scope["headers"])
                        headers[index] = (name, media_type.strip().lower() + separator + parameters)
                        scope = {**scope, "headers": headers}
                    break
        await self.app(scope, receive, send)


def install(*, max_json_depth: int = RequestBodyValidator.max_depth) -> None:
    """Teach Connexion the 3.1 document check, type-array casting, the response media type,
    the nesting limit of bodies and per-operation caching (add CaseInsensitiveMediaTypes as a
    middleware too)."""
    RequestBodyValidator.max_depth = max_json_depth
    OpenAPISpecification._validate_spec = classmethod(_validate_with_openapi_spec_validator)
    connexion_parameters._get_val_from_param = _get_val_from_param
    BaseResponseDecorator._infer_content_type = staticmethod(_infer_content_type)
    AsyncOperation.fn = _operation_fn
    ConnexionRequest.files = _files
    ConnexionRequest.json = _json
    _operation_fn.__set_name__(AsyncOperation, "fn")
    connexion_parameters.inspect_function_arguments = _inspect_function_arguments
    connexion_parameters.get_arguments = _get_arguments
    connexion_parameters.sanitized = _sanitized
    connexion_security.inspect_function_arguments = _inspect_function_arguments
