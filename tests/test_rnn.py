"""The recurrent block against torch's modules and a step-by-step float64 reference of DESIGN §3.1."""

from collections.abc import Sequence

import pytest
import torch
from torch import nn
from unrunnable_rules import LookAhead, Opaque, VaryingAdam

from momsearch.blocks import RNN, _rnn_adam, _rnn_loops, _rnn_nesterov, _rnn_scan
from momsearch.blocks.rnn import RNNState
from momsearch.builder import build_block_model
from momsearch.catalog.rnn import CELLS
from momsearch.errors import ConfigError
from momsearch.rules import RULES, Filter, HeavyBall, Plain, Rule

TORCH_TWINS = {"lstm": nn.LSTM, "gru": nn.GRU, "tanh": nn.RNN}
# hyperparameters away from the defaults; a rule missing here is tested with its catalog defaults
HYPER = {
    "heavy_ball": {"mu": 0.7, "s": 0.8},
    "nesterov_restart": {"s": 0.5, "restart_every": 3},
    "adam": {"mu": 0.5, "s": 0.7, "beta": 0.9, "eps": 1e-3},
    "rmsprop": {"s": 0.6, "beta": 0.8},
}
B, T, I, H = 2, 7, 3, 4


def make_rule(name):
    return RULES[name](**HYPER.get(name, {}))


def weights(rnn, k):
    """Layer k's weights as the reference uses them (the orthogonal W_hh through its parametrization)."""
    names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "bias_modrelu")
    return {n: getattr(rnn, f"{n}_l{k}") for n in names if hasattr(rnn, f"{n}_l{k}")}


def reference_layer(cell, rule, w, x, state):
    """One layer, one step at a time, straight from the DESIGN §3.1 table. x: (B, T, in), batch first."""
    Hs = w["weight_hh"].shape[1]
    h, c, v, m, y, step = state["h"], state["c"], state["v"], state["m"], state["y"], state["step"]
    outs = []
    for t in range(x.shape[1]):
        g = x[:, t] @ w["weight_ih"].T + (w["bias_ih"] if "bias_ih" in w else 0)  # (B, G)
        r = h @ w["weight_hh"].T + (w["bias_hh"] if "bias_hh" in w else 0)  # (B, G) = W_hh h + b_hh
        pre = None  # full pre-activation of lstm/tanh/orthogonal
        if rule.name == "plain":
            drive = g
        elif rule.name == "heavy_ball":
            v = rule.mu * v + rule.s * g
            drive = v
        elif rule.name == "nesterov_momentum":  # torch.optim.SGD(nesterov=True) on the drive
            v = rule.mu * v + rule.s * g
            drive = rule.mu * v + rule.s * g
        elif rule.name in ("adam", "rmsprop"):
            v = rule.mu * v + rule.s * g
            m = rule.beta * m + (1 - rule.beta) * g**2
            drive = v / torch.sqrt(m + rule.eps)
        elif rule.name == "nesterov_restart":
            k = (step + t) % rule.restart_every + 1 if rule.restart_every > 0 else step + t + 1
            ct = (k - 1) / (k + 2)
            if cell in ("lstm", "tanh"):
                y_new = r - rule.s * g
                pre = y_new + ct * (y_new - y)
                y = y_new
            else:
                v = ct * v + rule.s * g
                drive = v
        else:
            raise NotImplementedError(f"no reference for rule {rule.name}")
        if cell == "gru":
            rr = torch.sigmoid(drive[:, :Hs] + r[:, :Hs])
            zz = torch.sigmoid(drive[:, Hs:2 * Hs] + r[:, Hs:2 * Hs])
            n = torch.tanh(drive[:, 2 * Hs:] + rr * r[:, 2 * Hs:])
            h = (1 - zz) * n + zz * h
        else:
            pre = drive + r if pre is None else pre
            if cell == "lstm":
                i, f, gg, o = pre.split(Hs, dim=1)
                c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(gg)
                h = torch.sigmoid(o) * torch.tanh(c)
            elif cell == "tanh":
                h = torch.tanh(pre)
            elif cell == "orthogonal":
                h = torch.sign(pre) * torch.relu(pre.abs() + w["bias_modrelu"])
            else:
                raise NotImplementedError(f"no reference for cell {cell}")
        outs.append(h)
    return torch.stack(outs, dim=1), h, c


