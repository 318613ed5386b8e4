"""Reading a case file's YAML safely: a regular file of bounded size, a loader with alias,
depth and size limits and only YAML's plain tags, and the position of every key and value so
that each error can be reported as ``file:line:col`` (casekit.case validates what it builds).
"""

from __future__ import annotations

import functools
import logging
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from casekit.errors import CaseError, CasekitError
from casekit.visible import visible

if TYPE_CHECKING:
    import yaml

# PyYAML is imported where a case file is read (~10-20 ms): not by an analysis, which takes the
# case from the ledger.

log = logging.getLogger(__name__)

Pos = tuple[int, int]  # 1-based line, column


class _Located:
    """Values of a YAML document plus the position of every node, keyed by path."""

    def __init__(self) -> None:
        self.positions: dict[tuple[str | int, ...], Pos] = {}
        self.key_positions: dict[tuple[str | int, ...], Pos] = {}


#: A case file is at most this many bytes (a case is a page or two of YAML).
CASE_MAX_BYTES = 1 << 20
#: YAML nesting deeper than this is refused (a case file nests five or six levels).
YAML_MAX_DEPTH = 64
#: At most this many aliases (``*name``) in a case file...
YAML_MAX_ALIASES = 100
#: ...and at most this many values once aliases are expanded ("billion laughs" expand
#: exponentially: nine aliases of nine aliases... are 387 million values).
YAML_MAX_NODES = 100_000
#: A number written with more digits than this is refused before Python reads it.
YAML_MAX_DIGITS = 40
#: Whole numbers the record holds exactly (RFC 8785 canonical JSON: IEEE doubles' safe range).
JSON_MAX_INT = 2**53 - 1
#: The tags a case file may use: YAML's safe core (what plain values resolve to).
SAFE_TAGS = frozenset(f"tag:yaml.org,2002:{t}" for t in
                      ("str", "int", "float", "bool", "null", "timestamp", "seq", "map"))


def read_regular_file(path: Path, limit: int, fail: Callable[[str], CasekitError]) -> bytes:
    """The bytes of ``path`` if it is a regular file of at most ``limit`` bytes; anything else
    (a FIFO, a device such as /dev/zero, a directory, a larger file) is refused with
    ``fail(problem-and-fix)`` without blocking: the file is opened non-blocking and checked
    with fstat before a byte is read, and never more than ``limit`` + 1 bytes are read."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise fail(f"cannot open it ({exc.strerror}); check the path and its permissions") \
            from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = ("a directory" if stat.S_ISDIR(st.st_mode) else "a FIFO (named pipe)"
                    if stat.S_ISFIFO(st.st_mode) else "a device" if stat.S_ISCHR(st.st_mode)
                    or stat.S_ISBLK(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode)
                    else "not a regular file")
            raise fail(f"is {kind}, not a regular file; give the path of a regular file")
        if st.st_size > limit:
            raise fail(f"is {st.st_size:,} bytes, over the limit of {limit:,} bytes; give a "
                       "smaller file")
        chunks: list[bytes] = []
        size = 0
        while size <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > limit:
            raise fail(f"grew past the limit of {limit:,} bytes while being read; give a "
                       "smaller file that does not change")
        return b"".join(chunks)
    except OSError as exc:
        raise fail(f"cannot read it ({exc.strerror}); check the file") from None
    finally:
        os.close(fd)


class _LimitError(Exception):
    """A YAML document over one of the loader's limits, at ``mark``."""

    def __init__(self, mark: Any, message: str) -> None:
        super().__init__(message)
        self.mark = mark
        self.message = message


@functools.cache
def _case_loader() -> type[yaml.SafeLoader]:
    """The loader class, made on first use (it subclasses PyYAML's)."""
    import yaml

    class _CaseLoader(yaml.SafeLoader):
        """PyYAML's safe loader with a nesting-depth and an alias-count limit while composing
        (its composer recurses once per level: 20,000 nested ``[`` would exhaust Python's
        stack)."""

        def __init__(self, stream: str) -> None:
            super().__init__(stream)
            self._depth = 0
            self._aliases = 0

        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.AliasEvent):
                self._aliases += 1
                if self._aliases > YAML_MAX_ALIASES:
                    raise _LimitError(self.peek_event().start_mark,
                                      f"more than {YAML_MAX_ALIASES} aliases (*name); write "
                                      "the values out")
            self._depth += 1
            try:
                if self._depth > YAML_MAX_DEPTH:
                    raise _LimitError(self.peek_event().start_mark,
                                      f"nested more than {YAML_MAX_DEPTH} levels deep; remove "
                                      "the extra brackets (a case file needs a few levels)")
                return super().compose_node(parent, index)
            finally:
                self._depth -= 1

    return _CaseLoader


