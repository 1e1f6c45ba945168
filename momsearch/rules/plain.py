"""``plain``: the unmodified block (drive = g_t)."""

from dataclasses import dataclass

from .base import Rule


@dataclass(frozen=True)
class Plain(Rule):
    """No momentum: the block is exactly its torch counterpart."""

    name = "plain"