def reference(rnn, x, layers=None):
    """The stack (its first ``layers``) from a zero state, dropout off. Returns outputs (B, T, H), final h per layer."""
    G = rnn.weight_hh_l0.shape[0]
    finals = []
    for k in range(rnn.num_layers if layers is None else layers):
        zeros = x.new_zeros(x.shape[0], G)
        state = dict(h=x.new_zeros(x.shape[0], rnn.hidden_size), c=x.new_zeros(x.shape[0], rnn.hidden_size),
                     v=zeros, m=zeros, y=zeros, step=0)
        x, h, _ = reference_layer(rnn.cell, rnn.rule, weights(rnn, k), x, state)
        finals.append(h)
    return x, finals


def loss_of(out, finals, seed=1):
    """A loss that weighs every output and every final hidden state differently."""
    gen = torch.Generator().manual_seed(seed)
    loss = (out * torch.randn(out.shape, generator=gen, dtype=out.dtype)).sum()
    for h in finals:
        loss = loss + (h * torch.randn(h.shape, generator=gen, dtype=h.dtype)).sum()
    return loss


@pytest.mark.parametrize("rule_name", list(RULES))
@pytest.mark.parametrize("cell", CELLS)
def test_matches_the_step_by_step_reference(cell, rule_name):
    rnn = RNN(I, H, cell=cell, rule=make_rule(rule_name), num_layers=2, batch_first=True).double()
    x = torch.randn(B, T, I, dtype=torch.float64)
    out, state = rnn(x)
    ref_out, ref_finals = reference(rnn, x)
    torch.testing.assert_close(out, ref_out, atol=1e-10, rtol=0)
    for layer, ref_h in zip(state.layers, ref_finals, strict=True):
        torch.testing.assert_close(layer.h, ref_h, atol=1e-10, rtol=0)
    params = list(rnn.parameters())
    grads = torch.autograd.grad(loss_of(out, [ls.h for ls in state.layers]), params)
    ref_grads = torch.autograd.grad(loss_of(ref_out, ref_finals), params)
    for p, got, want in zip(params, grads, ref_grads, strict=True):
        torch.testing.assert_close(got, want, atol=1e-10, rtol=0, msg=lambda m, p=p: f"{p.shape}: {m}")


@pytest.mark.parametrize("rule_name", list(RULES))
@pytest.mark.parametrize("cell", CELLS)
def test_state_continues_the_sequence_exactly(cell, rule_name):
    """Three pieces (cut at steps 4 and 5, so across a Nesterov restart at R = 3) equal one run."""
    rnn = RNN(I, H, cell=cell, rule=make_rule(rule_name), num_layers=2).double()
    x = torch.randn(T, B, I, dtype=torch.float64)  # time-major
    whole, final = rnn(x)
    out_a, state = rnn(x[:4])
    out_b, state = rnn(x[4:5], state)
    out_c, state = rnn(x[5:], state.detach())
    assert state.step == final.step == T
    torch.testing.assert_close(torch.cat([out_a, out_b, out_c]), whole, atol=1e-12, rtol=0)
    for got, want in zip(state.layers, final.layers, strict=True):
        for a, b in zip(got, want, strict=True):
            assert (a is None) == (b is None)
            if a is not None:
                torch.testing.assert_close(a, b, atol=1e-12, rtol=0)


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("cell", list(TORCH_TWINS))
def test_plain_equals_the_torch_module(cell, batch_first):
    twin = TORCH_TWINS[cell](I, H, num_layers=2, batch_first=batch_first).double()
    rnn = RNN(I, H, cell=cell, rule=Plain(), num_layers=2, batch_first=batch_first).double()
    rnn.load_state_dict(twin.state_dict())
    assert [n for n, _ in rnn.named_parameters()] == [n for n, _ in twin.named_parameters()]
    x = torch.randn((B, T, I) if batch_first else (T, B, I), dtype=torch.float64)
    out, state = rnn(x)
    ref_out, ref_hx = twin(x)
    ref_h = ref_hx[0] if cell == "lstm" else ref_hx
    torch.testing.assert_close(out, ref_out, atol=1e-12, rtol=0)
    torch.testing.assert_close(torch.stack([ls.h for ls in state.layers]), ref_h, atol=1e-12, rtol=0)
    if cell == "lstm":
        torch.testing.assert_close(torch.stack([ls.c for ls in state.layers]), ref_hx[1], atol=1e-12, rtol=0)
    grads = torch.autograd.grad(loss_of(out, []), list(rnn.parameters()))
    ref_grads = torch.autograd.grad(loss_of(ref_out, []), list(twin.parameters()))
    for got, want in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(got, want, atol=1e-12, rtol=0)
    twin.load_state_dict(rnn.state_dict())  # and back into torch


