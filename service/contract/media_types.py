"""Media types: matched case-insensitively, the one success type for data a handler returns,
and no form parsing of a request that is not a form."""

import functools
import typing as t

from connexion.context import operation
from connexion.datastructures import NoContent
from connexion.decorators.response import BaseResponseDecorator
from connexion.http_facts import FORM_CONTENT_TYPES
from connexion.lifecycle import ConnexionRequest
from connexion.utils import extract_content_type

from service.errors import PROBLEM_JSON

_connexion_infer_content_type = BaseResponseDecorator._infer_content_type


@functools.lru_cache(maxsize=256)
def _success_types(operation) -> frozenset[str]:
    return frozenset(media for media in operation.produces if media != PROBLEM_JSON)


def infer_content_type(data: t.Any, headers: dict) -> str | None:
    """Data a handler returns is a success: problem+json is only for raised errors. A handler
    returning data from an operation whose errors are `application/problem+json` got a 500
    (#1956); it gets the one success media type."""
    if data is None or data is NoContent:
        return None
    if not extract_content_type(headers):
        success_types = _success_types(operation._get_current_object())
        if len(success_types) == 1:
            return next(iter(success_types))
    return _connexion_infer_content_type(data, headers)


_connexion_files = ConnexionRequest.files


async def files_of_forms_only(self: ConnexionRequest) -> dict:
    """Only a form carries files: every other request skips Connexion's form parsing."""
    if self.mimetype not in FORM_CONTENT_TYPES:
        return {}
    return await _connexion_files(self)


class CaseInsensitiveMediaTypes:
    """Lower-cases the media type of `Content-Type` before Connexion reads it: media types are
    case-insensitive (RFC 9110), Connexion's lookups are not, and `APPLICATION/JSON` reached a
    handler as raw bytes."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            for index, (name, value) in enumerate(scope["headers"]):
                if name == b"content-type":
                    media_type, separator, parameters = value.partition(b";")
                    if media_type != media_type.lower():
                        headers = list(scope["headers"])
                        headers[index] = (name, media_type.strip().lower() + separator + parameters)
                        scope = {**scope, "headers": headers}
                    break
        await self.app(scope, receive, send)
