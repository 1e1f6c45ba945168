"""Attention blocks: the chunked parallel forms against step-by-step float64 recurrences (DESIGN §3.3)."""

import pytest
import torch
import torch.nn.functional as F
from unrunnable_rules import Opaque, VaryingAdam

from momsearch.blocks import Attention, TransformerEncoder
from momsearch.blocks._attention_adam import adam_attention
from momsearch.blocks._attention_linear import linear_attention
from momsearch.builder import build_block_model
from momsearch.catalog.attention import RULES
from momsearch.errors import ConfigError
from momsearch.rules import Filter, HeavyBall, Plain, Rule, make

# hyperparameters far from the defaults, so that every coefficient matters
TEST_VALUES = {"mu": 0.9, "s": 0.7, "beta": 0.8, "eps": 1e-8, "restart_every": 3}
KINDS = [("linear", name) for name in RULES] + [("softmax", "plain")]
B, H, T, DH = 3, 2, 11, 3


def rule_for(name, **override):
    values = {key: override.get(key, TEST_VALUES.get(key, param.default)) for key, param in RULES[name].items()}
    return make(name, block="attention", **values)


def reference(q, k, v, rule, causal, padding_mask=None):
    """DESIGN §3.3 step by step in float64; padded steps are skipped (every state passes through unchanged)."""
    fq, fk = F.elu(q) + 1, F.elu(k) + 1
    batch, heads, steps, d = q.shape
    out = torch.zeros(batch, heads, steps, v.shape[-1], dtype=torch.float64)
    for b in range(batch):
        real = [t for t in range(steps) if padding_mask is None or not padding_mask[b, t]]
        S = torch.zeros(heads, d, v.shape[-1], dtype=torch.float64)
        z = torch.zeros(heads, d, dtype=torch.float64)
        p, m, g_prev = torch.zeros_like(S), torch.zeros_like(S), torch.zeros_like(S)
        states = []
        for step, t in enumerate(real):
            U = fk[b, :, t, :, None] * v[b, :, t, None, :]
            if rule.name == "plain":
                S = S + U
            elif rule.name == "heavy_ball":
                p = rule.mu * p + rule.s * U
                S = S + p
            elif rule.name == "nesterov_momentum":
                p = rule.mu * p + rule.s * U
                S = S + rule.mu * p + rule.s * U
            elif rule.name == "nesterov_restart":
                G = S + rule.s * U  # G_0 = S_0 = 0
                S = G + rule.coefficient(step) * (G - g_prev)
                g_prev = G
            elif rule.name == "adam":
                p = rule.mu * p + rule.s * U
                m = rule.beta * m + (1 - rule.beta) * U * U
                S = S + p / torch.sqrt(m + rule.eps)
            else:
                raise AssertionError(f"no reference for rule {rule.name}")
            z = z + fk[b, :, t]
            states.append((S, z))
        for i, t in enumerate(real):
            S_read, z_read = states[i] if causal else states[-1]
            num = torch.einsum("hd,hdm->hm", fq[b, :, t], S_read)
            out[b, :, t] = num / (torch.einsum("hd,hd->h", fq[b, :, t], z_read)[:, None] + 1e-6)
    return out


def masks():
    right = torch.zeros(B, T, dtype=torch.bool)
    right[1, 7:] = True
    right[2, 2:] = True
    anywhere = torch.zeros(B, T, dtype=torch.bool)
    anywhere[0, :3] = True
    anywhere[1, [2, 5, 6, 10]] = True
    anywhere[2, :] = True  # all padding
    return {"none": None, "right": right, "anywhere": anywhere}


def qkv(steps=T, requires_grad=False):
    return [torch.randn(B, H, steps, DH, dtype=torch.float64, requires_grad=requires_grad) for _ in range(3)]


@pytest.mark.parametrize("name", list(RULES))
@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("chunk", [1, 4, 64])
@pytest.mark.parametrize("mask", ["none", "right", "anywhere"])
def test_parallel_matches_recurrence_at_every_step(name, causal, chunk, mask):
    rule = rule_for(name)
    att = Attention(H * DH, H, "linear", rule, causal=causal, chunk_size=chunk).double()
    q, k, v = qkv()
    padding = masks()[mask]
    y = att.attend(q, k, v, padding)
    assert (y - reference(q, k, v, rule, causal, padding)).abs().max() < 1e-10


