# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""A whole application under ops.testing, refreshed unit by unit: :class:`RollingRefresh`.

Each unit has its own :class:`~charm_upgrade.testing.RefreshHarness` (its ops.testing State and
charm directory) and its own :class:`~charm_upgrade.testing.FakeSnapd`. The units share the
``refresh-v-three`` peer relation the way Juju shares it: a unit's writes become visible to the
others when its event ends without error, and each unit whose view changed is queued a
``relation-changed``. Queued events are delivered one round at a time, one event per unit per
round, highest unit first, so every run of a scenario is the same.

Each unit also has a machine of its own: a directory that stands for its ``/``, where
:func:`charm_upgrade.machine_path` maps the charm's machine paths (unit files, data,
``backup=`` paths), with an ``/etc/os-release`` (its base) and a
:class:`~charm_upgrade.testing.FakeSystemd` over its ``/etc/systemd/system``. Between
:meth:`RollingRefresh.prepare_series_upgrade` and
:meth:`RollingRefresh.complete_series_upgrade` the unit runs nothing, as Juju's uniter idles
once pre-series-upgrade has succeeded (``juju upgrade-machine <machine> prepare``): its events
wait, and an action on it is refused. Complete delivers post-series-upgrade first, then
upgrade-charm if ``juju refresh`` came meanwhile, then whatever else waited, coalesced.

Example::

    with RollingRefresh(MyCharm, units=3, snap='tiny', revision='10', revisions=['11'],
                        charm_version='1/1.0.0') as app:
        app.install()
        app.refresh('1/1.1.0', '11')          # juju refresh; unit 2 refreshes, then pauses
        app.run_action(1, 'resume-refresh')
        assert app.refresh_order == [2, 1, 0]

        app.prepare_series_upgrade(0, 'ubuntu@24.04')   # pre-series-upgrade; unit 0 idles
        app.complete_series_upgrade(0)                   # new os-release, post-series-upgrade
        assert app.base(0) == 'ubuntu@24.04'
