"""A small schemathesis run in-process, so a contract break shows up before CI's live fuzz.

Same hooks and checks as `tox -e fuzz` (schemathesis.toml), a far smaller budget: positive and
negative cases for every operation, then short stateful runs along the contract's links."""

import pytest
import schemathesis
from conftest import TEST_SECRET
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode

import tests.fuzz.hooks  # noqa: F401 - owner tokens and the 403 check
from app import SPEC_PATH, create_app
from service.contract import load_document


def generation_targets() -> list[tuple[str, GenerationMode]]:
    """Valid input for every operation; invalid input for every operation that takes input."""
    targets = []
    for item in load_document(SPEC_PATH)["paths"].values():
        for operation in (value for value in item.values() if isinstance(value, dict) and "operationId" in value):
            targets.append((operation["operationId"], GenerationMode.POSITIVE))
            if item.get("parameters") or operation.get("parameters") or operation.get("requestBody"):
                targets.append((operation["operationId"], GenerationMode.NEGATIVE))
    return targets


SMALL_BUDGET = settings(max_examples=12, deadline=None, database=None, suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def live_contract(settings):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BETTER_AUTH_SECRET", TEST_SECRET)  # tests/fuzz/hooks.py signs with it
        yield schemathesis.openapi.from_asgi("/api/openapi.yaml", create_app(settings))


@pytest.mark.parametrize(
    ("operation_id", "mode"), generation_targets(), ids=lambda value: getattr(value, "value", value)
)
def test_every_operation_keeps_the_contract(live_contract, operation_id, mode):
    operation = live_contract.find_operation_by_id(operation_id)

    @given(case=operation.as_strategy(generation_mode=mode))
    @SMALL_BUDGET
    def keeps_the_contract(case):
        case.call_and_validate()

    keeps_the_contract()


def test_task_life_cycles_follow_the_links(live_contract):
    machine = live_contract.as_state_machine()
    machine.run(settings=settings(max_examples=8, stateful_step_count=6, deadline=None, database=None))
