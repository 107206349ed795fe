"""service/contract/validation.py: Draft 2020-12 for requests and responses, every violation."""

import pytest

from service.contract.validation import ResponseBodyValidator


def test_a_type_array_parameter_is_still_validated(adapter_client):
    response = adapter_client.get("/things", params={"limit": "11"})
    assert response.status_code == 400
    assert response.json()["errors"] == [
        {"in": "query", "name": "limit", "message": "11 is greater than the maximum of 10"}
    ]


def test_date_time_format_is_enforced_on_parameters(adapter_client):
    assert adapter_client.get("/things", params={"since": "yesterday"}).status_code == 400
    assert adapter_client.get("/things", params={"since": "2026-11-22T10:00:00Z"}).status_code == 200


def test_uuid_format_and_type_arrays_are_enforced_in_bodies_with_every_violation(adapter_client):
    assert (
        adapter_client.post("/things", json={"id": "0b6f5c1e-6c1a-4a53-9f3e-7d2a2f1c9b10", "note": None}).status_code
        == 201
    )
    bad = adapter_client.post("/things", json={"id": "not-a-uuid", "note": "toolong"})
    assert bad.status_code == 400
    assert {error["pointer"] for error in bad.json()["errors"]} == {"/id", "/note"}


def test_a_body_that_is_not_utf8_is_400_not_500(adapter_client):
    response = adapter_client.post("/things", content=b"\xc3\x28", headers={"Content-Type": "application/json"})
    assert response.status_code == 400


def test_responses_are_validated_with_draft_2020_12():
    validator = ResponseBodyValidator(
        {}, schema={"type": "object", "properties": {"id": {"type": "string", "format": "uuid"}}}, encoding="utf-8"
    )
    validator._validate({"id": "0b6f5c1e-6c1a-4a53-9f3e-7d2a2f1c9b10"})
    with pytest.raises(Exception, match="is not a 'uuid'"):
        validator._validate({"id": "nope"})