@pytest.mark.parametrize("cell", CELLS)
def test_heavy_ball_without_momentum_equals_plain(cell):
    plain = RNN(I, H, cell=cell, rule=Plain(), num_layers=2, batch_first=True).double()
    hb = RNN(I, H, cell=cell, rule=HeavyBall(mu=0.0, s=1.0), num_layers=2, batch_first=True).double()
    hb.load_state_dict(plain.state_dict())
    x = torch.randn(B, T, I, dtype=torch.float64)
    out, _ = plain(x)
    hb_out, _ = hb(x)
    torch.testing.assert_close(hb_out, out, atol=1e-12, rtol=0)
    for got, want in zip(torch.autograd.grad(loss_of(hb_out, []), list(hb.parameters())),
                         torch.autograd.grad(loss_of(out, []), list(plain.parameters())), strict=True):
        torch.testing.assert_close(got, want, atol=1e-12, rtol=0)


@pytest.mark.parametrize("rule_name", list(RULES))
@pytest.mark.parametrize("cell", CELLS)
def test_gradcheck(cell, rule_name):
    rnn = RNN(2, 2, cell=cell, rule=make_rule(rule_name), num_layers=2, batch_first=True).double()
    names = [n for n, _ in rnn.named_parameters()]
    x = torch.randn(2, 4, 2, dtype=torch.float64, requires_grad=True)

    def run(x, *params):
        out, state = torch.func.functional_call(rnn, dict(zip(names, params, strict=True)), (x,))
        return out, *(t for t in state.layers[-1] if t is not None)  # every carried tensor

    params = tuple(p.detach().clone().requires_grad_() for p in rnn.parameters())
    assert torch.autograd.gradcheck(run, (x, *params))


@pytest.mark.parametrize("rule_name", list(RULES))
@pytest.mark.parametrize("cell", CELLS)
def test_float32_follows_the_float64_reference(cell, rule_name):
    rnn = RNN(I, H, cell=cell, rule=make_rule(rule_name), batch_first=True)
    x = torch.randn(B, T, I)
    out, state = rnn(x)
    assert out.dtype == state.layers[0].h.dtype == torch.float32
    ref_out, _ = reference(rnn.double(), x.double())
    torch.testing.assert_close(out.double(), ref_out, atol=1e-5, rtol=1e-5)


