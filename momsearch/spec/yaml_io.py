"""Reading YAML safely: plain data only, duplicate keys rejected, errors with the file and line number."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ..errors import SpecError


class StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that rejects duplicate mapping keys (YAML would silently keep the last one)."""

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
                            "while reading a mapping", node.start_mark, f"duplicate key {key!r}",
                            key_node.start_mark)
                    seen.add(key)
        return super().construct_mapping(node, deep=deep)


def parse_yaml(text: str, source: str) -> Any:
    """Parse YAML text with :class:`StrictLoader`.

    Args:
        text: the document.
        source: the file name used in error messages.

    Returns:
        The parsed data (mappings, lists, scalars).

    Raises:
        SpecError: a syntax error, a duplicate key or a tag such as ``!!python/object`` (with the line).
    """
    loader = StrictLoader(text)  # a yaml.SafeLoader (what yaml.safe_load uses) that also rejects duplicate keys
    try:
        return loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{source}: line {mark.line + 1}, column {mark.column + 1}" if mark else source
        problem = exc.problem or exc.context or "invalid YAML"
        if "could not determine a constructor for the tag" in problem:
            tag = problem.split("tag", 1)[1].strip(" '")
            problem = (f"tag {tag!r} is not allowed: momsearch reads plain YAML only "
                       "(mappings, lists, numbers, strings, booleans, null)")
        raise SpecError(f"{where}: {problem}") from None
    except yaml.YAMLError as exc:
        raise SpecError(f"{source}: invalid YAML: {exc}") from None
    finally:
        loader.dispose()


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
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(f"{prefix}{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"{prefix}{path}: cannot read the file ({exc})") from None
    return parse_yaml(text, str(path))
