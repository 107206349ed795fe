"""service/contract/pipeline.py: what never changes per operation is built once."""

from connexion.decorators.main import StarletteDecorator


def test_an_operations_decorators_are_built_on_its_first_request_only(adapter_client, monkeypatch):
    """Connexion rebuilt them, and inspected the handler's signature, on every request."""
    built, inspected = [], []
    decorate = StarletteDecorator.decorate
    monkeypatch.setattr(StarletteDecorator, "decorate", lambda self, f: built.append(f) or decorate(self, f))
    adapter_client.get("/things", params={"limit": 0})  # perhaps each operation's first request
    adapter_client.post("/things", json={"id": "3fa85f64-5717-4562-b3fc-2c963f66afa6"})
    monkeypatch.setattr("inspect.signature", lambda *a, **k: inspected.append(a))
    built.clear()
    for limit in range(5):
        assert adapter_client.get("/things", params={"limit": limit}).json() == {"limit": limit, "limit_type": "int"}
        assert adapter_client.post("/things", json={"id": "3fa85f64-5717-4562-b3fc-2c963f66afa6"}).status_code == 201
    assert built == [] and inspected == []
