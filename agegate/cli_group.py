"""The click group every `agegate` command group uses: agegate's own commands only (none of
Flask's development commands or options), summaries written out whole, and, on the top
level, the commands grouped by what they are for. A command that needs the service's app
says so with flask.cli.with_appcontext."""

from __future__ import annotations

from collections.abc import Sequence

import click


class CommandGroup(click.Group):
    """A group whose help lists each command with its whole first line, never cut with
    "...", under the section `sections` names (one untitled list when there are none)."""

    sections: Sequence[tuple[str, Sequence[str]]] = ()

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        names = [n for n in self.list_commands(ctx) if not self._hidden(ctx, n)]
        placed = {name for _, members in self.sections for name in members}
        groups = [(title, [n for n in members if n in names]) for title, members in self.sections]
        groups.append(
            ("Commands" if not self.sections else "Other", [n for n in names if n not in placed])
        )
        for title, members in groups:
            if not members:
                continue
            rows = []
            for name in members:
                command = self.get_command(ctx, name)
                assert command is not None
                rows.append((name, command.get_short_help_str(limit=10_000)))
            with formatter.section(title):
                formatter.write_dl(rows)

    def _hidden(self, ctx: click.Context, name: str) -> bool:
        command = self.get_command(ctx, name)
        return command is None or command.hidden


CommandGroup.group_class = CommandGroup
