"""A reader opens the served docs, presses Authorize with the development token, then "Try it
out" and "Execute" on each operation as Swagger UI fills it in: every answer is the one the
operation's summary promises, pressed twice as well as once.

What Swagger UI 5 fills in is read from the served contract the way it reads it
(`ParameterRow.setDefaultValue` in swagger-ui 5.31): a parameter's first `examples` entry, else
its `example`, else its schema's `example`, else its schema's `default`; a body, its first
example (the others are in a list to choose from). A field left empty is one the reader fills
in: the task's id, from the task they created first."""

import json
import re
from dataclasses import dataclass

import httpx
import pytest

from cli import PROJECT
from service.auth import TokenVerifier
from service.settings import Settings
from tests.live_server import live_service

# What each operation's summary promises when its form is executed twice as filled in, in the
# order a reader tries them.
PRESSED_TWICE = {
    "createTask": (201, 201),  # Create a task: two presses, two tasks (no Idempotency-Key filled in)
    "listTasks": (200, 200),
    "listChanges": (200, 200),
    "streamChanges": (200, 200),  # Stream changes: the first event at once (Swagger UI then waits for more)
    "getTask": (200, 200),  # Get a task: the task, not a 304 for a filled-in If-None-Match
    "replaceTask": (200, 200),
    "updateTask": (200, 200),
    "completeTask": (200, 200),  # Complete a task: completed, and still completed
    "getHealth": (200, 200),
    "getReadiness": (200, 200),
    "deleteTask": (204, 404),  # Delete a task: then it is gone
}
METHODS = {"get", "put", "post", "patch", "delete"}


def resolve(document: dict, node):
    """A local `$ref` followed to what it names (the served document keeps them)."""
    while isinstance(node, dict) and "$ref" in node:
        target = document
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def prefilled(document: dict, parameter: dict) -> str | None:
    """What Swagger UI puts in a parameter's field before the reader types anything."""
    schema = resolve(document, parameter.get("schema", {}))
    if parameter.get("examples"):
        value = resolve(document, next(iter(parameter["examples"].values()))).get("value")
    else:
        sources = ((parameter, "example"), (schema, "example"), (schema, "default"))
        value = next((source[key] for source, key in sources if key in source), None)
    return value if value is None or isinstance(value, str) else json.dumps(value)


@dataclass
class Form:
    """One operation's "Try it out" form as Swagger UI fills it in."""

    method: str
    path: str
    parameters: list[dict]
    bodies: list[dict]  # the body examples, in the order of the list to choose from
    secured: bool
    streams: bool  # Server-Sent Events: the answer's head and first event are what the reader sees at once

    def execute(self, client: httpx.Client, document: dict, typed: dict, body: dict | None = None):
        path, query, headers = self.path, {}, {}
        for parameter in self.parameters:
            value = prefilled(document, parameter)
            if value is None:
                value = typed.get(parameter["name"])  # what the reader types into an empty field
            if value is None:
                assert not parameter.get("required"), f"{parameter['name']} is required and left empty"
                continue
            if parameter["in"] == "path":
                path = path.replace("{" + parameter["name"] + "}", value)
            elif parameter["in"] == "query":
                query[parameter["name"]] = value
            elif parameter["in"] == "header":
                headers[parameter["name"]] = value
        if not self.secured:
            headers.pop("Authorization", None)
        body = self.bodies[0] if body is None and self.bodies else body
        if not self.streams:
            return client.request(self.method, path, params=query, headers=headers, json=body)
        with client.stream(self.method, path, params=query, headers=headers, json=body) as answer:
            lines = []
            for line in answer.iter_lines():
                lines.append(line)
                if not line and any(seen.startswith("data:") for seen in lines):
                    break
            return httpx.Response(answer.status_code, headers=answer.headers, text="\n".join(lines))


