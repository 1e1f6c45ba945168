"""Collect the library source an exported module needs: the named objects and everything they use, verbatim.

Starting from root objects (e.g. ``momsearch.blocks._attention_core.TransformerEncoder``), every top-level
function, class or constant they use is taken from its module's source as written, following imports between
momsearch modules, so the exported code *is* the library's code (the fast paths included). Imports of other packages
(torch, torchdiffeq, the standard library) are gathered into one import block. Names that appear only in
annotations are not followed: exported modules start with ``from __future__ import annotations``.
"""

from __future__ import annotations

import ast
import importlib
import inspect
from dataclasses import dataclass, field
from importlib.util import resolve_name

from ..errors import ExportError

ROOT_PACKAGE = "momsearch"


@dataclass
class _Module:
    """A parsed momsearch module: its top-level definitions and the names its imports bind."""

    name: str
    lines: list[str]
    doc: str | None
    defs: dict[str, ast.stmt]
    order: dict[int, int]  # id(node) -> position in the module
    imports: dict[str, tuple[str, str | None, str]]  # bound name -> (module, imported name or None, asname)


@dataclass
class Embedding:
    """The collected source: external imports and, per module in dependency order, the selected nodes."""

    imports: set[tuple[str, str | None, str]] = field(default_factory=set)
    modules: list[str] = field(default_factory=list)
    nodes: dict[str, list[ast.stmt]] = field(default_factory=dict)
    parsed: dict[str, _Module] = field(default_factory=dict)


def _parse(name: str) -> _Module:
    module = importlib.import_module(name)
    text = inspect.getsource(module)
    tree = ast.parse(text)
    package = module.__package__ or name
    defs, imports, order = {}, {}, {}
    for position, node in enumerate(tree.body):
        order[id(node)] = position
        if isinstance(node, ast.Import):
            for alias in node.names:
                bound = alias.asname or alias.name.split(".")[0]
                imports[bound] = (alias.name, None, alias.asname or "")
        elif isinstance(node, ast.ImportFrom):
            source = resolve_name("." * node.level + (node.module or ""), package) if node.level else node.module
            for alias in node.names:
                imports[alias.asname or alias.name] = (source, alias.name, alias.asname or "")
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            defs[node.name] = node
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                for leaf in ast.walk(target):
                    if isinstance(leaf, ast.Name):
                        defs[leaf.id] = node
    return _Module(name, text.splitlines(), ast.get_docstring(tree), defs, order, imports)


class _Used(ast.NodeVisitor):
    """The names a definition reads at run time (annotations are skipped: they are never evaluated)."""

    def __init__(self):
        self.names: set[str] = set()
        self.annotations: set[str] = set()

    def visit_Name(self, node: ast.Name) -> None:
        self.names.add(node.id)

    def _annotation(self, node: ast.expr | None) -> None:
        if node is not None:
            self.annotations |= {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}

    def visit_arg(self, node: ast.arg) -> None:
        self._annotation(node.annotation)

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self._annotation(node.returns)
        for child in (*node.decorator_list, node.args, *node.body):
            self.visit(child)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        self._annotation(node.annotation)
        self.visit(node.target)
        if node.value is not None:
            self.visit(node.value)


def _used(node: ast.stmt) -> tuple[set[str], set[str]]:
    """(names read at run time, names only read in annotations)."""
    visitor = _Used()
    visitor.visit(node)
    return visitor.names, visitor.annotations - visitor.names


