# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""The docs say what the code does, and the project explains itself.

Static checks of the text: nothing cites notes outside the repository, the map of the
documentation lists every page, and the error tree on the errors page is the one in
``charm_upgrade.errors``. The snippets themselves run in tests/scenario/test_docs_snippets.py.
"""

from __future__ import annotations

import inspect
import pathlib
import re
import subprocess

import pytest

from charm_upgrade import errors

ROOT = pathlib.Path(__file__).resolve().parents[2]
DOCS = ROOT / 'docs'

# Built from pieces, so that this file does not match itself.
_OUTSIDE = re.compile(
    '|'.join(
        [
            re.escape('..' + '/shared'),
            re.escape('/work' + '/shared'),
            'decision' + r' \d',
        ]
    ),
    re.IGNORECASE,
)
_SKIPPED_DIRS = {'.git', '.tox', '.ruff_cache', '__pycache__', 'build', 'dist'}


def _project_files() -> list[pathlib.Path]:
    if (ROOT / '.git').exists():
        listed = subprocess.run(
            ['git', 'ls-files', '-z'], cwd=ROOT, capture_output=True, check=True
        ).stdout.decode()
        return [ROOT / name for name in listed.split('\0') if name]
    # An unpacked sdist: every file but caches and virtual environments.
    return [
        path
        for path in ROOT.rglob('*')
        if path.is_file()
        and not any(p in _SKIPPED_DIRS or p.startswith('.venv') for p in path.parts)
    ]


def test_nothing_cites_notes_outside_the_project():
    # The project explains itself: what it relies on is in docs/explanation/design.md,
    # cited by section title, never a path outside the repository or a numbered decision.
    files = _project_files()
    assert ROOT / 'README.md' in files and len(files) > 50
    found = []
    for path in files:
        if not path.is_file():
            continue  # deleted in the work tree, not yet in the index
        text = path.read_bytes().decode('utf-8', errors='replace')
        for number, line in enumerate(text.splitlines(), 1):
            if _OUTSIDE.search(line):
                found.append(f'{path.relative_to(ROOT)}:{number}: {line.strip()}')
    assert found == []


def test_the_pattern_finds_what_it_must():
    assert _OUTSIDE.search('see ../' + 'shared/notes/x.md')
    assert _OUTSIDE.search('/work/' + 'shared/seeds')
    assert _OUTSIDE.search('as API Decision' + ' 10 says')
    assert not _OUTSIDE.search('the decisions behind the library')


def _pages() -> set[str]:
    pages = {
        str(path.relative_to(DOCS))
        for path in DOCS.rglob('*')
        if path.suffix in ('.md', '.rst') and not path.name.startswith('_')
    }
    return pages - {'index.md'}


def test_the_map_of_the_documentation_lists_every_page():
    text = (DOCS / 'index.md').read_text()
    section = text[text.index('## Map of the documentation') :]
    section = section[: section.index('\n## ', 1)]
    linked = set(re.findall(r'\]\(([^)#]+)\)', section))
    assert linked == _pages()


def test_every_page_is_in_a_toctree():
    # sphinx -W fails on a page in no toctree; this says which page, without a build.
    listed: set[str] = set()
    for index in DOCS.rglob('index.md'):
        for block in re.findall(r'```\{toctree\}\n(.*?)```', index.read_text(), re.DOTALL):
            for line in block.splitlines():
                entry = line.strip()
                if entry and not entry.startswith(':'):
                    listed.add(str((index.parent / entry).relative_to(DOCS)))
    pages = {str(pathlib.Path(p).with_suffix('')) for p in _pages()}
    assert pages <= listed


def _tree_on_the_errors_page() -> dict[str, str | None]:
    text = (DOCS / 'reference' / 'errors.md').read_text()
    block = re.search(r'```text\n(CharmUpgradeError\n.*?)```', text, re.DOTALL)
    assert block is not None, 'the errors page shows no tree under CharmUpgradeError'
    parents: dict[str, str | None] = {}
    stack: list[tuple[int, str]] = []  # (depth, name)
    for line in block.group(1).splitlines():
        match = re.match(r'([│ ├└─]*)(\w+)', line)
        assert match is not None, line
        depth, name = len(match.group(1)) // 4, match.group(2)
        while stack and stack[-1][0] >= depth:
            stack.pop()
        parents[name] = stack[-1][1] if stack else None
        stack.append((depth, name))
    return parents


def test_the_errors_page_shows_the_whole_error_tree():
    actual: dict[str, str | None] = {}
    for name in errors.__all__:
        cls = getattr(errors, name)
        assert inspect.isclass(cls)
        base = cls.__bases__[0]
        actual[name] = None if base is Exception else base.__name__
    assert _tree_on_the_errors_page() == actual


@pytest.mark.parametrize('name', errors.__all__)
def test_each_error_has_its_section_or_entry_on_the_errors_page(name: str):
    text = (DOCS / 'reference' / 'errors.md').read_text()
    # Each has a section of its own, or (snapd's subclasses) an entry in SnapdError's.
    assert f'## `{name}`' in text or f'\n`{name}`\n: ' in text or f'`{name}` (' in text
