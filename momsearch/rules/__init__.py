"""Update rules: the search dimension. Discrete rules (RNN cells, attention) here; continuous ones in ``ode``.

``make(name, block=..., **params)`` resolves a rule name per block kind, so one YAML name
(``heavy_ball``) means the right thing under an RNN, an ODE or an attention block.
"""

from __future__ import annotations

from .. import catalog
from .adam import Adam
from .base import Rule
from .heavy_ball import HeavyBall
from .nesterov_restart import NesterovRestart
from .plain import Plain
from .rmsprop import RMSProp

RULES: dict[str, type[Rule]] = {
    cls.name: cls for cls in (Plain, HeavyBall, NesterovRestart, Adam, RMSProp)
}


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


__all__ = ["Rule", "Plain", "HeavyBall", "NesterovRestart", "Adam", "RMSProp", "RULES", "make"]
