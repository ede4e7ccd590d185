# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""The tutorial's charm and its test, taken from docs/tutorial.md, run as a reader would."""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

TUTORIAL = pathlib.Path(__file__).parents[2] / 'docs' / 'tutorial.md'

# What the tutorial assumes the charm has already (it shows no metadata).
CHARMCRAFT = """\
name: upgrade-demo
type: charm
summary: The tutorial's charm.
description: The tutorial's charm.
"""


def python_block_after(text: str, marker: str) -> str:
    """The first ```python block after ``marker`` in the tutorial."""
    at = text.index(marker)
    match = re.compile(r'```python\n(.*?)```', re.DOTALL).search(text, at)
    assert match is not None, f'no python block after {marker!r}'
    return match.group(1)


def test_the_tutorials_test_passes_against_the_tutorials_charm(tmp_path: pathlib.Path):
    text = TUTORIAL.read_text()
    charm = python_block_after(text, '## Take the workload down for the upgrade')
    test = python_block_after(text, 'Save this as `tests/unit/test_series_upgrade.py`')
    (tmp_path / 'src').mkdir()
    (tmp_path / 'src' / 'charm.py').write_text(charm)
    (tmp_path / 'tests' / 'unit').mkdir(parents=True)
    (tmp_path / 'tests' / 'unit' / 'test_series_upgrade.py').write_text(test)
    (tmp_path / 'charmcraft.yaml').write_text(CHARMCRAFT)
    env = {k: v for k, v in os.environ.items() if not k.startswith(('JUJU_', 'CHARM_UPGRADE_'))}
    env['PYTHONPATH'] = 'src'

    # The command the tutorial gives, from the charm's directory.
    result = subprocess.run(
        [
            sys.executable,
            '-m',
            'pytest',
            '-W',
            'error',
            '-p',
            'no:cacheprovider',
            'tests/unit/test_series_upgrade.py',
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert '1 passed' in result.stdout
