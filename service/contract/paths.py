"""Concrete paths before templated ones, as OpenAPI says."""

import re

from starlette.exceptions import HTTPException
from starlette.routing import compile_path

from service.errors import HTTP_METHODS


class ConcretePathsFirst:
    """A concrete path (`/tasks/changes`) is matched before a templated one (`/tasks/{task_id}`),
    as OpenAPI says; Connexion routes in document order and lets a method the concrete path does
    not declare fall through to the templated route (a 400 for a `task_id` of "changes"). This
    answers such a method with 405 instead."""

    def __init__(self, app, document: dict) -> None:
        self.app = app
        paths = {template: {m for m in item if m in HTTP_METHODS} for template, item in document["paths"].items()}
        patterns = {template: compile_path(template)[0] for template in paths}
        self.shadowing = [
            (patterns[template], {method.upper() for method in methods})
            for template, methods in paths.items()
            if any(other != template and patterns[other].match(re.sub(r"\{[^}]+\}", "x", template)) for other in paths)
        ]

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            for pattern, methods in self.shadowing:
                if pattern.match(scope["path"]) and scope["method"] not in methods | {"HEAD", "OPTIONS"}:
                    raise HTTPException(405)
        await self.app(scope, receive, send)


class NoSlashRedirects:
    """A path is one of the contract's or it is not found: Starlette's router answers
    `/tasks/` with a 307 to `/tasks`, its `Location` built from the `Host` header (the shape of
    an open redirect), unauthenticated. No path of the contract ends with a slash, so one that
    does is a 404 problem here."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["path"].endswith("/") and scope["path"] != "/":
            raise HTTPException(404)
        await self.app(scope, receive, send)
