# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""The command line: ``python -m charm_upgrade journal PATH``.

Prints a unit's upgrade journal as a timeline table (start, stage, duration,
result), or as JSON with ``--json``. Torn lines are skipped with a warning on
standard error; a journal that cannot be read (a directory at its path, no
permission) is an error message and exit status 2, never a traceback. It
imports only the journal module, so it runs on a machine without ops or
charm-refresh.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

from ._journal import Journal, build_timeline, format_timeline, read_journal

if TYPE_CHECKING:
    from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status.

    Args:
        argv: The arguments after the program name; by default ``sys.argv[1:]``.
    """
    parser = argparse.ArgumentParser(
        prog='python -m charm_upgrade', description='Read charm-upgrade records.'
    )
    commands = parser.add_subparsers(dest='command', required=True)
    journal = commands.add_parser(
        'journal', help='print an upgrade journal as a timeline of stages'
    )
    journal.add_argument(
        'path',
        help='the journal file, such as /var/lib/juju/agents/unit-myapp-0/charm/'
        '.charm_upgrade/journal.jsonl',
    )
    journal.add_argument('--last', type=int, default=0, help='show only the newest N stages')
    journal.add_argument('--json', action='store_true', help='one JSON object per stage')
    args = parser.parse_args(argv)

    path: str = args.path
    if not _exists(path):
        print(f'error: no journal at {path}: give the path of a journal.jsonl', file=sys.stderr)
        return 2
    read = read_journal(Journal(path))
    for problem in read.skipped:
        print(f'warning: {problem}', file=sys.stderr)
    for problem in read.unreadable:
        print(f'error: {problem}', file=sys.stderr)
    entries = build_timeline(read.records)
    last: int = args.last
    if last > 0:
        entries = entries[-last:]
    if args.json:
        for entry in entries:
            print(json.dumps(entry.to_dict(), sort_keys=True, default=str))
    elif entries or not read.unreadable:
        print(format_timeline(entries))
    return 2 if read.unreadable else 0


def _exists(path: str) -> bool:
    import os

    return os.path.exists(path) or os.path.exists(path + '.1')


if __name__ == '__main__':  # pragma: nocover
    sys.exit(main())