@pytest.mark.parametrize("restart_every", [0, 1, 2, 5])
@pytest.mark.parametrize("chunk", [3, 4])
def test_nesterov_restart_periods_against_chunks(restart_every, chunk):
    rule = rule_for("nesterov_restart", restart_every=restart_every)
    q, k, v = qkv(steps=17)
    att = Attention(H * DH, H, "linear", rule, chunk_size=chunk).double()
    assert (att.attend(q, k, v) - reference(q, k, v, rule, True)).abs().max() < 1e-10


@pytest.mark.parametrize("mu", [0.0, 0.5, 0.99])
def test_heavy_ball_long_sequence(mu):
    rule = HeavyBall(mu=mu, s=0.3)
    q, k, v = (x[:1, :1] for x in qkv(steps=300))
    att = Attention(DH, 1, "linear", rule, chunk_size=16).double()
    assert (att.attend(q, k, v) - reference(q, k, v, rule, True)).abs().max() < 1e-10


@pytest.mark.parametrize("name", list(RULES))
@pytest.mark.parametrize("causal", [True, False])
def test_many_chunks_with_padding(name, causal):
    """T = 150 over chunks of 16 (ten chunks, the last partial), right padding: every carried state matters."""
    rule = rule_for(name)
    q, k, v = (x[:2, :1] for x in qkv(steps=150))
    padding = torch.zeros(2, 150, dtype=torch.bool)
    padding[1, 97:] = True
    att = Attention(DH, 1, "linear", rule, causal=causal, chunk_size=16).double()
    assert (att.attend(q, k, v, padding) - reference(q, k, v, rule, causal, padding)).abs().max() < 1e-10


class _GainDirect(Rule):
    """A filter with every coefficient in use: p = 0.5·p + 0.7·U ; S += 0.3·p + 0.6·U."""

    name = "gain_direct"

    def filter(self, block):
        return Filter(scale=0.7, decay=0.5, gain=0.3, direct=0.6)


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("chunk", [1, 4, 64])
def test_a_filter_with_gain_and_direct_term_is_exact(causal, chunk):
    """The chunked form for any linear filter, not only the catalog's, against its own float64 loop."""
    q, k, v = qkv()
    fq, fk = F.elu(q) + 1, F.elu(k) + 1
    U = fk[..., :, None] * v[..., None, :]  # (B, H, T, d, m)
    p, S, states = torch.zeros_like(U[:, :, 0]), torch.zeros_like(U[:, :, 0]), []
    for t in range(T):
        p = 0.5 * p + 0.7 * U[:, :, t]
        S = S + 0.3 * p + 0.6 * U[:, :, t]
        states.append(S)
    S_read = torch.stack(states, dim=2) if causal else S[:, :, None].expand_as(U)  # (B, H, T, d, m)
    z = fk.cumsum(dim=2) if causal else fk.sum(dim=2, keepdim=True).expand_as(fk)  # (B, H, T, d)
    want = torch.einsum("bhtd,bhtdm->bhtm", fq, S_read) / ((fq * z).sum(-1, keepdim=True) + 1e-6)
    att = Attention(H * DH, H, "linear", _GainDirect(), causal=causal, chunk_size=chunk).double()
    assert (att.attend(q, k, v) - want).abs().max() < 1e-10
    if causal:
        x = torch.randn(B, T, H * DH, dtype=torch.float64)
        y, state = att(x), None
        for t in range(T):
            y_t, state = att.step(x[:, t], state)
            assert (y_t - y[:, t]).abs().max() < 1e-10


@pytest.mark.parametrize("rule, kind, why", [
    (Opaque(), "linear", "not a linear filter"),
    (VaryingAdam(), "linear", "constant decay"),
    (make("adam", block="attention"), "softmax", "plain only"),
])
def test_a_rule_the_block_cannot_run_is_refused_by_name(rule, kind, why):
    with pytest.raises(ConfigError, match=rf"rule='{rule.name}' cannot run in the attention block "
                                          rf"\(kind='{kind}'\).*{why}"):
        Attention(8, 2, kind, rule)


def test_end_of_sequence_shortcut_differs_before_the_end():
    """Reweighting key j by s(1 − mu^{T−j+1})/(1 − mu) equals the recurrence only at t = T."""
    rule = HeavyBall(mu=0.9, s=0.7)
    q, k, v = qkv()
    j = torch.arange(1, T + 1, dtype=torch.float64)
    weight = rule.s * (1 - rule.mu ** (T - j + 1)) / (1 - rule.mu)  # (T,)
    fq, fk = F.elu(q) + 1, F.elu(k) + 1
    scores = torch.einsum("bhtd,bhjd->bhtj", fq, fk * weight[:, None]).tril()
    num = scores @ v
    den = torch.einsum("bhtd,bhjd->bhtj", fq, fk).tril().sum(-1, keepdim=True)
    shortcut = num / (den + 1e-6)
    exact = reference(q, k, v, rule, True)
    parallel = Attention(H * DH, H, "linear", rule, chunk_size=4).double().attend(q, k, v)
    assert (shortcut[:, :, -1] - exact[:, :, -1]).abs().max() < 1e-10
    assert (shortcut[:, :, :-1] - exact[:, :, :-1]).abs().amax(dim=(0, 1, 3)).min() > 1e-3
    assert (parallel - exact).abs().max() < 1e-10


