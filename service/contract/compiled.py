"""The accept path: a compiled validator (jsonschema-rs, Draft 2020-12) decides whether a value
is valid, in microseconds; only a value it rejects goes to the Python validator
(`validation.py`), which lists the violations with the same messages as ever.

Both read a schema the same way: `$` in a pattern is ECMA-262's (`validation.ecma_262`), and each
`format` is checked by the Python validator's own format checker, called from the compiled one,
so that a value one accepts the other accepts too (jsonschema-rs alone accepts a leap second,
`23:59:60`, that rfc3339-validator refuses). `tests/contract/test_adapter_compiled.py` checks the
two agree on many generated values. A schema jsonschema-rs cannot compile is left to Python."""

import typing as t

import jsonschema_rs
from jsonschema import Draft202012Validator

_FORMATS = Draft202012Validator.FORMAT_CHECKER


class _Cyclic(Exception):
    pass


def _plain(value: t.Any, on_path: frozenset = frozenset()) -> t.Any:
    """A copy as plain JSON; a schema that contains itself (a recursive one) cannot be one."""
    if isinstance(value, dict | list):
        if id(value) in on_path:
            raise _Cyclic
        on_path = on_path | {id(value)}
        if isinstance(value, dict):
            return {key: _plain(item, on_path) for key, item in value.items()}
        return [_plain(item, on_path) for item in value]
    return value


def _formats_in(schema: t.Any, found: set[str]) -> set[str]:
    if isinstance(schema, dict):
        if isinstance(schema.get("format"), str):
            found.add(schema["format"])
        for value in schema.values():
            _formats_in(value, found)
    elif isinstance(schema, list):
        for value in schema:
            _formats_in(value, found)
    return found


def _python_format(name: str) -> t.Callable[[str], bool]:
    def conforms(value: str) -> bool:
        return _FORMATS.conforms(value, name)

    return conforms


class AcceptAll:
    """For an empty schema: everything is valid."""

    @staticmethod
    def is_valid(_value: t.Any) -> bool:
        return True


class Undecided:
    """For a schema the compiled validator cannot take: always ask the Python validator."""

    @staticmethod
    def is_valid(_value: t.Any) -> bool:
        return False


def compile_schema(schema: dict) -> t.Any:
    """An object whose `is_valid(value)` is True only if the Python validator finds no violation."""
    if not schema:
        return AcceptAll
    try:
        # Connexion adds the document's `components` to a body's schema; its `$ref`s are resolved.
        plain = _plain({key: value for key, value in schema.items() if key != "components"})
        formats = {name: _python_format(name) for name in _formats_in(plain, set())}
        return jsonschema_rs.Draft202012Validator(plain, formats=formats, validate_formats=True)
    except (_Cyclic, ValueError, jsonschema_rs.ValidationError, jsonschema_rs.ReferencingError):
        return Undecided