def test_dropout_acts_between_layers_in_training_only():
    rnn = RNN(I, H, cell="lstm", rule=HeavyBall(), num_layers=2, dropout=0.5, batch_first=True).double()
    no_dropout = RNN(I, H, cell="lstm", rule=HeavyBall(), num_layers=2, batch_first=True).double()
    no_dropout.load_state_dict(rnn.state_dict())
    x = torch.randn(B, T, I, dtype=torch.float64)
    torch.testing.assert_close(rnn.eval()(x)[0], no_dropout(x)[0])
    out, state = rnn.train()(x)
    assert torch.isfinite(out).all() and not torch.allclose(out, no_dropout(x)[0])
    # layer 0 reads the raw input: its final state is untouched by dropout, and so is a one-layer block
    torch.testing.assert_close(state.layers[0].h, no_dropout(x)[1].layers[0].h, atol=0, rtol=0)
    one = RNN(I, H, cell="lstm", rule=HeavyBall(), num_layers=1, dropout=0.5, batch_first=True).double()
    torch.testing.assert_close(one.train()(x)[0], one.eval()(x)[0], atol=0, rtol=0)


@pytest.mark.parametrize("rule_name", list(RULES))
@pytest.mark.parametrize("cell", CELLS)
def test_long_sequence_crosses_every_chunk_boundary(cell, rule_name):
    """T = 70 spans three 32-step chunks of the filtered-input scan and of the adam LSTM buffers; a state
    carried in at step 33 (inside the second chunk) continues it exactly."""
    steps = 2 * 32 + 6
    rnn = RNN(I, H, cell=cell, rule=make_rule(rule_name), batch_first=True).double()
    x = torch.randn(B, steps, I, dtype=torch.float64)
    out, state = rnn(x)
    ref_out, ref_finals = reference(rnn, x)
    torch.testing.assert_close(out, ref_out, atol=1e-10, rtol=0)
    params = list(rnn.parameters())
    grads = torch.autograd.grad(loss_of(out, [state.layers[0].h]), params)
    ref_grads = torch.autograd.grad(loss_of(ref_out, ref_finals), params)
    for got, want in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(got, want, atol=1e-9, rtol=0)
    first, mid = rnn(x[:, :33])
    second, _ = rnn(x[:, 33:], mid)
    torch.testing.assert_close(torch.cat([first, second], dim=1), out, atol=1e-12, rtol=0)


@pytest.mark.parametrize("width", [_rnn_scan.CLOSED_FORM_MAX_WIDTH, _rnn_scan.CLOSED_FORM_MAX_WIDTH + 1])
@pytest.mark.parametrize("varying", [False, True])
def test_scan_on_both_sides_of_the_width_switch(width, varying):
    """The chunked closed form (<= 4096 values per step) and the step loop (wider) against a plain loop,
    over several chunks, from a carried state, with constant and per-step coefficients."""
    steps = 2 * 32 + 5
    x = torch.randn(steps, 1, width, dtype=torch.float64, requires_grad=True)
    init = torch.randn(1, width, dtype=torch.float64, requires_grad=True)
    coeff = [0.3 + 0.6 * ((t * 7) % 5) / 4 for t in range(steps)] if varying else [0.8] * steps
    y = _rnn_scan.scan(x, coeff, 0.7, init)
    ref, state = [], init
    for t in range(steps):
        state = coeff[t] * state + 0.7 * x[t]
        ref.append(state)
    ref = torch.stack(ref)
    torch.testing.assert_close(y, ref, atol=1e-12, rtol=0)
    w = torch.randn_like(ref)
    got = torch.autograd.grad((y * w).sum(), (x, init))
    want = torch.autograd.grad((ref * w).sum(), (x, init))
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)


@pytest.mark.parametrize("rule_name", list(RULES))
@pytest.mark.parametrize("inputs", [2047, 2048])  # (I + 1)·B = 4096 (closed form) and 4098 (step loop)
def test_wide_inputs_on_both_sides_of_the_scan_switch(inputs, rule_name):
    rnn = RNN(inputs, 3, cell="gru", rule=make_rule(rule_name), batch_first=True).double()
    x = torch.randn(2, 40, inputs, dtype=torch.float64)
    out, _ = rnn(x)
    ref_out, _ = reference(rnn, x)
    torch.testing.assert_close(out, ref_out, atol=1e-10, rtol=0)


