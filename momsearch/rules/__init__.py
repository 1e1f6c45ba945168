"""Update rules: the search dimension. Discrete rules (RNN cells, attention) here; continuous ones in ``ode``.

Each discrete rule is one module of this package defining one :class:`Rule` subclass; the package finds them
(:func:`.base.discrete_rules`), so a new rule is a new file. ``make(name, block=..., **params)`` resolves a
rule name per block kind, so one YAML name (``heavy_ball``) means the right thing under an RNN, an ODE or
an attention block. Nothing here imports torch (``momsearch validate`` reads the declarations).
"""

from __future__ import annotations

from .. import catalog  # first: the catalog reads .base and the rule modules while it loads (no cycle)
from .base import Filter, Normaliser, Rule, discrete_rules

RULES: dict[str, type[Rule]] = dict(discrete_rules())
globals().update({cls.__name__: cls for cls in RULES.values()})  # Plain, HeavyBall, ... as package attributes


def make(name: str, block: str = "rnn", **params):
    """Build the rule ``name`` for block kind ``block`` (``rnn``, ``ode`` or ``attention``).

    Args:
        name: rule name, e.g. ``"heavy_ball"``.
        block: block kind the rule is for.
        **params: the rule's hyperparameters; missing ones take the catalog defaults.

    Returns:
        A rule object to pass to the block constructor.

    Raises:
        ConfigError: unknown block kind, a rule the block kind does not have, or a bad parameter.
    """
    spec = catalog.rule_params(block, name)  # raises with the valid choices
    if block == "ode":
        from . import ode

        return ode.RULES[name](**params)
    return RULES[name](**catalog.check_params(f"rule {name}", spec, params))


__all__ = ["Rule", "Filter", "Normaliser", "RULES", "make", "discrete_rules",
           *(cls.__name__ for cls in RULES.values())]
