"""The recurrent block in pure torch: the one implementation the library and exported models share.

Tanh, LSTM, GRU and orthogonal cells driven by a discrete update rule. Parameters are named and shaped as in
``torch.nn.LSTM`` / ``nn.GRU`` / ``nn.RNN`` whatever the path that runs them, so weights load from and into
the torch modules. The driving term is g_t = W_ih x_t + b_ih; the pre-activation is drive_t + W_hh h_{t-1} + b_hh.

The block never asks a rule its name: it reads what the rule does (``rule.filter("rnn")``, a linear filter
v_t = a_t·v_{t-1} + s·g_t, drive = gain·v_t + direct·g_t; ``rule.normaliser()``; ``rule.preactivation_cells``)
and :func:`choose_rnn_path` picks the fastest path for those properties, fastest first:

* ``plain`` (the identity filter): torch's fused kernel as it is.
* ``filtered`` (any other linear filter): the plain cell on a filtered input, on the fused kernels: the filter
  runs on x̃_t = [x_t, 1] (x_t alone for the orthogonal cell, which has no input bias) by the chunked scan,
  and the kernel gets gain·x̃f_t + direct·x̃_t with weight ``[W_ih | b_ih]`` and no input bias.
* ``normalised`` (a constant-decay filter with drive = v_t, then v_t / sqrt(m_t + eps)): the input term of
  every step in one GEMM; LSTM, tanh and GRU: the whole layer is one hand-differentiated node
  (:mod:`._rnn_adam`; tanh/GRU one per ``SEGMENT`` input-term values); the orthogonal cell: a step loop turning
  the input term into the drive, one hand-differentiated node per step.
* ``preactivation`` (the rule lists the cell in ``preactivation_cells``): y_t = W_hh h_{t-1} + b_hh − s·g_t,
  z_t = y_t + a_t·(y_t − y_{t-1}); LSTM and tanh only: one hand-differentiated node per layer
  (:mod:`._rnn_nesterov`; tanh one per ``SEGMENT`` input-term values).
* The orthogonal cell (modReLU, W_hh kept orthogonal) has no torch kernel: drive first, then a step loop.

Arguments are not checked here beyond what :func:`choose_rnn_path` needs; ``momsearch.blocks.rnn`` adds the
checks. Exported modules embed this code as it is.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrizations

from ..errors import ConfigError
from ._rnn_adam import adam_gru, adam_lstm, adam_tanh
from ._rnn_fused import FUSED_CELLS, kernel, run
from ._rnn_loops import AdamDrive, recur
from ._rnn_nesterov import nesterov_lstm, nesterov_tanh
from ._rnn_scan import scan

# the tanh/GRU one-node layers (nesterov_tanh, adam_tanh, adam_gru) keep whole-sequence (T, B, G) buffers; a
# longer sequence runs as consecutive calls of at most this many input-term values each, the state carried from
# one to the next. Buffers over glibc's 32 MB mmap ceiling are fresh memory on every call and page-fault; small
# ones are reused. GRU adam at B64 T784 H128 (19.3M values), x nn.GRU, 1 thread: one call 2.16x, segments of
# 2^23 / 2^22 / 2^21 / 2^20 values 1.38 / 1.36 / 1.23 / 1.17x (tanh adam 1.28 / 1.11 / 1.08 / 1.07x nn.RNN)
SEGMENT = 1 << 20

if TYPE_CHECKING:  # annotations only: the rule is read by attribute, exports embed their own Rule
    from ..rules import Rule

GATES = {"lstm": 4, "gru": 3, "tanh": 1, "orthogonal": 1}
PATHS = ("plain", "filtered", "normalised", "preactivation")
PREACTIVATION_CELLS = ("lstm", "tanh")  # the cells with a pre-activation momentum layer (:mod:`._rnn_nesterov`)


def choose_rnn_path(rule: Rule, cell: str) -> str:
    """The path that runs ``rule`` in ``cell``, from the rule's properties (one of :data:`PATHS`).

    Raises:
        ConfigError: the rule is not a linear filter of the driving term, or has properties no RNN path runs
            (a look-ahead, a normalised drive other than v_t / sqrt(m_t + eps) with a constant decay).
    """
    filt, norm = rule.filter("rnn"), rule.normaliser()

    def refuse(why: str) -> ConfigError:
        return ConfigError(f"rule={rule.name!r} cannot run in the rnn block (cell={cell!r}): {why}")

    if filt is None:
        raise refuse("it is not a linear filter of the driving term (rule.filter('rnn') is None)")
    if filt.lookahead is not None:
        raise refuse("a look-ahead on the momentum has no meaning for a drive (attention only)")
    if cell in rule.preactivation_cells:
        if cell not in PREACTIVATION_CELLS:
            raise refuse(f"pre-activation momentum runs on the cells {PREACTIVATION_CELLS}")
        if norm is not None or not filt.outputs_momentum:
            raise refuse("pre-activation momentum takes a plain filter (no normaliser, drive = v_t)")
        return "preactivation"
    if norm is not None:
        if not filt.constant or not filt.outputs_momentum:
            raise refuse("a normalised drive needs a constant decay and drive = v_t / sqrt(m_t + eps)")
        return "normalised"
    return "plain" if filt.identity else "filtered"


def _segments(g: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """``g`` (T, B, G) split along time into pieces of at most ``SEGMENT`` values (at least one step each);
    ``split``, not indexing: its backward is one concatenation."""
    return g.split(max(1, SEGMENT // g[0].numel()), dim=0)


def _join(outs: list[torch.Tensor]) -> torch.Tensor:
    """The (T, B, H) outputs of consecutive segments as one sequence."""
    return outs[0] if len(outs) == 1 else torch.cat(outs)


class LayerState(NamedTuple):
    """What one layer carries from one call to the next; fields its cell and rule do not use are None.

    Attributes:
        h: (B, H) hidden state.
        c: (B, H) LSTM cell state.
        v: the filter state. Path ``filtered``: the filtered input x̃f (B, I + 1) (I for the orthogonal cell,
            which has no input bias), whose drive is ``[W_ih | b_ih]·(gain·x̃f + direct·x̃)``; path
            ``normalised``: the momentum v (B, G) itself (G = gates·H), None when the filter carries nothing.
        m: (B, G) the squared-drive average of path ``normalised``.
        y: (B, G) the previous pre-activation y_{t-1} of path ``preactivation``.
    """

    h: torch.Tensor
    c: torch.Tensor | None = None
    v: torch.Tensor | None = None
    m: torch.Tensor | None = None
    y: torch.Tensor | None = None


class RNNState(NamedTuple):
    """The state :class:`RNN` returns and accepts to continue a sequence exactly.

    Attributes:
        layers: one :class:`LayerState` per layer, bottom first.
        step: steps consumed so far (the global step index that drives the Nesterov restart counter).
    """

    layers: tuple[LayerState, ...]
    step: int

    def detach(self) -> RNNState:
        """The same state cut from the autograd graph (truncated backpropagation through time)."""
        layers = tuple(LayerState(*(None if t is None else t.detach() for t in ls)) for ls in self.layers)
        return RNNState(layers, self.step)


class RNN(nn.Module):
    """A stack of recurrent layers whose driving term follows ``rule`` in every layer.

    Args:
        input_size: features per step.
        hidden_size: hidden units per layer.
        cell: ``tanh``, ``lstm``, ``gru`` or ``orthogonal``.
        rule: the discrete rule.
        num_layers: stacked layers.
        dropout: dropout probability on the outputs of every layer but the last.
        batch_first: inputs and outputs are (B, T, ·) instead of (T, B, ·).
    """

    def __init__(self, input_size: int, hidden_size: int, cell: str, rule: Rule, num_layers: int = 1,
                 dropout: float = 0.0, batch_first: bool = False):
        super().__init__()
        self.input_size, self.hidden_size, self.cell, self.rule = input_size, hidden_size, cell, rule
        self.num_layers, self.dropout, self.batch_first = num_layers, dropout, batch_first
        self.path = choose_rnn_path(rule, cell)
        self._filter, self._normaliser = rule.filter("rnn"), rule.normaliser()
        H, G = self.hidden_size, GATES[self.cell] * self.hidden_size
        kernels = []
        for k in range(self.num_layers):
            n_in = self.input_size if k == 0 else H
            self.register_parameter(f"weight_ih_l{k}", nn.Parameter(torch.empty(G, n_in)))
            self.register_parameter(f"weight_hh_l{k}", nn.Parameter(torch.empty(G, H)))
            if self.cell == "orthogonal":
                self.register_parameter(f"bias_modrelu_l{k}", nn.Parameter(torch.empty(H)))
            else:
                self.register_parameter(f"bias_ih_l{k}", nn.Parameter(torch.empty(G)))
                self.register_parameter(f"bias_hh_l{k}", nn.Parameter(torch.empty(G)))
            kernels.append(self._kernel(n_in))
        self._kernels = kernels  # a plain list: weightless meta modules, not submodules
        if self.cell == "orthogonal":
            for k in range(self.num_layers):
                parametrizations.orthogonal(self, f"weight_hh_l{k}")
        self.reset_parameters()

    def _kernel(self, n_in: int) -> nn.Module | None:
        """The fused torch kernel this layer's path runs on, or None for a step-loop path."""
        if self.cell not in FUSED_CELLS:
            return None
        if self.path == "plain":
            return kernel(self.cell, n_in, self.hidden_size)
        if self.path == "filtered":
            return kernel(self.cell, n_in + 1, self.hidden_size)
        return None

    def reset_parameters(self) -> None:
        """torch's initialisation: every weight and bias U(-1/sqrt(H), 1/sqrt(H)).

        The orthogonal cell starts from a random orthogonal W_hh and a modReLU bias U(-0.01, 0.01).
        """
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

    def extra_repr(self) -> str:
        return (f"{self.input_size}, {self.hidden_size}, cell={self.cell!r}, rule={self.rule}, "
                f"num_layers={self.num_layers}, dropout={self.dropout}, batch_first={self.batch_first}")

    def initial_state(self, batch: int, dtype: torch.dtype | None = None,
                      device: torch.device | None = None) -> RNNState:
        """The zero state at the start of a sequence (what ``forward`` uses when ``state`` is None).

        Args:
            batch: batch size B.
            dtype, device: of the tensors; default those of the parameters.

        Returns:
            An :class:`RNNState` at step 0 holding exactly the fields this cell and rule carry.
        """
        ref = self.weight_ih_l0
        kw = {"dtype": dtype or ref.dtype, "device": device or ref.device}
        H, G = self.hidden_size, GATES[self.cell] * self.hidden_size
        filtered = self.path == "filtered"
        has_v = filtered or (self.path == "normalised" and self._filter.carries)
        layers = []
        for k in range(self.num_layers):
            n_in = self.input_size if k == 0 else H
            v_size = (n_in + (self.cell != "orthogonal")) if filtered else G
            layers.append(LayerState(
                h=torch.zeros(batch, H, **kw),
                c=torch.zeros(batch, H, **kw) if self.cell == "lstm" else None,
                v=torch.zeros(batch, v_size, **kw) if has_v else None,
                m=torch.zeros(batch, G, **kw) if self.path == "normalised" else None,
                y=torch.zeros(batch, G, **kw) if self.path == "preactivation" else None,
            ))
        return RNNState(tuple(layers), 0)

    def forward(self, input: torch.Tensor, state: RNNState | None = None) -> tuple[torch.Tensor, RNNState]:
        """Run the layers over a sequence.

        Args:
            input: (B, T, I) if ``batch_first`` else (T, B, I).
            state: the state a previous call returned, to continue that sequence; None starts at zero.

        Returns:
            ``(output, state)``: the last layer's hidden states, (B, T, H) if ``batch_first`` else
            (T, B, H), and the :class:`RNNState` after the last step.
        """
        x = input.transpose(0, 1) if self.batch_first else input  # (T, B, I)
        if state is None:
            state = self.initial_state(x.shape[1], dtype=x.dtype, device=x.device)
        finals = []
        for k, layer_state in enumerate(state.layers):
            if k > 0 and self.dropout > 0:
                x = F.dropout(x, self.dropout, self.training)  # (T, B, H)
            x, layer_state = self._layer(k, x, layer_state, state.step)  # (T, B, H)
            finals.append(layer_state)
        out = x.transpose(0, 1) if self.batch_first else x  # (B, T, H) or (T, B, H)
        return out, RNNState(tuple(finals), state.step + x.shape[0])

    def _layer(self, k: int, x: torch.Tensor, ls: LayerState, step: int) -> tuple[torch.Tensor, LayerState]:
        """Layer ``k`` on time-major ``x`` (T, B, in) from state ``ls``; returns (T, B, H) and the new state."""
        cell, T = self.cell, x.shape[0]
        w_ih, w_hh = getattr(self, f"weight_ih_l{k}"), getattr(self, f"weight_hh_l{k}")
        if cell == "orthogonal":
            b_ih = b_hh = None
            bias = getattr(self, f"bias_modrelu_l{k}")
        else:
            b_ih, b_hh = getattr(self, f"bias_ih_l{k}"), getattr(self, f"bias_hh_l{k}")
            bias = None
        fused, filt = self._kernels[k], self._filter
        if self.path == "plain":
            if fused is not None:
                return self._fused(fused, x, ls, w_ih, w_hh, b_ih, b_hh)
            out, h, c = recur(cell, F.linear(x, w_ih, b_ih), ls.h, ls.c, w_hh, b_hh, bias)
            return out, LayerState(h, c)
        if self.path == "filtered":
            if b_ih is not None:
                x = torch.cat([x, x.new_ones(*x.shape[:2], 1)], dim=2)  # (T, B, in + 1)
            xf = scan(x, filt.decays(step, T), filt.scale, ls.v)  # (T, B, in + 1) filtered input
            # (T, B, in + 1) what the kernel multiplies by [W_ih | b_ih]: gain·x̃f + direct·x̃
            drive_in = xf if filt.outputs_momentum else torch.add(xf * filt.gain, x, alpha=filt.direct)
            if fused is not None:
                w_aug = torch.cat([w_ih, b_ih[:, None]], dim=1)  # (G, in + 1)
                out, new = self._fused(fused, drive_in, ls, w_aug, w_hh, torch.zeros_like(b_ih), b_hh)
                return out, new._replace(v=xf[-1])
            out, h, c = recur(cell, F.linear(drive_in, w_ih), ls.h, ls.c, w_hh, b_hh, bias)
            return out, LayerState(h, c, v=xf[-1])
        g = F.linear(x, w_ih, b_ih)  # (T, B, G) input term of every step, one GEMM
        if self.path == "preactivation":
            if cell == "lstm":
                out, h, c, y = nesterov_lstm(g, filt.scale, filt.decays(step, T), ls.h, ls.c, ls.y, w_hh, b_hh)
                return out, LayerState(h, c, y=y)
            coeff, h, y, outs, t0 = filt.decays(step, T), ls.h, ls.y, [], 0  # the tanh cell
            for g_seg in _segments(g):
                out, h, y = nesterov_tanh(g_seg, filt.scale, coeff[t0: t0 + len(g_seg)], h, y, w_hh, b_hh)
                outs.append(out)
                t0 += len(g_seg)
            return _join(outs), LayerState(h, y=y)
        mu = 0.0 if filt.decay is None else filt.decay
        norm = self._normaliser
        if cell == "lstm":
            out, h, c, v, m = adam_lstm(g, ls.h, ls.c, ls.v, ls.m, w_hh, b_hh, mu, filt.scale, norm.beta, norm.eps)
            return out, LayerState(h, c, v=v, m=m)
        if cell in ("tanh", "gru"):
            node = adam_tanh if cell == "tanh" else adam_gru
            h, v, m, outs = ls.h, ls.v, ls.m, []
            for g_seg in _segments(g):
                out, h, v, m = node(g_seg, h, v, m, w_hh, b_hh, mu, filt.scale, norm.beta, norm.eps)
                outs.append(out)
            return _join(outs), LayerState(h, v=v, m=m)
        adam = AdamDrive(mu, filt.scale, norm.beta, norm.eps, ls.v, ls.m)
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
