"""The one place where names become classes: a resolved configuration -> a trainable model.

``build(config, input_size, output_size)`` accepts the dotted-name dict that ``space.suggest(trial)``
returns (or one written by hand; missing parameters take the catalog defaults).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from . import catalog
from .errors import NotAvailableError
from .model import Model, SinusoidalPositions
from .rules import make as make_rule


def build(config: Mapping[str, Any], input_size: int, output_size: int, *, input: str = "sequence",
          target: str = "last") -> Model:
    """Build the model a configuration describes: input head, block with its rule, output head.

    Args:
        config: dotted names -> values, e.g. ``{"block": "rnn", "block.rnn.cell": "lstm", ...}``.
        input_size: features per step (``sequence``/``static``) or vocabulary size (``tokens``).
        output_size: classes or regression targets.
        input: ``sequence`` (B, T, I), ``tokens`` (B, T) or ``static`` (B, I).
        target: ``last``, ``every`` or ``static``.

    Returns:
        A :class:`~momsearch.model.Model`.
    """
    from .spec import resolve

    block = resolve(config)["block"]
    return build_block_model(block["kind"], block["params"], block["rule"]["name"], block["rule"]["params"],
                             input_size, output_size, input=input, target=target)


def build_block_model(kind: str, params: Mapping[str, Any], rule: str, rule_params: Mapping[str, Any],
                      input_size: int, output_size: int, *, input: str = "sequence",
                      target: str = "last") -> Model:
    """Build a model from an already resolved block: kind, its parameters, the rule and its parameters."""
    entry = catalog.block(kind)
    params = catalog.check_params(f"block {kind}", entry["params"], params)
    rule_obj = make_rule(rule, block=kind, **rule_params)
    builder = _BUILDERS.get(kind)
    if builder is None:
        raise NotAvailableError(f"block kind {kind!r} is not available in this installation")
    return builder(params, rule_obj, input_size, output_size, input, target)


def _embedding_or(head_in: int, width: int, input: str) -> tuple[nn.Module, int]:
    """Token inputs get an embedding of the block's width; real inputs go in unchanged."""
    if input == "tokens":
        return nn.Embedding(head_in, width), width
    return nn.Identity(), head_in


def _rnn(params, rule, input_size, output_size, input, target) -> Model:
    from .blocks import RNN

    head, width = _embedding_or(input_size, params["hidden_size"], input)
    block = RNN(width, params["hidden_size"], cell=params["cell"], rule=rule, num_layers=params["num_layers"],
                dropout=params["dropout"], batch_first=True)
    return Model(block, head, output_size, params["hidden_size"], input=input, target=target)


def _ode_options(params) -> dict:
    fixed = params["solver"] in catalog.ode.FIXED_STEP_SOLVERS
    return {"step_size": params["step_size"]} if fixed else {}


def _ode(params, rule, input_size, output_size, input, target) -> Model:
    from .blocks import ODERNN, ODEBlock

    common = dict(rule=rule, hidden_size=params["hidden_size"], depth=params["depth"],
                  activation=params["activation"], solver=params["solver"], options=_ode_options(params),
                  rtol=params["rtol"], atol=params["atol"], adjoint=params["adjoint"],
                  seminorm=params["seminorm"], m0=params["m0"], max_nfe=params["max_nfe"],
                  time_input=params.get("time_input", False))
    if input == "static":
        block = ODEBlock(dim=input_size, t1=params["t1"], augment=params["augment"], **common)
        return Model(block, nn.Identity(), output_size, block.output_size, input=input, target=target,
                     sequence_block=False)
    head, width = _embedding_or(input_size, params["rnn_hidden_size"], input)
    block = ODERNN(width, params["rnn_hidden_size"], cell=params["cell"], **common)
    return Model(block, head, output_size, block.output_size, input=input, target=target, uses_times=True)


def _attention(params, rule, input_size, output_size, input, target) -> Model:
    from .blocks import TransformerEncoder

    d = params["d_model"]
    embed = nn.Embedding(input_size, d) if input == "tokens" else nn.Linear(input_size, d)
    block = TransformerEncoder(d_model=d, heads=params["heads"], layers=params["layers"], ffn=params["ffn"],
                               kind=params["kind"], rule=rule, causal=params["causal"],
                               residual=params["residual"], residual_mu=params["residual_mu"],
                               residual_s=params["residual_s"], dropout=params["dropout"],
                               chunk_size=params["chunk_size"])
    return Model(block, nn.Sequential(embed, SinusoidalPositions(d)), output_size, d, input=input, target=target)


_BUILDERS = {"rnn": _rnn, "ode": _ode, "attention": _attention}
