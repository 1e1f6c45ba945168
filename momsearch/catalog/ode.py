"""Catalog of the neural-ODE block and its continuous-time rules (NODE, HBNODE, GHBNODE, NesterovNODE, AdamNODE)."""

import math

from .params import Param

SOLVERS = (
    "dopri8", "dopri5", "bosh3", "fehlberg2", "adaptive_heun", "euler", "midpoint", "heun2", "heun3",
    "rk4", "explicit_adams", "implicit_adams", "fixed_adams", "scipy_solver",
)
FIXED_STEP_SOLVERS = (
    "euler", "midpoint", "heun2", "heun3", "rk4", "explicit_adams", "implicit_adams", "fixed_adams",
)

# the authors' initial values: HBNODE/GHBNODE theta_0 = -3, GHBNODE (MNIST) c_0 = 2, AdamNODE (CIFAR) logits 3
GAMMA_INIT = 1.0 / (1.0 + math.exp(3.0))  # sigmoid(-3) ~ 0.0474
XI_INIT = math.log1p(math.exp(2.0))  # softplus(2) ~ 2.127
BETA_INIT = 1.0 / (1.0 + math.exp(-3.0))  # sigmoid(3) ~ 0.953

GAMMA = Param("float", GAMMA_INIT, "initial damping gamma = sigmoid(theta) (authors': sigmoid(-3))", low=0.0,
              high=1.0, low_open=True, high_open=True)

RULES = {
    "plain": {},
    "heavy_ball": {"gamma_init": GAMMA},
    "generalized_heavy_ball": {
        "gamma_init": GAMMA,
        "xi_init": Param("float", XI_INIT, "initial xi = softplus(c) (authors': softplus(2))", low=0.0,
                         low_open=True),
    },
    "nesterov_restart": {
        "restart_every": Param("float", 1.0, "restart the clock every R time units (0: never, the paper; "
                               "restarts are momsearch's extension)", low=0.0),
    },
    "adam": {
        "beta1_init": Param("float", BETA_INIT, "initial beta1 = sigmoid(logit) (authors': sigmoid(3))", low=0.0,
                            high=1.0, low_open=True, high_open=True),
        "beta2_init": Param("float", BETA_INIT, "initial beta2 = sigmoid(logit) (authors': sigmoid(3))", low=0.0,
                            high=1.0, low_open=True, high_open=True),
        "eps": Param("float", 1e-8, "added to the square root (outside it)", low=0.0, low_open=True),
        "normalizer": Param("str", "sigmoid", "n in h' = m / (sqrt(n(v)) + eps): sigmoid (authors' CIFAR), "
                            "softplus (their MNIST), identity (plain Adam)",
                            choices=("sigmoid", "softplus", "identity")),
    },
}

PARAMS = {
    "hidden_size": Param("int", 20, "width of the vector-field MLP", low=1),
    "depth": Param("int", 2, "hidden layers of the vector-field MLP", low=1),
    "activation": Param("str", "tanh", "activation of the vector-field MLP",
                        choices=("tanh", "relu", "softplus", "elu")),
    "solver": Param("str", "dopri5", "torchdiffeq method", choices=SOLVERS),
    "step_size": Param("float", 0.1, "step size of fixed-step solvers", low=0.0, low_open=True),
    "rtol": Param("float", 1e-3, "relative tolerance", low=0.0, low_open=True),
    "atol": Param("float", 1e-3, "absolute tolerance", low=0.0, low_open=True),
    "adjoint": Param("bool", True, "backpropagate with the adjoint method (measures backward NFE)"),
    "seminorm": Param("bool", False, "adjoint error control on the state only (torchdiffeq seminorm)"),
    "t1": Param("float", 1.0, "integration time", low=0.0, low_open=True),
    "augment": Param("int", 0, "extra zero dimensions (ANODE)", low=0),
    "m0": Param("str", "zero", "initial momentum: zero or a learned function of h0", choices=("zero", "learned")),
    "time_input": Param("bool", False, "feed the time t (tau for nesterov_restart) to the field's first layer"),
    "max_nfe": Param("int", 10000, "abort a solve after this many evaluations (0: no limit)", low=0),
    "cell": Param("str", "gru", "jump cell of the ODE-RNN variant on sequence tasks", choices=("tanh", "lstm", "gru")),
    "rnn_hidden_size": Param("int", 32, "hidden units of the ODE-RNN variant on sequence tasks", low=1),
}

BLOCK = {
    "doc": "neural ODE (NODE, HBNODE, GHBNODE, Nesterov, AdamNODE) solved by torchdiffeq; ODE-RNN on sequences",
    "params": PARAMS,
    "rules": RULES,
    "default_rule": "plain",
    "rule_constraints": {},
}
