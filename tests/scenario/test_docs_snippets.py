# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""The charms in README.md and docs/index.md, run under ops.testing as a reader would run them.

Each ```python block is imported as a module of its own and driven through the events it is
written for: a series-upgrade charm through install, start, prepare and complete, with fake
systemd units and a fake snap; the charm-refresh charm through a deployment and a rolling
refresh with the real ``charm_refresh.Machines``. A block marked ``<!-- fragment: why -->``
only has to compile (the rule is in tests/doc_snippets.py). The reactive snippet runs
through charms.reactive's real dispatch in tests/reactive/test_docs_snippets.py.

The ``charmcraft.yaml`` fragment of docs/howto/refresh.md is checked here too: against
``CHARM_REFRESH_META``, and by running the real charm-refresh with metadata made from the
fragment alone.
"""

from __future__ import annotations

import pathlib
import sys
from typing import TYPE_CHECKING, Any

import ops
import pytest
import yaml
from doc_snippets import (
    INDEX,
    README,
    REFRESH_HOWTO,
    ROOT,
    Block,
    block_under,
    blocks,
    import_block,
)
from ops import testing

from charm_upgrade.testing import CHARM_REFRESH_META, FakeSnapd, RefreshVersions, RollingRefresh

if TYPE_CHECKING:
    from collections.abc import Iterator

    from charm_upgrade.testing._fake_systemd import FakeSystemd

SERIES_OPS = [
    (README, 'Use it in an ops charm', True),
    (INDEX, 'The two halves', False),
]
"""The series-upgrade charms: file, heading, whether the charm lists the snap."""

REFRESH = (README, 'Refresh the workload snap with charm-refresh')
REACTIVE = (README, 'Use it in a reactive charm')  # tests/reactive/test_docs_snippets.py

RUN = {(path, heading) for path, heading, _ in SERIES_OPS} | {REFRESH, REACTIVE}


def _all_python_blocks() -> list[Block]:
    return blocks(README) + blocks(INDEX)


@pytest.mark.parametrize('block', _all_python_blocks(), ids=lambda b: b.where)
def test_every_python_block_is_run_or_marked_a_fragment(block: Block):
    compile(block.code, block.where, 'exec')  # fragments too: no syntax error
    ran = (block.path, block.heading) in RUN
    if block.fragment is None:
        assert ran, f'{block.where} is neither run by a test nor marked a fragment'
    else:
        assert not ran, f'{block.where} is run by a test but marked a fragment'


# Series upgrades --------------------------------------------------------------------------


@pytest.fixture
def machine(fake_systemd: FakeSystemd, os_release: pathlib.Path) -> Iterator[FakeSnapd]:
    # What the snippets name: two systemd units the charm installed, and a snap.
    fake_systemd.add_unit('myapp.service')
    fake_systemd.add_unit('myapp-worker.socket')
    with FakeSnapd(change_duration=0.005) as snapd:
        snapd.attach(fake_systemd)
        snapd.add_snap('myapp-cache', services=['daemon'])
        yield snapd


@pytest.mark.parametrize(('path', 'heading', 'lists_snap'), SERIES_OPS)
def test_the_series_upgrade_charm_takes_down_and_brings_back(
    path: pathlib.Path,
    heading: str,
    lists_snap: bool,
    machine: FakeSnapd,
    fake_systemd: FakeSystemd,
    os_release: pathlib.Path,
    tmp_path: pathlib.Path,
    monkeypatch: pytest.MonkeyPatch,
):
    migrated: list[tuple[str, str]] = []
    with import_block(block_under(path, heading), tmp_path) as module:

        class Charm(module.MyCharm):
            def _migrate(self, old_base: str, new_base: str) -> None:
                migrated.append((old_base, new_base))
                super()._migrate(old_base, new_base)

        ctx = testing.Context(Charm, meta={'name': 'myapp'}, machine_id='0')
        state = ctx.run(ctx.on.install(), testing.State())
        state = ctx.run(ctx.on.start(), state)

        monkeypatch.setenv('JUJU_TARGET_BASE', 'ubuntu@24.04')
        with pytest.warns(DeprecationWarning, match='pre-series-upgrade'):
            state = ctx.run(ctx.on.pre_series_upgrade(), state)
        monkeypatch.delenv('JUJU_TARGET_BASE')
        assert isinstance(state.unit_status, testing.BlockedStatus)
        assert 'juju upgrade-machine 0 complete' in state.unit_status.message
        for unit in ('myapp.service', 'myapp-worker.socket'):
            assert fake_systemd.unit(unit) == {'enabled': 'disabled', 'active': 'inactive'}
        held_snap = {'daemon': (False, False)} if lists_snap else {'daemon': (True, True)}
        assert machine.service_state('myapp-cache') == held_snap

        os_release.write_text('ID=ubuntu\nVERSION_ID="24.04"\n')
        with pytest.warns(DeprecationWarning, match='post-series-upgrade'):
            state = ctx.run(ctx.on.post_series_upgrade(), state)
        assert migrated == [('ubuntu@22.04', 'ubuntu@24.04')]
        assert state.unit_status == testing.ActiveStatus()
        for unit in ('myapp.service', 'myapp-worker.socket'):
            assert fake_systemd.unit(unit) == {'enabled': 'enabled', 'active': 'active'}
        assert machine.service_state('myapp-cache') == {'daemon': (True, True)}
        assert fake_systemd.held() == []


# charm-refresh ----------------------------------------------------------------------------


def _charmcraft_fragment() -> dict[str, Any]:
    (block,) = [
        b
        for b in blocks(REFRESH_HOWTO, 'yaml')
        if b.heading == 'What charm-refresh needs in charmcraft.yaml'
    ]
    return yaml.safe_load(block.code)


def _without_descriptions(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: _without_descriptions(v)
            for k, v in value.items()  # pyright: ignore[reportUnknownVariableType]
            if k != 'description'
        }
    return value


def test_the_charmcraft_fragment_is_what_the_kit_declares():
    assert _without_descriptions(_charmcraft_fragment()) == CHARM_REFRESH_META


def test_the_refresh_versions_example_reads(tmp_path: pathlib.Path):
    (block,) = [
        b
        for b in blocks(REFRESH_HOWTO, 'toml')
        if b.heading == 'What charm-refresh needs in charmcraft.yaml'
    ]
    path = tmp_path / 'refresh_versions.toml'
    path.write_text(block.code)
    versions = RefreshVersions.load(path, charm='1/1.0.0')
    assert versions.snap == 'myapp'
    assert versions.revisions == {'x86_64': '182', 'aarch64': '181'}


def _deploy(
    charm: type[ops.CharmBase], root: pathlib.Path, meta: dict[str, Any]
) -> RollingRefresh:
    app = RollingRefresh(
        charm,
        units=2,
        snap='myapp',
        revision='10',
        revisions=['11'],
        services=['daemon'],
        charm_version='1/1.0.0',
        meta={'name': 'myapp', **meta},
        root=root,
    )
    app.install()  # the install hook runs before the peer relation is complete
    return app


def test_the_refresh_charm_deploys_and_refreshes_with_the_real_charm_refresh(
    tmp_path: pathlib.Path,
):
    with (
        import_block(block_under(*REFRESH), tmp_path) as module,
        _deploy(module.MyCharm, tmp_path / 'app', CHARM_REFRESH_META) as app,
    ):
        assert [e.error for e in app.events] == [None] * len(app.events)
        app.refresh('1/1.1.0', '11', workload='1.1')
        assert app.refresh_order == [1]  # paused after the first unit (the default)
        outcome = app.run_action(0, 'resume-refresh')
        assert outcome.failure is None
        assert app.refresh_order == [1, 0]
        assert [app.revision(unit) for unit in app.units] == ['11', '11']
        for unit in app.units:
            assert app.snapd(unit).service_state('myapp') == {'daemon': (True, True)}


def test_charm_refresh_runs_on_metadata_made_from_the_fragment_alone(tmp_path: pathlib.Path):
    # Every declaration charm-refresh reads: the peer relation and the option at every
    # event, each action's parameters by key when it runs.
    with (
        import_block(block_under(*REFRESH), tmp_path) as module,
        _deploy(module.MyCharm, tmp_path / 'app', _charmcraft_fragment()) as app,
    ):
        outcome = app.run_action(0, 'pre-refresh-check')
        assert outcome.failure is None, outcome.failure
        app.refresh('1/2.0.0', '11', workload='2.0')  # a new major version: incompatible
        assert app.refresh_order == []
        # charm-refresh reads all three parameters before it acts on one.
        outcome = app.run_action(1, 'force-refresh-start', {'check-compatibility': False})
        assert outcome.results == {'result': 'Refreshed unit 1'}, outcome.failure
        outcome = app.run_action(0, 'resume-refresh')
        assert outcome.failure is None, outcome.failure
        assert app.refresh_order == [1, 0]
        assert [app.revision(unit) for unit in app.units] == ['11', '11']
        assert not [e for e in app.events if e.error is not None]


def test_the_example_charm_declares_what_the_fragment_says():
    example = yaml.safe_load((ROOT / 'examples' / 'charm' / 'charmcraft.yaml').read_text())
    fragment = _charmcraft_fragment()
    assert example['peers'] == fragment['peers']
    for name, option in fragment['config']['options'].items():
        assert example['config']['options'][name] == option
    for name, action in fragment['actions'].items():
        assert example['actions'][name] == action


def test_snippet_modules_are_removed_afterwards():
    assert not [name for name in sys.modules if name.startswith('snippet_')]
