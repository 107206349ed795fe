"""The contract as written (`/api/openapi.yaml`, `/api/openapi.json`: the same document, every
`$ref` intact) and Swagger UI 5 to read it (`/api/docs`), from the swagger-ui-bundle-v2
package's assets, so the docs work offline."""

import json
from pathlib import Path

from starlette.responses import HTMLResponse, Response
from starlette.routing import Mount, Route, Router
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send
from swagger_ui_bundle import swagger_ui_path

PAGE = """<!DOCTYPE html>
<html lang="en">
  <head>
    <meta charset="UTF-8">
    <title>{title}</title>
    <link rel="stylesheet" href="docs/assets/swagger-ui.css">
    <link rel="icon" type="image/png" href="docs/assets/favicon-32x32.png" sizes="32x32">
  </head>
  <body>
    <div id="swagger-ui"></div>
    <script src="docs/assets/swagger-ui-bundle.js"></script>
    <script src="docs/assets/swagger-ui-standalone-preset.js"></script>
    <script>
      window.ui = SwaggerUIBundle({{
        url: "openapi.yaml",
        dom_id: "#swagger-ui",
        deepLinking: true,
        presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
        layout: "StandaloneLayout",
      }});
    </script>
  </body>
</html>
"""


DOCS_PREFIX = "/api/docs", "/api/openapi."  # every route below starts with one of these


class ContractDocs:
    """Serves the docs paths itself and hands every other request to the API."""

    def __init__(self, app: ASGIApp, spec_path: Path, document: dict) -> None:
        self.app = app
        source = spec_path.read_bytes()
        as_json = json.dumps(document, indent=2).encode()
        page = PAGE.format(title=f"{document['info']['title']} {document['info']['version']}")
        self.router = Router(
            routes=[
                Route("/api/openapi.yaml", lambda _: Response(source, media_type="application/yaml")),
                Route("/api/openapi.json", lambda _: Response(as_json, media_type="application/json")),
                Route("/api/docs", lambda _: HTMLResponse(page)),
                Mount("/api/docs/assets", StaticFiles(directory=swagger_ui_path)),
            ],
            default=app,
            redirect_slashes=False,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Only the docs' paths go through the router (a router per request costs every API call):
        # lifespan events and the API's own paths go straight on.
        ours = scope["type"] == "http" and scope["path"].startswith(DOCS_PREFIX)
        await (self.router if ours else self.app)(scope, receive, send)
