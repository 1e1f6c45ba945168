"""The recurrent block: tanh, LSTM, GRU and orthogonal cells driven by a discrete update rule.

The layers live in ``_rnn_core`` (pure torch, shared with exported models; it chooses each rule's path
from the rule's properties, see :func:`._rnn_core.choose_rnn_path`); the class here adds the argument checks:
constructor arguments against the catalog, the input and a carried state in ``forward``.
"""

from __future__ import annotations

import torch

from ..catalog import rnn as rnn_catalog
from ..catalog.params import Param, check_params
from ..errors import ConfigError
from ..rules import Plain, Rule
from . import _rnn_core as core
from ._rnn_core import LayerState, RNNState

INPUT_SIZE = Param("int", 1, "features per step", low=1)


class RNN(core.RNN):
    """A stack of recurrent layers whose driving term follows ``rule`` in every layer.

    Args:
        input_size: features per step, >= 1.
        hidden_size: hidden units per layer, >= 1.
        cell: ``tanh``, ``lstm``, ``gru`` or ``orthogonal``.
        rule: a discrete rule object (:mod:`momsearch.rules`); None means ``Plain()``. A rule whose
            properties no RNN path runs is a ConfigError naming the rule, the cell and why.
        num_layers: stacked layers, >= 1.
        dropout: dropout probability on the outputs of every layer but the last, in [0, 1).
        batch_first: inputs and outputs are (B, T, ·) instead of (T, B, ·).
    """

    def __init__(self, input_size: int, hidden_size: int, cell: str = "lstm", rule: Rule | None = None,
                 num_layers: int = 1, dropout: float = 0.0, batch_first: bool = False):
        params = check_params("RNN", rnn_catalog.PARAMS, dict(cell=cell, hidden_size=hidden_size,
                                                              num_layers=num_layers, dropout=dropout))
        input_size = INPUT_SIZE.check("RNN: input_size", input_size)
        super().__init__(input_size, params["hidden_size"], params["cell"], _check_rule(rule),
                         params["num_layers"], params["dropout"], bool(batch_first))

    def forward(self, input: torch.Tensor, state: RNNState | None = None) -> tuple[torch.Tensor, RNNState]:
        """The base class's ``forward`` (same arguments, ``(output, state)`` result), checked first.

        Raises:
            ConfigError: ``input`` is not 3-D with ``input_size`` features, or ``state`` is not an
                :class:`RNNState` of this block (layers, fields and shapes for this batch).
        """
        x = self._check_input(input)
        if state is not None:
            self._check_state(state, x.shape[0 if self.batch_first else 1], x)
        return super().forward(x, state)

    def _check_input(self, input) -> torch.Tensor:
        layout = "(B, T, I)" if self.batch_first else "(T, B, I)"
        if not isinstance(input, torch.Tensor) or input.dim() != 3:
            shape = tuple(input.shape) if isinstance(input, torch.Tensor) else type(input).__name__
            raise ConfigError(f"input: expected a 3-D tensor {layout}, got {shape}")
        if input.shape[-1] != self.input_size:
            raise ConfigError(f"input: expected {self.input_size} features (input_size) in the last "
                              f"dimension of {layout}, got shape {tuple(input.shape)}")
        return input

    def _check_state(self, state, batch: int, like: torch.Tensor) -> None:
        """ConfigError unless ``state`` is an RNNState with this block's layers and shapes for ``batch``."""
        zero = self.initial_state(batch, dtype=like.dtype, device=like.device)
        if not isinstance(state, RNNState) or len(state.layers) != self.num_layers:
            raise ConfigError(f"state: expected the RNNState of a previous call with {self.num_layers} "
                              f"layer(s), got {type(state).__name__}")
        for k, (given, expected) in enumerate(zip(state.layers, zero.layers, strict=True)):
            for name, got, want in zip(LayerState._fields, given, expected, strict=True):
                if (got is None) != (want is None) or (got is not None and got.shape != want.shape):
                    shape = None if want is None else tuple(want.shape)
                    found = None if got is None else tuple(got.shape)
                    raise ConfigError(f"state.layers[{k}].{name}: expected {shape} for cell {self.cell!r} "
                                      f"with rule {self.rule.name!r}, got {found}")


def _check_rule(rule) -> Rule:
    """``rule`` if it is a discrete rule object (None: ``Plain()``); otherwise ConfigError."""
    if rule is None:
        return Plain()
    if not isinstance(rule, Rule):
        raise ConfigError(f"rule={rule!r}: expected a discrete rule object (a momsearch.rules.Rule); "
                          f"build one by name with momsearch.rules.make(name, **params)")
    return rule
