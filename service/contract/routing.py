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

Operation = tuple[re.Pattern, t.Collection[str], dict, t.Any]  # path pattern, methods, convertors, app
Table = list[tuple[re.Pattern, str, list[Operation] | None]]  # mount pattern, mount path, its operations


class ContractRouting(RoutingMiddleware):
    """Connexion's routing middleware, with its routes matched as its router matches them."""

    _table: Table | None = None

    def add_api(self, *args, **kwargs) -> None:
        super().add_api(*args, **kwargs)
        self._table = None  # built again, with the new API's routes, on the next request

    def _mounts(self) -> Table:
        """The router's mounts in order, each with its operations in order (None: a mount with a
        route of another kind, left to the router). A route of the router's own that is not a
        mount leaves every request to the router."""
        if not all(isinstance(route, Mount) for route in self.router.routes):
            return []
        table: Table = []
        for mount in self.router.routes:
            routes: list[Operation] | None = [
                (route.path_regex, route.methods, route.param_convertors, route.app)
                for route in mount.routes
                if isinstance(route, Route) and route.methods
            ]
            if len(routes) != len(mount.routes):
                routes = None
            table.append((mount.path_regex, mount.path, routes))
        return table

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # A newline in the path: Starlette's mount and routes read `$` and `.` as Python does
        # there, which these patterns alone would not; it is for the router to say.
        if scope["type"] == "http" and not scope.get("root_path") and "\n" not in scope["path"]:
            if self._table is None:
                self._table = self._mounts()
            path, method = scope["path"], scope["method"]
            for mounted, prefix, operations in self._table:
                if mounted.match(path) is None:
                    continue
                # The first mount that matches takes the request, and in it the first route that
                # matches both path and method (a route of the path with another method only
                # makes a 405 if no later route matches): as Starlette's routers decide.
                for pattern, methods, convertors, operation in operations or ():
                    match = pattern.match(path[len(prefix) :])
                    if match is None or method not in methods:
                        continue
                    params = {name: convertors[name].convert(value) for name, value in match.groupdict().items()}
                    _scope.set(scope.copy())
                    await operation({**scope, "path_params": params, "root_path": prefix}, receive, send)
                    return
                break  # no operation of this mount: the router answers (405, 404) as it would
        await super().__call__(scope, receive, send)


def route_by_contract(middleware: ConnexionMiddleware) -> None:
    """`ContractRouting` in place of Connexion's routing middleware, once every other middleware
    has been placed relative to it (Connexion places them by that class)."""
    stack = middleware.middlewares
    stack[stack.index(RoutingMiddleware)] = ContractRouting
