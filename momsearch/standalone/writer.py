"""Write a searched model as a standalone ``cell.py`` (torch, and torchdiffeq for ODE blocks), plus its files.

The module holds the library's own block code (collected by :mod:`.source`) behind a generated ``Model``
class whose constructor defaults are the chosen block, cell, rule and hyperparameters, and whose
parameters are named exactly as in the searched model, so its ``state_dict`` loads with ``strict=True``.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import yaml

from ..catalog import ode as ode_catalog
from ..rules import RULES
from ..spec import resolve
from .source import collect, render_body, render_imports

INPUT_SHAPES = {"sequence": "(B, T, I)", "tokens": "(B, T)", "static": "(B, I)"}
# trial attributes that are not metrics
SPEC_SKIP = ("config", "history", "weights_artifact", "weights_sha256", "record_artifact", "rule")


def _arg(name: str, value: Any) -> tuple[str, str, Any]:
    """A constructor argument: name, annotation, default."""
    kind = {bool: "bool", int: "int", float: "float", str: "str"}.get(type(value), "object")
    return name, kind, value


def _rule_args(rule: Mapping[str, Any]) -> list[tuple[str, str, Any]]:
    return [_arg("rule", rule["name"])] + [_arg(k, v) for k, v in rule["params"].items()]


def _rule_call(rule: Mapping[str, Any], cls: str) -> str:
    return f"{cls}(" + ", ".join(["rule", *(f"{k}={k}" for k in rule["params"])]) + ")"


def _discrete_rule(rule: Mapping[str, Any]) -> tuple[list[str], str, tuple[str, str]]:
    """The chosen discrete rule, rebuilt from its own class and declared parameters.

    Returns:
        ``(lines, call, root)``: body lines checking the ``rule`` argument names the embedded class, the
        constructor call with the parameters as keyword arguments, and the class to embed.
    """
    cls = RULES[rule["name"]]
    check = [f"if rule != {cls.__name__}.name:",
             f"    raise ValueError(f\"rule={{rule!r}}: this module embeds only rule {{{cls.__name__}.name!r}}\")"]
    call = f"{cls.__name__}(" + ", ".join(f"{k}={k}" for k in rule["params"]) + ")"
    return check, call, (cls.__module__, cls.__name__)


def _rnn(block, io) -> tuple[list, list[str], list[tuple[str, str]], str]:
    p = block["params"]
    args = [_arg("hidden_size", p["hidden_size"]), _arg("cell", p["cell"]), _arg("num_layers", p["num_layers"]),
            _arg("dropout", p["dropout"]), *_rule_args(block["rule"])]
    tokens = io["input"] == "tokens"
    check, rule_call, rule_root = _discrete_rule(block["rule"])
    body = [
        *check,
        "self.input_head = " + ("nn.Embedding(input_size, hidden_size)" if tokens else "nn.Identity()"),
        f"self.block = RNN({'hidden_size' if tokens else 'input_size'}, hidden_size, cell, "
        f"{rule_call}, num_layers=num_layers, dropout=dropout, batch_first=True)",
        "self.output_head = nn.Linear(hidden_size, output_size)",
    ]
    roots = [("momsearch.blocks._rnn_core", "RNN"), rule_root]
    return args, body, roots, "h, _ = self.block(h)  # (B, T, H)"


def _flow_args(p, rule) -> tuple[list, str]:
    fixed = p["solver"] in ode_catalog.FIXED_STEP_SOLVERS
    args = [*_rule_args(rule), _arg("hidden_size", p["hidden_size"]), _arg("depth", p["depth"]),
            _arg("activation", p["activation"]), _arg("solver", p["solver"])]
    if fixed:
        args.append(_arg("step_size", p["step_size"]))
    args += [_arg(k, p[k]) for k in ("rtol", "atol", "adjoint", "seminorm", "m0")]
    args.append(_arg("time_input", p.get("time_input", False)))
    options = '{"step_size": step_size}' if fixed else "{}"
    call = (f"rule={_rule_call(rule, 'ODERule')}, hidden_size=hidden_size, depth=depth, "
            f"activation=activation, solver=solver, options={options}, "
            "rtol=rtol, atol=atol, adjoint=adjoint, seminorm=seminorm, m0=m0, time_input=time_input")
    return args, call


def _ode(block, io) -> tuple[list, list[str], list[tuple[str, str]], str]:
    p = block["params"]
    flow_args, flow_call = _flow_args(p, block["rule"])
    if io["input"] == "static":
        args = [_arg("t1", p["t1"]), _arg("augment", p["augment"]), *flow_args]
        body = ["self.input_head = nn.Identity()",
                f"self.block = ODEBlock(input_size, t1, augment, {flow_call})",
                "self.output_head = nn.Linear(input_size + augment, output_size)"]
        roots = [("momsearch.blocks._ode_core", "ODEBlock"), ("momsearch.standalone._rule", "ODERule")]
        return args, body, roots, "h = self.block(h)  # (B, n)"
    tokens = io["input"] == "tokens"
    args = [_arg("rnn_hidden_size", p["rnn_hidden_size"]), _arg("cell", p["cell"]), *flow_args]
    body = ["self.input_head = " + ("nn.Embedding(input_size, rnn_hidden_size)" if tokens else "nn.Identity()"),
            f"self.block = ODERNN({'rnn_hidden_size' if tokens else 'input_size'}, rnn_hidden_size, cell, "
            f"{flow_call})",
            "self.output_head = nn.Linear(rnn_hidden_size, output_size)"]
    roots = [("momsearch.blocks._ode_core", "ODERNN"), ("momsearch.standalone._rule", "ODERule")]
    return args, body, roots, "h = self.block(h, times)  # (B, T, S)"


def _attention(block, io) -> tuple[list, list[str], list[tuple[str, str]], str]:
    p = block["params"]
    names = ("d_model", "heads", "layers", "ffn", "kind", "causal", "residual", "residual_mu", "residual_s",
             "dropout", "chunk_size")
    args = [_arg(k, p[k]) for k in names] + _rule_args(block["rule"])
    embed = "nn.Embedding(input_size, d_model)" if io["input"] == "tokens" else "nn.Linear(input_size, d_model)"
    check, rule_call, rule_root = _discrete_rule(block["rule"])
    body = [*check,
            f"self.input_head = nn.Sequential({embed}, SinusoidalPositions(d_model))",
            f"self.block = TransformerEncoder(d_model, heads, layers, ffn, kind, {rule_call}, "
            "causal, residual, residual_mu, residual_s, dropout, chunk_size)",
            "self.output_head = nn.Linear(d_model, output_size)"]
    roots = [("momsearch.blocks._attention_core", "TransformerEncoder"), ("momsearch.model", "SinusoidalPositions"),
             rule_root]
    return args, body, roots, "h = self.block(h)  # (B, T, D)"


_KINDS = {"rnn": _rnn, "ode": _ode, "attention": _attention}


def _signature(args: list[tuple[str, str, Any]]) -> str:
    """``def __init__(...)`` with one argument per line, defaults as Python literals."""
    lines = ["def __init__(", "    self,"]
    lines += [f"    {name}: {kind} = {value!r}," for name, kind, value in args]
    return "\n".join(lines) + "\n):"


def _forward(io: Mapping[str, Any], block_call: str, sequence_block: bool) -> str:
    """The readout of the searched ``Model`` for this task's input and target, specialised."""
    shape = INPUT_SHAPES[io["input"]]
    out = "(B, T, O)" if io["target"] == "every" else "(B, O)"
    times = io["input"] != "static" and "times" in block_call
    sig = "def forward(self, x: torch.Tensor, times: torch.Tensor | None = None) -> torch.Tensor:" if times \
        else "def forward(self, x: torch.Tensor) -> torch.Tensor:"
    doc = f'"""Predict from x {shape}' + (" observed at times (B, T) or (T,) (None: 0, 1, ...)" if times else "")
    lines = [sig, f"    {doc}; returns {out}.\"\"\"", "    h = self.input_head(x)  # " +
             ("(B, I)" if io["input"] == "static" else "(B, T, E)")]
    if sequence_block and io["input"] == "static":
        lines.append("    h = h.unsqueeze(1)  # (B, 1, E)")
    lines.append(f"    {block_call}")
    if io["target"] == "every":
        lines.append("    return self.output_head(h)  # (B, T, O)")
    else:
        lines.append("    return self.output_head(" + ("h[:, -1]" if sequence_block else "h") + ")  # (B, O)")
    return "\n".join(lines)


