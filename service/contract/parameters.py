"""Parameters whose schema has a type array, such as ``[integer, "null"]``, coerced from the
query string by their first non-null type. Connexion casts twice, for validation (its URI
parser) and for handler arguments (``_get_val_from_param``): both learn it."""

import typing as t

from connexion.decorators import parameter as connexion_parameters
from connexion.uri_parsing import OpenAPIURIParser


class URIParser(OpenAPIURIParser):
    """Coerces parameters whose schema has a type array by its first non-null type."""

    def __init__(self, param_defns: list[dict], body_defn: dict) -> None:
        super().__init__(_coercible(param_defns), body_defn)
        self._param_schemas = {name: defn.get("schema", {}) for name, defn in self._param_defns.items()}

    @property
    def param_schemas(self) -> dict:
        """Connexion's, made once: it made the dict again for each parameter of each request."""
        return self._param_schemas


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
            [{**defn, "schema": single_type(defn.get("schema", {}))} for defn in param_defns],
        )
    return cached[1]


connexion_get_val_from_param = connexion_parameters._get_val_from_param


def get_val_from_param(value: t.Any, param_definitions: dict) -> t.Any:
    """Handler arguments are cast by a second path in Connexion: give it one type too."""
    schema = param_definitions.get("schema", param_definitions)
    return connexion_get_val_from_param(value, {**param_definitions, "schema": single_type(schema)})


def single_type(schema: dict) -> dict:
    types = schema.get("type")
    if isinstance(types, list):
        concrete = [name for name in types if name != "null"]
        return {**schema, "type": concrete[0] if concrete else "null"}
    return schema