def test_heavy_ball_without_momentum_is_plain():
    q, k, v = qkv()
    plain = Attention(H * DH, H, "linear", Plain(), chunk_size=4).double()
    hb = Attention(H * DH, H, "linear", HeavyBall(mu=0.0, s=1.0), chunk_size=4).double()
    assert (plain.attend(q, k, v) - hb.attend(q, k, v)).abs().max() < 1e-12


@pytest.mark.parametrize("causal", [True, False])
def test_softmax_is_scaled_dot_product_attention(causal):
    att = Attention(H * DH, H, "softmax", causal=causal).double()
    x = torch.randn(B, T, H * DH, dtype=torch.float64)
    q, k, v = (t.view(B, T, H, DH).transpose(1, 2) for t in att.qkv(x).chunk(3, dim=-1))
    expected = F.scaled_dot_product_attention(q, k, v, is_causal=causal).transpose(1, 2).reshape(B, T, -1)
    assert (att(x) - att.out(expected)).abs().max() < 1e-12


@pytest.mark.parametrize("kind,name", KINDS)
@pytest.mark.parametrize("causal", [True, False])
def test_padding_is_skipped(kind, name, causal):
    """A padded sequence gives, at its real steps, the outputs of the same sequence without the padding."""
    att = Attention(H * DH, H, kind, rule_for(name), causal=causal, chunk_size=4).double()
    x = torch.randn(B, T, H * DH, dtype=torch.float64)
    padding = masks()["anywhere"]
    y = att(x, padding)
    for b in range(B):
        real = ~padding[b]
        assert (y[b, ~real] == 0).all()
        if real.any():
            assert (y[b, real] - att(x[b : b + 1, real])[0]).abs().max() < 1e-10


@pytest.mark.parametrize("kind,name", KINDS)
def test_step_reproduces_parallel_outputs(kind, name):
    att = Attention(H * DH, H, kind, rule_for(name), causal=True, chunk_size=4).double()
    x = torch.randn(B, T, H * DH, dtype=torch.float64)
    padding = masks()["anywhere"]
    y = att(x, padding)
    state = None
    for t in range(T):
        y_t, state = att.step(x[:, t], state, padding_mask=padding[:, t])
        assert (y_t - y[:, t]).abs().max() < 1e-10
    state = None
    y = att(x)
    for t in range(T):
        y_t, state = att.step(x[:, t], state)
        assert (y_t - y[:, t]).abs().max() < 1e-10


@pytest.mark.parametrize("name", list(RULES))
@pytest.mark.parametrize("causal", [True, False])
def test_gradcheck(name, causal):
    rule = rule_for(name)
    q, k, v = (x[:2, :1, :6, :2].detach().requires_grad_() for x in qkv())
    padding = torch.zeros(2, 6, dtype=torch.bool)
    padding[1, [1, 5]] = True
    att = Attention(2, 1, "linear", rule, causal=causal, chunk_size=4).double()
    assert torch.autograd.gradcheck(lambda *t: att.attend(*t, padding), (q, k, v))
    core = adam_attention if name == "adam" else linear_attention
    fq, fk = (F.elu(x.detach()).add(1).requires_grad_() for x in (q, k))
    assert torch.autograd.gradcheck(lambda a, b, c: core(a, b, c, rule, causal, 4), (fq, fk, v))


def _residual_reference(enc, x, mode, mu, s):
    velocity = update = None
    for layer in enc.layers:
        a = layer(x, None)
        if mode == "plain":
            x = x + a
        else:
            if velocity is None:
                velocity = a
            else:
                if mode == "adaptive":
                    ratio = (a - update).norm(dim=-1, keepdim=True) / velocity.norm(dim=-1, keepdim=True)
                    mu = ((1 - ratio.sqrt()) ** 2).clamp(0, 1 - 1e-4)
                velocity = mu * velocity + a
            x = x + s * velocity
        update = a
    return enc.norm(x)


