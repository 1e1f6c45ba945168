"""``plain``: the unmodified block (drive = g_t)."""

from .base import Filter, Rule


class Plain(Rule):
    """No momentum: the block is exactly its torch counterpart (the identity filter)."""

    name = "plain"
    doc = "no momentum: the block is its torch counterpart"
    position = 0

    def filter(self, block: str) -> Filter:
        """out_t = g_t."""
        return Filter()
