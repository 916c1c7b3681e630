"""Names of tenants, databases, collections and users: URL segments and log labels."""

from __future__ import annotations

import re

from akidb.server import schema
from akidb.server.errors import BadRequest

NAME_RE = re.compile(schema.NAME_PATTERN)


def check_name(kind: str, name: str) -> str:
    """Names become URL segments and log labels: keep them plain (no traversal)."""
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise BadRequest(f"invalid {kind} name {name!r}: use 1-64 letters, digits, '_' or '-',"
                         " starting with a letter or digit")
    return name
