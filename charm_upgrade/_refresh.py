# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""A charm-refresh base class: ``refresh_snap`` by its contract, and a refresh that converges.

charm-refresh (``charm_refresh.Machines``) decides when a unit refreshes its
workload snap and then calls ``refresh_snap`` on the charm's
``CharmSpecificMachines``. :class:`CharmSpecificMachines` is a thin adapter over the
framework-free refresh flow (``_refresh_flow``): ``refresh_snap`` runs one refresh
attempt, and :meth:`CharmSpecificMachines.reconcile`, called at every event,
finishes whatever an attempt left unfinished (a hook killed half-way, a change that
outlived its time limit, a failed start or migration) from the unit's own records,
then lets the next unit refresh once this one is healthy.

This module imports charm-refresh, which imports lightkube and httpx: it is
imported only when :class:`CharmSpecificMachines` is first used.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING

import charm_refresh

from . import _bases
from ._journal import Journal
from ._migrations import REFRESH, Migrations
from ._ops_status import reporter_for
from ._preview import Preview, ServicePreview
from ._refresh_flow import REFRESH_STAGE, RefreshFlow, hold_refreshes
from ._snap_workload import SnapWorkload
from ._status import StatusIntent, workload_held
from .errors import MigrationError, SnapdError
from .snapd import Snapd

if TYPE_CHECKING:
    import pathlib
    from collections.abc import Sequence

    import ops

    from ._records import RefreshRecord

__all__ = ['CharmSpecificMachines']

logger = logging.getLogger(__name__)


