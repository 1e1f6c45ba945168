"""The recurrent block of an exported model: the library's RNN paths without the argument checks.

Parameters are named and shaped as in ``torch.nn.LSTM`` / ``nn.GRU`` / ``nn.RNN`` (orthogonal cell: a
modReLU bias and W_hh kept orthogonal by ``torch.nn.utils.parametrizations.orthogonal``). Paths, fastest
first: ``plain``, ``heavy_ball`` and GRU/orthogonal ``nesterov_restart`` on torch's fused kernels (momentum
through the filtered input x̃_t = c_t·x̃_{t-1} + s·[x_t, 1] with weight ``[W_ih | b_ih]``); ``adam``/``rmsprop``
one input GEMM then a step loop (LSTM: one hand-differentiated node for the whole layer); LSTM/tanh
``nesterov_restart`` a step loop keeping the previous pre-activation.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrizations

from ..blocks._rnn_adam import adam_lstm
from ..blocks._rnn_fused import FUSED_CELLS, kernel, run
from ..blocks._rnn_loops import AdamDrive, recur, recur_nesterov
from ..blocks._rnn_scan import scan

GATES = {"lstm": 4, "gru": 3, "tanh": 1, "orthogonal": 1}


class LayerState(NamedTuple):
    """What one layer carries between calls: h (B, H), LSTM c, momentum v, squared average m, Nesterov y."""

    h: torch.Tensor
    c: torch.Tensor | None = None
    v: torch.Tensor | None = None
    m: torch.Tensor | None = None
    y: torch.Tensor | None = None


class RNN(nn.Module):
    """A stack of recurrent layers whose driving term follows ``rule`` in every layer (DESIGN §3.1).

    Args:
        input_size: features per step.
        hidden_size: hidden units per layer.
        cell: ``tanh``, ``lstm``, ``gru`` or ``orthogonal``.
        rule: the :class:`Rule`.
        num_layers: stacked layers.
        dropout: dropout on the outputs of every layer but the last.
        batch_first: inputs and outputs are (B, T, ·) instead of (T, B, ·).
    """

    def __init__(self, input_size: int, hidden_size: int, cell: str, rule, num_layers: int = 1,
                 dropout: float = 0.0, batch_first: bool = True):
        super().__init__()
        self.input_size, self.hidden_size, self.cell, self.rule = input_size, hidden_size, cell, rule
        self.num_layers, self.dropout, self.batch_first = num_layers, dropout, batch_first
        H, G = hidden_size, GATES[cell] * hidden_size
        kernels = []
        for k in range(num_layers):
            n_in = input_size if k == 0 else H
            self.register_parameter(f"weight_ih_l{k}", nn.Parameter(torch.empty(G, n_in)))
            self.register_parameter(f"weight_hh_l{k}", nn.Parameter(torch.empty(G, H)))
            if cell == "orthogonal":
                self.register_parameter(f"bias_modrelu_l{k}", nn.Parameter(torch.empty(H)))
            else:
                self.register_parameter(f"bias_ih_l{k}", nn.Parameter(torch.empty(G)))
                self.register_parameter(f"bias_hh_l{k}", nn.Parameter(torch.empty(G)))
            kernels.append(self._kernel(n_in))
        self._kernels = kernels  # a plain list: weightless meta modules, not submodules
        if cell == "orthogonal":
            for k in range(num_layers):
                parametrizations.orthogonal(self, f"weight_hh_l{k}")
        self.reset_parameters()

    def _kernel(self, n_in: int) -> nn.Module | None:
        """The fused torch kernel this layer's path runs on, or None for a step-loop path."""
        if self.cell not in FUSED_CELLS:
            return None
        if self.rule.name == "plain":
            return kernel(self.cell, n_in, self.hidden_size)
        if self._filtered():
            return kernel(self.cell, n_in + 1, self.hidden_size)
        return None

    def _filtered(self) -> bool:
        """Whether the rule is the plain cell on a filtered input (heavy_ball, GRU/orthogonal Nesterov)."""
        name = self.rule.name
        return name == "heavy_ball" or (name == "nesterov_restart" and self.cell in ("gru", "orthogonal"))

    def reset_parameters(self) -> None:
        """torch's initialisation U(-1/sqrt(H), 1/sqrt(H)); orthogonal cell: orthogonal W_hh, small bias."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        with torch.no_grad():
            for name, p in self.named_parameters():
                if name.startswith("parametrizations."):
                    continue
                if name.startswith("bias_modrelu"):
                    p.uniform_(-0.01, 0.01)
                else:
                    p.uniform_(-bound, bound)
            if self.cell == "orthogonal":
                for k in range(self.num_layers):
                    w = getattr(self, f"weight_hh_l{k}")
                    setattr(self, f"weight_hh_l{k}", nn.init.orthogonal_(torch.empty_like(w)))

    def initial_state(self, batch: int, dtype: torch.dtype, device: torch.device) -> list[LayerState]:
        """The zero state of every layer at the start of a sequence."""
        H, G = self.hidden_size, GATES[self.cell] * self.hidden_size
        name, kw = self.rule.name, dict(dtype=dtype, device=device)
        layers = []
        for k in range(self.num_layers):
            n_in = self.input_size if k == 0 else H
            v_size = (n_in + (self.cell != "orthogonal")) if self._filtered() else G
            has_v = self._filtered() or (name == "adam" and self.rule.mu > 0)
            layers.append(LayerState(
                h=torch.zeros(batch, H, **kw),
                c=torch.zeros(batch, H, **kw) if self.cell == "lstm" else None,
                v=torch.zeros(batch, v_size, **kw) if has_v else None,
                m=torch.zeros(batch, G, **kw) if name in ("adam", "rmsprop") else None,
                y=torch.zeros(batch, G, **kw) if name == "nesterov_restart" and not self._filtered() else None,
            ))
        return layers

    def forward(self, input: torch.Tensor) -> tuple[torch.Tensor, list[LayerState]]:
        """Run the layers over a sequence from the zero state.

        Args:
            input: (B, T, I) if ``batch_first`` else (T, B, I).

        Returns:
            ``(output, states)``: the last layer's hidden states, (B, T, H) if ``batch_first`` else
            (T, B, H), and each layer's final :class:`LayerState`.
        """
        x = input.transpose(0, 1) if self.batch_first else input  # (T, B, I)
        finals = []
        for k, layer_state in enumerate(self.initial_state(x.shape[1], x.dtype, x.device)):
            if k > 0 and self.dropout > 0:
                x = F.dropout(x, self.dropout, self.training)  # (T, B, H)
            x, layer_state = self._layer(k, x, layer_state)  # (T, B, H)
            finals.append(layer_state)
        return (x.transpose(0, 1) if self.batch_first else x), finals  # (B, T, H) or (T, B, H)

    def _layer(self, k: int, x: torch.Tensor, ls: LayerState) -> tuple[torch.Tensor, LayerState]:
        """Layer ``k`` on time-major ``x`` (T, B, in) from state ``ls``; returns (T, B, H) and the new state."""
        rule, cell, T = self.rule, self.cell, x.shape[0]
        w_ih, w_hh = getattr(self, f"weight_ih_l{k}"), getattr(self, f"weight_hh_l{k}")
        if cell == "orthogonal":
            b_ih = b_hh = None
            bias = getattr(self, f"bias_modrelu_l{k}")
        else:
            b_ih, b_hh = getattr(self, f"bias_ih_l{k}"), getattr(self, f"bias_hh_l{k}")
            bias = None
        fused = self._kernels[k]
        if rule.name == "plain":
            if fused is not None:
                return self._fused(fused, x, ls, w_ih, w_hh, b_ih, b_hh)
            out, h, c = recur(cell, F.linear(x, w_ih, b_ih), ls.h, ls.c, w_hh, b_hh, bias)
            return out, LayerState(h, c)
        if self._filtered():
            coeff = [rule.mu] * T if rule.name == "heavy_ball" else [rule.coefficient(t) for t in range(T)]
            if b_ih is not None:
                x = torch.cat([x, x.new_ones(*x.shape[:2], 1)], dim=2)  # (T, B, in + 1)
            xf = scan(x, coeff, rule.s, ls.v)  # (T, B, in + 1) filtered input
            if fused is not None:
                w_aug = torch.cat([w_ih, b_ih[:, None]], dim=1)  # (G, in + 1)
                out, new = self._fused(fused, xf, ls, w_aug, w_hh, torch.zeros_like(b_ih), b_hh)
                return out, new._replace(v=xf[-1])
            out, h, c = recur(cell, F.linear(xf, w_ih), ls.h, ls.c, w_hh, b_hh, bias)
            return out, LayerState(h, c, v=xf[-1])
        g = F.linear(x, w_ih, b_ih)  # (T, B, G) input term of every step, one GEMM
        if rule.name == "nesterov_restart":
            coeff = [rule.coefficient(t) for t in range(T)]
            out, h, c, y = recur_nesterov(cell, g, rule.s, coeff, ls.h, ls.c, ls.y, w_hh, b_hh)
            return out, LayerState(h, c, y=y)
        if cell == "lstm":
            out, h, c, v, m = adam_lstm(g, ls.h, ls.c, ls.v, ls.m, w_hh, b_hh, rule.mu, rule.s, rule.beta, rule.eps)
            return out, LayerState(h, c, v=v, m=m)
        adam = AdamDrive(rule, ls.v, ls.m)
        out, h, c = recur(cell, g, ls.h, ls.c, w_hh, b_hh, bias, drive=adam)
        return out, LayerState(h, c, v=adam.v, m=adam.m)

    @staticmethod
    def _fused(fused, x, ls: LayerState, w_ih, w_hh, b_ih, b_hh) -> tuple[torch.Tensor, LayerState]:
        """Run a fused kernel from ``ls``; returns (T, B, H) and the state with the new h (and c)."""
        if ls.c is not None:
            out, (h, c) = run(fused, x, (ls.h[None], ls.c[None]), w_ih, w_hh, b_ih, b_hh)
            return out, ls._replace(h=h[0], c=c[0])
        out, h = run(fused, x, ls.h[None], w_ih, w_hh, b_ih, b_hh)
        return out, ls._replace(h=h[0])
