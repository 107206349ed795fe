"""Statements whose best plan depends on their values, planned for their values on every run.

PostgreSQL plans a prepared statement for the values it is given in its first five runs; from
the sixth it may switch to one generic plan, made for no values in particular. asyncpg keeps
statements prepared per connection, so a list filtered for a big user could get the plan made
for the average user (see `TaskStore.page`). Here each statement is prepared per connection
and used for those five runs only, then prepared anew: four runs in five cost what a cached
statement costs, and none gets the generic plan. (Preparing afresh on every run cost two more
round trips: a small user's tag page 0.85 -> 2.5 ms.)
"""

import collections
import weakref

import asyncpg

PLANNED_FOR_THEIR_VALUES = 5
"""PostgreSQL's own count (plancache.c: a statement's first five runs get custom plans)."""


class CustomPlans:
    """Up to `per_connection` such statements kept per connection, the least recently used
    dropped first (asyncpg closes a statement no one holds)."""

    def __init__(self, per_connection: int = 64) -> None:
        self.per_connection = per_connection
        self._held: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    async def fetch(self, connection: asyncpg.Connection, sql: str, arguments: list) -> list:
        held = self._held.get(connection)
        if held is None:
            # The statements refer to their connection: weak keys alone would keep it for ever.
            held = self._held[connection] = collections.OrderedDict()
            connection.add_termination_listener(self._forget)
        statement, runs = held.pop(sql, (None, PLANNED_FOR_THEIR_VALUES))
        if runs >= PLANNED_FOR_THEIR_VALUES:
            statement, runs = await connection.prepare(sql), 0
        held[sql] = (statement, runs + 1)
        while len(held) > self.per_connection:
            held.popitem(last=False)
        try:
            return await statement.fetch(*arguments)
        except asyncpg.InvalidCachedStatementError:  # the schema changed under it: prepare it again
            held.pop(sql, None)
            return await (await connection.prepare(sql)).fetch(*arguments)

    def _forget(self, connection: asyncpg.Connection) -> None:
        """A closed or lost connection's statements go with it."""
        self._held.pop(connection, None)
