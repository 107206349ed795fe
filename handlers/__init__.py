"""The functions the contract's operationIds name. Connexion has already authenticated the
caller (the path's `user_id` is the token's user) and validated every input."""

from db.tasks import TaskStore
from service.contract import request


def task_store() -> TaskStore:
    return request.state.tasks