@pytest.mark.parametrize("rule, why", [
    (Opaque(), "not a linear filter"),
    (LookAhead(), "look-ahead"),
    (VaryingAdam(), "constant decay"),
])
@pytest.mark.parametrize("cell", CELLS)
def test_a_rule_the_block_cannot_run_is_refused_by_name(cell, rule, why):
    with pytest.raises(ConfigError, match=rf"rule='{rule.name}' cannot run in the rnn block \(cell='{cell}'\).*{why}"):
        RNN(I, H, cell=cell, rule=rule)


class _PreactivationEverywhere(Rule):
    """Pre-activation momentum claimed for every cell: only the LSTM and tanh cells have that layer."""

    name = "preactivation_everywhere"
    preactivation_cells = tuple(CELLS)

    def filter(self, block):
        return Filter(scale=0.5, decay=0.5)


@pytest.mark.parametrize("cell", CELLS)
def test_preactivation_momentum_is_refused_on_a_cell_without_its_layer(cell):
    rule = _PreactivationEverywhere()
    if cell in ("lstm", "tanh"):
        assert RNN(I, H, cell=cell, rule=rule).path == "preactivation"
        return
    with pytest.raises(ConfigError, match=rf"cannot run in the rnn block \(cell='{cell}'\): pre-activation momentum "
                                          r"runs on the cells \('lstm', 'tanh'\)"):
        RNN(I, H, cell=cell, rule=rule)


def test_orthogonal_recurrent_weight_stays_orthogonal():
    rnn = RNN(I, H, cell="orthogonal", rule=HeavyBall()).double()
    opt = torch.optim.SGD(rnn.parameters(), lr=0.5)
    for _ in range(3):
        opt.zero_grad()
        rnn(torch.randn(T, B, I, dtype=torch.float64))[0].pow(2).sum().backward()
        opt.step()
    w = rnn.weight_hh_l0
    torch.testing.assert_close(w @ w.T, torch.eye(H, dtype=torch.float64), atol=1e-6, rtol=0)  # float32 init
    assert not hasattr(rnn, "bias_ih_l0")


def test_build_uses_the_block():
    model = build_block_model("rnn", {"cell": "gru", "hidden_size": 8}, "nesterov_restart", {}, 3, 5)
    assert isinstance(model.block, RNN) and model.block.rule.name == "nesterov_restart"
    assert model(torch.randn(B, T, 3)).shape == (B, 5)


@pytest.mark.parametrize("kwargs, match", [
    ({"cell": "lsmt"}, r"unknown RNN: cell 'lsmt' \(did you mean 'lstm'\?\); valid: tanh, lstm, gru, orthogonal"),
    ({"hidden_size": 0}, r"hidden_size=0: must be int in \[1, inf\)"),
    ({"num_layers": 0}, r"num_layers=0"),
    ({"dropout": 1.0}, r"dropout=1\.0: must be float in \[0, 1\)"),
    ({"input_size": 0}, r"input_size=0"),
    ({"rule": "heavy_ball"}, r"rule='heavy_ball': expected a discrete rule object"),
    ({"rule": nn.Linear(1, 1)}, r"rule=.*expected a discrete rule object"),
])
def test_bad_arguments_name_the_argument(kwargs, match):
    args = {"input_size": I, "hidden_size": H, **kwargs}
    with pytest.raises(ConfigError, match=match):
        RNN(**args)


@pytest.mark.parametrize("shape, match", [
    ((B, T), r"input: expected a 3-D tensor \(B, T, I\), got \(2, 7\)"),
    ((B, T, I + 1), r"input: expected 3 features \(input_size\)"),
])
def test_bad_input_names_the_argument(shape, match):
    rnn = RNN(I, H, batch_first=True)
    with pytest.raises(ConfigError, match=match):
        rnn(torch.randn(shape))


