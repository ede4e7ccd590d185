# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""The test kit's FakeSystemd follows systemd 252 where charm-upgrade meets it.

Each expectation here was observed on a real systemd 252 (the integration
tier's container) before it was written down.
"""

from __future__ import annotations

import subprocess
from typing import TYPE_CHECKING

from charm_upgrade import machine_path
from charm_upgrade.snapd import Snapd

if TYPE_CHECKING:
    import pathlib

    from charm_upgrade.testing import FakeSnapd
    from charm_upgrade.testing._fake_systemd import FakeSystemd


def systemctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(['systemctl', *args], capture_output=True, text=True, check=False)


def show(*names: str, props: str = 'Id,Names,LoadState,UnitFileState') -> list[dict[str, str]]:
    out = systemctl('show', f'--property={props}', '--', *names).stdout
    return [
        dict(line.split('=', 1) for line in block.splitlines())
        for block in out.strip().split('\n\n')
    ]


def test_a_short_name_means_the_service(fake_systemd: FakeSystemd):
    fake_systemd.add_unit('web', active=False)
    assert systemctl('start', 'web').returncode == 0
    assert fake_systemd.unit('web.service')['active'] == 'active'
    # A dot does not make a suffix: systemd reads snap.foo.daemon as a service.
    assert show('snap.foo.daemon', props='Id')[0]['Id'] == 'snap.foo.daemon.service'


def test_disable_removes_links_aliases_and_also_units(fake_systemd: FakeSystemd):
    fake_systemd.add_unit('app', also=['app.socket'], alias=['app-alias'])
    fake_systemd.add_unit('app.socket')
    fake_systemd.add_unit('linked', enabled='linked', path='/opt/units/linked.service')
    fake_systemd.systemctl('enable', 'linked.service')
    assert fake_systemd.links('app.service') == [
        'app-alias.service',
        'multi-user.target.wants/app.service',
    ]
    assert show('app-alias')[0]['Id'] == 'app.service'

    fake_systemd.systemctl('disable', 'app.service', 'linked.service')

    # Also= disabled the socket too, and the link of a linked unit is gone.
    assert fake_systemd.unit('app.socket')['enabled'] == 'disabled'
    assert fake_systemd.links('app.service') == []
    assert show('linked', 'app-alias') == [
        {'Id': 'linked.service', 'Names': 'linked.service', 'LoadState': 'not-found',
         'UnitFileState': ''},
        {'Id': 'app-alias.service', 'Names': 'app-alias.service', 'LoadState': 'not-found',
         'UnitFileState': ''},
    ]  # fmt: skip
    failed = systemctl('enable', 'linked.service')
    assert (failed.returncode, failed.stderr) == (
        1,
        'Failed to enable unit: Unit file linked.service does not exist.\n',
    )


def test_enable_refuses_an_alias_and_add_wants_enables(fake_systemd: FakeSystemd):
    fake_systemd.rename_unit('bind9', 'named')
    assert show('bind9')[0]['Id'] == 'named.service'
    refused = systemctl('enable', 'bind9.service')
    assert refused.returncode == 1
    assert 'Refusing to operate on alias name' in refused.stderr

    fake_systemd.add_unit('helper', enabled='static')
    fake_systemd.systemctl('add-wants', 'multi-user.target', 'helper.service')
    assert fake_systemd.unit('helper')['enabled'] == 'enabled'


def test_drop_ins_apply_in_file_name_order_at_reload(fake_systemd: FakeSystemd):
    fake_systemd.add_unit('app', active=False)
    fake_systemd.add_dropin('app', 'zz-hold.conf', '[Unit]\nConditionPathExists=!/\n')
    assert systemctl('start', 'app').returncode == 0
    assert fake_systemd.unit('app')['active'] == 'active'  # not reloaded yet
    fake_systemd.systemctl('stop', 'app')
    fake_systemd.systemctl('daemon-reload')
    assert systemctl('start', 'app').returncode == 0  # skipped, and it succeeds
    assert fake_systemd.unit('app')['active'] == 'inactive'
    # A later drop-in that resets the conditions undoes the hold.
    fake_systemd.add_dropin('app', 'zzz-reset.conf', '[Unit]\nConditionPathExists=\n')
    fake_systemd.systemctl('daemon-reload')
    assert fake_systemd.held() == []
    assert show('app', props='DropInPaths')[0]['DropInPaths'].endswith('zzz-reset.conf')


def test_start_and_stop_go_on_past_a_unit_they_cannot_handle(fake_systemd: FakeSystemd):
    fake_systemd.add_unit('good', active=False)
    fake_systemd.add_unit('picky', active=False, refuse_manual_start=True)
    fake_systemd.add_unit('sticky', refuse_manual_stop=True)

    started = systemctl('start', 'ghost.service', 'picky.service', 'good.service')
    assert started.returncode == 4
    assert 'Unit ghost.service not found' in started.stderr
    assert 'Operation refused, unit picky.service' in started.stderr
    assert fake_systemd.unit('good')['active'] == 'active'
    stopped = systemctl('stop', 'sticky.service', 'good.service')
    assert stopped.returncode == 4
    assert fake_systemd.unit('good')['active'] == 'inactive'
    assert fake_systemd.unit('sticky')['active'] == 'active'
    templated = systemctl('show', 'good.service', 'foo@.service')
    assert templated.returncode == 1
    assert templated.stdout == ''


def test_a_socket_triggers_its_service_and_fails_when_it_is_held(fake_systemd: FakeSystemd):
    fake_systemd.add_unit('app', active=False)
    fake_systemd.add_unit('app.socket')
    assert show('app.service', props='TriggeredBy')[0]['TriggeredBy'] == 'app.socket'
    fake_systemd.add_dropin('app', '~hold.conf', '[Unit]\nConditionPathExists=!/\n')
    fake_systemd.systemctl('daemon-reload')
    fake_systemd.activate('app.socket')
    assert fake_systemd.unit('app.socket')['active'] == 'failed'
    assert fake_systemd.unit('app.service')['active'] == 'inactive'


def test_fake_snapd_and_fake_systemd_see_one_truth(
    fake_snapd: FakeSnapd, fake_systemd: FakeSystemd
):
    # Both fixtures in one test: the fake snapd keeps its services on this machine.
    fake_snapd.add_snap('foo', services=['daemon'])
    unit = 'snap.foo.daemon.service'
    assert fake_systemd.unit(unit) == {'enabled': 'enabled', 'active': 'active'}

    fake_systemd.systemctl('stop', unit)  # charmhelpers' service_stop, say
    assert fake_snapd.service_state('foo') == {'daemon': (True, False)}

    fake_systemd.add_dropin(unit, '~hold.conf', '[Unit]\nConditionPathExists=!/\n')
    fake_systemd.systemctl('daemon-reload')
    client = Snapd()
    client.wait_done(client.start(['foo.daemon'], enable=False))
    # systemd skips a held unit, whoever asks: snapd's start is no exception.
    assert fake_snapd.service_state('foo') == {'daemon': (True, False)}


def test_the_librarys_hold_keeps_a_snap_service_down_whatever_starts_it(
    fake_snapd: FakeSnapd, fake_systemd: FakeSystemd
):
    # The hold a series upgrade writes: its drop-in, then one daemon-reload.
    from charm_upgrade import _systemd

    fake_snapd.add_snap('foo', revision='1', revisions=['2'], services=['daemon'])
    unit = 'snap.foo.daemon.service'
    client = Snapd()
    client.wait_done(client.stop(['foo.daemon'], disable=True))
    _systemd.hold([unit])
    assert (fake_systemd.config_dir / f'{unit}.d' / _systemd.HOLD_DROPIN_NAME).is_file()
    assert fake_systemd.held() == [unit]

    # A charm that wrongly starts the workload: through snapd (with --enable),
    # systemctl start, enable --now, restart, and a snapd refresh that restarts it.
    client.wait_done(client.start(['foo.daemon'], enable=True))
    assert systemctl('start', unit).returncode == 0
    assert systemctl('enable', '--now', unit).returncode == 0
    assert systemctl('restart', unit).returncode == 0
    client.wait_done(client.refresh('foo', '2'))

    # systemd skips a held unit and every one of those starts succeeds: it stays down.
    assert fake_snapd.service_state('foo') == {'daemon': (True, False)}
    assert systemctl('is-active', unit).returncode == 3

    _systemd.release([unit])
    client.wait_done(client.start(['foo.daemon'], enable=False))
    assert fake_snapd.service_state('foo') == {'daemon': (True, True)}


def test_enable_now_enables_and_starts_and_disable_now_stops(fake_systemd: FakeSystemd):
    fake_systemd.add_unit('app', enabled='disabled', active=False)

    assert systemctl('enable', '--now', 'app').returncode == 0
    assert fake_systemd.unit('app') == {'enabled': 'enabled', 'active': 'active'}
    assert systemctl('disable', '--now', 'app.service').returncode == 0
    assert fake_systemd.unit('app') == {'enabled': 'disabled', 'active': 'inactive'}
    # --no-block only stops systemctl from waiting for the job: the job runs all the same.
    assert systemctl('enable', '--now', '--no-block', 'app').returncode == 0
    assert fake_systemd.unit('app') == {'enabled': 'enabled', 'active': 'active'}
    assert systemctl('stop', '--no-block', 'app').returncode == 0
    assert fake_systemd.unit('app')['active'] == 'inactive'
    # A unit file outside the unit directories: enable links it, --now starts it.
    fake_systemd.add_unit('ext', enabled='linked', active=False, path='/opt/units/ext.service')
    (fake_systemd.config_dir / 'ext.service').unlink()
    ext = str(fake_systemd.machine.real_path('/opt/units/ext.service'))
    assert systemctl('enable', '--now', ext).returncode == 0
    assert fake_systemd.unit('ext') == {'enabled': 'enabled', 'active': 'active'}


def test_is_active_and_is_enabled_answer_for_any_unit_as_systemctl_does(
    fake_systemd: FakeSystemd,
):
    fake_systemd.add_unit('up')
    fake_systemd.add_unit('down', enabled='disabled', active=False)
    fake_systemd.add_unit('fixed', enabled='static', active=False)

    # Exit 0 when at least one of the units is active; 3 when none is.
    both = systemctl('is-active', 'down', 'up')
    assert (both.returncode, both.stdout) == (0, 'inactive\nactive\n')
    assert systemctl('is-active', 'down', 'ghost').returncode == 3
    assert systemctl('is-active', 'ghost').stdout == 'inactive\n'
    # --quiet (-q) prints nothing; the exit status says it all.
    assert systemctl('is-active', '--quiet', 'up').stdout == ''
    assert systemctl('is-active', '-q', 'up').stdout == ''

    # Exit 0 for enabled, static, alias, indirect...; 1 for disabled, masked, linked.
    assert systemctl('is-enabled', 'fixed').returncode == 0
    assert systemctl('is-enabled', 'down').returncode == 1
    mixed = systemctl('is-enabled', 'down', 'fixed')
    assert (mixed.returncode, mixed.stdout) == (0, 'disabled\nstatic\n')
    ghost = systemctl('is-enabled', 'ghost')
    assert (ghost.returncode, ghost.stdout) == (1, '')
    assert 'Failed to get unit file state for ghost.service' in ghost.stderr
    assert systemctl('is-enabled', '-q', 'up').stdout == ''


def test_a_unit_file_the_charm_writes_is_a_unit_at_once(
    fake_systemd: FakeSystemd, tmp_path: pathlib.Path
):
    # The charm writes its own unit where machine_path() puts /etc/systemd/system in its
    # events: in the fake's root, under this test's tmp_path.
    unit_file = fake_systemd.machine_path('/etc/systemd/system/mydb-exporter.service')
    assert unit_file == fake_systemd.config_dir / 'mydb-exporter.service'
    assert tmp_path in unit_file.parents
    unit_file.write_text(
        '[Service]\nExecStart=/usr/bin/mydb-exporter\n[Install]\nWantedBy=multi-user.target\n'
    )

    # systemd loads a unit file it has never seen when it is first named: no daemon-reload
    # is needed for a new file (only for a changed one).
    assert show('mydb-exporter', props='LoadState,UnitFileState') == [
        {'LoadState': 'loaded', 'UnitFileState': 'disabled'}
    ]
    assert systemctl('start', 'mydb-exporter').returncode == 0
    assert fake_systemd.unit('mydb-exporter') == {'enabled': 'disabled', 'active': 'active'}
    assert systemctl('stop', 'mydb-exporter').returncode == 0
    assert systemctl('daemon-reload').returncode == 0
    assert systemctl('enable', '--now', 'mydb-exporter.service').returncode == 0
    assert fake_systemd.unit('mydb-exporter') == {'enabled': 'enabled', 'active': 'active'}

    # A packaged unit, written under /usr/lib/systemd/system (which is /lib/systemd/system).
    vendor_file = fake_systemd.machine_path('/usr/lib/systemd/system/mydb-backup.service')
    vendor_file.write_text('[Service]\nExecStart=/usr/bin/mydb-backup\n')
    assert show('mydb-backup', props='LoadState,UnitFileState') == [
        {'LoadState': 'loaded', 'UnitFileState': 'static'}
    ]
    # Outside a unit's events (no harness here), machine_path() is the identity: a test's
    # own absolute paths stay where they are.
    assert machine_path(tmp_path / 'data') == tmp_path / 'data'