@pytest.mark.parametrize("residual", ["plain", "heavy_ball", "adaptive"])
@pytest.mark.parametrize("kind,name", KINDS)
def test_encoder_residual_momentum(residual, kind, name):
    enc = TransformerEncoder(d_model=H * DH, heads=H, layers=3, ffn=8, kind=kind, rule=rule_for(name),
                             residual=residual, residual_mu=0.7, residual_s=0.8, chunk_size=4).double()
    x = torch.randn(B, T, H * DH, dtype=torch.float64)
    y = enc(x)
    assert y.shape == (B, T, H * DH)
    assert (y - _residual_reference(enc, x, residual, 0.7, 0.8)).abs().max() < 1e-10
    y.square().sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in enc.parameters())


@pytest.mark.parametrize("kind,name", KINDS)
def test_built_model_trains(kind, name):
    params = {"kind": kind, "d_model": 8, "heads": 2, "layers": 1, "ffn": 8, "chunk_size": 4, "dropout": 0.1}
    rule = rule_for(name)
    model = build_block_model("attention", params, name, rule.params(), input_size=3, output_size=2)
    out = model(torch.randn(2, 9, 3))
    assert out.shape == (2, 2)
    out.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_bad_arguments():
    with pytest.raises(ConfigError, match="heads=3: must divide d_model=8"):
        Attention(8, 3)
    with pytest.raises(ConfigError, match="rule='heavy_ball'.*softmax.*plain only"):
        Attention(8, 2, "softmax", HeavyBall())
    with pytest.raises(ConfigError, match="rule='rmsprop'.*kind='linear'"):
        Attention(8, 2, "linear", make("rmsprop"))
    with pytest.raises(ConfigError, match="rule="):
        Attention(8, 2, "linear", "heavy_ball")
    with pytest.raises(ConfigError, match="kind"):
        Attention(8, 2, "quadratic")
    with pytest.raises(ConfigError, match="chunk_size"):
        Attention(8, 2, chunk_size=0)
    with pytest.raises(ConfigError, match="residual"):
        TransformerEncoder(8, 2, residual="nesterov")
    att = Attention(8, 2)
    with pytest.raises(ConfigError, match=r"x: expected shape \(batch, time, d_model=8\), got \(2, 8\)"):
        att(torch.randn(2, 8))
    with pytest.raises(ConfigError, match="x: expected.*got \\(2, 5, 7\\)"):
        att(torch.randn(2, 5, 7))
    with pytest.raises(ConfigError, match="padding_mask: expected a bool tensor of shape \\(batch=2, time=5\\)"):
        att(torch.randn(2, 5, 8), torch.zeros(2, 4, dtype=torch.bool))
    with pytest.raises(ConfigError, match="padding_mask"):
        att(torch.randn(2, 5, 8), torch.zeros(2, 5))
    with pytest.raises(ConfigError, match="x: expected shape \\(batch, d_model=8\\)"):
        att.step(torch.randn(2, 5, 8))
    with pytest.raises(ConfigError, match="step: needs a causal"):
        Attention(8, 2, causal=False).step(torch.randn(2, 8))


@pytest.mark.parametrize("rule", [HeavyBall(mu=0.9, s=0.7), rule_for("nesterov_restart", restart_every=2),
                                  _GainDirect()], ids=["heavy_ball", "nesterov_restart", "gain_direct"])
def test_momentum_backward_gradcheck_across_chunks(rule):
    """The causal momentum path's written-out backward over four chunks (the last partial), float64."""
    q, k, v = (x[:2, :1].detach() for x in qkv())
    fq, fk = (F.elu(x).add(1).requires_grad_() for x in (q, k))
    v.requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b, c: linear_attention(a, b, c, rule, True, 3), (fq, fk, v))
    with torch.no_grad():
        untracked = linear_attention(fq, fk, v, rule, True, 3)
    assert torch.equal(linear_attention(fq, fk, v, rule, True, 3), untracked)


@pytest.mark.parametrize("name", ["heavy_ball", "nesterov_restart"])
def test_momentum_gradients_match_autograd_through_the_loop(name):
    """Block gradients (written-out backward, chunks of 4 over 11 steps, padding) against the float64 loop's."""
    rule = rule_for(name)
    q, k, v = qkv(requires_grad=True)
    padding = masks()["anywhere"]
    weights = torch.randn(B, H, T, DH, dtype=torch.float64)
    att = Attention(H * DH, H, "linear", rule, chunk_size=4).double()
    got = torch.autograd.grad((att.attend(q, k, v, padding) * weights).sum(), (q, k, v))
    want = torch.autograd.grad((reference(q, k, v, rule, True, padding) * weights).sum(), (q, k, v))
    for g, w in zip(got, want, strict=True):
        assert (g - w).abs().max() < 1e-12