def test_bad_state_names_the_argument():
    rnn = RNN(I, H, cell="lstm", rule=HeavyBall(), batch_first=True)
    x = torch.randn(B, T, I)
    _, state = rnn(x)
    with pytest.raises(ConfigError, match=r"state: expected the RNNState"):
        rnn(x, (state.layers[0].h, state.layers[0].c))
    with pytest.raises(ConfigError, match=r"state.layers\[0\].h: expected \(3, 4\)"):
        rnn(torch.randn(3, T, I), state)
    other = RNN(I, H, cell="lstm", rule=Plain(), batch_first=True)
    with pytest.raises(ConfigError, match=r"state.layers\[0\].v"):
        rnn(x, other(x)[1])
    assert isinstance(state, RNNState)


@pytest.mark.parametrize("mu", [0.5, 0.0])
def test_adam_lstm_gradcheck_through_every_state_and_chunk(monkeypatch, mu):
    """The whole-layer adam LSTM node: gradients of every output w.r.t. every input, incoming state included,
    with chunks of 3 steps so that T = 7 crosses two chunk boundaries and ends on a partial chunk."""
    monkeypatch.setattr(_rnn_adam, "ADAM_LSTM_CHUNK", 3)
    Bs, Ts, Hs = 2, 7, 2
    gen = torch.Generator().manual_seed(0)

    def rand(*shape, low=-1.0):
        return (torch.rand(shape, generator=gen, dtype=torch.float64) * (1 - low) + low).requires_grad_()

    g, h, c, m = rand(Ts, Bs, 4 * Hs), rand(Bs, Hs), rand(Bs, Hs), rand(Bs, 4 * Hs, low=0.1)
    v = rand(Bs, 4 * Hs) if mu else None
    w_hh, b_hh = rand(4 * Hs, Hs), rand(4 * Hs)

    def run(g, h, c, m, w_hh, b_hh, *v):
        out = _rnn_adam.adam_lstm(g, h, c, v[0] if v else None, m, w_hh, b_hh, mu, 0.7, 0.8, 1e-3)
        return tuple(t for t in out if t is not None)

    assert torch.autograd.gradcheck(run, (g, h, c, m, w_hh, b_hh, *([v] if mu else [])))


NESTEROV_COEFFS = [0.3, 0.0, 0.6, 0.45, 0.0, 0.0, 0.8]  # restarts inside, a nonzero first and last coefficient


def _recur_nesterov(cell: str, g: torch.Tensor, s: float, coeff: Sequence[float], h: torch.Tensor,
                   c: torch.Tensor | None, y: torch.Tensor, w_hh: torch.Tensor, b_hh: torch.Tensor):
    """The obvious step loop of pre-activation momentum, autograd op by op (the reference of the one-node
    layers): y_t = W_hh h_{t-1} + b_hh − s·g_t ; z_t = y_t + c_t·(y_t − y_{t-1}).

    Args:
        cell: ``lstm`` or ``tanh``.
        g: (T, B, G) the input term W_ih x_t + b_ih.
        s: the step size.
        coeff: the T Nesterov coefficients c_t.
        h: (B, H) initial hidden state.
        c: (B, H) initial LSTM cell state, else None.
        y: (B, G) the previous pre-activation y_{t-1} (zeros at the start of a sequence).
        w_hh: (G, H) recurrent weight.
        b_hh: (G,) recurrent bias.

    Returns:
        ``(out, h, c, y)``: outputs (T, B, H), final h, final LSTM cell state or None, final y (B, G).
    """
    w = w_hh.t()  # (H, G)
    outs = []
    for g_t, ct in zip(g.unbind(0), coeff, strict=True):
        y_new = torch.add(torch.addmm(b_hh, h, w), g_t, alpha=-s)  # (B, G) the only GEMM of the step
        z = torch.add(y_new, y_new - y, alpha=ct) if ct else y_new  # (B, G)
        h, c = _rnn_loops.activate(cell, z, c, None)  # (B, H)
        y = y_new
        outs.append(h)
    return torch.stack(outs), h, c, y


def _nesterov_inputs(T, B, H, gen):
    def rand(*shape):
        return (torch.rand(shape, generator=gen, dtype=torch.float64) * 2 - 1).requires_grad_()

    return rand(T, B, 4 * H), rand(B, H), rand(B, H), rand(B, 4 * H), rand(4 * H, H), rand(4 * H)


