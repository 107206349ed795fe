"""The service behind a real PgBouncer in transaction mode (DB_PGBOUNCER=true), as on Neon's
`-pooler` host: a concurrent load of lists and creates, more clients than the pooler has
server connections, without one error. (`tox -e pgbouncer` runs the operations' tests through
it too.)"""

import threading
from collections import Counter

from tests.live_server import serving, throwaway_database
from tests.pgbouncer import POOL_SIZE, pgbouncer
from tests.test_database_faults import Caller

CLIENTS = 20
REQUESTS_EACH = 60


class Pooled:
    """The database as the service sees it: PgBouncer's URL."""

    def __init__(self, url: str) -> None:
        self.url = url


def test_a_concurrent_load_through_pgbouncer_has_no_errors():
    assert CLIENTS > 2 * POOL_SIZE
    with throwaway_database() as database, pgbouncer(database) as url:
        settings = {"RATE_LIMIT": "off", "DB_PGBOUNCER": "true", "DB_POOL_SIZE": "10"}
        with serving(Pooled(url), validate_responses=False, **settings) as service:
            statuses: Counter = Counter()

            def client(number: int) -> None:
                caller = Caller(service, f"pooled-{number % 4}")
                for n in range(REQUESTS_EACH):
                    if n % 2:
                        statuses[caller.call("POST", body={"title": f"task {n}"})[0]] += 1
                    else:
                        statuses[caller.call("GET", "?limit=20")[0]] += 1

            clients = [threading.Thread(target=client, args=(number,)) for number in range(CLIENTS)]
            for thread in clients:
                thread.start()
            for thread in clients:
                thread.join()
            assert statuses == {200: CLIENTS * REQUESTS_EACH // 2, 201: CLIENTS * REQUESTS_EACH // 2}