"""

from __future__ import annotations

import collections
import dataclasses
import pathlib
import shutil
import tempfile
import warnings
from typing import TYPE_CHECKING, Any, Generic, cast

from ops import testing

from .. import _bases
from ._fake_snapd import FakeSnapd
from ._fake_systemd import FakeSystemd
from ._kill import HookKilled
from ._refresh_harness import (
    EPOCH,
    PEER_ENDPOINT,
    CharmT,
    RefreshHarness,
    RefreshVersions,
    _revisions,
)

if TYPE_CHECKING:
    import os
    from collections.abc import Iterable, Mapping
    from types import TracebackType

    from scenario.state import _EntityStatus, _Event

__all__ = ['ActionOutcome', 'EventRecord', 'RollingRefresh']

_RELATION_ID = 1
_UPGRADE = ('upgrade_charm', 'config_changed')
_SERIES = ('pre_series_upgrade', 'post_series_upgrade')
# ops warns, when it builds a series-upgrade event, that Juju 4 will not emit it. Juju 3 does,
# and this kit delivers them on purpose: that warning, and only that one, is expected here.
_SERIES_WARNING = r'(pre|post)-series-upgrade events will not be emitted from Juju 4\.0 onwards'


@dataclasses.dataclass(frozen=True)
class EventRecord:
    """One event delivered to one unit.

    Attributes:
        unit: the unit's number.
        event: the event's Python name, e.g. ``refresh_v_three_relation_changed``.
        remote_unit: the remote unit of a relation event.
        calls: the hook-tool calls charm-api and charm-refresh made, by tool.
        error: what the charm raised, if it did (Juju drops the event's relation writes and
            retries the event); ``HookKilled: ...`` for a kill point.
        unit_status: the unit status after the event (the one before, if it failed).
        services: the workload snap's services after the event: ``app -> (enabled, active)``.
        library_lines: lines of charm-upgrade's code the event ran, if counted.
    """

    unit: int
    event: str
    remote_unit: int | None
    calls: collections.Counter[str]
    error: str | None = None
    unit_status: _EntityStatus | None = None
    services: dict[str, tuple[bool, bool]] = dataclasses.field(
        default_factory=dict[str, tuple[bool, bool]]
    )
    library_lines: int | None = None

    @property
    def killed(self) -> bool:
        """Whether the hook was killed at a kill point."""
        return self.error is not None and self.error.startswith('HookKilled')

    @property
    def total_calls(self) -> int:
        """All hook-tool calls in the event."""
        return sum(self.calls.values())


@dataclasses.dataclass(frozen=True)
class ActionOutcome:
    """What ``juju run <unit> <action>`` would report.

    Attributes:
        unit: the unit's number.
        name: the action.
        results: the results the charm set (charm-refresh sets ``result``).
        logs: the messages the charm logged, in order.
        failure: the failure message, or None if the action succeeded.
    """

    unit: int
    name: str
    results: dict[str, Any]
    logs: list[str]
    failure: str | None

    @property
    def ok(self) -> bool:
        """Whether the action succeeded."""
        return self.failure is None


@dataclasses.dataclass
class _Pending:
    kind: str  # a ctx.on attribute name
    remote: int | None = None
    env: dict[str, str] = dataclasses.field(default_factory=dict[str, str])


@dataclasses.dataclass(frozen=True)
class _DeferredRefresh:
    charm_version: str
    revision: str | Mapping[str, str]
    workload: str | None
    charm_revision: int
    mtime: float


@dataclasses.dataclass
class _Unit(Generic[CharmT]):
    number: int
    harness: RefreshHarness[CharmT]
    snapd: FakeSnapd
    systemd: FakeSystemd
    os_release: pathlib.Path
    state: testing.State
    queue: collections.deque[_Pending] = dataclasses.field(
        default_factory=collections.deque[_Pending]
    )
    in_relation: bool = False
    joined: set[int] = dataclasses.field(default_factory=set[int])
    failing: bool = False  # the head of the queue raised last time
    prepared: bool = False  # pre-series-upgrade succeeded; the uniter idles until complete
    target_base: str | None = None
    refresh_later: _DeferredRefresh | None = None  # `juju refresh` while prepared


class RollingRefresh(Generic[CharmT]):
    """N units of one application that uses the real ``charm_refresh.Machines``.

    Use as a context manager (or call :meth:`close`): it runs one FakeSnapd per unit.

    Args:
        charm_type: the charm class.
        units: how many units.
        snap: the workload snap's name (not with ``refresh_versions``).
        revision: the snap revision the first charm revision pins; installed on every unit
            (not with ``refresh_versions``).
        charm_version: the first charm revision's version, e.g. ``'1/1.0.0'``.
        workload: the workload version of ``revision`` (``'1.0'`` by default; not with
            ``refresh_versions``).
        refresh_versions: the charm's own ``refresh_versions.toml`` (a path), or a
            :class:`RefreshVersions`: the snap, its pinned revision and the workload version
            come from it, checked as a real unit checks them, so a bad pin fails here.
        revisions: other snap revisions the fake store offers (refresh targets).
        services: the snap's services.
        meta: charm metadata (a ``charmcraft.yaml`` dict works), or None to load the charm's
            ``charmcraft.yaml``.
        actions: the charm's actions, if not in ``meta``.
        config: the charm's config options, if not in ``meta``.
        options: config values set by the operator (defaults come from the charm's config).
        app_name: the application's name (default: the charm's).
        leader: the leader unit's number.
        charm_revision: the Charmhub revision deployed first.
        charmhub: False for a local charm.
        root: where to put the units' charm directories (default: a new temporary directory,
            removed by :meth:`close`).
        change_duration: seconds each FakeSnapd change takes.
        installed: False offers the snap in each fake store instead of installing it, for
            charms that install it themselves (``CharmSpecificMachines.install_snap``).
        plugs: the snap's plugs.
        snapd_version: the snapd each FakeSnapd answers as (``'2.57'`` refuses holds).
        base: every machine's base at deployment, ``name@version`` as Juju writes it; each
            unit reads it from an os-release file of its own (``$CHARM_UPGRADE_OS_RELEASE``).
    """

    def __init__(
        self,
        charm_type: type[CharmT],
        *,
        units: int = 3,
        snap: str | None = None,
        revision: str | None = None,
        charm_version: str,
        workload: str | None = None,
        refresh_versions: str | os.PathLike[str] | RefreshVersions | None = None,
        revisions: Iterable[str] = (),
        services: Iterable[str] = ('daemon',),
        meta: Mapping[str, Any] | None = None,
        actions: Mapping[str, Any] | None = None,
        config: Mapping[str, Any] | None = None,
        options: Mapping[str, str | int | float | bool] | None = None,
        app_name: str | None = None,
        leader: int = 0,
        charm_revision: int = 1,
        charmhub: bool = True,
        root: str | os.PathLike[str] | None = None,
        change_duration: float = 0.01,
        base: str = 'ubuntu@22.04',
        installed: bool = True,
        plugs: Iterable[str] = (),
        snapd_version: str = '2.68',
    ) -> None:
        if units < 1 or not 0 <= leader < units:
            raise ValueError('need at least one unit, and the leader among them')
        versions = _first_versions(refresh_versions, charm_version, snap, revision, workload)
        snap, revision = versions.snap, versions.revision
        _split_base(base)
        revisions, services, plugs = list(revisions), list(services), list(plugs)
        self._own_root = root is None
        self.root = pathlib.Path(root or tempfile.mkdtemp(prefix='rolling-refresh-'))
        """Where the units' charm directories are."""
        self.snap = snap
        """The workload snap's name."""
        self.leader = leader
        """The leader unit's number."""
        self.events: list[EventRecord] = []
        """Every event delivered, in order."""
        self.refresh_order: list[int] = []
        """Units in the order their snap revision changed since the last :meth:`refresh`."""
        self._clock = EPOCH
        self._charm_revision = charm_revision
        self._unit_data: dict[int, dict[str, str]] = {}
        self._app_data: dict[str, str] = {}
        self._units: list[_Unit[CharmT]] = []
        self._snapds: list[FakeSnapd] = []
        try:
            for number in range(units):
                snapd = FakeSnapd(change_duration=change_duration, version=snapd_version)
                self._snapds.append(snapd)  # first, so that close() stops it
                snapd.start()
                machine = self.root / f'machine-{number}'
                systemd = FakeSystemd(machine / 'systemd')
                snapd.attach(systemd)  # the snap's services are this machine's units
                # Its /etc/os-release, where machine_path() puts it for this unit.
                os_release = systemd.root / 'etc' / 'os-release'
                _write_os_release(os_release, base)
                harness = RefreshHarness(
                    charm_type,
                    versions=versions,
                    charm_dir=self.root / f'unit-{number}',
                    meta=meta,
                    actions=actions,
                    config=config,
                    app_name=app_name,
                    unit_id=number,
                    charm_revision=charm_revision,
                    charmhub=charmhub,
                    snapd_socket=snapd.socket_path,
                    goal_units=range(units),
                    mtime=self._clock,
                    systemd=systemd,
                    machine_root=systemd.root,
                )
                harness.extra_env[_bases.OS_RELEASE_ENV] = str(os_release)
                state = testing.State(
                    leader=number == leader, config=dict(options or {}), planned_units=units
                )
                self._units.append(_Unit(number, harness, snapd, systemd, os_release, state))
                if installed:
                    snapd.add_snap(
                        snap,
                        revision=revision,
                        revisions=revisions,
                        services=services,
                        plugs=plugs,
                    )
                else:
                    snapd.add_store_snap(
                        snap, revisions=[revision, *revisions], services=services, plugs=plugs
                    )
                self._unit_data[number] = dict(testing.PeerRelation(PEER_ENDPOINT).local_unit_data)
        except BaseException:
            self.close()
            raise

    # Life cycle

    def close(self) -> None:
        """Stop the fake snapds and remove the temporary charm directories."""
        for snapd in self._snapds:
            snapd.stop()
        for unit in self._units:
            unit.harness.close()
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> RollingRefresh[CharmT]:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # What tests look at

    @property
    def units(self) -> list[int]:
        """The unit numbers."""
        return [unit.number for unit in self._units]

    def unit_state(self, unit: int) -> testing.State:
        """The unit's State after its last event, with the peer relation as it sees it now."""
        return self._with_relation(self._units[unit])

    @property
    def app_status(self) -> _EntityStatus:
        """The application status (as the leader last set it)."""
        return self._units[self.leader].state.app_status

    def unit_status(self, unit: int) -> _EntityStatus:
        """The unit's workload status, as its last successful event left it."""
        return self._units[unit].state.unit_status

    def failing(self, unit: int) -> str | None:
        """The event the unit failed in, which Juju retries, or None; e.g. ``upgrade_charm``.

        ``juju status`` shows such a unit in error: ``hook failed: "upgrade-charm"``.
        """
        target = self._units[unit]
        if target.failing and target.queue and target.harness.calls:
            return target.harness.calls[-1].event
        return None

    def revision(self, unit: int) -> str:
        """The snap revision installed on the unit."""
        return self._units[unit].snapd.revision(self.snap)

    def harness(self, unit: int) -> RefreshHarness[CharmT]:
        """The unit's harness (its Context is ``harness(n).ctx``)."""
        return self._units[unit].harness

    def snapd(self, unit: int) -> FakeSnapd:
        """The unit's fake snapd, e.g. to inject a fault."""
        return self._units[unit].snapd

    def systemd(self, unit: int) -> FakeSystemd:
        """The unit's machine's stand-in ``systemctl`` (its snap services are units there)."""
        return self._units[unit].systemd

    def base(self, unit: int) -> str | None:
        """The unit's machine's base, as its os-release file says (``ubuntu@22.04``)."""
        return _bases.current_base(self._units[unit].os_release)

    def machine_path(self, unit: int, path: str | os.PathLike[str]) -> pathlib.Path:
        """Where the machine path ``path`` is on the unit's machine, in this test.

        What :func:`charm_upgrade.machine_path` gives the unit's events: each unit has a
        machine root of its own (its FakeSystemd's :attr:`~FakeSystemd.root`), under this
        application's :attr:`root`, so two units that write the "same" path do not share it.

        Example::

            data = app.machine_path(0, '/var/snap/mydb/common/data')
        """
        return self._units[unit].harness.machine_path(path)

    def os_release(self, unit: int) -> pathlib.Path:
        """The unit's machine's os-release file."""
        return self._units[unit].os_release

    @property
    def series_upgrading(self) -> dict[int, str]:
        """Units prepared for a series upgrade and not yet completed, with their target base."""
        return {
            unit.number: unit.target_base or ''
            for unit in self._units
            if unit.prepared or any(p.kind == 'pre_series_upgrade' for p in unit.queue)
        }

    @property
    def app_data(self) -> dict[str, str]:
        """The application's peer databag, as committed."""
        return dict(self._app_data)

    def unit_data(self, unit: int) -> dict[str, str]:
        """The unit's peer databag, as committed."""
        return dict(self._unit_data[unit])

    @property
    def hook_tool_calls(self) -> int:
        """Hook-tool calls in all events so far."""
        return sum(record.total_calls for record in self.events)

    @property
    def pending(self) -> dict[int, list[str]]:
        """Events queued on each unit, by kind."""
        return {unit.number: [p.kind for p in unit.queue] for unit in self._units}

    # What Juju does

    def install(self, *, settle: bool = True) -> None:
        """Deploy: install on every unit, then the peer relation, leadership, config, start.

        Then every unit joins every other unit's view of the peer relation (``relation-joined``
        and ``relation-changed``); until all have, charm-refresh raises
        ``PeerRelationNotReady``.

        Args:
            settle: deliver the queued events (see :meth:`settle`).
        """
        for unit in self._units:
            unit.queue.append(_Pending('install'))
        for unit in self._units:
            unit.queue.append(_Pending('relation_created'))
            if unit.number == self.leader:
                unit.queue.append(_Pending('leader_elected'))
            unit.queue.extend([_Pending('config_changed'), _Pending('start')])
            for other in self.units:
                if other != unit.number:
                    unit.queue.append(_Pending('relation_joined', other))
                    unit.queue.append(_Pending('relation_changed', other))
        if settle:
            self.settle()

    def refresh(
        self,
        charm_version: str,
        revision: str | Mapping[str, str],
        *,
        workload: str | None = None,
        charm_revision: int | None = None,
        force_units: bool = False,
        settle: bool = True,
    ) -> None:
        """``juju refresh``: new charm code on every unit, then upgrade-charm, highest first.

        Every unit gets the new ``refresh_versions.toml`` and ``.juju-charm`` at the same
        simulated time; upgrade-charm and config-changed go to the front of each unit's queue,
        replacing any still queued. :attr:`refresh_order` starts afresh.

        As Juju's uniter does, a unit whose last event failed (see :meth:`failing`) keeps its
        old code: Juju retries the failed hook first, and upgrades the charm once it succeeds;
        ``force_units`` (``juju refresh --force-units``) swaps the code at once, and the failed
        hook is retried with the new code. A unit prepared for a series upgrade gets the new
        code after :meth:`complete_series_upgrade`.

        Args:
            charm_version: the new charm version.
            revision: the snap revision it pins (a str: this machine's architecture).
            workload: the new workload version (default: unchanged).
            charm_revision: the new Charmhub revision (default: the last one plus one); the old
                one to roll back.
            force_units: upgrade units in error too, as ``--force-units`` does.
            settle: deliver the queued events (see :meth:`settle`).
        """
        self._clock += 60
        self._charm_revision = (
            self._charm_revision + 1 if charm_revision is None else charm_revision
        )
        self.refresh_order = []
        for unit in self._units:
            refresh = _DeferredRefresh(
                charm_version, revision, workload, self._charm_revision, self._clock
            )
            if unit.prepared or (unit.failing and not force_units):
                # The uniter idles, or waits for the failed hook to succeed, before it fetches
                # the new charm.
                unit.refresh_later = refresh
            else:
                unit.refresh_later = None
                self._swap_charm(unit, refresh)
        if settle:
            self.settle()

    def _swap_charm(self, unit: _Unit[CharmT], refresh: _DeferredRefresh) -> None:
        unit.harness.simulate_juju_refresh(
            refresh.charm_version,
            refresh.revision,
            workload=refresh.workload,
            charm_revision=refresh.charm_revision,
            mtime=refresh.mtime,
        )
        # Juju coalesces charm upgrades: one upgrade-charm and one config-changed, next; a
        # series upgrade's hook goes first (the uniter's series-upgrade resolver runs first).
        head = 0
        while head < len(unit.queue) and (
            (head == 0 and unit.failing) or unit.queue[head].kind in _SERIES
        ):
            head += 1
        first = list(unit.queue)[:head]
        rest = [p for p in list(unit.queue)[head:] if p.kind not in _UPGRADE]
        upgrade = [] if any(p.kind == 'upgrade_charm' for p in first) else ['upgrade_charm']
        unit.queue = collections.deque(
            [*first, *(_Pending(kind) for kind in [*upgrade, 'config_changed']), *rest]
        )

    def prepare_series_upgrade(self, unit: int, base: str, *, settle: bool = True) -> None:
        """``juju upgrade-machine <machine> prepare <base>`` for the unit's machine.

        Queues pre-series-upgrade at the front of the unit's queue (behind an event that is
        failing), with ``$JUJU_TARGET_BASE`` (and, for Ubuntu, ``$JUJU_TARGET_SERIES``) set
        for that hook only, as Juju 3 does. Once it succeeds the unit is *prepared*: like
        Juju's uniter it runs nothing until :meth:`complete_series_upgrade`, and its other
        events wait. The other units go on.

        Args:
            unit: the unit's number (each unit has a machine of its own).
            base: the target base, e.g. ``'ubuntu@24.04'``.
            settle: deliver the queued events (see :meth:`settle`).

        Raises:
            ValueError: ``base`` is not ``name@version``.
            RuntimeError: the unit's machine is already being upgraded.
        """
        _split_base(base)
        target = self._units[unit]
        if unit in self.series_upgrading:
            raise RuntimeError(f'unit {unit} is already prepared for a series upgrade')
        target.target_base = base
        head = 1 if target.failing and target.queue else 0
        env = {'JUJU_TARGET_BASE': base}
        series = _series_of(base)
        if series is not None:
            env['JUJU_TARGET_SERIES'] = series  # Juju 3 sets both
        target.queue.insert(head, _Pending('pre_series_upgrade', env=env))
        if settle:
            self.settle()

    def complete_series_upgrade(self, unit: int, *, settle: bool = True) -> None:
        """The OS upgrade is done; ``juju upgrade-machine <machine> complete``.

        Rewrites the machine's os-release to the target base and queues post-series-upgrade
        first, then upgrade-charm and config-changed if :meth:`refresh` ran meanwhile (the new
        charm code arrives now), then the unit's events that waited (each kind once, as Juju
        coalesces them). The reboot an OS upgrade needs is not simulated: the unit's snap
        services keep the state the charm left them in.

        Args:
            unit: the unit's number.
            settle: deliver the queued events (see :meth:`settle`).

        Raises:
            RuntimeError: the unit is not prepared (pre-series-upgrade has not succeeded).
        """
        target = self._units[unit]
        if not target.prepared:
            raise RuntimeError(
                f'unit {unit} is not prepared for a series upgrade: '
                'run prepare_series_upgrade and let pre-series-upgrade succeed first'
            )
        assert target.target_base is not None
        _write_os_release(target.os_release, target.target_base)
        target.prepared = False
        target.target_base = None
        waiting = list(target.queue)
        target.queue = collections.deque([_Pending('post_series_upgrade')])
        for pending in waiting:
            if pending not in target.queue:
                target.queue.append(pending)
        # A `juju refresh` meanwhile (refresh_later) is swapped in once post-series-upgrade
        # has succeeded, by settle().
        if settle:
            self.settle()

    def make_migration_pending(
        self, *migration_ids: str, units: Iterable[int] | None = None
    ) -> None:
        """Make the units units deployed before the charm had these migrations.

        See :meth:`RefreshHarness.make_migration_pending`: the next refresh (or series
        upgrade) runs them. Call it after :meth:`install`.

        Example::

            app.install()
            app.make_migration_pending('20260301-data-format')
            app.refresh('1/1.1.0', '3')    # unit 2 runs the migration up

        Args:
            migration_ids: the migrations' ids; none makes every migration pending.
            units: the units (default: all).
        """
        for unit in self.units if units is None else units:
            self._units[unit].harness.make_migration_pending(*migration_ids)

    def kill_next_event(self, unit: int, *, after_lines: int) -> None:
        """Kill the next event of ``unit`` after charm-upgrade ran ``after_lines`` of its lines.

        As SIGKILL, the OOM killer or a restarted agent would: the library's own recovery does
        not run, its files keep what was written, snapd's changes go on. Juju drops the
        event's relation writes and runs the event again, as :meth:`settle` does at the next
        round (without raising). Count the lines an event runs with
        :attr:`count_library_lines` to choose the kill points.

        Example::

            app.count_library_lines = True
            app.refresh('1/1.1.0', '11')
            lines = app.events[-1].library_lines   # of the last event
            ...
            app.kill_next_event(2, after_lines=120)
            app.refresh('1/1.1.0', '11')            # unit 2 dies mid-refresh, then converges
        """
        self._units[unit].harness.kill_at_line = after_lines

    @property
    def count_library_lines(self) -> bool:
        """Count the library lines every event runs, into ``EventRecord.library_lines``.

        Tracing slows events down several times: turn it on only to choose kill points.
        """
        return all(unit.harness.count_library_lines for unit in self._units)

    @count_library_lines.setter
    def count_library_lines(self, value: bool) -> None:
        for unit in self._units:
            unit.harness.count_library_lines = value

    def configure(self, options: Mapping[str, str | int | float | bool]) -> None:
        """``juju config``: change options on every unit, then config-changed everywhere.

        Args:
            options: the options to set.
        """
        for unit in self._units:
            unit.state = dataclasses.replace(unit.state, config={**unit.state.config, **options})
            self._enqueue(unit, _Pending('config_changed'))
        self.settle()

    def update_status(self) -> None:
        """Queue update-status on every unit and settle."""
        for unit in self._units:
            self._enqueue(unit, _Pending('update_status'))
        self.settle()

    @staticmethod
    def _enqueue(unit: _Unit[CharmT], pending: _Pending) -> None:
        # While the uniter idles, Juju keeps one of each kind of change, not a backlog.
        if not (unit.prepared and pending in unit.queue):
            unit.queue.append(pending)

    def run_action(
        self,
        unit: int,
        name: str,
        params: Mapping[str, Any] | None = None,
        *,
        settle: bool = True,
    ) -> ActionOutcome:
        """``juju run <app>/<unit> <name> [params]``, then settle.

        Args:
            unit: the unit's number.
            name: the action.
            params: parameters (the charm's defaults fill the rest, as Juju does).
            settle: deliver the events the action causes.

        Returns:
            The action's results, logs and failure message.

        Raises:
            ops.testing.errors.UncaughtCharmError: the charm raised.
            RuntimeError: the unit is prepared for a series upgrade: Juju would run the action
                only after complete.
        """
        target = self._units[unit]
        if target.prepared:
            raise RuntimeError(
                f'unit {unit} is prepared for a series upgrade: Juju runs no action on it '
                'until `juju upgrade-machine <machine> complete`'
            )
        ctx = target.harness.ctx
        event = ctx.on.action(name, params=dict(params) if params else None)
        failure: str | None = None
        try:
            self._run(target, event, None)
        except testing.ActionFailed as e:
            failure = e.message
            assert e.state is not None
            self._commit(target, cast('testing.State', e.state))
        outcome = ActionOutcome(
            unit, name, dict(ctx.action_results or {}), list(ctx.action_logs), failure
        )
        if settle:
            self.settle()
        return outcome

    def settle(
        self, max_rounds: int = 50, *, raise_on_error: bool = True, retry: bool = True
    ) -> int:
        """Deliver queued events until there are none.

        Each round delivers the event at the head of each unit's queue, highest unit first.
        An event the charm raises in stays at the head and is retried next round. A unit
        prepared for a series upgrade is skipped: its events wait for complete.

        Args:
            max_rounds: give up after this many rounds.
            raise_on_error: re-raise what the charm raises (the event stays queued).
            retry: False leaves a failing unit alone (Juju's retry back-off has not fired
                yet): it is skipped, and the call returns when the other units are done.

        Returns:
            The number of rounds.

        Raises:
            RuntimeError: events are still queued after ``max_rounds`` rounds.
            ops.testing.errors.UncaughtCharmError: the charm raised and ``raise_on_error``.
        """
        for rounds in range(max_rounds):
            busy = [
                unit
                for unit in reversed(self._units)
                if unit.queue and not unit.prepared and (retry or not unit.failing)
            ]
            if not busy:
                return rounds
            for unit in busy:
                if unit.failing and not retry:
                    continue  # failed in this call
                pending = unit.queue[0]
                try:
                    self._deliver(unit, pending)
                except HookKilled:
                    unit.failing = True  # asked for: retried next round, never raised
                except testing.errors.UncaughtCharmError:
                    unit.failing = True
                    if raise_on_error:
                        raise
                else:
                    unit.failing = False
                    unit.queue.popleft()
                    if pending.kind == 'pre_series_upgrade':
                        unit.prepared = True
                    elif unit.refresh_later is not None and not unit.prepared:
                        self._swap_charm(unit, unit.refresh_later)
                        unit.refresh_later = None
        raise RuntimeError(f'not settled after {max_rounds} rounds; queued: {self.pending}')

    # Delivery

    def _deliver(self, unit: _Unit[CharmT], pending: _Pending) -> None:
        if pending.kind == 'relation_created':
            unit.in_relation = True
        elif pending.kind == 'relation_joined' and pending.remote is not None:
            unit.joined.add(pending.remote)
        state = self._with_relation(unit)
        on = unit.harness.ctx.on
        if pending.kind.startswith('relation_'):
            relation = state.get_relation(_RELATION_ID)
            factory = getattr(on, pending.kind)
            if pending.remote is None:
                event = factory(relation)
            else:
                event = factory(relation, remote_unit=pending.remote)
        else:
            event = getattr(on, pending.kind)()
        env = unit.harness.extra_env
        saved = {key: env.get(key) for key in pending.env}
        env.update(pending.env)
        try:
            with warnings.catch_warnings():
                if pending.kind in _SERIES:
                    warnings.filterwarnings(
                        'ignore', message=_SERIES_WARNING, category=DeprecationWarning
                    )
                self._run(unit, event, pending.remote, state)
        finally:
            for key, value in saved.items():
                if value is None:
                    env.pop(key, None)
                else:
                    env[key] = value

    def _run(
        self,
        unit: _Unit[CharmT],
        event: _Event,
        remote: int | None,
        state: testing.State | None = None,
    ) -> None:
        before = self._installed_revision(unit)
        try:
            output = unit.harness.run(event, state or self._with_relation(unit))
        except testing.errors.UncaughtCharmError as e:
            self._record(unit, remote, f'{type(e.__cause__).__name__}: {e.__cause__}')
            raise
        except HookKilled as e:
            self._record(unit, remote, f'HookKilled: {e}')
            raise
        except testing.ActionFailed:
            self._record(unit, remote, None)
            raise
        finally:
            if self._installed_revision(unit) != before:
                self.refresh_order.append(unit.number)
        self._record(unit, remote, None, output.unit_status)
        self._commit(unit, output)

    def _installed_revision(self, unit: _Unit[CharmT]) -> str | None:
        try:
            return unit.snapd.revision(self.snap)
        except KeyError:  # offered by the store, not installed yet
            return None

    def _record(
        self,
        unit: _Unit[CharmT],
        remote: int | None,
        error: str | None,
        status: _EntityStatus | None = None,
    ) -> None:
        last = unit.harness.calls[-1]
        try:
            services = unit.snapd.service_state(self.snap)
        except KeyError:  # not installed yet
            services = {}
        self.events.append(
            EventRecord(
                unit.number,
                last.event,
                remote,
                last.calls,
                error,
                status or unit.state.unit_status,
                services,
                last.library_lines,
            )
        )

    def _with_relation(self, unit: _Unit[CharmT]) -> testing.State:
        others = [r for r in unit.state.relations if r.id != _RELATION_ID]
        if not unit.in_relation:
            return dataclasses.replace(unit.state, relations=others)
        relation = testing.PeerRelation(
            PEER_ENDPOINT,
            id=_RELATION_ID,
            local_app_data=dict(self._app_data),
            local_unit_data=dict(self._unit_data[unit.number]),
            peers_data={n: dict(self._unit_data[n]) for n in sorted(unit.joined)},
        )
        return dataclasses.replace(unit.state, relations=[*others, relation])

    def _commit(self, unit: _Unit[CharmT], output: testing.State) -> None:
        """The event ended without error: its writes become visible; peers hear of changes."""
        unit.state = output
        if not unit.in_relation:
            return
        relation = output.get_relation(_RELATION_ID)
        changed = False
        unit_data = dict(relation.local_unit_data)
        if unit_data != self._unit_data[unit.number]:
            self._unit_data[unit.number] = unit_data
            changed = True
        app_data = dict(relation.local_app_data)
        if app_data != self._app_data:
            self._app_data = app_data
            changed = True
        if not changed:
            return
        for other in self._units:
            if unit.number in other.joined and not any(
                p.kind == 'relation_changed' and p.remote == unit.number for p in other.queue
            ):
                other.queue.append(_Pending('relation_changed', unit.number))


