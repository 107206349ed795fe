"""CORS for browser frontends, derived from the contract: a preflight allows the methods the
contract's paths use and the request headers its operations take (the bearer token, a JSON
body's Content-Type, declared header parameters); answers expose every response header the
contract declares. Origins are configuration (`CORS_ORIGINS`); any other origin gets no CORS
headers, so the browser keeps the answer from its page."""

HTTP_METHODS = ("get", "put", "post", "delete", "patch")


def _operations(document: dict):
    for item in document.get("paths", {}).values():
        for method in HTTP_METHODS:
            if method in item:
                yield method, item, item[method]


def _resolve(document: dict, node: dict) -> dict:
    while "$ref" in node:
        target = document
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def cors_options(document: dict, origins: tuple[str, ...]) -> dict:
    """Keyword arguments for Starlette's CORSMiddleware."""
    methods, request_headers, exposed = set(), set(), set()
    schemes = document.get("components", {}).get("securitySchemes", {})
    if any(scheme.get("scheme") == "bearer" or scheme.get("in") == "header" for scheme in schemes.values()):
        request_headers.add("Authorization")
    for method, item, operation in _operations(document):
        methods.add(method.upper())
        if "requestBody" in operation:
            request_headers.add("Content-Type")
        for parameter in [*item.get("parameters", []), *operation.get("parameters", [])]:
            parameter = _resolve(document, parameter)
            if parameter["in"] == "header":
                request_headers.add(parameter["name"])
        for response in operation.get("responses", {}).values():
            exposed.update(_resolve(document, response).get("headers", {}))
    return {
        "allow_origins": list(origins),
        "allow_methods": sorted(methods),
        "allow_headers": sorted(request_headers),
        "expose_headers": sorted(exposed),
        "max_age": 600,
    }
