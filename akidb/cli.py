"""The ``akidb`` command, assembled from the ``akidb.commands`` entry-point group.

Each package registers its own click command or group in pyproject.toml
(``serve`` from the server, ``cluster`` from the harness, ``bench``, ``chaos``, ...);
a command's module is imported only when that command runs, so ``akidb serve`` does
not pay for Faker, h5py and friends at start-up, and this root knows none of them.
"""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points

import click

GROUP = "akidb.commands"


def _commands() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=GROUP)}


class _EntryPointGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *_commands()})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        found = _commands().get(cmd_name)
        if found is not None:
            command = found.load()
            if isinstance(command, click.Command):
                return command
        return super().get_command(ctx, cmd_name)


def _version() -> str:
    from akidb.server import __version__

    return __version__


@click.group(cls=_EntryPointGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(_version(), prog_name="akidb")
def main() -> None:
    """AkiDB: reference vector database server and its test & benchmark toolkit."""
