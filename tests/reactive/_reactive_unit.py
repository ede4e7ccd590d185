# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""A charms.reactive unit on disk whose hooks run for real, each in a fresh process.

A hook here is what layer-basic makes of one: a Python file in ``hooks/``
that calls ``charms.reactive.main()``, run with ``JUJU_HOOK_NAME`` and
``CHARM_DIR`` set, in the charm directory. charms.reactive imports the
charm's ``reactive/`` modules, runs its automatic flags, dispatches, and
commits its unit state database, ``.unit-state.db``, only if the hook
succeeds. Hook tools (``juju-log``, ``status-set``, ``status-get``) are small
scripts first on ``PATH`` that write what they are called with to a log.

A fresh process per hook is what Juju does, and it is the honest way to reset
charms.reactive's module-level handler registry between hooks.
"""

from __future__ import annotations

import json
import os
import pathlib
import sqlite3
import stat
import subprocess
import sys
import textwrap
from typing import Any

# charms.reactive 1.5.3 imports pkg_resources; setuptools 80 and 81 warn about that.
PKG_RESOURCES_WARNING = 'pkg_resources is deprecated as an API'

# Hooks run with warnings as errors too, but for that one warning.
HOOK_WARNING_OPTIONS = (
    '-W',
    'error',
    '-W',
    f'ignore:{PKG_RESOURCES_WARNING}:UserWarning:charms.reactive.relations',
)

# What layer-basic's hook template does after bootstrapping the charm's
# virtual environment: the charm's lib/ (where layers put charms.layer.*) goes
# on the path first. charmhelpers refuses to import on a host that is not
# Ubuntu (the tests may run on Debian); Juju machines are Ubuntu.
_HOOK = """\
import sys

sys.path.append('lib')

import charmhelpers.osplatform

charmhelpers.osplatform.get_platform = lambda: 'ubuntu'

from charms.reactive import main

main()
"""

# The hook tools. status-set keeps the status where status-get finds it.
_TOOL = """\
import json, os, pathlib, sys

home = pathlib.Path(__file__).resolve().parent.parent
name = os.path.basename(sys.argv[0])
args = sys.argv[1:]
with open(home / 'hook-tools.jsonl', 'a') as f:
    hook = os.environ.get('JUJU_HOOK_NAME')
    f.write(json.dumps({'tool': name, 'args': args, 'hook': hook}) + '\\n')
status_path = home / 'status.json'
if name == 'status-set':
    if args[-2] not in ('maintenance', 'blocked', 'waiting', 'active'):
        sys.stderr.write(f'invalid status {args[-2]!r}\\n')
        sys.exit(2)
    status_path.write_text(json.dumps({'status': args[-2], 'message': args[-1]}))
elif name == 'status-get':
    status = json.loads(status_path.read_text()) if status_path.exists() else {
        'status': 'unknown', 'message': ''}
    status['status-data'] = {}
    sys.stdout.write(json.dumps(status) + '\\n')
