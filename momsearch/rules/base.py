"""The discrete update rule interface: what a rule does, told to the blocks as properties (no torch here).

A rule is one small frozen class that declares its parameters once (``PARAMS``: name -> :class:`Param`, the
dataclass fields and their defaults are generated from it) and says what it does to a block's driving term:

* :meth:`Rule.filter` -- a linear filter with scalar coefficients (:class:`Filter`), for the block kind asked;
* :meth:`Rule.normaliser` -- an elementwise normalisation of the filter's output (:class:`Normaliser`);
* :attr:`Rule.preactivation_cells` -- RNN cells on which the filter acts on the whole pre-activation instead.

Blocks choose their fastest path from these properties and never from a rule's name; a rule whose
properties a block cannot run is a ConfigError naming the rule, the block and why. The catalog
(``momsearch list``, the YAML checks) is generated from the declarations of the rule modules in this package
(:func:`discrete_rules`), which therefore import no torch.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import cache
from typing import Any, ClassVar

from ..catalog.params import Param, check_params

MU = Param("float", 0.6, "momentum coefficient", low=0.0, high=1.0, high_open=True)
S = Param("float", 0.6, "step size on the driving term", low=0.0, low_open=True)
BETA = Param("float", 0.999, "decay of the squared-drive average", low=0.0, high=1.0, high_open=True)
EPS = Param("float", 1e-16, "added inside the square root", low=0.0, low_open=True)


@dataclass(frozen=True)
class Filter:
    """A linear filter of the driving term g_t with scalar coefficients, per block step t (0-based, global):

        v_t = a_t·v_{t-1} + scale·g_t ;  out_t = gain·v_t + direct·g_t                (v_0 = 0)

    RNN blocks use out_t as the drive. Attention blocks accumulate it into the state, plus an optional
    look-ahead on the momentum: G_t = G_{t-1} + out_t ; S_t = G_t + l_t·v_t.

    Attributes:
        scale: the input scale s.
        decay: a constant a_t; None (with ``varying`` None) when nothing is carried (v_t = scale·g_t).
        varying: a_t as a function of the step (an int, or a float tensor of steps); overrides ``decay``.
        gain: weight of v_t in the output.
        direct: weight of g_t in the output.
        lookahead: l_t as a function of the step (attention only), or None.
    """

    scale: float = 1.0
    decay: float | None = None
    varying: Callable[[Any], Any] | None = None
    gain: float = 1.0
    direct: float = 0.0
    lookahead: Callable[[Any], Any] | None = None

    @property
    def carries(self) -> bool:
        """Whether the filter keeps a momentum state v from one step to the next."""
        return self.decay is not None or self.varying is not None

    @property
    def constant(self) -> bool:
        """Whether every coefficient is the same at every step."""
        return self.varying is None and self.lookahead is None

    @property
    def outputs_momentum(self) -> bool:
        """Whether out_t = v_t (gain 1, no direct term): the drive is the filter state itself."""
        return self.gain == 1.0 and self.direct == 0.0

    @property
    def identity(self) -> bool:
        """Whether out_t = g_t: the rule leaves the driving term alone."""
        return not self.carries and self.scale == 1.0 and self.outputs_momentum and self.lookahead is None

    def decays(self, start: int, steps: int) -> list[float]:
        """a_t for the global steps start .. start + steps - 1 (0.0 where nothing is carried)."""
        if self.varying is not None:
            return [self.varying(start + t) for t in range(steps)]
        return [0.0 if self.decay is None else self.decay] * steps

    def decay_at(self, step):
        """a_t at ``step`` (an int or a float tensor of steps)."""
        if self.varying is not None:
            return self.varying(step)
        return 0.0 if self.decay is None else self.decay


@dataclass(frozen=True)
class Normaliser:
    """Elementwise normalisation of the filter output, per element of the driving term g_t:

        m_t = beta·m_{t-1} + (1-beta)·g_t² ;  drive_t = out_t / sqrt(m_t + eps)

    Attributes:
        beta: decay of the squared-drive average, in [0, 1).
        eps: added inside the square root, > 0.
    """

    beta: float
    eps: float


_FIELD_TYPES = {"int": "int", "float": "float", "bool": "bool", "str": "str"}


@dataclass(frozen=True)
class Rule:
    """Base of the discrete rules: fixed hyperparameters chosen by the search and what they do to a drive.

    A subclass sets ``name`` and ``PARAMS`` (its parameters with defaults and ranges: the one declaration,
    from which its dataclass fields and the catalog are made) and overrides :meth:`filter` (and
    :meth:`normaliser`, :attr:`preactivation_cells` where they apply). Arguments are checked against
    ``PARAMS`` at construction.

    Class attributes:
        name: the rule's name in YAML and in the catalog.
        doc: one line for ``momsearch list``.
        PARAMS: parameter name -> :class:`Param`.
        blocks: the block kinds that offer the rule (``rnn``, ``attention``).
        position: order in listings (lower first).
        preactivation_cells: RNN cells on which the filter acts on the whole pre-activation:
            y_t = W_hh h_{t-1} + b_hh − scale·g_t ; z_t = y_t + a_t·(y_t − y_{t-1}) (y_0 = 0).
    """

    name: ClassVar[str] = "rule"
    doc: ClassVar[str] = ""
    PARAMS: ClassVar[dict[str, Param]] = {}
    blocks: ClassVar[tuple[str, ...]] = ("rnn", "attention")
    position: ClassVar[int] = 100
    preactivation_cells: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs):
        """Make the dataclass fields of a subclass from its ``PARAMS``, in their order, with their defaults."""
        super().__init_subclass__(**kwargs)
        annotations = dict(cls.__dict__.get("__annotations__", {}))
        for key, param in cls.PARAMS.items():
            annotations[key] = _FIELD_TYPES[param.kind]
            setattr(cls, key, param.default)
        cls.__annotations__ = annotations
        dataclass(frozen=True)(cls)

    def __post_init__(self):
        checked = check_params(f"rule {self.name}", self.PARAMS, asdict(self))
        for key, value in checked.items():
            object.__setattr__(self, key, value)

    def params(self) -> dict:
        """The hyperparameters as a plain dict (constructor keyword arguments)."""
        return asdict(self)

    def filter(self, block: str) -> Filter | None:
        """The rule as a linear filter of the driving term of block kind ``block``; None if it is not one."""
        return None

    def normaliser(self) -> Normaliser | None:
        """The elementwise normalisation of the filter output, or None."""
        return None


NOT_RULE_MODULES = ("base", "ode")  # this module, and the continuous-time rules (torch, their own catalog)


@cache
def discrete_rules() -> dict[str, type[Rule]]:
    """Every discrete rule defined in this package, by name, in listing order (``position``, then name).

    A module of ``momsearch.rules`` (other than ``base`` and ``ode``, and names starting with ``_``) that
    defines a :class:`Rule` subclass with its own ``name`` is a rule: adding a rule is adding its file.

    Computed once per process (the modules are imported then).

    Raises:
        ValueError: two rules declare the same name.
    """
    found: dict[str, type[Rule]] = {}
    package = __name__.rsplit(".", 1)[0]
    names = sorted(entry.name[:-3] for entry in os.scandir(os.path.dirname(__file__))
                   if entry.name.endswith(".py") and entry.is_file())
    for name in names:
        if name.startswith("_") or name in NOT_RULE_MODULES:
            continue
        module = importlib.import_module(f"{package}.{name}")
        for obj in vars(module).values():
            if (isinstance(obj, type) and issubclass(obj, Rule) and obj.__module__ == module.__name__
                    and "name" in vars(obj)):
                if obj.name in found:
                    raise ValueError(f"rule {obj.name!r} is defined twice: {found[obj.name].__module__} and "
                                     f"{obj.__module__}")
                found[obj.name] = obj
    return dict(sorted(found.items(), key=lambda item: (item[1].position, item[0])))