def _indent(text: str, n: int) -> str:
    return "\n".join((" " * n + line) if line else line for line in text.splitlines())


def _fmt(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def _docstring(block, io, info: Mapping[str, Any], embedded: list[str]) -> str:
    """The module docstring: what was searched, the code it embeds, the trial's metrics and configuration, usage."""
    rule = block["rule"]
    what = f"{block['kind']} block" + (f", {block['params']['cell']} cell" if block["kind"] == "rnn" else "")
    where = (f"trial {info['trial']} of study {info['study']!r}" if info.get("study") is not None
             else "a momsearch configuration")
    lines = [f"Standalone export of {where}: {what}, rule {rule['name']}.", "",
             "Needs only torch" + (" and torchdiffeq" if block["kind"] == "ode" else "") +
             ". The code below is momsearch's own, copied as written from these modules; the",
             "hyperparameters are the defaults of Model:", "",
             *(f"    {name}" for name in embedded), ""]
    metrics = info.get("metrics") or {}
    if metrics:
        lines.append("Metrics:")
        lines += [f"    {k}: {_fmt(v)}" for k, v in metrics.items() if not isinstance(v, (dict, list))]
        lines.append("")
    lines.append("Configuration:")
    lines += [f"    {k}: {_fmt(v)}" for k, v in info["config"].items()]
    lines += ["", f"Model input: {io['input']} {INPUT_SHAPES[io['input']]}, target: {io['target']}.", "",
              "Usage::", "", "    import torch", "    from cell import Model", "", "    model = Model()",
              '    model.load_state_dict(torch.load("weights.pt", weights_only=True))', "    model.eval()"]
    example = {"sequence": f"torch.randn(8, 32, {io['input_size']})",
               "tokens": f"torch.randint(0, {io['input_size']}, (8, 32))",
               "static": f"torch.randn(8, {io['input_size']})"}[io["input"]]
    out = "(B, T, O)" if io["target"] == "every" else "(B, O)"
    lines += [f"    y = model({example})  # {out}"]
    return '"""' + "\n".join(lines).replace("\\", "\\\\").replace('"""', "'''") + '\n"""'


def module_source(config: Mapping[str, Any], io: Mapping[str, Any], info: Mapping[str, Any] | None = None) -> str:
    """The text of ``cell.py`` for a configuration.

    Args:
        config: the dotted configuration (``builder.build``'s ``config``).
        io: ``input_size``, ``output_size``, ``input``, ``target`` of the model.
        info: optional ``study``, ``trial`` and ``metrics`` for the docstring.

    Returns:
        Python source of a module defining ``Model`` with the configuration as constructor defaults.
    """
    block = resolve(config)["block"]
    info = {"config": dict(config), **(info or {})}
    args, body, roots, block_call = _KINDS[block["kind"]](block, io)
    args = [_arg("input_size", io["input_size"]), _arg("output_size", io["output_size"]), *args]
    sequence_block = not (block["kind"] == "ode" and io["input"] == "static")
    emb = collect(roots)
    emb.imports |= {("torch", None, ""), ("torch", "nn", "")}
    what = f"{block['kind']} block, rule {block['rule']['name']}"
    model = "\n".join([
        "class Model(nn.Module):",
        f'    """The searched model: input head -> {what} -> linear output head.',
        "",
        "    The defaults are the searched configuration; parameter names match the exported weights.pt.",
        '    """',
        "",
        _indent(_signature(args), 4),
        "        super().__init__()",
        _indent("\n".join(body), 8),
        "",
        _indent(_forward(io, block_call, sequence_block), 4),
    ])
    # one blank line after the imports: the body opens with a comment, which isort wants that close
    text = (_docstring(block, io, info, emb.modules) + "\n\n" + render_imports(emb.imports) + "\n\n" + render_body(emb)
            + "\n\n\n" + model + "\n")
    return _formatted(text)


def _formatted(text: str) -> str:
    """``ruff format`` the text when ruff is installed (the text is readable without it)."""
    ruff = shutil.which("ruff")
    if ruff is None:
        return text
    try:
        done = subprocess.run([ruff, "format", "--line-length", "120", "--no-cache", "-"], input=text,
                              capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return text
    return done.stdout if done.returncode == 0 and done.stdout else text


def spec_document(config: Mapping[str, Any], io: Mapping[str, Any], info: Mapping[str, Any]) -> dict:
    """What ``spec.yaml`` holds: resolved configuration, metrics, study, trial and versions."""
    import momsearch

    metrics = {k: v for k, v in (info.get("metrics") or {}).items() if k not in SPEC_SKIP}
    return _plain({
        "study": info.get("study"),
        "trial": info.get("trial"),
        "values": info.get("values"),
        "objectives": info.get("objectives"),
        "seed": info.get("seed"),
        "config": dict(config),
        "resolved": resolve(config),
        "io": dict(io),
        "metrics": metrics,
        "versions": {"torch": str(torch.__version__), "momsearch": momsearch.__version__},
    })


def _plain(value: Any) -> Any:
    """``value`` as YAML-safe plain data (str subclasses as str, tuples as lists)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    for kind in (int, float, str):
        if isinstance(value, kind):
            return kind(value)
    return str(value)


def write_export(directory: str | Path, config: Mapping[str, Any], io: Mapping[str, Any],
                 state_dict: Mapping[str, torch.Tensor], info: Mapping[str, Any] | None = None) -> Path:
    """Write ``cell.py``, ``weights.pt`` and ``spec.yaml`` into ``directory`` (created if missing).

    Args:
        directory: destination folder.
        config: dotted configuration of the model.
        io: ``input_size``, ``output_size``, ``input``, ``target`` (and ``times``) of the model.
        state_dict: the trained weights.
        info: ``study``, ``trial``, ``values``, ``seed``, ``metrics`` for the docstring and spec.yaml.

    Returns:
        The directory.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    info = dict(info or {})
    metrics = {k: v for k, v in (info.get("metrics") or {}).items() if k not in SPEC_SKIP}
    (directory / "cell.py").write_text(module_source(config, io, {**info, "metrics": metrics}))
    torch.save({k: v.detach().cpu() for k, v in state_dict.items()}, directory / "weights.pt")
    with open(directory / "spec.yaml", "w") as f:
        yaml.safe_dump(spec_document(config, io, info), f, sort_keys=False)
    return directory