@pytest.mark.parametrize("chunk", [32, 3])
def test_nesterov_lstm_gradcheck_through_every_state(monkeypatch, chunk):
    """The whole-layer pre-activation Nesterov LSTM node: gradients of every output (final y included)
    w.r.t. every input, incoming y included, with restarts (c_t = 0) inside the sequence; chunk 3 splits the
    saved buffers across chunks."""
    monkeypatch.setattr(_rnn_nesterov, "CHUNK", chunk)
    g, h, c, y, w_hh, b_hh = _nesterov_inputs(len(NESTEROV_COEFFS), 2, 2, torch.Generator().manual_seed(0))

    def run(g, h, c, y, w_hh, b_hh):
        return _rnn_nesterov.nesterov_lstm(g, 0.7, NESTEROV_COEFFS, h, c, y, w_hh, b_hh)

    assert torch.autograd.gradcheck(run, (g, h, c, y, w_hh, b_hh))


@pytest.mark.parametrize("chunk", [32, 4])
def test_nesterov_lstm_node_matches_the_step_loop(monkeypatch, chunk):
    """The hand-differentiated node against the per-step autograd loop (float64, T = 70: the saved buffers
    span several chunks, the last one partial)."""
    monkeypatch.setattr(_rnn_nesterov, "CHUNK", chunk)
    gen = torch.Generator().manual_seed(1)
    T = 70
    coeff = [0.0 if t % 9 == 0 else 0.1 + 0.01 * t for t in range(T)]
    inputs = _nesterov_inputs(T, 3, 5, gen)
    w_out = torch.rand(T, 3, 5, generator=gen, dtype=torch.float64)
    results = []
    for fn in (_rnn_nesterov.nesterov_lstm, lambda g, s, k, h, c, y, w, b: _recur_nesterov(
            "lstm", g, s, k, h, c, y, w, b)):
        out, h, c, y = fn(inputs[0], 0.6, coeff, *inputs[1:])
        loss = (out * w_out).sum() + h.sum() + 2 * c.sum() + 3 * y.sum()
        grads = torch.autograd.grad(loss, inputs, materialize_grads=True)  # y0 is unused when c_0 = 0
        results.append((out, h, c, y, *grads))
    for got, want in zip(*results, strict=True):
        torch.testing.assert_close(got, want, atol=1e-12, rtol=0)


def test_nesterov_tanh_gradcheck_through_every_state():
    """The whole-layer pre-activation Nesterov tanh node: every output (final y included) w.r.t. every input."""
    gen = torch.Generator().manual_seed(4)

    def rand(*shape):
        return (torch.rand(shape, generator=gen, dtype=torch.float64) * 2 - 1).requires_grad_()

    T = len(NESTEROV_COEFFS)
    g, h, y, w_hh, b_hh = rand(T, 2, 3), rand(2, 3), rand(2, 3), rand(3, 3), rand(3)

    def run(g, h, y, w_hh, b_hh):
        return _rnn_nesterov.nesterov_tanh(g, 0.7, NESTEROV_COEFFS, h, y, w_hh, b_hh)

    assert torch.autograd.gradcheck(run, (g, h, y, w_hh, b_hh))


