# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""The code blocks of the docs, as the tests that run them see them.

The rule for a ```python block in README.md and docs/index.md: it is a whole module,
which a test imports and runs as a reader would use it, unless the line right before
its fence marks it ``<!-- fragment: why -->``. A fragment (a charm's handler that uses
``self``, a call whose arguments are the charm's functions) only has to compile.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import pathlib
import re
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import types
    from collections.abc import Iterator

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = ROOT / 'README.md'
INDEX = ROOT / 'docs' / 'index.md'
REFRESH_HOWTO = ROOT / 'docs' / 'howto' / 'refresh.md'

_FENCE = re.compile(r'^```(\w+)\n(.*?)^```$', re.DOTALL | re.MULTILINE)
_FRAGMENT = re.compile(r'<!-- fragment: (.+?) -->\n\Z')


@dataclasses.dataclass(frozen=True)
class Block:
    """One fenced block of a markdown file."""

    path: pathlib.Path
    line: int
    heading: str
    language: str
    code: str
    fragment: str | None
    """Why the block is a fragment, or None for a whole module."""

    @property
    def where(self) -> str:
        """``README.md:46``, for messages and test ids."""
        return f'{self.path.relative_to(ROOT)}:{self.line}'


def blocks(path: pathlib.Path, language: str = 'python') -> list[Block]:
    """Every fenced block of ``language`` in ``path``, with the heading it is under."""
    text = path.read_text()
    found: list[Block] = []
    for match in _FENCE.finditer(text):
        if match.group(1) != language:
            continue
        before = text[: match.start()]
        headings = re.findall(r'^#+ (.+)$', before, re.MULTILINE)
        fragment = _FRAGMENT.search(before)
        found.append(
            Block(
                path=path,
                line=before.count('\n') + 1,
                heading=headings[-1] if headings else '',
                language=language,
                code=match.group(2),
                fragment=fragment.group(1) if fragment else None,
            )
        )
    return found


def block_under(path: pathlib.Path, heading: str, language: str = 'python') -> Block:
    """The one block of ``language`` under ``heading`` in ``path``."""
    (block,) = [b for b in blocks(path, language) if b.heading == heading]
    return block


@contextlib.contextmanager
def import_block(block: Block, directory: pathlib.Path) -> Iterator[types.ModuleType]:
    """Import a whole-module block as a module of its own; remove it again afterwards."""
    assert block.fragment is None, f'{block.where} is marked a fragment'
    name = 'snippet_' + re.sub(r'\W', '_', block.where)
    path = directory / f'{name}.py'
    path.write_text(block.code)
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules[name]
