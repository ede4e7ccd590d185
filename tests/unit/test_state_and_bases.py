# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from charm_upgrade import StateFileError, _bases, _state

if TYPE_CHECKING:
    import pathlib


def test_write_json_replaces_atomically_and_leaves_no_temp(tmp_path: pathlib.Path):
    path = tmp_path / 'r.json'
    _state.write_json(path, {'a': 1})
    _state.write_json(path, {'a': 2})
    assert _state.read_json(path) == {'a': 2}
    assert [p.name for p in tmp_path.iterdir()] == ['r.json']


def test_read_json_of_a_missing_file_is_none(tmp_path: pathlib.Path):
    assert _state.read_json(tmp_path / 'nope.json') is None


def test_a_corrupt_state_file_is_a_clear_error(tmp_path: pathlib.Path):
    path = tmp_path / 'r.json'
    path.write_text('{')
    with pytest.raises(StateFileError, match=r'r\.json is not valid JSON') as caught:
        _state.read_json(path)
    assert caught.value.path == str(path)


def test_state_dir_defaults_to_the_charm_dir(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.delenv('CHARM_UPGRADE_STATE_DIR')
    monkeypatch.setenv('JUJU_CHARM_DIR', str(tmp_path))
    assert _state.state_dir() == tmp_path / '.charm_upgrade'
    assert (tmp_path / '.charm_upgrade').is_dir()


def test_current_base_reads_os_release(os_release: pathlib.Path):
    assert _bases.current_base() == 'ubuntu@22.04'
    os_release.write_text('garbage\n')
    assert _bases.current_base() is None


@pytest.mark.parametrize(
    ('env', 'expected'),
    [
        ({'JUJU_TARGET_BASE': 'ubuntu@24.04', 'JUJU_TARGET_SERIES': 'jammy'}, 'ubuntu@24.04'),
        ({'JUJU_TARGET_SERIES': 'jammy'}, 'ubuntu@22.04'),
        ({'JUJU_TARGET_SERIES': 'noble'}, 'ubuntu@24.04'),
        ({'JUJU_TARGET_SERIES': 'centos7'}, 'centos@7'),
        ({}, None),
        ({'JUJU_TARGET_BASE': ' '}, None),
    ],
)
def test_target_base_from_env(env: dict[str, str], expected: str | None):
    assert _bases.target_base_from_env(env) == expected
