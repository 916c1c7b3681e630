"""Where a scenario runs: a server the harness starts here, or an external ``--target``.

Every scenario that only needs the API takes the same three options, so a
performance engineer can point the same command at a bigger box. Scenarios that
must kill or restart the server (recovery, memory) need a local node and say so.
"""

from __future__ import annotations

import argparse
import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from akidb.server.client import Client
from akidb.server.errors import NotFound


def add_target_options(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--target", metavar="URL",
                    help="an existing server's REST URL (default: start one with the harness)")
    ap.add_argument("--api-key", default=os.environ.get("AKIDB_API_KEY"),
                    help="admin key for --target (default: $AKIDB_API_KEY)")
    ap.add_argument("--grpc-target", metavar="HOST:PORT", help="the --target's gRPC address")
    ap.add_argument("--http-server", choices=["waitress", "granian"], default=None,
                    help="REST front of the server started here (default: the server's); "
                         "not used with --target")
    ap.add_argument("--server-threads", type=int, default=None, metavar="N",
                    help="HTTP worker threads of the server started here (default: the "
                         "server's); not used with --target")


@dataclass
class Target:
    """The server under test; ``node`` is the harness node when we started it."""

    rest_url: str
    api_key: str | None
    grpc_target: str | None
    node: Any = None

    def client(self, api_key: str | None = None, **kwargs: Any) -> Client:
        """A client with the admin key, or with ``api_key`` (a tenant user's)."""
        return Client(self.rest_url, api_key or self.api_key, self.grpc_target, **kwargs)

    @contextmanager
    def scratch_tenants(self, prefix: str) -> Iterator[Callable[[str], str]]:
        """Names for the tenants a scenario creates: ``name(suffix)`` is unique to this
        run, and on a server we did not start every tenant so named is deleted on exit,
        leaving it as we found it (a harness node is thrown away whole)."""
        tag = f"{prefix}{uuid.uuid4().hex[:6]}"
        named: list[str] = []

        def name(suffix: str = "") -> str:
            named.append(tag + suffix)
            return named[-1]

        try:
            yield name
        finally:
            if self.node is None and named:
                with self.client() as admin:
                    for tenant in named:
                        try:
                            admin.delete_tenant(tenant)
                        except NotFound:  # named but never created
                            pass


@contextmanager
def open_target(args: argparse.Namespace, **node_options: Any) -> Iterator[Target]:
    """The external ``--target`` if given, else a fresh node (stopped on exit)."""
    if args.target:
        if not args.api_key:
            raise SystemExit("--target needs --api-key (or AKIDB_API_KEY): the admin key")
        yield Target(args.target.rstrip("/"), args.api_key, args.grpc_target)
        return
    from akidb.harness import Node

    if getattr(args, "http_server", None):
        node_options["extra_args"] = [*node_options.get("extra_args", []),
                                      "--http-server", args.http_server]
    if getattr(args, "server_threads", None):
        node_options["extra_args"] = [*node_options.get("extra_args", []),
                                      "--threads", str(args.server_threads)]
    node = Node(**node_options).start()
    try:
        yield Target(node.rest_url, node.admin_key, node.grpc_target, node)
    finally:
        node.close()
