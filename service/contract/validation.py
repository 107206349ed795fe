"""Requests and responses validated with JSON Schema Draft 2020-12, the dialect of OpenAPI 3.1.

Connexion validates with Draft 4, which ignores ``format: uuid`` and does not know type arrays,
and stops at the first violation: here every violation is reported. A body that is not UTF-8,
not JSON, or holds lone surrogates is a 400, not a 500 (#1860). Validation is linear in the
size of the request: ``uniqueItems`` compares canonical forms in a set (jsonschema's fallback
is quadratic), bodies nest at most ``max_depth`` levels, at most ``MAX_LISTED_VIOLATIONS``
violations are collected, and a message quotes at most a short prefix of the offending value.
"""

import functools
import itertools
import re
import reprlib
import typing as t

import orjson
from connexion.datastructures import MediaTypeDict
from connexion.exceptions import BadRequestProblem, NonConformingResponseBody
from connexion.lifecycle import ConnexionRequest
from connexion.validators import VALIDATOR_MAP as CONNEXION_VALIDATOR_MAP
from connexion.validators import (
    AbstractRequestBodyValidator,
    JSONRequestBodyValidator,
    JSONResponseBodyValidator,
    ParameterValidator,
)
from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import ValidationError
from starlette.datastructures import Headers
from starlette.types import Receive, Scope

from service.contract.compiled import compile_schema
from service.errors import InvalidRequest, MalformedBody

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


@functools.lru_cache(maxsize=256)
def ecma_262(pattern: str) -> re.Pattern:
    r"""A pattern as JSON Schema reads it (ECMA-262): `$` is the end of the string. Python's `$`
    also matches before a final newline, which let `"alice\n"` through `^[a-z]+$`; the compiled
    validator (jsonschema-rs) reads it as ECMA-262 does, and both must agree."""
    translated, escaped, in_class = [], False, False
    for char in pattern:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
        elif char == "$":
            char = r"\Z"
        translated.append(char)
    return re.compile("".join(translated))


def _pattern(validator, pattern: str, instance: t.Any, schema: dict):
    """`pattern` with ECMA-262's `$` (jsonschema uses Python's `re.search` as it is)."""
    if validator.is_type(instance, "string") and not ecma_262(pattern).search(instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


LinearValidator = validators.extend(Draft202012Validator, {"uniqueItems": _unique_items, "pattern": _pattern})

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


_compiled: dict[int, tuple[dict, t.Any]] = {}


def accepts(schema: dict, value: t.Any) -> bool:
    """True if the compiled validator finds `value` valid (then the Python one would too); False
    means: ask the Python validator, which lists the violations, if any."""
    cached = _compiled.get(id(schema))
    if cached is None or cached[0] is not schema:
        if not schema:
            return True  # see validator_for: a new `{}` per response must not grow the cache
        cached = _compiled[id(schema)] = (schema, compile_schema(schema))
    return cached[1].is_valid(value)


def compiled_validators() -> int:
    """How many validators are cached: a request must not add one."""
    return len(_validators) + len(_compiled)


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
    """jsonschema's message quoting a short prefix of the value; a pattern (or a pattern it must
    not match) is explained by its schema's description."""
    short = _short.repr(error.instance)
    if error.validator in ("pattern", "not") and "description" in error.schema:
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
        if accepts(self._schema, body):
            return
        violations = first_violations(validator_for(self._schema).iter_errors(body), body_violations)
        if violations:
            raise InvalidRequest(violations, limit=MAX_LISTED_VIOLATIONS)

    async def read(self, receive: Receive, scope: Scope) -> tuple[t.Any, Receive, Scope]:
        """`wrap_receive` (Connexion's, validators/abstract.py) that also returns the parsed body
        (None for an empty one), so that the handler gets it without a second parse."""
        if not int(Headers(scope=scope).get("content-length", 0)):
            body = self._schema.get("default")
            if body is None and self._required:
                raise BadRequestProblem("RequestBody is required")
            receive, scope = self._insert_body(receive, body=body, scope=scope)
        messages = []

        async def stream() -> t.AsyncGenerator[bytes, None]:
            more_body = True
            while more_body:
                message = await receive()
                messages.append(message)
                more_body = message.get("more_body", False)
                yield message.get("body", b"")
            yield b""

        body = await self._parse(stream(), scope=scope)
        if not (body is None and self._nullable):
            self._validate(body)
        return (
            (None if body is NO_BODY else body),
            AbstractRequestBodyValidator._insert_messages(receive, messages=messages),
            scope,
        )


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
        if self.strict_validation and request.query_params:  # no query, no unknown parameter
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
                if accepts(param["schema"], value):
                    continue
                for error in validator_for(param["schema"]).iter_errors(value):
                    violations.append({"in": location, "name": name, "message": _message(error)})
        if violations:
            raise InvalidRequest(violations, limit=MAX_LISTED_VIOLATIONS)


VALIDATOR_MAP = {
    "parameter": RequestParameterValidator,
    "body": MediaTypeDict({**CONNEXION_VALIDATOR_MAP["body"], "*/*json": RequestBodyValidator}),
    "response": MediaTypeDict({**CONNEXION_VALIDATOR_MAP["response"], "*/*json": ResponseBodyValidator}),
}