"""
HOOK_TOOLS = ('juju-log', 'status-set', 'status-get')

METADATA = """\
name: myapp
summary: A reactive charm in a test.
description: A reactive charm in a test.
series: [jammy, noble]
"""


class HookFailedError(AssertionError):
    """A hook that should have succeeded exited non-zero."""


class ReactiveUnit:
    """One unit of a reactive charm, with its charm directory and hook tools.

    Args:
        root: An empty directory for the unit.
        charm_module: The source of the charm's ``reactive/myapp.py``.
        os_release: The os-release file the library reads the base from.
    """

    unit_name = 'myapp/0'
    machine_id = '3'

    def __init__(self, root: pathlib.Path, charm_module: str, os_release: pathlib.Path):
        self.root = root
        self.charm_dir = root / 'charm'
        self.tools_dir = root / 'hook-tools'
        self.os_release = os_release
        (self.charm_dir / 'reactive').mkdir(parents=True)
        (self.charm_dir / 'hooks').mkdir()
        self.tools_dir.mkdir()
        (self.charm_dir / 'metadata.yaml').write_text(METADATA)
        self.write_charm_module(charm_module)
        for tool in HOOK_TOOLS:
            _executable(self.tools_dir / tool, f'#!{sys.executable}\n{_TOOL}')

    def write_charm_module(self, source: str) -> None:
        """Replace the charm's ``reactive/myapp.py`` (an upgrade-charm, say)."""
        (self.charm_dir / 'reactive' / 'myapp.py').write_text(textwrap.dedent(source))

    def add_layer(self, files: dict[str, str], includes: list[str]) -> None:
        """Add a layer's files to the charm directory, as ``charm build`` merges them.

        Args:
            files: Path in the charm directory -> content.
            includes: The built charm's ``layer.yaml`` ``includes``.
        """
        for path, text in files.items():
            target = self.charm_dir / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        lines = ['includes:', *(f"  - '{name}'" for name in includes)]
        (self.charm_dir / 'layer.yaml').write_text('\n'.join(lines) + '\n')

    @property
    def state_dir(self) -> pathlib.Path:
        """The library's state directory: ``.charm_upgrade`` in the charm directory."""
        return self.charm_dir / '.charm_upgrade'

    def hook(
        self, name: str, *, env: dict[str, str] | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run one hook in a fresh process, as Juju would.

        Args:
            name: The hook's name, such as ``pre-series-upgrade``.
            env: More environment (``JUJU_TARGET_BASE``...).
            check: Raise :class:`HookFailedError` if the hook fails.
        """
        hook_path = self.charm_dir / 'hooks' / name
        if not hook_path.exists():
            _executable(hook_path, f'#!{sys.executable}\n{_HOOK}')
        environ = {
            k: v for k, v in os.environ.items() if not k.startswith(('JUJU_', 'CHARM_UPGRADE_'))
        }
        # Keep the stand-in systemctl's drop-in directory and fake snapd's socket.
        environ.update(
            {
                k: v
                for k, v in os.environ.items()
                if k in ('CHARM_UPGRADE_SYSTEMD_DIR', 'CHARM_UPGRADE_SNAPD_SOCKET')
            }
        )
        environ.pop('CHARM_DIR', None)
        environ.pop('UNIT_STATE_DB', None)
        environ.pop('CHARM_HELPERS_TESTMODE', None)
        environ.update(
            {
                'PATH': f'{self.tools_dir}{os.pathsep}{os.environ["PATH"]}',
                'CHARM_DIR': str(self.charm_dir),
                'JUJU_CHARM_DIR': str(self.charm_dir),
                'JUJU_HOOK_NAME': name,
                'JUJU_UNIT_NAME': self.unit_name,
                'JUJU_MODEL_NAME': 'test',
                'JUJU_MACHINE_ID': self.machine_id,
                'JUJU_VERSION': '3.6.14',
                'CHARM_UPGRADE_OS_RELEASE': str(self.os_release),
                **(env or {}),
            }
        )
        result = subprocess.run(
            [sys.executable, *HOOK_WARNING_OPTIONS, str(hook_path)],
            cwd=self.charm_dir,
            env=environ,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if check and result.returncode != 0:
            raise HookFailedError(
                f'hook {name} exited {result.returncode}\nstdout:\n{result.stdout}\n'
                f'stderr:\n{result.stderr}'
            )
        return result

    def pre_series_upgrade(
        self,
        base: str | None = 'ubuntu@24.04',
        series: str = 'noble',
        *,
        env: dict[str, str] | None = None,
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``pre-series-upgrade`` with the target Juju 3 sets (Juju 2.9: ``base=None``)."""
        target = {'JUJU_TARGET_SERIES': series}
        if base is not None:
            target['JUJU_TARGET_BASE'] = base
        return self.hook('pre-series-upgrade', env={**target, **(env or {})}, check=check)

    def upgrade_os(self, version: str = '24.04', codename: str = 'noble') -> None:
        """Stand for ``do-release-upgrade``: the machine now runs another release."""
        self.os_release.write_text(
            f'NAME="Ubuntu"\nID=ubuntu\nVERSION_ID="{version}"\nVERSION_CODENAME={codename}\n'
        )

    # The unit state database --------------------------------------------------

    def _db(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.charm_dir / '.unit-state.db')
        db.execute('create table if not exists kv (key text, data text, primary key (key))')
        return db

    def flags(self) -> set[str]:
        """The flags committed to the unit state database."""
        db = self._db()
        try:
            rows = db.execute("select key from kv where key like 'reactive.states.%'").fetchall()
        finally:
            db.close()
        return {key.removeprefix('reactive.states.') for (key,) in rows}

    def set_flags(self, *flags: str) -> None:
        """Commit flags as set_flag does, as if earlier hooks had set them."""
        db = self._db()
        try:
            with db:
                db.executemany(
                    'insert or replace into kv (key, data) values (?, ?)',
                    [(f'reactive.states.{flag}', 'null') for flag in flags],
                )
        finally:
            db.close()

    def clear_flags(self, *flags: str) -> None:
        """Remove committed flags, as a framework's end-of-hook clean-up would."""
        db = self._db()
        try:
            with db:
                db.executemany(
                    'delete from kv where key = ?', [(f'reactive.states.{f}',) for f in flags]
                )
        finally:
            db.close()

    # Hook tools -----------------------------------------------------------------

    def tool_calls(self, tool: str | None = None) -> list[dict[str, Any]]:
        """The hook tool calls so far, oldest first, of one tool or all."""
        path = self.tools_dir.parent / 'hook-tools.jsonl'
        if not path.exists():
            return []
        calls = [json.loads(line) for line in path.read_text().splitlines()]
        return [c for c in calls if tool is None or c['tool'] == tool]

    def status(self) -> tuple[str, str]:
        """The unit's workload status and message, as status-get would say."""
        path = self.tools_dir.parent / 'status.json'
        if not path.exists():
            return ('unknown', '')
        status = json.loads(path.read_text())
        return (status['status'], status['message'])

    def juju_log(self) -> str:
        """Every juju-log message, one per line."""
        return '\n'.join(c['args'][-1] for c in self.tool_calls('juju-log'))

    def journal_stages(self) -> list[tuple[str, str]]:
        """The library's journal, as (stage, event) pairs."""
        path = self.state_dir / 'journal.jsonl'
        lines = path.read_text().splitlines() if path.exists() else []
        return [(r['stage'], r['event']) for r in map(json.loads, lines)]

    def record(self) -> dict[str, Any]:
        """The library's before-state record."""
        return json.loads((self.state_dir / 'series-upgrade.json').read_text())


def _executable(path: pathlib.Path, text: str) -> None:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
