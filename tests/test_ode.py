"""Neural-ODE blocks: rule dynamics against their published equations, closed-form solutions, NFE, ODE-RNN."""

import inspect
import math

import pytest
import torch
from torch import nn
from torchdiffeq import odeint

from momsearch import catalog
from momsearch import rules as discrete_rules
from momsearch.blocks import ODERNN, ODEBlock
from momsearch.builder import build, build_block_model
from momsearch.errors import ConfigError, NFEBudgetExceeded
from momsearch.rules import ode as ode_rules

RULE_NAMES = list(ode_rules.RULES)
CELLS = catalog.ode.PARAMS["cell"].choices
# non-default hyperparameters, so a swapped or ignored argument shows
TEST_PARAMS = {
    "plain": {},
    "heavy_ball": {"gamma_init": 0.3},
    "generalized_heavy_ball": {"gamma_init": 0.3, "xi_init": 0.7},
    "nesterov_restart": {"restart_every": 0.5},
    "adam": {"beta1_init": 0.3, "beta2_init": 0.6, "eps": 1e-3, "normalizer": "softplus"},
}
NORMALIZERS = {"sigmoid": torch.sigmoid, "softplus": nn.functional.softplus, "identity": lambda v: v}


def make_rule(name: str, **overrides) -> ode_rules.ODERule:
    return ode_rules.RULES[name](**{**TEST_PARAMS[name], **overrides})


def nesterov_k(tau):
    """k(tau) = tau^(3/2)·e^(-tau/2) and k'(tau), written out."""
    k = tau**1.5 * torch.exp(-tau / 2)
    return k, 1.5 * tau**0.5 * torch.exp(-tau / 2) - 0.5 * k


def reference_derivative(rule: ode_rules.ODERule, f, t, h, m, v):
    """The published equations, learnable coefficients at their initial values: (dh, dm, dv) of the solver state.

    NesterovNODE's solver state is (x, m) (passed as h, m).
    """
    p = rule.params()
    if rule.name == "plain":
        return f(h), None, None
    if rule.name == "heavy_ball":
        return m, -p["gamma_init"] * m + f(h), None
    if rule.name == "generalized_heavy_ball":
        return torch.tanh(m), -p["gamma_init"] * m + f(h) - p["xi_init"] * h, None
    if rule.name == "nesterov_restart":  # x' = m ; m' = -m + f(x / k(tau)), tau = 1 + (t mod R)
        R = p["restart_every"]
        # the restart taking effect just after t = R, 2R, ...
        x, tau = h, 1 + (t - R * torch.clamp(torch.ceil(t / R) - 1, min=0) if R > 0 else t)
        return m, -m + f(x / nesterov_k(tau)[0]), None
    if rule.name == "adam":
        fh, n = f(h), NORMALIZERS[p["normalizer"]]
        return m / (torch.sqrt(n(v)) + p["eps"]), p["beta1_init"] * (fh - m), p["beta2_init"] * (fh * fh - v)
    raise AssertionError(f"no reference for rule {rule.name}: add its published equations here")


def natural_derivative(rule: ode_rules.ODERule, f, t, h, m, v):
    """The same in the natural state (h, h' or m[, v]) and real time t, the clock restarting every R.

    NesterovNODE: h'' + (3/tau)·h' + (3/(4·tau²) - 1/4)·h = tau^(-3/2)·e^(tau/2)·f(h), tau = 1 + (t mod R).
    """
    if rule.name != "nesterov_restart":
        return reference_derivative(rule, f, t, h, m, v)
    R = rule.restart_every
    tau = 1 + (t - R * torch.floor(t / R) if R > 0 else t)
    return m, -(3 / tau) * m - (3 / (4 * tau**2) - 0.25) * h + tau**-1.5 * torch.exp(tau / 2) * f(h), None


def field_mlp(n: int = 3) -> nn.Module:
    return nn.Sequential(nn.Linear(n, 5), nn.Tanh(), nn.Linear(5, n)).double()


class Counting(nn.Module):
    """Wraps a field and counts its calls: the ground truth for the block's NFE counters."""

    def __init__(self, field: nn.Module):
        super().__init__()
        self.field, self.calls = field, 0

    def forward(self, h):
        self.calls += 1
        return self.field(h)


class Linear(nn.Module):
    """f(h) = h Aᵀ with a fixed matrix: the hand-fixed vector field of the closed-form tests."""

    def __init__(self, A: torch.Tensor):
        super().__init__()
        self.register_buffer("A", A)

    def forward(self, h):
        return h @ self.A.T


# ---------------------------------------------------------------- rules


@pytest.mark.parametrize("name", RULE_NAMES)
def test_rule_defaults_match_catalog(name):
    rule = ode_rules.RULES[name]()
    assert rule.name == name
    assert rule.params() == {k: p.default for k, p in catalog.ode.RULES[name].items()}
    assert type(discrete_rules.make(name, block="ode")) is type(rule)


