#!/usr/bin/env python3
# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""upgrade-demo: an example machine charm for charm-upgrade.

Its workload is the snap `upgrade-demo`, with one daemon. It shows:

- series upgrades with :class:`charm_upgrade.SeriesUpgrade`;
- in-place rolling snap refreshes with charm-refresh, through
  :class:`charm_upgrade.CharmSpecificMachines`;
- migrations, one per kind, with :class:`charm_upgrade.Migrations`;
- the `upgrade-journal` and `preview-upgrade` actions.
"""

from __future__ import annotations

import dataclasses
import json
import logging

import charm_refresh
import ops

import charm_upgrade
from charm_upgrade._journal import format_record, format_timeline

logger = logging.getLogger(__name__)

SNAP = 'upgrade-demo'


# Migrations: each runs once per unit, in id order, with the workload stopped. A
# fresh install records them as applied without running them. Each must be
# idempotent, or use ctx.interrupted to finish a run that died half-way, or
# declare backup= paths: copied first, put back if it fails or dies half-way.
def _series_config(ctx: charm_upgrade.MigrationContext) -> None:
    # A real charm rewrites what the new OS needs: a config path, a renamed package.
    logger.info(
        'Migration %s: %s config for %s (was %s)', ctx.migration_id, SNAP, ctx.new, ctx.old
    )


def _data_format(ctx: charm_upgrade.MigrationContext) -> None:
    # A real charm converts the workload's data here (up) or back (down, on a
    # refresh to an older revision); this demo's data has one format.
    logger.info(
        'Migration %s %s: data of %s %s -> %s',
        ctx.migration_id,
        ctx.direction,
        SNAP,
        ctx.old,
        ctx.new,
    )


MIGRATIONS = charm_upgrade.Migrations(
    [
        charm_upgrade.Migration(
            '20260110-series-config', 'Config for the new base', kind='series', up=_series_config
        ),
        charm_upgrade.Migration(
            '20260301-data-format',
            'Data format of the new revision',
            kind='refresh',
            up=_data_format,
            down=_data_format,
            backup=[f'/var/snap/{SNAP}/common/data'],
        ),
    ]
)


@dataclasses.dataclass(eq=False)
class DemoRefresh(charm_upgrade.CharmSpecificMachines):
    """What charm-refresh needs to know about this charm's workload."""

    @classmethod
    def is_compatible(
        cls,
        *,
        old_charm_version: charm_refresh.CharmVersion,
        new_charm_version: charm_refresh.CharmVersion,
        old_workload_version: str,
        new_workload_version: str,
    ) -> bool:
        # A real charm also checks that the new workload reads the old one's data.
        return super().is_compatible(
            old_charm_version=old_charm_version,
            new_charm_version=new_charm_version,
            old_workload_version=old_workload_version,
            new_workload_version=new_workload_version,
        )

    @staticmethod
    def run_pre_refresh_checks_after_1_unit_refreshed() -> None:
        # A real charm raises charm_refresh.PrecheckFailed('...') here when,
        # say, a backup is running.
        pass


class UpgradeDemoCharm(ops.CharmBase):
    """Runs the `upgrade-demo` snap's daemon, and upgrades it safely."""

    def __init__(self, framework: ops.Framework):
        super().__init__(framework)
        # Series upgrades: the snap's services go down at prepare, come back after complete.
        self.series_upgrade = charm_upgrade.SeriesUpgrade(
            self,
            services=charm_upgrade.SnapServices(SNAP),
            migrate=self._migrate,
            migrations=MIGRATIONS,
        )
        # Snap refreshes: charm-refresh decides when this unit refreshes and calls
        # DemoRefresh.refresh_snap; built first thing in every event, as it asks.
        self._refresh_specific = DemoRefresh(
            workload_name='Demo', charm_name='upgrade-demo', charm=self, migrations=MIGRATIONS
        )
        self.refresh: charm_refresh.Machines | None
        try:
            self.refresh = charm_refresh.Machines(self._refresh_specific)
        except (charm_refresh.PeerRelationNotReady, charm_refresh.UnitTearingDown):
            self.refresh = None
        if self.refresh is not None:
            # Every event: finish an unfinished refresh, let the next unit go when healthy.
            self._refresh_specific.reconcile(self.refresh)

        for event in (
            self.on.install,
            self.on.start,
            self.on.config_changed,
            self.on.update_status,
            self.on.upgrade_charm,
            self.on['refresh-v-three'].relation_changed,
        ):
            framework.observe(event, self._reconcile)
        framework.observe(self.on.collect_unit_status, self._on_collect_unit_status)
        framework.observe(self.on.collect_app_status, self._on_collect_app_status)
        framework.observe(self.on.upgrade_journal_action, self._on_upgrade_journal)
        framework.observe(self.on.preview_upgrade_action, self._on_preview_upgrade)

    def _reconcile(self, _: ops.EventBase) -> None:
        if self.refresh is None or self.series_upgrade.workload_held:
            return  # no peer relation yet, or the library holds the workload down
        # The revision this charm code pins, the first time; later ones come by refresh.
        self._refresh_specific.install_snap(self.refresh)

    def _on_collect_unit_status(self, event: ops.CollectStatusEvent) -> None:
        # The library adds its own statuses (a series upgrade, an unfinished or unhealthy
        # refresh, charm-refresh's higher-priority one); ops shows the most important.
        if self.refresh is None:
            event.add_status(ops.WaitingStatus('Waiting for the peer relation'))
            return
        running = self._refresh_specific.workload_running()
        event.add_status(
            self.refresh.unit_status_lower_priority(workload_is_running=running)
            or ops.ActiveStatus()
        )

    def _on_collect_app_status(self, event: ops.CollectStatusEvent) -> None:
        if self.refresh is not None:
            event.add_status(self.refresh.app_status_higher_priority or ops.ActiveStatus())

    def _on_upgrade_journal(self, event: ops.ActionEvent) -> None:
        last = max(int(event.params['last']), 0)
        if event.params.get('timeline'):
            # One line per stage: start, duration, result (interrupted if it never ended).
            timeline = charm_upgrade.Journal().timeline()
            timeline = timeline[len(timeline) - last :] if last else []
            event.set_results({'timeline': format_timeline(timeline)})
            return
        records = charm_upgrade.Journal().read()
        records = records[len(records) - last :] if last else []  # [-0:] would be all
        event.set_results({'records': '\n'.join(format_record(r) for r in records)})

    def _on_preview_upgrade(self, event: ops.ActionEvent) -> None:
        if event.params.get('refresh') and self.refresh is not None:
            revision = self.refresh.pinned_snap_revision
            preview = self._refresh_specific.preview(revision_to=revision)
        else:
            preview = self.series_upgrade.preview(target_base=event.params.get('base') or None)
        event.set_results({'preview': preview.format(), 'json': json.dumps(preview.to_dict())})

    def _migrate(self, old_base: str, new_base: str) -> None:
        # A real charm rewrites what the new OS needs here: config paths, a
        # renamed package, a database format. It must be idempotent.
        logger.info('Migrating %s from %s to %s', SNAP, old_base, new_base)


if __name__ == '__main__':  # pragma: nocover
    ops.main(UpgradeDemoCharm)
