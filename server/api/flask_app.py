"""The Flask application class of the REST front, without per-request work the API
does not need.

Flask builds a werkzeug ``MapAdapter`` for every request (host validation, binding
to the environ) and walks the route map's state machine to match the path. Under
load that was ~20% of the time the server's Python held the GIL on a vector search
(py-spy, 50k x 384, 16 connections), for an answer that depends only on the method
and the path. ``AkiFlask`` keeps successful matches in a bounded table keyed by
both and builds the real adapter only on a miss (or when something else, such as
``url_for``, asks for it), so a 404, a 405 with its ``Allow`` header and every
other routing answer still come from werkzeug itself.

Smaller, in the same profile: the API keeps no cookie sessions, yet Flask opened
one (and made a null session) per request (~2%); and it asked ``inspect`` whether
every hook and view is a coroutine function, each time (~1.5%).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Flask, Request
from flask.sessions import NullSession, SessionInterface
from werkzeug.routing import MapAdapter, Rule

MAX_REMEMBERED_ROUTES = 4096
"""Paths name tenants and collections, so the table is bounded; when full it starts
over (a miss costs one ordinary match, nothing else)."""


class AkiFlask(Flask):
    """Flask with a bounded (method, path) -> (rule, view args) table of matches."""

    def __init__(self, import_name: str, **kwargs: Any) -> None:
        super().__init__(import_name, **kwargs)
        self.remembered_routes: dict[tuple[str, str], tuple[Rule, dict[str, Any]]] = {}
        self.session_interface = NoSessions()
        self._callables: dict[Callable[..., Any], Callable[..., Any]] = {}

    def ensure_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        # Hooks, views and handlers are the registered functions: a finite set.
        known = self._callables.get(func)
        if known is None:
            known = self._callables[func] = super().ensure_sync(func)
        return known

    def create_url_adapter(self, request: Request | None) -> MapAdapter | None:
        if request is None or self.config["TRUSTED_HOSTS"] is not None:
            return super().create_url_adapter(request)
        return _RememberingAdapter(self, request)  # type: ignore[return-value]

    def real_url_adapter(self, request: Request) -> MapAdapter | None:
        return super().create_url_adapter(request)


class _RememberingAdapter:
    """Stands in for the request's ``MapAdapter``: ``match`` answers from the table
    when it can; anything else goes to a real adapter built on first use."""

    __slots__ = ("_app", "_request", "_real")

    def __init__(self, app: AkiFlask, request: Request) -> None:
        self._app = app
        self._request = request
        self._real: MapAdapter | None = None

    def _adapter(self) -> MapAdapter:
        if self._real is None:
            real = self._app.real_url_adapter(self._request)
            if real is None:  # only without a request, which this never is
                raise RuntimeError("no URL adapter for the request")
            self._real = real
        return self._real

    def match(self, *args: Any, **kwargs: Any) -> Any:
        if args or kwargs != {"return_rule": True}:
            return self._adapter().match(*args, **kwargs)
        environ = self._request.environ
        key = (environ.get("REQUEST_METHOD", "GET"), environ.get("PATH_INFO", ""))
        table = self._app.remembered_routes
        hit = table.get(key)
        if hit is not None:
            return hit[0], dict(hit[1])
        rule, view_args = self._adapter().match(return_rule=True)  # raises 404/405/redirects
        if len(table) >= MAX_REMEMBERED_ROUTES:
            table.clear()
        table[key] = (rule, dict(view_args))
        return rule, view_args

    def __getattr__(self, name: str) -> Any:
        return getattr(self._adapter(), name)


class NoSessions(SessionInterface):
    """No cookie sessions: every request shares one ``NullSession`` (it refuses writes
    with Flask's own error) and nothing is ever saved."""

    null = NullSession()

    def open_session(self, app: Flask, request: Request) -> NullSession:
        return self.null

    def save_session(self, app: Flask, session: Any, response: Any) -> None:
        return None
