"""The one client every tool uses to talk to an AkiDB server.

``Client`` is the user-facing API; it speaks to the server through a narrow
transport (``request(method, path, body) -> (status, body)``), so other
transports (gRPC, fault-injecting wrappers in tests) plug in without touching
callers. Errors come back as the server's typed errors (``server.errors``).
"""

from akidb.server.client.client import Client, parse_collection_path
from akidb.server.client.rest import RestTransport
from akidb.server.client.results import Hit, SearchResult
from akidb.server.errors import AkiError, TransportError

__all__ = ["AkiError", "Client", "Hit", "RestTransport", "SearchResult", "TransportError",
           "parse_collection_path"]
