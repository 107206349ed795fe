"""Routing by the contract's own path patterns: a request for one of its operations goes
straight to the operation, without Starlette's router (a mount, a scan of the routes and the
scopes each builds, per request). What that router would not answer with one operation (no
match, a method the path does not declare, a root path) still goes through it, unchanged."""

import re
import typing as t

from connexion.middleware import ConnexionMiddleware
from connexion.middleware.routing import RoutingMiddleware, _scope
from starlette.routing import Mount, Route
from starlette.types import Receive, Scope, Send


class ContractRouting(RoutingMiddleware):
    """Connexion's routing middleware, with its routes matched in the order its router has them."""

    _table: list[tuple[re.Pattern, str, re.Pattern, t.Collection[str], dict, t.Any]] | None = None

    def add_api(self, *args, **kwargs) -> None:
        super().add_api(*args, **kwargs)
        self._table = None  # built again, with the new API's routes, on the next request

    def _routes(self) -> list[tuple[re.Pattern, str, re.Pattern, t.Collection[str], dict, t.Any]]:
        """(mount pattern, mount path, path pattern, methods, parameter convertors, operation) in
        router order."""
        table = []
        for mount in self.router.routes:
            if isinstance(mount, Mount):
                for route in mount.routes:
                    if isinstance(route, Route) and route.methods:
                        matching = (route.path_regex, route.methods, route.param_convertors)
                        table.append((mount.path_regex, mount.path, *matching, route.app))
        return table

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # A newline in the path: Starlette's mount and routes read `$` and `.` as Python does
        # there, which these patterns alone would not; it is for the router to say.
        if scope["type"] == "http" and not scope.get("root_path") and "\n" not in scope["path"]:
            if self._table is None:
                self._table = self._routes()
            path, method = scope["path"], scope["method"]
            for mounted, prefix, pattern, methods, convertors, operation in self._table:
                if mounted.match(path) is None:
                    continue
                match = pattern.match(path[len(prefix) :])
                if match is None:
                    continue
                if method not in methods:
                    break  # Starlette's router says what (405, or a later route's match)
                params = {name: convertors[name].convert(value) for name, value in match.groupdict().items()}
                _scope.set(scope.copy())
                await operation({**scope, "path_params": params, "root_path": prefix}, receive, send)
                return
        await super().__call__(scope, receive, send)


def route_by_contract(middleware: ConnexionMiddleware) -> None:
    """`ContractRouting` in place of Connexion's routing middleware, once every other middleware
    has been placed relative to it (Connexion places them by that class)."""
    stack = middleware.middlewares
    stack[stack.index(RoutingMiddleware)] = ContractRouting