def test_rule_arguments_checked():
    with pytest.raises(ConfigError, match="gamma_init"):
        ode_rules.HeavyBall(gamma_init=1.0)
    with pytest.raises(ConfigError, match="xi_init"):
        ode_rules.GeneralizedHeavyBall(xi_init=0.0)
    with pytest.raises(ConfigError, match="restart_every"):
        ode_rules.NesterovRestart(restart_every=-1.0)
    with pytest.raises(ConfigError, match="mu"):
        discrete_rules.make("heavy_ball", block="ode", mu=0.5)


@pytest.fixture
def float64():
    """Create modules in float64, so learnable coefficients hold their initial values exactly."""
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(torch.float32)


@pytest.mark.parametrize("name", RULE_NAMES)
@pytest.mark.parametrize("t", [0.7, 1.0, 1.3, "per_row"])
def test_vector_field_matches_design(name, t, float64):
    torch.manual_seed(1)
    B, n = 4, 3
    rule = make_rule(name)
    f = field_mlp(n)
    dynamics = rule.dynamics(f).double()
    t = torch.rand(B, 1, dtype=torch.float64) * 2 if t == "per_row" else torch.tensor(t, dtype=torch.float64)
    z = torch.randn(B, rule.components, n, dtype=torch.float64)  # (B, k, n)
    if rule.components == 3:
        z[:, 2] = z[:, 2].abs()  # v >= 0
    parts = list(z.unbind(1)) + [None] * (3 - rule.components)
    expected = [d for d in reference_derivative(rule, f, t, *parts) if d is not None]
    torch.testing.assert_close(dynamics(t, z), torch.stack(expected, 1), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", RULE_NAMES)
def test_nesterov_never_restarting_and_learnable_coefficients(name, float64):
    rule = make_rule(name, restart_every=0.0) if name == "nesterov_restart" else make_rule(name)
    f = field_mlp()
    dynamics = rule.dynamics(f).double()
    t = torch.tensor(2.5, dtype=torch.float64)
    z = torch.rand(2, rule.components, 3, dtype=torch.float64)
    parts = list(z.unbind(1)) + [None] * (3 - rule.components)
    expected = [d for d in reference_derivative(rule, f, t, *parts) if d is not None]
    out = dynamics(t, z)
    torch.testing.assert_close(out, torch.stack(expected, 1), rtol=1e-12, atol=1e-12)
    out.square().sum().backward()
    own = [p for n_, p in dynamics.named_parameters() if not n_.startswith("field.")]
    assert len(own) == {"plain": 0, "heavy_ball": 1, "generalized_heavy_ball": 2, "nesterov_restart": 0,
                        "adam": 2}[name]
    assert all(p.grad is not None and p.grad.abs() > 0 for p in own)


# ---------------------------------------------------------------- closed forms


@pytest.mark.parametrize("solver,options", [("dopri5", None), ("rk4", {"step_size": 0.01})])
def test_plain_linear_field_is_a_matrix_exponential(solver, options):
    A = torch.tensor([[-1.0, 2.0], [-2.0, -0.5]], dtype=torch.float64)
    block = ODEBlock(dim=2, t1=1.5, rule=ode_rules.Plain(), field=Linear(A), solver=solver, options=options,
                     rtol=1e-10, atol=1e-10).double()
    h0 = torch.randn(3, 2, dtype=torch.float64)
    exact = h0 @ torch.linalg.matrix_exp(1.5 * A).T  # (B, 2)
    torch.testing.assert_close(block(h0), exact, rtol=1e-7, atol=1e-7)


def test_heavy_ball_is_a_damped_oscillator():
    k, gamma, t1 = 4.0, 0.3, 3.0
    field = Linear(-k * torch.eye(2, dtype=torch.float64))
    block = ODEBlock(dim=2, t1=t1, rule=ode_rules.HeavyBall(gamma_init=gamma), field=field,
                     rtol=1e-10, atol=1e-10).double()
    h0 = torch.randn(3, 2, dtype=torch.float64)
    # h'' + gamma h' + k h = 0, h(0) = h0, h'(0) = m0 = 0
    w = math.sqrt(k - gamma**2 / 4)
    exact = h0 * math.exp(-gamma * t1 / 2) * (math.cos(w * t1) + gamma / (2 * w) * math.sin(w * t1))
    torch.testing.assert_close(block(h0), exact, rtol=1e-7, atol=1e-7)


# ---------------------------------------------------------------- NFE


@pytest.mark.parametrize("name", RULE_NAMES)
def test_nfe_counts_every_field_call(name):
    field = Counting(field_mlp(2))
    block = ODEBlock(dim=2, rule=make_rule(name), field=field).double()
    y = block(torch.randn(8, 2, dtype=torch.float64))
    assert block.nfe_forward == field.calls > 0
    # dopri5: 2 + 6 per attempted step in each solve; a restarting clock cuts the solve at each restart
    pieces = 1 + len(block.flow.rule.discontinuities(1.0))
    assert pieces == (2 if name == "nesterov_restart" else 1)
    assert (block.nfe_forward - 2 * pieces) % 6 == 0
    assert block.nfe_backward == 0
    y.square().sum().backward()
    assert block.nfe_backward == field.calls - block.nfe_forward > 0
    calls = field.calls
    block(torch.randn(8, 2, dtype=torch.float64))  # a new forward resets both counts
    assert block.nfe_forward == field.calls - calls and block.nfe_backward == 0


def test_rk4_does_four_evaluations_per_step():
    field = Counting(field_mlp(2))
    block = ODEBlock(dim=2, t1=1.0, solver="rk4", options={"step_size": 0.25}, field=field, adjoint=False)
    block.double()(torch.randn(4, 2, dtype=torch.float64)).sum().backward()
    assert block.nfe_forward == field.calls == 16
    assert block.nfe_backward is None  # replayed autograd graph: not measured, never 0


@pytest.mark.parametrize("name", RULE_NAMES)
@pytest.mark.parametrize("seminorm", [False, True])
def test_adjoint_gradients_match_direct_backprop(name, seminorm):
    torch.manual_seed(2)
    kwargs = dict(dim=2, hidden_size=6, rule=make_rule(name), m0="learned", rtol=1e-9, atol=1e-9)
    direct = ODEBlock(adjoint=False, **kwargs).double()
    adjoint = ODEBlock(adjoint=True, seminorm=seminorm, **kwargs).double()
    adjoint.load_state_dict(direct.state_dict())
    h0 = torch.randn(5, 2, dtype=torch.float64)
    target = torch.randn(5, 2, dtype=torch.float64)
    for block in (direct, adjoint):
        (block(h0) - target).square().sum().backward()
    assert adjoint.nfe_backward > 0 and direct.nfe_backward is None
    for (pname, p), q in zip(direct.named_parameters(), adjoint.parameters(), strict=True):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-5, atol=1e-7, msg=lambda m, pname=pname: f"{pname}: {m}")