@pytest.mark.parametrize("cell", ["lstm", "tanh"])
@pytest.mark.parametrize("segment", [1, 1 << 20])
def test_nesterov_node_whole_and_in_segments(monkeypatch, segment, cell):
    """The LSTM/tanh pre-activation path is the one-node layer; the tanh cell runs a long sequence as consecutive
    nodes of at most ``SEGMENT`` input-term values (here also one step each), the state carried between them:
    both against the float64 reference, carried state and gradients included."""
    from momsearch.blocks import _rnn_core

    monkeypatch.setattr(_rnn_core, "SEGMENT", segment)
    calls = []
    name = f"nesterov_{cell}"
    node = getattr(_rnn_core, name)
    monkeypatch.setattr(_rnn_core, name, lambda *a: calls.append(1) or node(*a))
    torch.manual_seed(3)
    rnn = RNN(3, 4, cell=cell, rule=make_rule("nesterov_restart"), num_layers=2, batch_first=True).double()
    x = torch.randn(2, 9, 3, dtype=torch.float64, requires_grad=True)
    out, state = rnn(x[:, :5])
    out2, _ = rnn(x[:, 5:], state)
    # 2 layers x 2 calls, one node each, or one per step (5 + 4 steps) for the tanh cell in one-step segments
    assert rnn.path == "preactivation" and len(calls) == (18 if segment == 1 and cell == "tanh" else 4)
    want = reference(rnn, x)[0]
    torch.testing.assert_close(torch.cat([out, out2], dim=1), want, atol=1e-12, rtol=0)
    grad = torch.autograd.grad(torch.cat([out, out2], dim=1).sum(), x)[0]
    want_grad = torch.autograd.grad(want.sum(), x)[0]
    torch.testing.assert_close(grad, want_grad, atol=1e-12, rtol=0)


@pytest.mark.parametrize("cell", ["tanh", "gru"])
@pytest.mark.parametrize("mu", [0.5, 0.0])
def test_adam_tanh_gru_gradcheck_through_every_state(mu, cell):
    """The whole-layer adam tanh and GRU nodes: every output w.r.t. every input, incoming state included."""
    gen = torch.Generator().manual_seed(5)
    G = 3 if cell == "tanh" else 9

    def rand(*shape, low=-1.0):
        return (torch.rand(shape, generator=gen, dtype=torch.float64) * (1 - low) + low).requires_grad_()

    g, h, m = rand(6, 2, G), rand(2, 3), rand(2, G, low=0.1)
    v = rand(2, G) if mu else None
    w_hh, b_hh = rand(G, 3), rand(G)
    node = _rnn_adam.adam_tanh if cell == "tanh" else _rnn_adam.adam_gru

    def run(g, h, m, w_hh, b_hh, *v):
        out = node(g, h, v[0] if v else None, m, w_hh, b_hh, mu, 0.7, 0.8, 1e-3)
        return tuple(t for t in out if t is not None)

    assert torch.autograd.gradcheck(run, (g, h, m, w_hh, b_hh, *([v] if mu else [])))


@pytest.mark.parametrize("cell", ["tanh", "gru"])
@pytest.mark.parametrize("rule_name", ["adam", "rmsprop"])
@pytest.mark.parametrize("segment", [1, 1 << 20])
def test_adam_tanh_gru_whole_and_in_segments(monkeypatch, segment, rule_name, cell):
    """tanh/GRU adam and rmsprop: the one-node layer, as one node or as consecutive nodes of at most ``SEGMENT``
    input-term values (here one step each) with v, m and h carried; both against the float64 reference, across
    a carried state, gradients included."""
    from momsearch.blocks import _rnn_core

    monkeypatch.setattr(_rnn_core, "SEGMENT", segment)
    calls = []
    node = getattr(_rnn_core, f"adam_{cell}")
    monkeypatch.setattr(_rnn_core, f"adam_{cell}", lambda *a: calls.append(1) or node(*a))
    torch.manual_seed(6)
    rnn = RNN(3, 4, cell=cell, rule=make_rule(rule_name), num_layers=2, batch_first=True).double()
    x = torch.randn(2, 9, 3, dtype=torch.float64, requires_grad=True)
    out, state = rnn(x[:, :5])
    out2, _ = rnn(x[:, 5:], state)
    assert rnn.path == "normalised" and len(calls) == (18 if segment == 1 else 4)  # 2 layers x (2 calls or 9 steps)
    want = reference(rnn, x)[0]
    got = torch.cat([out, out2], dim=1)
    torch.testing.assert_close(got, want, atol=1e-12, rtol=0)
    torch.testing.assert_close(torch.autograd.grad(got.sum(), x)[0], torch.autograd.grad(want.sum(), x)[0],
                               atol=1e-12, rtol=0)
