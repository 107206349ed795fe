"""service/contract/compiled.py: the compiled validator accepts exactly what the Python validator
accepts, for every request schema of the contract (bodies and parameters), on many generated
values: valid bodies with one field replaced, and values of every JSON type, with the strings
where the two dialects could part (a trailing newline before `$`, leap seconds, UUID spellings)."""

import pytest
from connexion.operations import OpenAPIOperation
from connexion.resolver import Resolver
from connexion.spec import Specification
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app import SPEC_PATH
from service import contract
from service.contract.compiled import Undecided, compile_schema
from service.contract.validation import validator_for

TRICKY = [
    "",
    " ",
    "\n",
    "a\n",
    "alice\n",
    "alice",
    "\u00a0",
    "x\x00",
    "\u2028",
    "😀",
    "x" * 201,
    "0b6f5c1e-6c1a-4a53-9f3e-7d2a2f1c9b10",
    "0B6F5C1E-6C1A-4A53-9F3E-7D2A2F1C9B10",
    "0b6f5c1e-6c1a-4a53-9f3e-7d2a2f1c-9b10",
    "0b6f5c1e6c1a4a539f3e7d2a2f1c9b10",
    "{0b6f5c1e-6c1a-4a53-9f3e-7d2a2f1c9b10}",
    "2026-11-22T10:00:00Z",
    "2026-11-22t10:00:00z",
    "2026-11-22T23:59:60Z",
    "2026-02-30T10:00:00Z",
    "2026-11-22T10:00:00+24:00",
    "2026-11-22T10:00:00.123456789-05:30",
    "2026-11-22 10:00:00Z",
    "2026-11-22",
    "pending",
    "high",
    "due_at",
    "asc",
    "-1",
    "1.0",
    "A_CODE",
    "/problems/x",
    "http://example.com/a b",
]


def request_schemas() -> list[tuple[str, dict]]:
    contract.install()
    specification = Specification.load(contract.load_document(SPEC_PATH))
    schemas = []
    for path, item in specification["paths"].items():
        for method in item:
            if method == "parameters":
                continue
            operation = OpenAPIOperation.from_spec(
                specification, path=path, method=method, resolver=Resolver(lambda _name: None)
            )
            for parameter in operation.parameters:
                schemas.append((f"{operation.operation_id} {parameter['name']}", parameter["schema"]))
            if operation.consumes:
                schemas.append((f"{operation.operation_id} body", operation.body_schema(operation.consumes[0])))
    return schemas


SCHEMAS = request_schemas()

scalars = st.none() | st.booleans() | st.integers(-3, 300) | st.floats(allow_nan=False) | st.sampled_from(TRICKY)
values = st.recursive(
    scalars | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(["title", "notes", "tags", "priority", "due_at", "completed", "x"]), inner)
    ),
    max_leaves=8,
)


def test_every_request_schema_of_the_contract_compiles():
    """Else the accept path is never taken and every request pays for the Python validator."""
    assert [name for name, schema in SCHEMAS if compile_schema(schema) is Undecided] == []
    assert len(SCHEMAS) > 20


@pytest.mark.parametrize(("name", "schema"), SCHEMAS, ids=[name for name, _ in SCHEMAS])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=values, field=st.sampled_from(["title", "notes", "tags", "priority", "due_at", "completed"]))
def test_both_validators_accept_the_same_values(name, schema, value, field):
    compiled, python = compile_schema(schema), validator_for(schema)
    candidates = [value]
    if "properties" in schema:  # a valid-looking body with one field replaced
        candidates.append({"title": "A task", field: value})
    for candidate in candidates:
        assert compiled.is_valid(candidate) == python.is_valid(candidate), (name, candidate)


def test_a_trailing_newline_does_not_match_dollar_in_either():
    """ECMA-262's `$`, the dialect of JSON Schema: `alice\\n` is not a user id (Python's `$`
    matched before the final newline; jsonschema-rs's does not)."""
    user_schema = next(schema for name, schema in SCHEMAS if name == "listTasks user_id")
    for validator in (validator_for(user_schema), compile_schema(user_schema)):
        assert validator.is_valid("alice") and not validator.is_valid("alice\n")
