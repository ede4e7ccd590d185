# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""The test kit's pytest plugin (the pytest11 entry point), run by pytester in a subprocess."""

from __future__ import annotations

import importlib.metadata
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # charm-refresh depends on tomli
    import tomli as tomllib

pytest_plugins = ['pytester']

ROOT = pathlib.Path(__file__).resolve().parents[2]
PLUGIN = 'charm_upgrade.testing._pytest_plugin'

USES_THE_FIXTURES = f"""
import sys

from charm_upgrade.snapd import Snapd

sys.path.insert(0, {str(ROOT / 'examples' / 'charm' / 'src')!r})
from charm import UpgradeDemoCharm


def test_fake_snapd(fake_snapd):
    fake_snapd.add_snap('foo', revision='1')
    assert Snapd().snap('foo').revision == '1'


def test_fake_systemd(fake_systemd, tmp_path):
    import shutil

    assert shutil.which('systemctl') == str(fake_systemd.bin_dir / 'systemctl')
    assert fake_systemd.directory.is_relative_to(tmp_path)


def test_rolling_refresh(rolling_refresh, tmp_path):
    app = rolling_refresh(
        UpgradeDemoCharm, units=2, snap='upgrade-demo', revision='2', revisions=['3'],
        services=['server'], charm_version='1/1.0.0', change_duration=0.002,
    )
    assert app.root.is_relative_to(tmp_path)
    app.install()
    app.refresh('1/1.1.0', '3', workload='1.1')
    assert app.refresh_order == [1]
"""


def _plugin_args() -> list[str]:
    # Installed (editable or wheel): pytest loads the entry point itself. Else name the module.
    names = {ep.name for ep in importlib.metadata.entry_points(group='pytest11')}
    return [] if 'charm_upgrade' in names else ['-p', PLUGIN]


def test_the_fixtures_work_in_a_charm_test_suite(pytester: pytest.Pytester):
    pytester.makepyfile(test_charm=USES_THE_FIXTURES)

    args = ['-W', 'error', '-p', 'no:cacheprovider', *_plugin_args()]
    result = pytester.runpytest_subprocess(*args)

    result.assert_outcomes(passed=3)


def test_the_plugin_can_be_turned_off(pytester: pytest.Pytester):
    if _plugin_args():
        pytest.skip('charm-upgrade is not installed with its entry points')
    pytester.makepyfile(test_off='def test_off(fake_snapd):\n    pass\n')

    result = pytester.runpytest_subprocess('-p', 'no:charm_upgrade', '-p', 'no:cacheprovider')

    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*fixture 'fake_snapd' not found*"])


def test_the_entry_point_is_declared():
    project = tomllib.loads((ROOT / 'pyproject.toml').read_text())
    assert project['project']['entry-points']['pytest11'] == {'charm_upgrade': PLUGIN}


def test_the_kit_does_not_import_pytest():
    code = (
        'import sys, charm_upgrade.testing as t; t.FakeSnapd; t.FakeSystemd; t.RollingRefresh;'
        'sys.exit("pytest" in sys.modules)'
    )
    subprocess.run([sys.executable, '-c', code], check=True)


def _howto_blocks() -> list[str]:
    text = (ROOT / 'docs' / 'howto' / 'testing.md').read_text()
    return re.findall(r'```python\n(.*?)```', text, flags=re.DOTALL)


def test_the_howto_examples_run(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch):
    blocks = _howto_blocks()
    assert len(blocks) == 7
    for number, block in enumerate(blocks):
        pytester.makepyfile(**{f'test_howto_{number}': block})
    charm = ROOT / 'examples' / 'charm'
    shutil.copy(charm / 'refresh_versions.toml', pytester.path)
    monkeypatch.setenv('PYTHONPATH', str(charm / 'src'))

    result = pytester.runpytest_subprocess(
        '-W', 'error', '-p', 'no:cacheprovider', *_plugin_args()
    )

    result.assert_outcomes(passed=8)