def test_seminorm_drops_parameter_adjoints_from_error_control():
    torch.manual_seed(3)
    plain = ODEBlock(dim=2, rule=ode_rules.HeavyBall()).double()
    semi = ODEBlock(dim=2, rule=ode_rules.HeavyBall(), seminorm=True).double()
    semi.load_state_dict(plain.state_dict())
    h0 = torch.randn(16, 2, dtype=torch.float64)
    for block in (plain, semi):
        block(h0).square().sum().backward()
    assert semi.nfe_forward == plain.nfe_forward
    assert 0 < semi.nfe_backward < plain.nfe_backward


def test_max_nfe_raises_in_forward_and_backward():
    with pytest.raises(NFEBudgetExceeded, match="max_nfe=5"):
        ODEBlock(dim=2, max_nfe=5)(torch.randn(4, 2))
    torch.manual_seed(4)
    free = ODEBlock(dim=2, max_nfe=0).double()
    h0 = torch.randn(16, 2, dtype=torch.float64)
    free(h0).square().sum().backward()
    assert free.nfe_backward > free.nfe_forward  # parameter adjoints make the backward solve longer
    tight = ODEBlock(dim=2, max_nfe=free.nfe_forward).double()
    tight.load_state_dict(free.state_dict())
    y = tight(h0)  # the forward solve fits the budget exactly
    with pytest.raises(NFEBudgetExceeded, match=f"max_nfe={free.nfe_forward}: one adjoint backward"):
        y.square().sum().backward()


def test_max_nfe_is_per_solve_in_the_ode_rnn():
    x = torch.randn(2, 5, 3)
    kwargs = dict(solver="rk4", options={"step_size": 0.25}, adjoint=False)
    rnn = ODERNN(3, 4, max_nfe=16, **kwargs)
    rnn(x)
    assert rnn.nfe_forward == 4 * 16  # four gaps, 4 steps of 4 evaluations each
    with pytest.raises(NFEBudgetExceeded, match="max_nfe=15"):
        ODERNN(3, 4, max_nfe=15, **kwargs)(x)


# ---------------------------------------------------------------- ODE block options


@pytest.mark.parametrize("name", RULE_NAMES)
@pytest.mark.parametrize("m0", ["zero", "learned"])
def test_block_shapes_augment_and_m0(name, m0):
    block = ODEBlock(dim=3, augment=2, rule=make_rule(name), m0=m0, hidden_size=8, depth=1, activation="elu")
    y = block(torch.randn(4, 3))
    assert y.shape == (4, 5) and block.output_size == 5
    y.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in block.parameters())


def test_learned_m0_starts_at_zero_momentum():
    zero = ODEBlock(dim=2, rule=ode_rules.HeavyBall(), m0="zero")
    learned = ODEBlock(dim=2, rule=ode_rules.HeavyBall(), m0="learned")
    learned.load_state_dict(zero.state_dict(), strict=False)
    h0 = torch.randn(4, 2)
    torch.testing.assert_close(learned(h0), zero(h0))
    learned(h0).square().sum().backward()
    grads = [p.grad for n, p in learned.named_parameters() if "m0_net" in n]
    assert grads and any(g.abs().sum() > 0 for g in grads)


def test_block_defaults_match_catalog():
    for cls in (ODEBlock, ODERNN):
        for pname, param in inspect.signature(cls).parameters.items():
            if pname in catalog.ode.PARAMS:
                assert param.default == catalog.ode.PARAMS[pname].default, (cls.__name__, pname)


