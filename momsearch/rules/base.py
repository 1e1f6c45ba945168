"""The discrete update rule interface: a frozen set of hyperparameters that a block interprets (DESIGN §3)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ..catalog import rnn as rnn_catalog
from ..catalog.params import check_params


@dataclass(frozen=True)
class Rule:
    """Base of the discrete rules (``plain``, ``heavy_ball``, ``nesterov_restart``, ``adam``, ``rmsprop``).

    A rule holds fixed hyperparameters chosen by the search; each block kind applies it to its own
    driving term. Arguments are checked against the catalog at construction.
    """

    name = "rule"

    def __post_init__(self):
        checked = check_params(f"rule {self.name}", rnn_catalog.RULES[self.name], asdict(self))
        for key, value in checked.items():
            object.__setattr__(self, key, value)

    def params(self) -> dict:
        """The hyperparameters as a plain dict (constructor keyword arguments)."""
        return asdict(self)
