"""Entity tags in conditional request headers (RFC 9110 section 13.1)."""

import re

ENTITY_TAG = re.compile(r'\s*(W/)?("[\x21\x23-\x7e\x80-\xff]*")\s*(?:,|$)')


def entity_tags(header: str) -> tuple[list[str], list[str]] | None:
    """The strong and the weak tags of an If-Match / If-None-Match value; None for `*`.
    Anything that is not an entity tag matches nothing."""
    if header.strip() == "*":
        return None
    strong, weak = [], []
    for match in ENTITY_TAG.finditer(header):
        (weak if match.group(1) else strong).append(match.group(2))
    return strong, weak


def if_match_tags(header: str) -> list[str] | None:
    """The ETags a write may find (strong comparison: weak tags never match); None for `*`."""
    tags = entity_tags(header)
    return None if tags is None else tags[0]


def none_match(header: str | None, etag: str) -> bool:
    """True if If-None-Match names this ETag (weak comparison) or is `*`: answer 304."""
    if header is None:
        return False
    tags = entity_tags(header)
    return tags is None or etag in tags[0] + tags[1]