def forms(document: dict) -> dict[str, Form]:
    found = {}
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method not in METHODS:
                continue
            parameters = {}
            for parameter in [*item.get("parameters", []), *operation.get("parameters", [])]:
                parameter = resolve(document, parameter)
                parameters[parameter["name"], parameter["in"]] = parameter
            content = resolve(document, operation.get("requestBody", {})).get("content", {})
            examples = content.get("application/json", {}).get("examples", {})
            bodies = [resolve(document, example)["value"] for example in examples.values()]
            assert bodies or not content, f"{operation['operationId']}: a body with no example to press"
            secured = operation.get("security", document.get("security")) != []
            success = resolve(document, operation["responses"].get("200", {})).get("content", {})
            streams = "text/event-stream" in success
            found[operation["operationId"]] = Form(
                method.upper(), path, list(parameters.values()), bodies, secured, streams
            )
    return found


@pytest.fixture(scope="module")
def docs():
    """The development server's docs, and a reader who pressed Authorize with its token."""
    with live_service() as service:
        secret = service.env["BETTER_AUTH_SECRET"]
        token = TokenVerifier(Settings.from_env({}, database_url="unused", jwt_secret=secret)).mint("dev-user")
        with httpx.Client(base_url=service.base_url, headers={"Authorization": f"Bearer {token}"}) as client:
            document = client.get("/api/openapi.json").json()
            yield client, document


def test_every_operation_does_what_its_summary_says_when_executed_as_filled_in_twice(docs):
    client, document = docs
    filled_in = forms(document)
    assert set(filled_in) == set(PRESSED_TWICE), "a new operation: say here what pressing it twice must answer"
    typed: dict[str, str] = {}
    answers = {}
    for operation_id, expected in PRESSED_TWICE.items():
        answers[operation_id] = [filled_in[operation_id].execute(client, document, typed) for _ in range(2)]
        statuses = tuple(answer.status_code for answer in answers[operation_id])
        assert statuses == expected, f"{operation_id}: {statuses}, {answers[operation_id][-1].text}"
        if operation_id == "createTask":
            typed["task_id"] = answers[operation_id][0].json()["id"]

    first, second = (answer.json() for answer in answers["createTask"])
    assert first["id"] != second["id"], "two presses, two tasks"
    assert "Idempotent-Replayed" not in answers["createTask"][1].headers
    listed = {task["id"] for task in answers["listTasks"][1].json()["items"]}
    assert {first["id"], second["id"]} <= listed
    assert all(answer.json()["id"] == first["id"] for answer in answers["getTask"])
    for answer in answers["streamChanges"]:  # from the beginning each time: a full sync
        data = next(line.removeprefix("data:") for line in answer.text.splitlines() if line.startswith("data:"))
        assert {first["id"], second["id"]} <= {task["id"] for task in json.loads(data)["changes"]}
    assert all(answer.json()["completed"] for answer in answers["completeTask"])
    assert answers["deleteTask"][1].json()["code"] == "TASK_NOT_FOUND"


def test_every_other_body_example_does_what_its_summary_says(docs):
    client, document = docs
    filled_in = forms(document)
    created = filled_in["createTask"].execute(client, document, {})
    typed = {"task_id": created.json()["id"]}
    for operation_id, form in filled_in.items():
        for body in form.bodies[1:]:
            answer = form.execute(client, document, typed, body)
            assert answer.status_code == PRESSED_TWICE[operation_id][0], f"{operation_id} {body}: {answer.text}"
            for field, value in body.items():
                if field in answer.json() and field != "due_at":  # due_at comes back in the server's own format
                    assert answer.json()[field] == value, (operation_id, field)


def test_the_documented_validation_problem_is_what_the_server_says(docs):
    client, document = docs
    """The contract's example, and the README's, are the answer to a create with a due date that
    is not one and an unknown priority."""
    example = resolve(document, document["components"]["examples"]["ValidationProblem"])["value"]
    answer = client.post("/api/dev-user/tasks", json={"title": "Buy milk", "priority": "urgent", "due_at": "tomorrow"})
    assert answer.status_code == example["status"]
    said = answer.json()
    shown = ("type", "title", "status", "code", "detail", "errors")
    assert {key: said[key] for key in shown} == {key: example[key] for key in shown}
    readme = (PROJECT / "README.md").read_text()
    readme_example = json.loads(re.search(r"```json\n(\{.*?\})\n```", readme, re.S).group(1))
    assert {key: readme_example[key] for key in shown} == {key: said[key] for key in shown}
