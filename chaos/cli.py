"""``akidb chaos proxy``: serve the Toxiproxy HTTP API until interrupted."""

from __future__ import annotations

import signal
import threading

import click

from chaos.api import ChaosProxy


@click.group()
def chaos() -> None:
    """Fault injection."""


@chaos.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8474, show_default=True, type=click.IntRange(0, 65535))
def proxy(host: str, port: int) -> None:
    """Run the Toxiproxy-compatible proxy (drive it with toxiproxy-python)."""
    try:
        server = ChaosProxy(host, port).start()
    except OSError as exc:
        raise click.UsageError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    click.echo(f"chaos proxy API on {server.url} (Toxiproxy HTTP API)", err=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