def _first_versions(
    refresh_versions: str | os.PathLike[str] | RefreshVersions | None,
    charm_version: str,
    snap: str | None,
    revision: str | None,
    workload: str | None,
) -> RefreshVersions:
    """The first charm revision's versions: the charm's own file, or the arguments."""
    if refresh_versions is not None:
        given = [
            n for n, v in (('snap', snap), ('revision', revision), ('workload', workload)) if v
        ]
        if given:
            raise TypeError(
                f'give either refresh_versions or {", ".join(given)}: the file pins them'
            )
        if isinstance(refresh_versions, RefreshVersions):
            return refresh_versions.evolve(charm=charm_version)
        return RefreshVersions.load(refresh_versions, charm=charm_version)
    if snap is None or revision is None:
        raise TypeError(
            'RollingRefresh needs the snap and its pinned revision: snap= and revision=, '
            "or refresh_versions='refresh_versions.toml'"
        )
    return RefreshVersions(
        charm=charm_version,
        workload='1.0' if workload is None else workload,
        snap=snap,
        revisions=_revisions(revision),
    )


def _split_base(base: str) -> tuple[str, str]:
    name, sep, version = base.partition('@')
    if not (sep and name and version) or any(c.isspace() or c in '"\\' for c in base):
        raise ValueError(f'invalid base {base!r}: expected name@version, e.g. ubuntu@24.04')
    return name, version


def _series_of(base: str) -> str | None:
    name, version = _split_base(base)
    if name != 'ubuntu':
        return None
    return next((s for s, v in _bases._UBUNTU_SERIES.items() if v == version), None)


def _write_os_release(path: pathlib.Path, base: str) -> None:
    name, version = _split_base(base)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'NAME="{name.capitalize()}"\nID={name}\nVERSION_ID="{version}"\n')
