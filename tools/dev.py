#!/usr/bin/env python3
# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""Run the demo or the tests on a machine that has nothing but python3.

    python3 tools/dev.py demo          # the demo: a rolling refresh and a series upgrade
    python3 tools/dev.py test          # every test that needs no container (plain `tox`)
    python3 tools/dev.py integration   # the real systemd and snapd tier (root)
    python3 tools/dev.py tox -e bench  # anything else tox can do

It makes a virtual environment in .venv-dev with tox in it, then runs tox.
Where python3 has no ensurepip (Debian without python3-venv), it fetches
pip's wheel from PyPI and bootstraps pip from it.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import tempfile
import urllib.request
import venv

ROOT = pathlib.Path(__file__).resolve().parent.parent
VENV = ROOT / '.venv-dev'
BIN = VENV / 'bin'
COMMANDS = {
    'demo': ['-e', 'demo'],
    'test': [],
    'integration': ['-e', 'integration'],
}


def ensure_venv() -> None:
    """Create .venv-dev with pip and tox, once."""
    if (BIN / 'tox').exists():
        return
    try:
        venv.create(VENV, with_pip=True, clear=True)
    except (subprocess.CalledProcessError, OSError):
        venv.create(VENV, with_pip=False, clear=True)
    if not (BIN / 'pip').exists():
        bootstrap_pip()
    run([str(BIN / 'python'), '-m', 'pip', 'install', '--quiet', '--upgrade', 'pip', 'tox>=4.22'])


def bootstrap_pip() -> None:
    """Install pip into .venv-dev from pip's own wheel on PyPI."""
    index = os.environ.get('PIP_INDEX_URL', 'https://pypi.org/simple').rstrip('/')
    base = index.removesuffix('/simple')
    if not base.startswith(('https://', 'http://')):
        sys.exit(f'cannot bootstrap pip from the index {index!r}: install python3-venv')
    with urllib.request.urlopen(f'{base}/pypi/pip/json', timeout=60) as response:  # noqa: S310
        release = json.load(response)
    url = next(f['url'] for f in release['urls'] if f['filename'].endswith('.whl'))
    with tempfile.TemporaryDirectory() as tmp:
        wheel = pathlib.Path(tmp) / url.rsplit('/', 1)[1]
        with urllib.request.urlopen(url, timeout=120) as response:  # noqa: S310 (PyPI's https URL)
            wheel.write_bytes(response.read())
        # A pip wheel is runnable: it installs itself.
        run([str(BIN / 'python'), f'{wheel}/pip', 'install', '--quiet', str(wheel)])


def run(command: list[str]) -> None:
    """Run ``command`` in the repository root; exit with its status if it fails."""
    result = subprocess.run(command, cwd=ROOT, check=False)
    if result.returncode != 0:
        sys.exit(result.returncode)


def main(argv: list[str]) -> None:
    """Entry point."""
    if not argv or (argv[0] not in COMMANDS and argv[0] != 'tox'):
        sys.exit(__doc__)
    ensure_venv()
    tox_args = argv[1:] if argv[0] == 'tox' else COMMANDS[argv[0]] + argv[1:]
    run([str(BIN / 'tox'), *tox_args])


if __name__ == '__main__':
    main(sys.argv[1:])
