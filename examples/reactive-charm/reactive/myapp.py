# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
import shutil
import subprocess

from charmhelpers.core import hookenv
from charms.reactive import set_flag, when, when_not

from charm_upgrade import SystemdServices
from charm_upgrade.reactive import register_series_upgrade_handlers


def migrate(old_base: str, new_base: str) -> None:
    hookenv.log(f'myapp: nothing to migrate from {old_base} to {new_base}')


register_series_upgrade_handlers(SystemdServices(['myapp']), migrate=migrate)


@when_not('charm.application.started')
def install_and_start() -> None:
    shutil.copy(f'{hookenv.charm_dir()}/files/myapp.service', '/etc/systemd/system/')
    subprocess.run(['systemctl', 'daemon-reload'], check=True)
    subprocess.run(['systemctl', 'enable', '--now', 'myapp.service'], check=True)
    set_flag('charm.application.started')


@when('config.changed', 'charm.application.started')
@when_not('charm.application.disabled')
def restart_on_config_change() -> None:
    # The one guard: from prepare until complete the service stays down.
    subprocess.run(['systemctl', 'restart', 'myapp.service'], check=True)


@when('charm.application.started')
@when_not('charm.application.disabled')
def ready() -> None:
    hookenv.status_set('active', 'serving on port 8080')