def collect(roots: list[tuple[str, str]]) -> Embedding:
    """Gather the source of ``roots`` (module, name) and of everything they use inside momsearch.

    Args:
        roots: the objects the exported module refers to,
            e.g. ``[("momsearch.blocks._attention_core", "TransformerEncoder")]``.

    Returns:
        An :class:`Embedding`; :func:`render` turns it into source text.

    Raises:
        ExportError: a needed name is not defined at the top level of its module, or two modules define
            the same name (the exported module has one namespace).
    """
    emb = Embedding()
    needs: dict[str, set[str]] = {}
    seen: set[tuple[str, str]] = set()
    owner: dict[str, str] = {}
    stack = list(roots)
    while stack:
        mod_name, name = stack.pop()
        if (mod_name, name) in seen:
            continue
        seen.add((mod_name, name))
        mod = emb.parsed.get(mod_name) or emb.parsed.setdefault(mod_name, _parse(mod_name))
        needs.setdefault(mod_name, set())
        if name in mod.imports:
            source, imported, asname = mod.imports[name]
            if source.split(".")[0] != ROOT_PACKAGE:
                emb.imports.add((source, imported, asname))
                continue
            if imported is None or (asname and asname != imported):
                raise ExportError(f"{mod_name}: cannot embed {name!r}, imported as a module or under an alias")
            needs[mod_name].add(source)
            stack.append((source, imported))
            continue
        node = mod.defs.get(name)
        if node is None:
            raise ExportError(f"{mod_name}: {name!r} is not a top-level definition, cannot embed it")
        if owner.setdefault(name, mod_name) != mod_name:
            raise ExportError(f"name clash: {name!r} is defined in both {owner[name]} and {mod_name}")
        nodes = emb.nodes.setdefault(mod_name, [])
        if all(n is not node for n in nodes):
            nodes.append(node)
        used, annotations = _used(node)
        for name_used in used:
            if name_used in mod.defs or name_used in mod.imports:
                stack.append((mod_name, name_used))
        for name_used in annotations:  # imported so linters resolve them; momsearch types are not followed
            source, imported, asname = mod.imports.get(name_used, (ROOT_PACKAGE, None, ""))
            if source.split(".")[0] != ROOT_PACKAGE:
                emb.imports.add((source, imported, asname))
    emb.modules = _dependency_order([r[0] for r in roots], needs)
    for mod_name in emb.modules:
        emb.nodes.setdefault(mod_name, []).sort(key=lambda n, m=emb.parsed[mod_name]: m.order[id(n)])
    emb.modules = [m for m in emb.modules if emb.nodes[m]]
    return emb


def _dependency_order(starts: list[str], needs: dict[str, set[str]]) -> list[str]:
    """Modules depth first, each after the modules it imports from."""
    order: list[str] = []

    def visit(name: str, path: tuple[str, ...]) -> None:
        if name in order or name in path:
            return
        for dep in sorted(needs.get(name, ())):
            visit(dep, (*path, name))
        order.append(name)

    for start in starts:
        visit(start, ())
    return order


def _segment(mod: _Module, node: ast.stmt) -> str:
    """A definition's lines as written, with its decorators and the comment lines right above it."""
    first = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))]) - 1
    while first > 0 and mod.lines[first - 1].lstrip().startswith("#"):
        first -= 1
    return "\n".join(mod.lines[first:node.end_lineno])


def render_imports(imports: set[tuple[str, str | None, str]]) -> str:
    """The import block: ``from __future__`` first, then the standard library, then third-party packages."""
    third_party = {"torch", "torchdiffeq"}
    plain, froms = {}, {}
    for module, name, asname in imports:
        if module == "__future__":
            continue
        group = 1 if module.split(".")[0] in third_party else 0
        if name is None:
            plain.setdefault(group, set()).add(f"import {module}" + (f" as {asname}" if asname else ""))
        else:
            froms.setdefault((group, module), set()).add(name + (f" as {asname}" if asname else ""))
    blocks = []
    for group in (0, 1):
        lines = sorted(plain.get(group, ()))
        lines += [f"from {module} import {', '.join(sorted(names))}"
                  for (g, module), names in sorted(froms.items()) if g == group]
        if lines:
            blocks.append("\n".join(lines))
    return "from __future__ import annotations\n\n" + "\n\n".join(blocks)


def render_body(emb: Embedding) -> str:
    """The selected definitions, module by module, each module introduced by its docstring as comments."""
    parts = []
    for mod_name in emb.modules:
        mod = emb.parsed[mod_name]
        header = [f"# {'-' * 20} from {mod_name} {'-' * 20}"]
        if mod.doc:
            header += [f"# {line}".rstrip() for line in mod.doc.splitlines()]
        parts.append("\n".join(header))
        parts += [_segment(mod, node) for node in emb.nodes[mod_name]]
    return "\n\n\n".join(parts)
