"""The standalone writer over the whole catalog: every block kind x cell x rule round-trips without momsearch.

No study is needed: models are built from configurations with random weights, exported, and all checked
in ONE isolated interpreter (``python -I`` plus a finder refusing momsearch) against the in-process model
in float64 (tolerance 1e-10).
"""

from __future__ import annotations

import ast
import itertools
import sys

import pytest
import torch
import yaml

from momsearch import catalog
from momsearch.builder import build
from momsearch.errors import ExportError
from momsearch.standalone import verify, verify_many, write_export
from momsearch.standalone.source import collect

RESIDUALS = catalog.BLOCKS["attention"]["params"]["residual"].choices
TARGETS = ("last", "every")


def _cases() -> list[tuple[str, dict, dict]]:
    """(id, config, io) for every kind x cell x rule of the catalog, with tiny sizes.

    Inputs, targets and the attention residual modes rotate over the cases so that each appears.
    """
    cases = []
    rnn = catalog.BLOCKS["rnn"]
    for i, (cell, rule) in enumerate(itertools.product(rnn["params"]["cell"].choices, rnn["rules"])):
        config = {"block": "rnn", "block.rnn.cell": cell, "block.rnn.rule": rule, "block.rnn.hidden_size": 4,
                  "block.rnn.num_layers": 1 + i % 2}
        io = {"input_size": 3, "output_size": 2, "input": ("sequence", "tokens")[i % 2], "target": TARGETS[i // 2 % 2]}
        cases.append((f"rnn-{cell}-{rule}", config, io))
    for i, rule in enumerate(catalog.BLOCKS["ode"]["rules"]):
        base = {"block": "ode", "block.ode.rule": rule, "block.ode.hidden_size": 4, "block.ode.rnn_hidden_size": 3}
        static = {**base, "block.ode.augment": i % 2, "block.ode.m0": ("zero", "learned")[i % 2]}
        cases.append((f"ode-static-{rule}", static,
                      {"input_size": 2, "output_size": 2, "input": "static", "target": "static"}))
        seq = {**base, "block.ode.cell": ("gru", "lstm", "tanh")[i % 3],
               "block.ode.solver": ("dopri5", "rk4")[i % 2]}
        cases.append((f"ode-sequence-{rule}", seq,
                      {"input_size": 2, "output_size": 2, "input": "sequence", "target": "last", "times": True}))
    attention = catalog.BLOCKS["attention"]
    for kind in attention["params"]["kind"].choices:
        for rule in catalog.allowed_rules("attention", {"kind": kind}):
            for j, residual in enumerate(RESIDUALS):
                config = {"block": "attention", "block.attention.kind": kind, "block.attention.rule": rule,
                          "block.attention.d_model": 4, "block.attention.ffn": 8, "block.attention.chunk_size": 4,
                          "block.attention.causal": j != 1, "block.attention.residual": residual}
                io = {"input_size": 3, "output_size": 2, "input": ("sequence", "tokens")[j % 2],
                      "target": TARGETS[j % 2]}
                cases.append((f"attention-{kind}-{rule}-{residual}", config, io))
    return cases


CASES = _cases()


def _exported(tmp_path, cases):
    checks = []
    for name, config, io in cases:
        torch.manual_seed(0)
        model = build(config, io["input_size"], io["output_size"], input=io["input"], target=io["target"])
        with torch.no_grad():  # move every weight off its initial value so a skipped parameter shows
            for p in model.parameters():
                p.add_(0.05 * torch.randn_like(p))
        directory = write_export(tmp_path / name, config, io, model.state_dict(),
                                 {"study": "demo", "trial": 7, "metrics": {"accuracy": 0.5, "params": 10}})
        checks.append((directory, model, io))
    return checks


def test_catalog_covers_every_kind_cell_and_rule():
    names = {c[0] for c in CASES}
    for kind, entry in catalog.BLOCKS.items():
        for rule in entry["rules"]:
            assert any(n.startswith(f"{kind}-") and f"-{rule}" in n for n in names), (kind, rule)
    for cell in catalog.BLOCKS["rnn"]["params"]["cell"].choices:
        assert any(n.startswith(f"rnn-{cell}-") for n in names)
    assert {n.rsplit("-", 1)[1] for n in names if n.startswith("attention")} == set(RESIDUALS)


def test_every_catalog_combination_round_trips_without_momsearch(tmp_path):
    checks = _exported(tmp_path, CASES)
    problems, refused = verify_many(checks, dtype=torch.float64)
    assert refused, "import momsearch must fail in the isolated interpreter"
    failed = {name: p for (name, _, _), p in zip(CASES, problems, strict=True) if p is not None}
    assert not failed


def test_exported_module_imports_only_torch_torchdiffeq_and_the_standard_library(tmp_path):
    allowed = set(sys.stdlib_module_names) | {"torch", "torchdiffeq"}
    kinds = {}
    for name, config, io in CASES:
        kinds.setdefault(name.split("-")[0] + str(io["input"] == "static"), (name, config, io))
    for (_, config, io), (directory, _, _) in zip(kinds.values(), _exported(tmp_path, kinds.values()), strict=True):
        text = (directory / "cell.py").read_text()
        tree = ast.parse(text)
        imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        assert {m.split(".")[0] for m in imported} <= allowed, imported
        assert "torchdiffeq" in imported or "ode" not in directory.name
        doc = ast.get_docstring(tree)
        assert "trial 7 of study 'demo'" in doc and "accuracy: 0.5" in doc and "Usage" in doc
        assert "weights_only=True" in doc
        model_class = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Model")
        init = next(n for n in model_class.body if isinstance(n, ast.FunctionDef) and n.name == "__init__")
        defaults = {a.arg: ast.literal_eval(d) for a, d in zip(init.args.args[1:], init.args.defaults, strict=True)}
        assert defaults["rule"] == config[f"block.{config['block']}.rule"]
        assert defaults["output_size"] == io["output_size"]
        spec = yaml.safe_load((directory / "spec.yaml").read_text())
        assert spec["resolved"]["block"]["kind"] == config["block"] and spec["trial"] == 7
        assert spec["versions"]["torch"] == str(torch.__version__)
        assert torch.load(directory / "weights.pt", weights_only=True).keys()


def test_float32_round_trip_and_a_wrong_weight_is_caught(tmp_path):
    name, config, io = next(c for c in CASES if c[0] == "rnn-lstm-heavy_ball")
    ((directory, model, _),) = _exported(tmp_path, [(name, config, io)])
    verify(directory, model, io)  # float32, tolerance 1e-5
    with torch.no_grad():
        model.output_head.bias.add_(1e-3)
    with pytest.raises(ExportError, match="max abs difference"):
        verify(directory, model, io)


def test_collect_refuses_unknown_names():
    with pytest.raises(ExportError, match="not a top-level definition"):
        collect([("momsearch.blocks._rnn_core", "NoSuchThing")])
