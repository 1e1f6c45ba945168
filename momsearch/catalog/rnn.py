"""Catalog of the recurrent block: cells, block parameters and the discrete update rules (DESIGN §3.1)."""

from .params import Param

CELLS = ("tanh", "lstm", "gru", "orthogonal")

MU = Param("float", 0.6, "momentum coefficient", low=0.0, high=1.0, high_open=True)
S = Param("float", 0.6, "step size on the driving term", low=0.0, low_open=True)
BETA = Param("float", 0.999, "decay of the squared-drive average", low=0.0, high=1.0, high_open=True)
EPS = Param("float", 1e-16, "added inside the square root", low=0.0, low_open=True)
RESTART = Param("int", 10, "restart the Nesterov counter every R steps (0: never)", low=0)

RULES = {
    "plain": {},
    "heavy_ball": {"mu": MU, "s": S},
    "nesterov_restart": {"s": S, "restart_every": RESTART},
    "adam": {"mu": MU, "s": S, "beta": BETA, "eps": EPS},
    "rmsprop": {"s": S, "beta": BETA, "eps": EPS},
}

PARAMS = {
    "cell": Param("str", "lstm", "recurrent cell", choices=CELLS),
    "hidden_size": Param("int", 64, "hidden units per layer", low=1),
    "num_layers": Param("int", 1, "stacked layers (the rule applies in every layer)", low=1),
    "dropout": Param("float", 0.0, "dropout between layers", low=0.0, high=1.0, high_open=True),
}

BLOCK = {
    "doc": "recurrent network (tanh, LSTM, GRU, orthogonal cells) with a momentum update rule",
    "params": PARAMS,
    "rules": RULES,
    "default_rule": "plain",
    "rule_constraints": {},
}