# ---------------------------------------------------------------- ODE-RNN


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("name", RULE_NAMES)
def test_ode_rnn_shapes_and_gradients(cell, name):
    rnn = ODERNN(3, 4, cell=cell, rule=make_rule(name), hidden_size=6, m0="learned")
    x = torch.randn(2, 5, 3)
    times = torch.rand(2, 5).cumsum(1)
    out = rnn(x, times)
    assert out.shape == (2, 5, 4) and rnn.output_size == 4
    assert rnn.nfe_forward > 0
    out.square().sum().backward()
    assert rnn.nfe_backward > 0
    for pname, p in rnn.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
        if "m0_net.0" not in pname:  # the learned m0 starts at 0, so its first layer starts without gradient
            assert p.grad.abs().sum() > 0, pname


def test_ode_rnn_times_forms_agree():
    rnn = ODERNN(3, 4, rule=ode_rules.HeavyBall()).double()
    x = torch.randn(3, 6, 3, dtype=torch.float64)
    unit = rnn(x)
    torch.testing.assert_close(rnn(x, torch.arange(6.0)), unit)
    torch.testing.assert_close(rnn(x, torch.arange(6.0).expand(3, 6) + 10.0), unit)  # only gaps matter
    assert unit.shape == (3, 6, 4)


@pytest.mark.parametrize("name", RULE_NAMES)
def test_ode_rnn_irregular_times_match_a_real_time_reference(name):
    torch.manual_seed(5)
    B, T, I, S = 3, 4, 2, 3
    rule = make_rule(name)
    field = field_mlp(S)
    rnn = ODERNN(I, S, cell="lstm", rule=rule, field=field, rtol=1e-9, atol=1e-9).double()
    x = torch.randn(B, T, I, dtype=torch.float64)
    times = (torch.rand(B, T, dtype=torch.float64) + 0.1).cumsum(1)  # (B, T), different gaps per row
    out = rnn(x, times)
    with torch.no_grad():
        for b in range(B):
            def derivative(t, state):
                h, m, v = list(state) + [None] * (3 - len(state))
                return tuple(d for d in natural_derivative(rule, field, t, h, m, v) if d is not None)

            h, c = rnn.cell(x[b : b + 1, 0], (torch.zeros(1, S, dtype=torch.float64),) * 2)
            state = (h, torch.zeros_like(h), torch.zeros_like(h))[: rule.components]
            expected = [h]
            for i in range(1, T):
                span = torch.stack((times[b, i - 1], times[b, i])) - times[b, 0]  # time since the first one
                R = rule.params().get("restart_every", 0.0)
                jumps = [k * R for k in range(1, 100) if R > 0 and span[0] < k * R < span[1]]
                options = {"jump_t": torch.tensor(jumps, dtype=torch.float64)} if jumps else None
                state = tuple(s[-1] for s in odeint(derivative, state, span, rtol=1e-10, atol=1e-10,
                                                    options=options))
                h, c = rnn.cell(x[b : b + 1, i], (state[0], c))
                state = (h,) + state[1:]
                expected.append(h)
            torch.testing.assert_close(out[b], torch.cat(expected), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("restart_every", [0.0, 1.0])
def test_ode_rnn_per_row_times_are_independent_with_a_fixed_grid(restart_every):
    rule = ode_rules.NesterovRestart(restart_every=restart_every)
    rnn = ODERNN(2, 3, rule=rule, solver="rk4", options={"step_size": 0.5}).double()
    x = torch.randn(2, 5, 2, dtype=torch.float64)
    times = torch.tensor([[0.0, 0.5, 2.0, 2.1, 4.0], [1.0, 1.2, 1.3, 3.0, 3.5]], dtype=torch.float64)
    both = rnn(x, times)
    for b in range(2):
        torch.testing.assert_close(both[b], rnn(x[b : b + 1], times[b])[0], rtol=1e-12, atol=1e-12)


@pytest.mark.slow
@pytest.mark.parametrize("solver,options,tol", [("rk4", {"step_size": 0.05}, 1e-12), ("dopri5", None, 1e-7)])
def test_ode_rnn_rows_restart_on_their_own_clocks(solver, options, tol):
    torch.manual_seed(6)
    rnn = ODERNN(2, 3, rule=ode_rules.NesterovRestart(restart_every=0.7), solver=solver, options=options,
                 rtol=1e-10, atol=1e-10, m0="learned").double()
    with torch.no_grad():
        rnn.flow.m0_net[-1].weight.normal_()  # a non-zero h'(0)
    x = torch.randn(3, 5, 2, dtype=torch.float64)
    times = torch.tensor([[0.0, 0.5, 2.0, 2.1, 4.0], [1.0, 1.2, 1.3, 3.0, 3.5], [0.0, 0.7, 1.4, 2.8, 3.5]],
                         dtype=torch.float64)  # row 3 restarts on its observations
    both = rnn(x, times)
    for b in range(3):
        torch.testing.assert_close(both[b], rnn(x[b : b + 1], times[b])[0], rtol=tol, atol=tol)


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(solver="dorpi5"), r"unknown solver 'dorpi5' \(did you mean 'dopri5'\?\); valid: dopri8, dopri5, bosh3"),
        (dict(rtol=0.0), "rtol=0.0"),
        (dict(atol=-1e-3), "atol=-0.001"),
        (dict(rule=discrete_rules.HeavyBall()), "rule=HeavyBall.*not a continuous-time rule"),
        (dict(rule="heavy_ball"), "rule='heavy_ball'"),
        (dict(m0="random"), "unknown m0 'random'"),
        (dict(activation="gelu"), "unknown activation"),
        (dict(t1=0.0), "t1=0.0"),
        (dict(augment=-1), "augment=-1"),
        (dict(max_nfe=-1), "max_nfe=-1"),
        (dict(depth=0), "depth=0"),
        (dict(solver="rk4", options={"step_sise": 0.1}), "options=.*step_sise.*rk4"),
        (dict(solver="rk4", options={"step_size": 0.0}), "options: step_size=0.0"),
        (dict(options=[("step_size", 0.1)]), "options=.*must be a dict"),
    ],
)
def test_bad_block_arguments(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        ODEBlock(dim=2, **kwargs)


def test_bad_shapes_and_times():
    with pytest.raises(ConfigError, match=r"h0: expected shape \(B, 2\), got \(4, 3\)"):
        ODEBlock(dim=2)(torch.randn(4, 3))
    with pytest.raises(ConfigError, match="dim=0"):
        ODEBlock(dim=0)
    rnn = ODERNN(3, 4)
    with pytest.raises(ConfigError, match=r"x: expected shape \(B, T >= 1, 3\), got \(2, 3\)"):
        rnn(torch.randn(2, 3))
    with pytest.raises(ConfigError, match=r"times: expected shape \(2, 5\) or \(5,\)"):
        rnn(torch.randn(2, 5, 3), torch.arange(4.0))
    with pytest.raises(ConfigError, match="times: must be non-decreasing"):
        rnn(torch.randn(2, 5, 3), torch.tensor([0.0, 1.0, 0.5, 2.0, 3.0]))
    with pytest.raises(ConfigError, match="unknown cell 'rnn'"):
        ODERNN(3, 4, cell="rnn")


# ---------------------------------------------------------------- build


@pytest.mark.parametrize("name", RULE_NAMES)
def test_build_makes_ode_models(name):
    static = build_block_model("ode", {"hidden_size": 8}, name, {}, 2, 2, input="static", target="static")
    assert static(torch.randn(5, 2)).shape == (5, 2)
    seq = build_block_model("ode", {"rnn_hidden_size": 6, "solver": "rk4", "step_size": 0.5}, name, {}, 3, 4,
                            input="sequence", target="every")
    assert seq(torch.randn(2, 5, 3), torch.rand(2, 5).cumsum(1)).shape == (2, 5, 4)


# ---------------------------------------------------------------- the published methods, step by step


def rk4_38(derivative, state, t0, dt, steps):
    """torchdiffeq's ``rk4`` (the 3/8 rule) written out: ``steps`` steps of ``dt`` from t0 on a tuple state."""
    t = t0
    for _ in range(steps):
        add = lambda y, *terms: tuple(a + dt * sum(c * k[i] for c, k in terms) for i, a in enumerate(y))  # noqa: E731
        k1 = derivative(t, state)
        k2 = derivative(t + dt / 3, add(state, (1 / 3, k1)))
        k3 = derivative(t + 2 * dt / 3, add(state, (1.0, k2), (-1 / 3, k1)))
        k4 = derivative(t + dt, add(state, (1.0, k1), (-1.0, k2), (1.0, k3)))
        state = add(state, (1 / 8, k1), (3 / 8, k2), (3 / 8, k3), (1 / 8, k4))
        t = t + dt
    return state


def test_authors_initial_values_are_the_defaults(float64):
    assert ode_rules.HeavyBall().gamma_init == ode_rules.GeneralizedHeavyBall().gamma_init == 1 / (1 + math.exp(3))
    assert ode_rules.GeneralizedHeavyBall().xi_init == math.log1p(math.exp(2))
    adam = ode_rules.Adam()
    assert adam.beta1_init == adam.beta2_init == 1 / (1 + math.exp(-3))
    assert (adam.eps, adam.normalizer) == (1e-8, "sigmoid")
    hb = ode_rules.GeneralizedHeavyBall().dynamics(field_mlp())
    assert hb.theta.item() == -3.0 and hb.c.item() == 2.0  # HBNODE's theta_0, GHBNODE's (MNIST) c_0
    logits = ode_rules.Adam().dynamics(field_mlp())
    for p in (logits.beta1_logit, logits.beta2_logit):
        assert abs(p.item() - 3.0) < 1e-14  # AdamNODE's (CIFAR) beta_1 = beta_2 = 3


@pytest.mark.parametrize("name", ["heavy_ball", "generalized_heavy_ball", "adam"])
def test_learnable_scalars_take_the_blocks_dtype_exactly(name):
    rule = make_rule(name)
    block = ODEBlock(dim=3, rule=rule)  # built in float32
    own = {n: p for n, p in block.flow.dynamics.named_parameters() if "." not in n}
    assert own and all(p.dtype == torch.float32 for p in own.values())
    with torch.no_grad():
        trained = next(iter(own))
        own[trained].add_(0.25)  # a trained value is converted, not reset
    before = {n: p.item() for n, p in own.items()}
    block.double()
    exact = {"theta": ode_rules._logit(rule.params().get("gamma_init", 0.5)),
             "c": ode_rules._inverse_softplus(rule.params().get("xi_init", 1.0)),
             "beta1_logit": ode_rules._logit(rule.params().get("beta1_init", 0.5)),
             "beta2_logit": ode_rules._logit(rule.params().get("beta2_init", 0.5))}
    for n, p in block.flow.dynamics.named_parameters():
        if "." in n:
            continue
        assert p.dtype == torch.float64
        assert p.item() == (before[n] if n == trained else exact[n]), n
        if n != trained:
            assert p.item() != float(torch.tensor(exact[n], dtype=torch.float32))  # not the float32 rounding


@pytest.mark.parametrize("restart_every", [0.0, 0.5])
def test_nesterov_node_is_the_papers_system_step_by_step(restart_every, float64):
    torch.manual_seed(7)
    f = field_mlp(3)
    h0 = torch.randn(4, 3)
    block = ODEBlock(dim=3, rule=ode_rules.NesterovRestart(restart_every=restart_every), field=f, solver="rk4",
                     options={"step_size": 0.05}, adjoint=False)

    def paper(t, state):  # x' = m ; m' = -m + f(x / k(tau)), tau = 1 + t (t: time since the restart)
        x, m = state
        return m, -m + f(x / nesterov_k(torch.tensor(1 + t))[0])

    k1, dk1 = nesterov_k(torch.tensor(1.0))
    x, m = k1 * h0, dk1 * h0  # h(1) = h0, h'(1) = 0
    if restart_every == 0:
        x, m = rk4_38(paper, (x, m), 0.0, 0.05, 20)
        expected = x / nesterov_k(torch.tensor(2.0))[0]  # read-out h = x / k(tau) at tau = 2
    else:
        x, m = rk4_38(paper, (x, m), 0.0, 0.05, 10)
        k, dk = nesterov_k(torch.tensor(1.5))  # the clock restarts at t = 0.5: h, h' carried over
        h = x / k
        dh = (m - dk * h) / k
        x, m = rk4_38(paper, (k1 * h, dk1 * h + k1 * dh), 0.0, 0.05, 10)
        expected = x / k
    torch.testing.assert_close(block(h0), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("restart_every", [0.0, 0.3])
def test_nesterov_node_solves_the_second_order_equation(restart_every, float64):
    """h'' + (3/tau)h' + (3/(4tau²) - 1/4)h = tau^(-3/2)e^(tau/2)f(h), h and h' continuous at restarts."""
    torch.manual_seed(8)
    f = field_mlp(3)
    rule = ode_rules.NesterovRestart(restart_every=restart_every)
    block = ODEBlock(dim=3, t1=1.0, rule=rule, field=f, rtol=1e-11, atol=1e-11, m0="learned")
    with torch.no_grad():
        block.flow.m0_net[-1].weight.normal_()  # h'(0) = m0(h0), not 0
    h0 = torch.randn(4, 3)
    jumps = {"jump_t": torch.tensor([0.3, 0.6, 0.9])} if restart_every else None
    second = lambda t, s: natural_derivative(rule, f, t, s[0], s[1], None)[:2]  # noqa: E731
    with torch.no_grad():
        state = (h0, block.flow.m0_net(h0))
    h = odeint(second, state, torch.tensor([0.0, 1.0]), rtol=1e-11, atol=1e-11, options=jumps)[0][-1]
    torch.testing.assert_close(block(h0), h, rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("normalizer", ["sigmoid", "softplus", "identity"])
def test_adam_node_is_the_authors_code_step_by_step(normalizer, float64):
    """The authors' AdamNODE.forward (cifar10/models.py) in their variables: m_ref = -m, the same field f."""
    torch.manual_seed(9)
    f = field_mlp(3)
    h0 = torch.randn(4, 3)
    block = ODEBlock(dim=3, rule=ode_rules.Adam(normalizer=normalizer), field=f, solver="rk4",
                     options={"step_size": 0.05}, adjoint=False)
    act = {"sigmoid": torch.sigmoid, "softplus": nn.functional.softplus, "identity": lambda v: v}[normalizer]
    beta_1 = beta_2 = torch.tensor(3.0)  # the authors' --beta_1 / --beta_2 defaults

    def authors(t, state):
        theta, m, v = state
        dtheta = -m / (torch.sqrt(act(v)) + 1e-8)
        df = f(theta)
        return dtheta, torch.sigmoid(beta_1) * (-df - m), torch.sigmoid(beta_2) * (df**2 - v)

    zero = torch.zeros_like(h0)
    if normalizer == "identity":  # sqrt(v) at v = 0 has no first stage to speak of: start v above 0
        block = ODEBlock(dim=3, rule=ode_rules.Adam(normalizer=normalizer), field=f, solver="rk4",
                         options={"step_size": 0.05}, adjoint=False, m0="learned")
        with torch.no_grad():
            block.flow.m0_net[-1].bias.fill_(0.5)  # m0 = 0.5, v0 = m0² (the authors' initial velocity)
        state = (h0, -0.5 + zero, 0.25 + zero)
    else:
        state = (h0, zero, zero)
    theta, _, _ = rk4_38(authors, state, 0.0, 0.05, 20)
    torch.testing.assert_close(block(h0), theta, rtol=1e-12, atol=1e-12)


def test_adam_gain_is_bounded_by_the_normalizer(float64):
    """n = sigmoid keeps the gain 1 / (sqrt(n(v)) + eps) in (1 - eps, sqrt(2)] for v >= 0 (never 1/eps)."""
    dynamics = ode_rules.Adam().dynamics(field_mlp())
    m = torch.ones(2, 3)
    gains = []
    for v in (0.0, 0.5, 5.0, 1e6):
        z = torch.stack((torch.zeros(2, 3), m, torch.full((2, 3), v)), 1)
        gains.append(dynamics(torch.tensor(0.0), z)[:, 0])
    gains = torch.stack(gains)
    assert ((gains > 1 - 1e-8) & (gains <= 2**0.5)).all()
    torch.testing.assert_close(gains[0], torch.full((2, 3), 1 / (0.5**0.5 + 1e-8)))


@pytest.mark.parametrize("name", ["nesterov_restart", "adam"])
def test_gradcheck_of_the_new_dynamics(name, float64):
    torch.manual_seed(10)
    rules = [make_rule(name)]
    if name == "adam":
        rules += [make_rule(name, normalizer=n) for n in ("sigmoid", "identity")]
    for rule in rules:
        dynamics = rule.dynamics(field_mlp(3))
        names = [n for n, _ in dynamics.named_parameters() if "." not in n]
        z = torch.rand(2, rule.components, 3, requires_grad=True) + 0.1  # v > 0
        t = torch.rand(2, 1) * 0.5

        def fn(z, *scalars, dynamics=dynamics, names=names, t=t):
            params = dict(zip(names, scalars, strict=True))
            out = torch.func.functional_call(dynamics, params, (t, z))
            out = out + dynamics.enter(t, z) + dynamics.leave(t, z)
            if hasattr(dynamics, "natural"):  # NesterovNODE's second-order form, used by the ODE-RNN
                out = out + dynamics.natural(t, z)
            return out

        scalars = [p.detach().clone().requires_grad_() for n, p in dynamics.named_parameters() if n in names]
        assert torch.autograd.gradcheck(fn, (z, *scalars))


def test_gradcheck_through_a_restarting_block(float64):
    torch.manual_seed(11)
    block = ODEBlock(dim=2, rule=ode_rules.NesterovRestart(restart_every=0.4), hidden_size=4, solver="rk4",
                     options={"step_size": 0.1}, adjoint=False)
    h0 = torch.randn(3, 2, requires_grad=True)
    assert torch.autograd.gradcheck(block, (h0,))


@pytest.mark.parametrize("restart_every", [0.33, 0.5])
def test_rk4_keeps_fourth_order_across_restarts(restart_every, float64):
    torch.manual_seed(12)
    f = field_mlp(3)
    h0 = torch.randn(4, 3)
    rule = ode_rules.NesterovRestart(restart_every=restart_every)
    exact = ODEBlock(dim=3, t1=1.0, rule=rule, field=f, rtol=1e-12, atol=1e-12)(h0)
    errors = []
    for dt in (0.05, 0.025):
        block = ODEBlock(dim=3, t1=1.0, rule=rule, field=f, solver="rk4", options={"step_size": dt})
        errors.append((block(h0) - exact).abs().max().item())
    assert errors[1] < 1e-8
    assert 12 < errors[0] / errors[1] < 20  # 2^4 = 16: fourth order; a clock switch inside a step gives 2


# ---------------------------------------------------------------- time-dependent fields


class RecordingTimeField(nn.Module):
    """f(h, t) = tanh(h) · t, recording every t it is called with."""

    time_input = True

    def __init__(self):
        super().__init__()
        self.seen = []

    def forward(self, h, t):
        assert t.shape == (h.shape[0], 1)
        self.seen.append(t.detach().clone())
        return torch.tanh(h) * t


@pytest.mark.parametrize("name", RULE_NAMES)
def test_time_input_feeds_t_or_tau(name, float64):
    field = RecordingTimeField()
    block = ODEBlock(dim=2, t1=1.0, rule=make_rule(name), field=field, adjoint=False, solver="rk4",
                     options={"step_size": 0.1})  # a fixed grid never steps past the end
    block(torch.randn(3, 2))
    seen = torch.cat(field.seen)
    low, high = (1.0, 1.0 + TEST_PARAMS[name]["restart_every"]) if name == "nesterov_restart" else (0.0, 1.0)
    assert seen.min() == low and seen.max() == pytest.approx(high)


def test_time_input_mlp_is_f_of_h_and_t(float64):
    torch.manual_seed(13)
    block = ODEBlock(dim=2, hidden_size=5, time_input=True, rtol=1e-11, atol=1e-11)
    mlp = block.flow.dynamics.field
    assert mlp[0].in_features == 3 and mlp[-1].out_features == 2
    h0 = torch.randn(4, 2)
    layers = list(mlp)

    def reference(t, h):
        out = torch.cat((h, t.expand(h.shape[0], 1)), 1)  # (B, 3)
        for layer in layers:
            out = layer(out)
        return out

    with torch.no_grad():
        expected = odeint(reference, h0, torch.tensor([0.0, 1.0]), rtol=1e-11, atol=1e-11)[-1]
    torch.testing.assert_close(block(h0), expected, rtol=1e-8, atol=1e-8)
    assert ODEBlock(dim=2, hidden_size=5).flow.dynamics.field[0].in_features == 2  # off by default


def test_time_input_through_the_catalog_and_builder():
    assert catalog.ode.PARAMS["time_input"].default is False
    model = build_block_model("ode", {"hidden_size": 8, "time_input": True}, "nesterov_restart", {}, 2, 2,
                              input="static", target="static")
    assert model.block.flow.dynamics.field.time_input and model.block.flow.dynamics.field[0].in_features == 3
    assert model(torch.randn(5, 2)).shape == (5, 2)
    with pytest.raises(ConfigError, match="time_input"):
        ODEBlock(dim=2, time_input="yes")


def test_adam_normalizer_is_checked():
    with pytest.raises(ConfigError, match=r"normalizer 'sigmod' \(did you mean 'sigmoid'\?\)"):
        ode_rules.Adam(normalizer="sigmod")
    assert catalog.ode.RULES["adam"]["normalizer"].choices == ("sigmoid", "softplus", "identity")


@pytest.mark.slow
def test_export_round_trip_of_the_new_parameters(tmp_path):
    from momsearch.standalone import verify_many, write_export

    cases = [
        ({"block.ode.rule": "adam", "block.ode.rule.adam.normalizer": "identity", "block.ode.rule.adam.eps": 1e-6,
          "block.ode.rule.adam.beta1_init": 0.7, "block.ode.m0": "learned", "block.ode.time_input": True}, "static"),
        ({"block.ode.rule": "nesterov_restart", "block.ode.rule.nesterov_restart.restart_every": 0.3,
          "block.ode.time_input": True}, "static"),
        ({"block.ode.rule": "adam", "block.ode.rule.adam.normalizer": "softplus", "block.ode.solver": "rk4",
          "block.ode.step_size": 0.25}, "sequence"),
        ({"block.ode.rule": "nesterov_restart", "block.ode.rule.nesterov_restart.restart_every": 0.4,
          "block.ode.time_input": True}, "sequence"),
    ]
    checks = []
    for i, (config, kind) in enumerate(cases):
        config = {"block": "ode", "block.ode.hidden_size": 4, "block.ode.rnn_hidden_size": 3, **config}
        io = ({"input_size": 2, "output_size": 2, "input": "static", "target": "static"} if kind == "static" else
              {"input_size": 2, "output_size": 2, "input": "sequence", "target": "last", "times": True})
        torch.manual_seed(i)
        model = build(config, io["input_size"], io["output_size"], input=io["input"], target=io["target"])
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.05 * torch.randn_like(p))
        directory = write_export(tmp_path / f"case{i}", config, io, model.state_dict(), {"study": "demo", "trial": i})
        text = (directory / "cell.py").read_text()
        assert "time_input" in text and ("normalizer" in text or "restart_every" in text)
        checks.append((directory, model, io))
    problems, refused = verify_many(checks, dtype=torch.float64)
    assert refused and problems == [None] * len(cases)


@pytest.mark.parametrize("normalizer", ["sigmoid", "softplus", "identity"])
def test_adam_root_has_finite_gradients_where_the_normalizer_underflows(normalizer):
    """An adjoint backward solve reconstructs v and can overshoot far below 0, where sigmoid(v) is 0."""
    dynamics = ode_rules.Adam(normalizer=normalizer).dynamics(field_mlp(3).float())
    z = torch.stack((torch.randn(2, 3), torch.zeros(2, 3), torch.full((2, 3), -1e4)), 1).requires_grad_()
    dynamics(torch.tensor(0.0), z).sum().backward()
    assert torch.isfinite(z.grad).all()

    assert all(torch.isfinite(p.grad).all() for p in dynamics.parameters())


def test_nesterov_adjoint_never_evaluates_before_the_start(float64):
    """tau = 1 + t must stay >= 1: torchdiffeq's backward solve would otherwise step past t = 0 (tau <= 0: NaN)."""
    torch.manual_seed(14)
    field = RecordingTimeField()
    block = ODEBlock(dim=2, rule=ode_rules.NesterovRestart(restart_every=0.0), field=field, adjoint=True)
    block(torch.randn(8, 2, requires_grad=True)).square().sum().backward()
    assert block.nfe_backward > 0
    assert torch.cat(field.seen).min() >= 1.0
