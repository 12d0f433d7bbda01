"""Where elaboration is: the naming scope of the next layer and the context a
statement is expanded in (bindings, the enclosing blocks and calls, and whether the
layers are training-only or frozen).

Takes: nothing from other stages. Returns: `Scope` and `Context`, shared by
`elaborate` (which creates them) and `constructs` (which expands joins and repeats
inside them).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..diagnostics import Span


class Scope:
    """A naming scope: its dotted path and the position of its next entry."""

    __slots__ = ("path", "next_position")

    def __init__(self, path: str):
        self.path = path
        self.next_position = 0

    def place(self, label: str | None) -> str:
        """The full name of the next entry: its label, or else its position."""
        position = self.next_position
        self.next_position += 1
        local = label if label is not None else str(position)
        return f"{self.path}.{local}" if self.path else local


@dataclass(slots=True)
class Context:
    env: dict
    scope: Scope
    blocks: tuple[tuple[str, str], ...] = ()
    calls: tuple[Span, ...] = ()
    training_only: bool = False
    frozen: bool = False
    in_network: bool = True