class _Builder:
    """Plain values from composed YAML nodes, recording every node's position; aliases are
    expanded, so the number of values built and their depth are bounded again here."""

    def __init__(self, file: str, loc: _Located) -> None:
        self.file = file
        self.loc = loc
        self.nodes = 0

    def where(self, node: yaml.Node) -> str:
        return f"{self.file}:{node.start_mark.line + 1}:{node.start_mark.column + 1}"

    def tag(self, node: yaml.Node, path: tuple[str | int, ...]) -> None:
        if node.tag not in SAFE_TAGS:
            tag = node.tag.replace("tag:yaml.org,2002:", "!!", 1)
            raise CaseError(f"{self.where(node)}: {visible(_dotted(path))}: the tag "
                            f"{visible(tag[:60])} is not allowed in a case file (only "
                            "plain YAML values); remove the tag")

    def build(self, node: yaml.Node, path: tuple[str | int, ...], depth: int = 0) -> Any:
        import yaml

        self.nodes += 1
        if self.nodes > YAML_MAX_NODES or depth > YAML_MAX_DEPTH:
            what = (f"more than {YAML_MAX_NODES:,} values once its aliases (*name) are "
                    "expanded" if self.nodes > YAML_MAX_NODES else
                    f"nested more than {YAML_MAX_DEPTH} levels deep once its aliases are expanded")
            raise CaseError(f"{self.where(node)}: the case file holds {what}; write the values "
                            "out without aliases")
        loc = self.loc
        loc.positions[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
        self.tag(node, path)
        if isinstance(node, yaml.MappingNode):
            out: dict[str, Any] = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    raise CaseError(f"{self.where(key_node)}: mapping keys must be plain names; "
                                    "write `name: value`")
                key = key_node.value
                if key == "<<":
                    raise CaseError(f"{self.where(key_node)}: YAML merge keys (<<) are not "
                                    "supported in case files; write the fields out")
                self.tag(key_node, path + (key,))
                if key in out:
                    raise CaseError(f"{self.where(key_node)}: {visible(_dotted(path + (key,)))}: "
                                    "duplicate key; keep one")
                loc.key_positions[path + (key,)] = (
                    key_node.start_mark.line + 1,
                    key_node.start_mark.column + 1,
                )
                out[key] = self.build(value_node, path + (key,), depth + 1)
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.build(v, path + (i,), depth + 1) for i, v in enumerate(node.value)]
        assert isinstance(node, yaml.ScalarNode)
        return self.scalar(node, path)

    def scalar(self, node: yaml.ScalarNode, path: tuple[str | int, ...]) -> Any:
        """The scalar resolved with the safe loader's implicit resolvers (int, float, bool,
        null, date); a value they cannot read is a located error."""
        kind = node.tag.rsplit(":", 1)[-1]
        import yaml

        field = visible(_dotted(path))
        if kind == "int" and sum(c.isdigit() for c in node.value) > YAML_MAX_DIGITS:
            raise CaseError(f"{self.where(node)}: {field}: a number of "
                            f"{sum(c.isdigit() for c in node.value):,} digits is too long; write "
                            f"a number of at most {YAML_MAX_DIGITS} digits")
        loader = yaml.SafeLoader("")
        try:
            value = loader.construct_object(node, deep=True)
            if (isinstance(value, int) and not isinstance(value, bool)
                    and abs(value) > JSON_MAX_INT):
                raise CaseError(f"{self.where(node)}: {field}: {value} is beyond "
                                f"±{JSON_MAX_INT:,}, the largest whole number the record holds "
                                "exactly; write a smaller number (or quote it as text)")
            return value
        except CaseError:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure is the user's value, located
            shown = visible(node.value[:40])
            if kind == "timestamp":
                fix = f"{shown!r} is not a real date ({exc}); write a date as YYYY-MM-DD"
            else:
                fix = f"cannot read {shown!r} as {kind} ({exc}); quote it to keep it as text"
            raise CaseError(f"{self.where(node)}: {field}: {visible(fix)}") from None
        finally:
            loader.dispose()


def _dotted(loc: tuple[str | int, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out or "(document)"


def parse_yaml(text: str, file: str) -> tuple[Any, _Located]:
    """Parse YAML into plain values, keeping every node's position."""
    import yaml

    loc = _Located()
    try:
        nodes = list(yaml.compose_all(text, Loader=_case_loader()))
    except _LimitError as exc:
        raise CaseError(f"{file}:{exc.mark.line + 1}:{exc.mark.column + 1}: the case file is "
                        f"{exc.message}") from None
    except RecursionError:
        raise CaseError(f"{file}: the case file is nested too deeply; a case file needs a few "
                        "levels: remove the extra brackets") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{file}:{mark.line + 1}:{mark.column + 1}" if mark else file
        problem = visible(exc.problem or exc.context or "invalid YAML")
        raise CaseError(f"{where}: invalid YAML: {problem}; fix the syntax there") from None
    except yaml.YAMLError as exc:
        raise CaseError(f"{file}: invalid YAML: {visible(str(exc))}; fix the syntax") from None
    if len(nodes) != 1 or nodes[0] is None:
        raise CaseError(f"{file}:1:1: a case file holds exactly one YAML document with case:, "
                        "works:, models: and strategies:")
    return _Builder(file, loc).build(nodes[0], ()), loc
