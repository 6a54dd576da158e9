"""The command palette's list of the main screen's keys (ctrl+p: every key).

A Textual command Provider: one command per binding of the screen the palette
was opened on, titled ``Description (key)``, left out while the screen's
``check_action`` says it cannot act (as the footer greys it), and run through
the screen's own ``run_action``, so the palette does exactly what the key does.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator

from textual.actions import parse
from textual.binding import Binding
from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.types import IgnoreReturnCallbackType


class KeyCommands(Provider):
    """Every key of the screen that can act now, by its description."""

    def _commands(self) -> Iterator[tuple[str, str, IgnoreReturnCallbackType]]:
        screen = self.screen
        for binding in screen.BINDINGS:
            if not isinstance(binding, Binding) or binding.action == "quit":
                continue  # (the system commands have a Quit of their own)
            name, arguments = parse(binding.action)[1:]
            if not screen.check_action(name, arguments):
                continue
            key = binding.key.split(",")[0]
            run = functools.partial(screen.run_action, binding.action)
            yield f"{binding.description} ({key})", binding.tooltip or binding.description, run

    async def discover(self) -> Hits:
        for title, help_text, run in self._commands():
            yield DiscoveryHit(title, run, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, help_text, run in self._commands():
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, matcher.highlight(title), run, help=help_text)
