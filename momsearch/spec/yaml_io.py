"""Reading YAML safely: plain data only, duplicate keys rejected, errors with the file and line number.

Hostile documents are refused before they cost time or memory: at most :data:`MAX_BYTES` characters,
:data:`MAX_DEPTH` levels of nesting and :data:`MAX_NODES` values with aliases expanded (an "alias bomb"
of a few hundred bytes otherwise expands to billions). Messages quote at most ~100 characters of a value.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ..errors import SpecError, quote

MAX_BYTES = 1_000_000  # a study or space file is a few kB; anything this large is a mistake or an attack
MAX_DEPTH = 100  # nesting of mappings and lists (real files need fewer than 10)
MAX_NODES = 100_000  # values in the document once every alias is expanded (an alias bomb expands to billions)
_BASE = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's parser where PyYAML was built with it


class StrictLoader(_BASE):
    """PyYAML's safe loader (the C-accelerated ``yaml.CSafeLoader`` where available, else ``yaml.SafeLoader``)
    that also rejects duplicate mapping keys (YAML would silently keep the last one)."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                if isinstance(key, (str, int, float, bool)) or key is None:
                    if key in seen:
                        raise yaml.constructor.ConstructorError(
                            "while reading a mapping", node.start_mark, f"duplicate key {quote(key)}",
                            key_node.start_mark)
                    seen.add(key)
        return super().construct_mapping(node, deep=deep)


class _Limit(Exception):
    """A document over one of the limits: the message and the mark where it was found."""

    def __init__(self, message: str, mark):
        super().__init__(message)
        self.mark = mark


def _check_limits(text: str) -> None:
    """Walk the parser's events once (no recursion, stops at the first problem) and raise :class:`_Limit`
    for nesting deeper than MAX_DEPTH, an alias to an anchor that is not complete (undefined or its own
    container), or more than MAX_NODES values once aliases are expanded."""
    depth, total = 0, 0
    sizes: dict[str, int] = {}  # anchor -> values it expands to
    open_frames: list[tuple[str | None, int]] = []  # (anchor, total when the container started)
    for event in yaml.parse(text, Loader=_BASE):
        if isinstance(event, yaml.AliasEvent):
            if event.anchor not in sizes:
                raise _Limit(f"alias *{event.anchor} refers to an undefined anchor or to the container it is "
                             "in", event.start_mark)
            total += sizes[event.anchor]
        elif isinstance(event, yaml.ScalarEvent):
            total += 1
            if event.anchor is not None:
                sizes[event.anchor] = 1
        elif isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                raise _Limit(f"nested more than {MAX_DEPTH} levels deep", event.start_mark)
            total += 1
            open_frames.append((event.anchor, total))
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
            anchor, started = open_frames.pop()
            if anchor is not None:
                sizes[anchor] = total - started + 1
        if total > MAX_NODES:
            raise _Limit(f"more than {MAX_NODES:,} values (counting each alias as the values it repeats)",
                         event.start_mark)


def parse_yaml(text: str, source: str) -> Any:
    """Parse YAML text with :class:`StrictLoader`, within the limits above.

    Args:
        text: the document.
        source: the file name used in error messages.

    Returns:
        The parsed data (mappings, lists, scalars).

    Raises:
        SpecError: a syntax error, a duplicate key, a tag such as ``!!python/object`` (with the line), or a
            document over :data:`MAX_BYTES`, :data:`MAX_DEPTH` or :data:`MAX_NODES`.
    """
    if len(text) > MAX_BYTES:
        raise SpecError(f"{source}: {len(text):,} characters is more than a study or space file may hold "
                        f"({MAX_BYTES:,})")
    try:
        _check_limits(text)
        loader = StrictLoader(text)
        try:
            return loader.get_single_data()
        finally:
            loader.dispose()
    except _Limit as exc:
        where = f"{source}: line {exc.mark.line + 1}, column {exc.mark.column + 1}" if exc.mark else source
        raise SpecError(f"{where}: {exc}") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{source}: line {mark.line + 1}, column {mark.column + 1}" if mark else source
        problem = exc.problem or exc.context or "invalid YAML"
        if "maximum nesting depth" in problem:  # libyaml >= 0.2.5 (PyYAML 6.0.4's wheels) stops at 1,000 itself
            problem = f"nested more than {MAX_DEPTH} levels deep"
        if "could not determine a constructor for the tag" in problem:
            tag = problem.split("tag", 1)[1].strip(" '")
            problem = (f"tag {quote(tag)} is not allowed: momsearch reads plain YAML only "
                       "(mappings, lists, numbers, strings, booleans, null)")
        raise SpecError(f"{where}: {_cut(problem)}") from None
    except yaml.YAMLError as exc:
        raise SpecError(f"{source}: invalid YAML: {_cut(str(exc))}") from None
    except (RecursionError, MemoryError) as exc:
        raise SpecError(f"{source}: too deep or too large to read ({type(exc).__name__})") from None


def _cut(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit] + "..."


def read_yaml(path: str | Path, what: str | None = None) -> Any:
    """Read and parse a YAML file.

    Args:
        path: the file.
        what: the key path that named the file (e.g. ``space``), used as the prefix of a not-found error.

    Returns:
        The parsed data.

    Raises:
        SpecError: the file is missing or unreadable, or not valid YAML.
    """
    path = Path(path)
    prefix = f"{what}: " if what else ""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_BYTES + 1)  # never more than the limit into memory
        if len(raw) > MAX_BYTES:
            raise SpecError(f"{prefix}{path}: larger than a study or space file may be ({MAX_BYTES:,} bytes)")
        text = raw.decode("utf-8")
    except FileNotFoundError:
        raise SpecError(f"{prefix}{path}: file not found") from None
    except IsADirectoryError:
        raise SpecError(f"{prefix}{path}: is a directory, not a YAML file") from None
    except UnicodeDecodeError as exc:
        raise SpecError(f"{prefix}{path}: not UTF-8 text (byte {exc.start}); is it a YAML file?") from None
    except (OSError, MemoryError) as exc:
        raise SpecError(f"{prefix}{path}: cannot read the file ({getattr(exc, 'strerror', None) or exc})") from None
    return parse_yaml(text, str(path))