@dataclasses.dataclass(eq=False)
class CharmSpecificMachines(charm_refresh.CharmSpecificMachines):
    """charm-refresh's ``CharmSpecificMachines`` with ``refresh_snap`` implemented.

    A charm subclasses it and writes ``is_compatible`` and
    ``run_pre_refresh_checks_after_1_unit_refreshed`` as charm-refresh requires. It
    builds it first thing in ``__init__``, passes it to ``charm_refresh.Machines``,
    and calls :meth:`reconcile` with the ``Machines`` object in every event.

    It may override the hooks :meth:`stop_workload`, :meth:`start_workload`,
    :meth:`workload_running`, :meth:`workload_healthy`, :meth:`unhealthy_message` and
    :meth:`before_next_unit`. Before the stop, the library holds every service of
    the snap with a systemd drop-in (running services keep running); after it, it
    stops whatever still runs, so that snapd's refresh cannot start the services
    before the revision is recorded; the default start starts again
    the services that ran before (their enabled state is never touched, and services
    new in the target revision are left as snapd left them); the workload is healthy
    when every service that ran before is active.

    The unit status the library wants shown (a change still in flight, a failed
    start or migration, an unhealthy unit holding the next one) reaches ops through
    collect-status at the end of every event; see :attr:`status`.

    Attributes:
        charm: The charm; keyword-only and required.
        snapd: The snapd client; keyword-only, by default one on
            ``$CHARM_UPGRADE_SNAPD_SOCKET`` or ``/run/snapd.socket``.
        journal: Where the refresh is journaled; keyword-only, by default the
            unit's journal.
        migrations: The charm's :class:`~charm_upgrade.Migrations`, whose refresh
            migrations run after each refresh; keyword-only, None for none.
        health_wait: Seconds :meth:`reconcile` may wait, in the event of the refresh,
            for the workload to become healthy, so that the next unit can refresh in
            the same event; 0 (the default) checks once. Keyword-only.
        hold: Keep snapd's automatic refreshes of the snap held (snapd 2.58 or later),
            after :meth:`install_snap` and after every refresh, so that an auto-refresh
            cannot move the revision behind charm-refresh. True by default; keyword-only.
        plugs: The snap's plugs that :meth:`install_snap` connects (to the system's slot,
            or the one snapd matches); keyword-only.
        classic: The snap has classic confinement (:meth:`install_snap`); keyword-only.

    Example::

        @dataclasses.dataclass(eq=False)
        class MyAppRefresh(charm_upgrade.CharmSpecificMachines):
            @classmethod
            def is_compatible(cls, *, old_charm_version, new_charm_version,
                              old_workload_version, new_workload_version):
                return super().is_compatible(...)

            @staticmethod
            def run_pre_refresh_checks_after_1_unit_refreshed():
                pass

        # In the charm's __init__:
        self.refresh_specific = MyAppRefresh(
            workload_name='MyApp', charm_name='myapp', charm=self
        )
    """

    charm: ops.CharmBase = dataclasses.field(kw_only=True, repr=False)
    snapd: Snapd = dataclasses.field(default_factory=Snapd, kw_only=True, repr=False)
    journal: Journal = dataclasses.field(default_factory=Journal, kw_only=True, repr=False)
    migrations: Migrations | None = dataclasses.field(default=None, kw_only=True, repr=False)
    health_wait: float = dataclasses.field(default=0.0, kw_only=True, repr=False)
    hold: bool = dataclasses.field(default=True, kw_only=True, repr=False)
    plugs: Sequence[str] = dataclasses.field(default=(), kw_only=True, repr=False)
    classic: bool = dataclasses.field(default=False, kw_only=True, repr=False)
    _flow_instance: RefreshFlow | None = dataclasses.field(default=None, init=False, repr=False)
    _machines: charm_refresh.Machines | None = dataclasses.field(
        default=None, init=False, repr=False
    )

    def __post_init__(self):
        super().__post_init__()
        reporter = reporter_for(self.charm)
        reporter.add_provider(self._status_intent)
        reporter.add_release_listener(self._after_series_upgrade)

    # Hooks -----------------------------------------------------------------

    def stop_workload(self, *, snap_name: str) -> None:
        """Stop the workload gracefully before the snap is refreshed.

        Override it for a graceful stop (drain a node, step a primary down). Before it,
        the library has held every service of the snap with its drop-in, which keeps
        a service from starting, not from running; after it, the library stops what
        still runs with one ``systemctl stop``. So snapd's refresh, which starts the
        services at its end, leaves them down until the revision is recorded, and
        their enabled state in snapd is never touched. The default does nothing more.
        Must be harmless when the workload is stopped already.

        Args:
            snap_name: The workload snap.
        """
        SnapWorkload(self.snapd, snap_name).stop(self._flow.record)

    def start_workload(self, *, snap_name: str) -> None:
        """Bring the workload back after the refresh; must be harmless when it runs.

        Called once the revision is recorded, the migrations have run and the library
        has opened its hold (the drop-ins go after this returns, with the workload
        up). The default starts, with one ``systemctl start``, the
        services of the snap that ran before the refresh; their enabled state was never
        changed, so a service the operator disabled stays disabled, and one new in this
        revision is left as snapd left it. A refresh recorded by an earlier version of
        the library, which stopped the services through snapd with ``disable``, is
        restored through snapd: each service enabled and started as it was.

        Args:
            snap_name: The workload snap.

        Raises:
            SystemdError: ``systemctl`` failed.
            SnapdError: snapd could not be asked or could not start the services.
        """
        SnapWorkload(self.snapd, snap_name).start(self._flow.record)

    def workload_running(self) -> bool:
        """Whether the workload runs (for charm-refresh's lower-priority status).

        The default: every service of the snap that the before-state expects to run
        is active (False when the snap is not installed).

        Raises:
            SnapdError: snapd could not be asked.
        """
        return SnapWorkload(self.snapd, self.snap_name).healthy(self._flow.record)

    def workload_healthy(self) -> bool:
        """Whether this unit is healthy enough for the next unit to refresh.

        The default is :meth:`workload_running`. A charm overrides it with a real check
        (the unit answers, it rejoined its cluster) and :meth:`unhealthy_message` with it.

        Raises:
            SnapdError: snapd could not be asked, or the snap is not installed.
        """
        return self.workload_running()

    def unhealthy_message(self) -> str:
        """Say what is unhealthy, for the unit status; called when :meth:`workload_healthy` is not.

        The default names the snap's services that are not active.
        """
        return SnapWorkload(self.snapd, self.snap_name).unhealthy_message(
            self._flow.record, workload=self.workload_name
        )

    def before_next_unit(self) -> str | None:
        """Run the charm's step before the next unit may refresh; return why it must wait.

        Called once this unit is healthy after its refresh, and also when no refresh
        is in progress, before charm-refresh is told that the next unit may refresh
        (a unit must say so after an install too). The workload runs. A charm
        overrides it for work on the running, healthy workload, such as SQL on the
        cluster; it must be idempotent, because it runs again until it returns None.

        Returns:
            None to let the next unit refresh, or a message (shown in the unit status,
            with "next unit waits") to hold it until a later event.
        """
        return None

    # charm-refresh ---------------------------------------------------------

    def refresh_snap(
        self, *, snap_name: str, snap_revision: str, refresh: charm_refresh.Machines
    ) -> None:
        """Refresh the workload snap to ``snap_revision``, by charm-refresh's contract.

        charm-refresh calls this when this unit is next to refresh. Stops the
        workload, asks snapd to refresh, calls ``refresh.update_snap_revision()`` the
        moment snapd's change is ready, runs the refresh migrations, and brings the
        workload back as its before-state recorded it. Never retries.

        Args:
            snap_name: The workload snap (``[snap].name`` in ``refresh_versions.toml``).
            snap_revision: The revision pinned for this machine's architecture.
            refresh: The ``charm_refresh.Machines`` being built; only its public API is used.

        Raises:
            ValueError: ``snap_revision`` is not a valid revision; nothing was touched.
            SnapRefreshError: the snap was not refreshed. The workload was brought back
                to its before-state, or, when snapd could not be asked, it stays stopped
                and :meth:`reconcile` finishes the refresh at a later event. The
                underlying error is the ``__cause__``.
        """
        self._flow.refresh(snap_name, snap_revision, refresh.update_snap_revision)

    def reconcile(self, refresh: charm_refresh.Machines) -> None:
        """Finish an unfinished refresh, then let the next unit refresh once healthy.

        Call it in every event, right after ``charm_refresh.Machines`` is built. From
        the unit's own records and snapd, it finishes what a refresh left undone (waits
        for a change still in flight, records the revision, runs the migrations once,
        brings the workload back as recorded), whether or not charm-refresh says a
        refresh is in progress. Then, while a refresh is in progress, it checks that
        this unit is healthy (waiting up to :attr:`health_wait`), runs
        :meth:`before_next_unit`, and sets ``refresh.next_unit_allowed_to_refresh``.
        It raises nothing but for a damaged record: what stops it shows in
        :attr:`status`, and the next event tries again.

        Args:
            refresh: The unit's ``charm_refresh.Machines``.

        Raises:
            StateFileError: the refresh record exists and is damaged.
        """
        self._machines = refresh
        flow = self._flow
        if self.migrations is not None and self.migrations.install_revision_missing():
            self._add_install_revision()
        flow.converge(refresh.update_snap_revision)

        def allow() -> None:
            refresh.next_unit_allowed_to_refresh = True

        flow.gate(
            in_progress=refresh.in_progress,
            allowed=refresh.next_unit_allowed_to_refresh,
            allow=allow,
            before_next_unit=self.before_next_unit,
            health_wait=self.health_wait,
        )

    def install_snap(self, refresh: charm_refresh.Machines) -> bool:
        """Install the workload snap at the revision charm-refresh pins, if it is not installed.

        For the first event in which ``charm_refresh.Machines`` can be built (the
        peer relation is complete: not the install hook of a new unit). Installs
        ``refresh.pinned_snap_revision`` (this machine's architecture) from the
        store, records it (``update_snap_revision``), connects :attr:`plugs`, holds
        the snap's automatic refreshes (:attr:`hold`), and with :attr:`migrations`
        records a fresh install (every migration applied, none run). Each part is
        checked again at every call, so a call after a failure finishes what the
        failed one did not; on an installed, connected and held snap it costs one or
        two reads of snapd.

        Args:
            refresh: The unit's ``charm_refresh.Machines``.

        Returns:
            Whether it installed the snap now.

        Raises:
            SnapdError: snapd could not install the snap or connect a plug
                (:class:`~charm_upgrade.RevisionNotAvailable`: the store has no such
                revision for this architecture). The hook fails; the next call retries.
        """
        snap = charm_refresh.snap_name()
        info = self.snapd.find_snap(snap)
        installed = info is None
        if installed:
            revision = refresh.pinned_snap_revision
            with self.journal.stage('snap-install', snap=snap, revision=revision):
                if self.migrations is not None:
                    # Before the workload creates its data: nothing to migrate.
                    self.migrations.mark_installed(revision=revision)
                self.snapd.wait_done(
                    self.snapd.install(snap, revision=revision, classic=self.classic)
                )
                refresh.update_snap_revision()
        if self.plugs:
            connected = {c.plug for c in self.snapd.connections(snap) if c.plug_snap == snap}
            for plug in self.plugs:
                if plug not in connected:
                    self.snapd.wait_done(self.snapd.connect(snap, plug))
        if self.hold and (info is None or not info.held):
            hold_refreshes(self.snapd, snap)
        return installed

    # What the charm reads --------------------------------------------------

    @property
    def status(self) -> ops.StatusBase | None:
        """The unit status the refresh wants shown now, or None.

        charm-refresh's own higher-priority unit status when it has one; otherwise
        what the last step of the refresh wants (a change in flight, a failed start
        or migration, an unhealthy unit holding the next one). The library adds it
        to ops' collect-status itself; a charm that composes its status by hand
        shows it first.
        """
        intent = self._status_intent()
        return intent.to_ops() if intent is not None else None

    @property
    def workload_held(self) -> bool:
        """Whether the library holds the workload down now: a refresh or a series upgrade.

        True between a refresh's stop and the start that brings the workload back,
        and between a series upgrade's prepare and its complete. Guard the charm's
        own handlers that start or restart the workload with it.
        """
        return workload_held()

    @property
    def snap_name(self) -> str:
        """The workload snap: the one of the current or last refresh, else charm-refresh's."""
        record = self._flow.record
        return record.snap if record is not None else charm_refresh.snap_name()

    @property
    def before_state_path(self) -> pathlib.Path:
        """Where the record of the current or last refresh is kept."""
        return self._flow.record_path

    def read_before_state(self) -> RefreshRecord | None:
        """Return the record of the current or last refresh: its before-state and phase."""
        return self._flow.record

    def preview(self, *, revision_to: str | None) -> Preview:
        """Say what a refresh to ``revision_to`` would do now; change nothing.

        Args:
            revision_to: The revision charm-refresh would install (its
                ``pinned_snap_revision``), or None if not known.

        Raises:
            SnapdError: snapd could not be asked, or the snap is not installed.
        """
        snap = self.snap_name
        info = self.snapd.snap(snap)
        services = self.snapd.services(snap)
        same = revision_to is None or revision_to == info.revision
        rows = tuple(
            ServicePreview(
                s.full_name,
                'enabled' if s.enabled else 'disabled',
                s.active,
                'none' if same else 'stop, refresh, bring back as now',
            )
            for s in services
        )
        steps: tuple[str, ...] = ()
        blocked: str | None = None
        if self.migrations is not None:
            steps = tuple(self.migrations.describe(REFRESH, target_revision=revision_to))
            blocked = self.migrations.blocked_message()
            try:
                if revision_to is not None:
                    self.migrations.check(REFRESH, target_revision=revision_to)
            except MigrationError as e:
                blocked = blocked or e.message
        record = self._flow.record
        if record is not None and not record.finished:
            summary = (
                f'finish the refresh of {record.snap} to revision {record.target} '
                f'(phase {record.phase}) at the next event'
            )
            disruption = f'{record.snap} is held down until it is finished'
        elif revision_to is None:
            summary, disruption = 'no target revision given: nothing to refresh', 'none'
        elif same:
            summary, disruption = f'{snap} is at revision {info.revision} already', 'none'
        else:
            summary = f'stop {snap}, refresh it to revision {revision_to}, ' + (
                'run the migrations, start it' if steps else 'start it'
            )
            disruption = f'every service of {snap} is down from the stop until the start'
            last = self._last_downtime()
            if last is not None:
                disruption += f'; the last refresh here was down {last:.1f} s'
        if blocked:
            summary = f'refused: {blocked}'
        return Preview(
            step='snap-refresh',
            summary=summary,
            services=rows,
            current_base=_bases.current_base(),
            revision_from=info.revision,
            revision_to=revision_to,
            pending_migrations=steps,
            disruption=disruption,
            before_state=record.to_json() if record is not None else None,
        )

    # Implementation --------------------------------------------------------

    @property
    def _flow(self) -> RefreshFlow:
        # One flow per event (this object is built anew in every event): it keeps
        # the record it read and the status it wants, nothing across events.
        if self._flow_instance is None:
            self._flow_instance = RefreshFlow(
                snapd=self.snapd,
                workload=_HookWorkload(self),
                journal=self.journal,
                migrations=self.migrations,
                keep_held=self.hold,
            )
        return self._flow_instance

    def _status_intent(self) -> StatusIntent | None:
        machines = self._machines
        if machines is not None:
            higher = machines.unit_status_higher_priority
            if higher is not None:
                # charm-refresh's own status (a failed pre-refresh check, a missed
                # upgrade-charm event) stays visible, as its guide asks.
                return StatusIntent(higher.name, higher.message, 'charm-refresh')  # pyright: ignore[reportArgumentType]
        return self._flow_instance.intent if self._flow_instance is not None else None

    def _after_series_upgrade(self) -> None:
        # The series upgrade brought the workload back in this event: finish the
        # refresh it held, and let the next unit go, now rather than at the next event.
        if self._machines is not None:
            self.reconcile(self._machines)

    def _add_install_revision(self) -> None:
        # A fresh install recorded before the snap was there (the install event)
        # learns its revision from the first event that sees the snap, before any
        # refresh: rollbacks then know what to undo.
        assert self.migrations is not None
        try:
            info = self.snapd.find_snap(self.snap_name)
        except SnapdError as e:
            logger.warning('Cannot read the installed revision for the migrations: %s', e)
            return
        if info is not None:
            self.migrations.mark_installed(revision=info.revision)

    def _last_downtime(self) -> float | None:
        for entry in reversed(self.journal.timeline()):
            if entry.stage == REFRESH_STAGE and entry.result == 'ended':
                downtime = entry.details.get('downtime')
                if isinstance(downtime, (int, float)):
                    return float(downtime)
        return None


class _HookWorkload:
    """The flow's workload port, on the charm's hooks (or their defaults)."""

    def __init__(self, adapter: CharmSpecificMachines):
        self._adapter = adapter

    def stop(self, record: RefreshRecord) -> None:
        self._adapter.stop_workload(snap_name=record.snap)

    def start(self, record: RefreshRecord) -> None:
        self._adapter.start_workload(snap_name=record.snap)

    def healthy(self, record: RefreshRecord | None) -> bool:
        return self._adapter.workload_healthy()

    def unhealthy_message(self, record: RefreshRecord | None) -> str:
        return self._adapter.unhealthy_message()
