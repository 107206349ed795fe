"""The docs a frontend engineer opens: the contract as written, and Swagger UI 5 that renders it."""

import json
import re

import yaml
from swagger_ui_bundle import swagger_ui_path

from app import SPEC_PATH


def test_the_contract_is_served_as_written(client):
    as_yaml = client.get("/api/openapi.yaml")
    assert as_yaml.status_code == 200
    assert as_yaml.headers["X-Request-ID"]
    assert as_yaml.content == SPEC_PATH.read_bytes()
    as_json = client.get("/api/openapi.json")
    assert as_json.headers["content-type"] == "application/json"
    assert as_json.json() == yaml.safe_load(SPEC_PATH.read_bytes())
    assert '"$ref": "#/components/schemas/Task"' in as_json.text, "references are kept, not expanded"


def test_swagger_ui_5_loads_its_assets_and_the_contract(client):
    page = client.get("/api/docs")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assets = re.findall(r'(?:src|href)="(docs/assets/[^"]+)"', page.text)
    assert {"docs/assets/swagger-ui-bundle.js", "docs/assets/swagger-ui.css"} <= set(assets)
    for asset in assets:
        response = client.get(f"/api/{asset}")
        assert response.status_code == 200, asset
        assert len(response.content) > 100
    assert swagger_ui_path.name.startswith("swagger-ui-5."), "Swagger UI 5 renders OpenAPI 3.1; 4.x cannot"
    spec_url = re.search(r'url: "([^"]+)"', page.text).group(1)
    assert client.get(f"/api/{spec_url}").status_code == 200


def test_a_user_called_docs_still_has_tasks(client, tokens):
    response = client.get("/api/docs/tasks", headers={"Authorization": f"Bearer {tokens.mint('docs')}"})
    assert response.status_code == 200
    assert json.loads(response.text) == {"items": [], "next_cursor": None}
