"""The contract and the code name each other completely: every operationId has its handler,
every handler is named by an operationId, and every status a handler can answer is declared."""

import ast
import inspect
from types import ModuleType

import pytest

from app import HANDLER_MODULES, SPEC_PATH, handler_for
from service import errors
from service.contract import load_document

DOCUMENT = load_document(SPEC_PATH)
OPERATIONS = {
    operation["operationId"]: operation
    for item in DOCUMENT["paths"].values()
    for operation in item.values()
    if isinstance(operation, dict) and "operationId" in operation
}


def public_functions(module: ModuleType) -> set[str]:
    return {
        name
        for name, value in vars(module).items()
        if inspect.isfunction(value) and value.__module__ == module.__name__ and not name.startswith("_")
    }


def test_every_operation_id_names_a_handler():
    for operation_id in OPERATIONS:
        assert inspect.iscoroutinefunction(handler_for(operation_id)), operation_id


def test_every_handler_is_named_by_an_operation_id():
    named = {handler_for(operation_id).__name__ for operation_id in OPERATIONS}
    for module in HANDLER_MODULES:
        assert public_functions(module) <= named, f"{module.__name__} has functions no operation names"


def is_own_helper(module: ModuleType, name: str) -> bool:
    function = getattr(module, name, None)
    return inspect.isfunction(function) and function.__module__ == module.__name__


def statuses_raised_or_returned(module: ModuleType, function_name: str, seen=None) -> set[int]:
    """Statuses a handler answers with: raised problems, returned tuples, and the same for the
    module's own helpers it calls."""
    seen = seen if seen is not None else set()
    if function_name in seen:
        return set()
    seen.add(function_name)
    tree = ast.parse(inspect.getsource(getattr(module, function_name)))
    statuses: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call) and isinstance(node.exc.func, ast.Name):
            problem = getattr(errors, node.exc.func.id, None)
            if isinstance(problem, type) and issubclass(problem, errors.ApiProblem):
                statuses.add(problem.status_code)
        elif isinstance(node, ast.Return) and node.value is not None:
            returned = node.value
            if isinstance(returned, ast.Tuple) and isinstance(returned.elts[1], ast.Constant):
                statuses.add(returned.elts[1].value)
            elif (
                isinstance(returned, ast.Call) and len(returned.args) > 1 and isinstance(returned.args[1], ast.Constant)
            ):
                statuses.add(returned.args[1].value)  # a helper that builds the answer: `_with_etag(task, 201)`
            else:
                statuses.add(200)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and is_own_helper(module, node.func.id):
            statuses |= statuses_raised_or_returned(module, node.func.id, seen) - {200}
    return statuses


@pytest.mark.parametrize("operation_id", OPERATIONS)
def test_every_status_an_operation_can_answer_is_declared(operation_id):
    operation = OPERATIONS[operation_id]
    handler = handler_for(operation_id)
    module = inspect.getmodule(handler)
    expected = statuses_raised_or_returned(module, handler.__name__)
    expected |= {400, 500}  # validation (strict: even unknown query parameters), and bugs
    if operation.get("security", DOCUMENT.get("security")):
        expected |= {401, 403, 404}  # token, owner, and a path that routes nowhere
    if "requestBody" in operation:
        expected.add(415)
    source = inspect.getsource(handler)
    if "task_store()" in source or "request.state." in source:  # the database, or the auth server's keys
        expected.add(503)
    declared = {int(status) for status in operation["responses"]}
    assert expected <= declared, f"{operation_id} can answer {sorted(expected - declared)} undeclared"


def test_try_it_out_works_for_the_development_user_with_no_filter_filled_in():
    """Swagger UI fills parameters from examples: the user must be the one `tox -e serve` signs
    in, and the list must not start out filtered."""
    parameters = DOCUMENT["components"]["parameters"]
    assert parameters["UserId"]["example"] == "dev-user"
    list_parameters = [
        parameters[ref["$ref"].rsplit("/", 1)[1]]
        for ref in DOCUMENT["paths"]["/api/{user_id}/tasks"]["get"]["parameters"]
    ]
    schemas = DOCUMENT["components"]["schemas"]
    for parameter in list_parameters:
        schema = parameter["schema"]
        schema = schemas[schema["$ref"].rsplit("/", 1)[1]] if "$ref" in schema else schema
        assert "example" not in parameter and "example" not in schema, parameter["name"]


@pytest.mark.parametrize("path", ["/health/", "/api/alice/tasks/", "/api/alice/tasks/changes/", "/api/docs/"])
def test_a_trailing_slash_is_not_found_never_a_redirect_built_from_the_host_header(client, path):
    assert not [template for template in DOCUMENT["paths"] if template.endswith("/")]
    response = client.get(path, headers={"Host": "evil.example"}, follow_redirects=False)
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert "location" not in response.headers
