"""service/contract/media_types.py: media types case-insensitive, returned data a success."""


def test_returned_data_gets_the_one_success_type_not_problem_json(adapter_client):
    ok = adapter_client.post("/things", json={"id": "0b6f5c1e-6c1a-4a53-9f3e-7d2a2f1c9b10"})
    assert ok.status_code == 201
    assert ok.headers["content-type"] == "application/json", "the one success type, not problem+json or a 500"


def test_a_shouted_media_type_is_json(adapter_client):
    response = adapter_client.post(
        "/things",
        content=b'{"id": "0b6f5c1e-6c1a-4a53-9f3e-7d2a2f1c9b10"}',
        headers={"Content-Type": "APPLICATION/JSON"},
    )
    assert response.status_code == 201
    assert response.json() == {"id": "0b6f5c1e-6c1a-4a53-9f3e-7d2a2f1c9b10"}
