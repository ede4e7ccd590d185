# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""Batched ``systemctl`` calls, how units are held down, and what their enablement is.

Every operation here costs a constant number of ``systemctl`` invocations,
whatever the number of units: one ``show`` reads them all, one ``stop``, one
``start`` and so on act on them all. ``start`` and ``stop`` go on past a unit
they cannot handle and exit non-zero at the end, so a batch that fails is
read again with ``show`` to learn which units did what.

Holding a unit down
-------------------
``systemctl mask`` is what charmhelpers uses, but systemd refuses it for a
unit whose file lives in ``/etc/systemd/system`` (``File ... already
exists``), which is where charms write their units and snapd writes snap
services. Instead, a hold is a drop-in ``~charm-upgrade-hold.conf`` in
``/etc/systemd/system/<unit>.d/`` with an always-false condition
(``ConditionPathExists=!/``). It works wherever the unit file lives, survives
reboots, and applies to every name of the unit (a drop-in directory of an
alias counts). Whatever starts the unit by a dependency that does not need it
to run (boot, ``Wants=``, ``Requires=``), a trigger (a socket, a path unit, a
timer), ``deb-systemd-invoke`` in a maintainer script, or a plain ``systemctl
start``, systemd finds the condition false, skips the unit, and the start
*succeeds* without running it, so a package's maintainer script does not fail
the OS upgrade. Starts that need the unit to be active fail instead: a unit
with ``BindsTo=`` or ``Requisite=`` on a held unit does not start.

systemd applies drop-ins in the order of their file names, across all the
unit's drop-in directories, and an empty ``ConditionPathExists=`` in a later
one resets the conditions. ``~`` sorts after letters and digits, so the hold
comes after any drop-in with a sane name; :func:`dropins_after_hold` finds
the ones that do not, so that prepare can warn.

What a unit's enablement is made of, and how it is restored, is in
:mod:`charm_upgrade._systemd_links`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import pathlib
import re
import subprocess
from typing import TYPE_CHECKING

from . import _state
from .errors import ServiceError, SystemdError

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

__all__ = [
    'HOLD_DROPIN_NAME',
    'RELEASE_FLAG_NAME',
    'RUNNING_STATES',
    'UNIT_SUFFIXES',
    'UnitState',
    'config_dir',
    'dropins_after_hold',
    'hold',
    'let_start',
    'normalise_unit_name',
    'release',
    'show',
    'systemctl',
    'try_systemctl',
]

logger = logging.getLogger(__name__)

SYSTEMCTL = 'systemctl'
"""The command run; tests put a stand-in of the same name first on ``PATH``."""

CONFIG_DIR_ENV = 'CHARM_UPGRADE_SYSTEMD_DIR'
"""Environment variable naming another directory for hold drop-ins (tests)."""

DEFAULT_CONFIG_DIR = '/etc/systemd/system'

HOLD_DROPIN_NAME = '~charm-upgrade-hold.conf'
"""The file name of the drop-in that holds a unit down; ``~`` sorts after letters and digits."""

_OLD_HOLD_DROPIN_NAMES = ('zz-charm-upgrade-hold.conf',)
# Holds written by earlier versions of the library, released too.


TIMEOUT = 300.0
"""Seconds one ``systemctl`` call may take (a stop waits for the unit to stop)."""

RUNNING_STATES = frozenset({'active', 'activating', 'reloading'})
"""``ActiveState`` values that mean the unit is running."""

_HOLD_DROPIN = """\
# Written by charm-upgrade: this unit is held down while the machine's OS is
# upgraded (juju upgrade-machine / upgrade-series). The charm removes this file
# when the upgrade completes. The condition below is always false, so systemd
# skips the unit whatever tries to start it.
[Unit]
ConditionPathExists=!/
"""

RELEASE_FLAG_NAME = '~charm-upgrade-released'
"""The file, beside a releasable hold drop-in, whose existence lets the unit start.

Not a ``.conf``: systemd does not read it as a drop-in.
"""

_RELEASABLE_HOLD_DROPIN = f"""\
# Written by charm-upgrade: this unit is held down while its snap is refreshed
# (charm-refresh). The charm removes this file when the refresh is done. systemd
# skips the unit whatever tries to start it until the file the condition names
# exists (%E is /etc, %n this unit): the charm creates it to start the unit again.
[Unit]
ConditionPathExists=%E/systemd/system/%n.d/{RELEASE_FLAG_NAME}
"""

UNIT_SUFFIXES = (
    '.service',
    '.socket',
    '.target',
    '.timer',
    '.path',
    '.mount',
    '.automount',
    '.swap',
    '.slice',
    '.scope',
    '.device',
)
_UNIT_NAME_RE = re.compile(r'[A-Za-z0-9:_.\\@-]+')
_TEMPLATE_RE = re.compile(r'[^@]*@(\.[a-z]+)?')
_SHOW_PROPERTIES = (
    'Id',
    'Names',
    'LoadState',
    'ActiveState',
    'UnitFileState',
    'FragmentPath',
    'DropInPaths',
    'RefuseManualStart',
    'RefuseManualStop',
    'TriggeredBy',
    'StateChangeTimestampMonotonic',
    'TriggerLimitIntervalUSec',
)
_TIMESPAN_UNITS = {'us': 1e-6, 'ms': 1e-3, 's': 1.0, 'min': 60.0, 'h': 3600.0, 'd': 86400.0}
_TIMESPAN_RE = re.compile(r'(\d+(?:\.\d+)?)(us|ms|s|min|h|d)')


@dataclasses.dataclass(frozen=True)
class UnitState:
    """What systemd reports about one unit.

    Attributes:
        name: The name the caller used.
        id: systemd's own name for the unit (differs from ``name`` for an alias).
        load_state: ``loaded``, ``not-found``, ``masked``, ``bad-setting``...
        active_state: ``active``, ``inactive``, ``failed``, ``activating``...
        unit_file_state: What ``systemctl is-enabled`` reports: ``enabled``,
            ``disabled``, ``static``, ``masked``, ``linked``... (``''`` if none).
        fragment_path: The unit file's path (for a linked or masked unit, its
            symlink in ``/etc/systemd/system``), or ``''``.
        names: Every name of the unit: its id and its aliases.
        drop_in_paths: Its drop-ins, in the order systemd applies them.
        refuse_manual_start: ``RefuseManualStart=yes``: ``systemctl start`` is refused.
        refuse_manual_stop: ``RefuseManualStop=yes``: ``systemctl stop`` is refused.
        triggered_by: The units that start it: sockets, path units, timers.
        state_changed_at: When its active state last changed, in seconds of
            the monotonic clock (``time.monotonic()``); 0 if unknown.
        trigger_limit_interval: For a socket or path unit, the seconds of its
            trigger limit's window; 0 if none.
    """

    name: str
    id: str
    load_state: str
    active_state: str
    unit_file_state: str
    fragment_path: str
    names: tuple[str, ...] = ()
    drop_in_paths: tuple[str, ...] = ()
    refuse_manual_start: bool = False
    refuse_manual_stop: bool = False
    triggered_by: tuple[str, ...] = ()
    state_changed_at: float = 0.0
    trigger_limit_interval: float = 0.0

    @property
    def exists(self) -> bool:
        """Whether systemd knows a unit by this name."""
        return self.load_state not in ('not-found', '')

    @property
    def running(self) -> bool:
        """Whether the unit is running (active, activating or reloading)."""
        return self.active_state in RUNNING_STATES

    @property
    def enabled(self) -> bool:
        """Whether the unit is enabled to start at boot."""
        return self.unit_file_state == 'enabled'


def normalise_unit_name(name: str) -> str:
    """Return ``name`` as a full unit name: a name with no unit suffix means ``.service``.

    Raises:
        ServiceError: ``name`` is empty, not a possible unit name, or a
            template (``foo@``, ``foo@.service``): ``systemctl show`` refuses
            a template, so one would fail every call it is in.
    """
    if not isinstance(name, str) or not name.strip():  # pyright: ignore[reportUnnecessaryIsInstance]
        raise ServiceError(f'invalid systemd unit name {name!r}: expected a name such as "myapp"')
    if not _UNIT_NAME_RE.fullmatch(name):
        raise ServiceError(
            f'invalid systemd unit name {name!r}: unit names have no spaces or slashes'
        )
    if _TEMPLATE_RE.fullmatch(name):
        raise ServiceError(
            f'{name!r} is a template, not a unit: name its instances, such as '
            f'"{name.split("@", 1)[0]}@<instance>"'
        )
    return name if name.endswith(UNIT_SUFFIXES) else f'{name}.service'


def config_dir() -> pathlib.Path:
    """Return the directory hold drop-ins are written to."""
    return pathlib.Path(os.environ.get(CONFIG_DIR_ENV) or DEFAULT_CONFIG_DIR)


def systemctl(*args: str) -> str:
    """Run ``systemctl`` with ``args`` and return its standard output.

    Raises:
        SystemdError: systemctl is missing, timed out, or exited non-zero.
    """
    result = _run(args)
    if result.returncode != 0:
        raise _failure(result)
    return result.stdout


def try_systemctl(*args: str) -> SystemdError | None:
    """Run ``systemctl`` with ``args``; return its failure instead of raising it.

    For batches (``start``, ``stop``) that go on past a unit they cannot
    handle: the caller reads the units again to learn what happened.

    Raises:
        SystemdError: systemctl is missing or timed out (nothing was learnt).
    """
    result = _run(args)
    return _failure(result) if result.returncode != 0 else None


def _run(args: Sequence[str]) -> subprocess.CompletedProcess[str]:
    command = [SYSTEMCTL, '--no-ask-password', '--no-pager', *args]
    try:
        return subprocess.run(
            command, capture_output=True, text=True, timeout=TIMEOUT, check=False
        )
    except FileNotFoundError as e:
        raise SystemdError(
            f'{SYSTEMCTL!r} was not found on PATH: managing systemd services needs a '
            'machine booted with systemd',
            command=command,
        ) from e
    except subprocess.TimeoutExpired as e:
        raise SystemdError(
            f'`{" ".join(command)}` did not finish within {TIMEOUT:g} s; see '
            '`systemctl list-jobs` and `journalctl -xe`',
            command=command,
        ) from e


def _failure(result: subprocess.CompletedProcess[str]) -> SystemdError:
    command = [str(a) for a in result.args]
    return SystemdError(
        f'`{" ".join(command)}` failed with exit status {result.returncode}: '
        f'{result.stderr.strip() or "no message"}',
        command=command,
        returncode=result.returncode,
        stderr=result.stderr,
    )


def show(names: Sequence[str]) -> dict[str, UnitState]:
    """Return the state of every unit in ``names``, read with one ``systemctl show``.

    Raises:
        SystemdError: systemctl failed or its output could not be read.
    """
    if not names:
        return {}
    output = systemctl('show', '--property=' + ','.join(_SHOW_PROPERTIES), '--', *names)
    # One block of KEY=VALUE lines per unit, in the order asked, blank-line separated.
    blocks = [block for block in output.strip().split('\n\n') if block.strip()]
    if len(blocks) != len(names):
        raise SystemdError(
            f'`systemctl show` reported {len(blocks)} units for the {len(names)} asked: '
            f'{output[:200]!r}'
        )
    states: dict[str, UnitState] = {}
    for name, block in zip(names, blocks, strict=True):
        props: dict[str, str] = {}
        for line in block.splitlines():
            key, _, value = line.partition('=')
            props[key] = value
        states[name] = UnitState(
            name=name,
            id=props.get('Id') or name,
            load_state=props.get('LoadState', ''),
            active_state=props.get('ActiveState', ''),
            unit_file_state=props.get('UnitFileState', ''),
            fragment_path=props.get('FragmentPath', ''),
            names=tuple(props.get('Names', '').split()),
            drop_in_paths=tuple(props.get('DropInPaths', '').split()),
            refuse_manual_start=props.get('RefuseManualStart') == 'yes',
            refuse_manual_stop=props.get('RefuseManualStop') == 'yes',
            triggered_by=tuple(props.get('TriggeredBy', '').split()),
            state_changed_at=int(props.get('StateChangeTimestampMonotonic') or 0) / 1e6,
            trigger_limit_interval=_timespan(props.get('TriggerLimitIntervalUSec', '')),
        )
    return states


def _timespan(text: str) -> float:
    # systemctl show prints time spans for people: "2s", "1min 30s", "500ms".
    return sum(float(n) * _TIMESPAN_UNITS[unit] for n, unit in _TIMESPAN_RE.findall(text))


def dropins_after_hold(state: UnitState) -> list[str]:
    """Return the unit's drop-ins that systemd applies after the hold (which may undo it)."""
    return [
        path
        for path in state.drop_in_paths
        if os.path.basename(path) > HOLD_DROPIN_NAME
        and os.path.basename(path) not in (HOLD_DROPIN_NAME, *_OLD_HOLD_DROPIN_NAMES)
    ]


def hold_path(unit_id: str) -> pathlib.Path:
    """Return the path of the hold drop-in for ``unit_id``."""
    return config_dir() / f'{unit_id}.d' / HOLD_DROPIN_NAME


def hold(unit_ids: Iterable[str], *, releasable: bool = False) -> None:
    """Hold units down: write their hold drop-ins, then reload systemd once.

    Idempotent. Running units keep running until stopped; the hold only keeps
    them from starting again.

    Args:
        unit_ids: The units.
        releasable: Make the hold one that :func:`let_start` opens without a
            ``daemon-reload`` (for a short hold, such as a snap's refresh): its
            condition is the existence of a file beside the drop-in, removed here.
            Otherwise the condition is always false, until :func:`release`.
    """
    text = _RELEASABLE_HOLD_DROPIN if releasable else _HOLD_DROPIN
    for unit_id in unit_ids:
        path = hold_path(unit_id)
        path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        # A flag an earlier, unfinished release left would open the new hold.
        _state.remove(path.with_name(RELEASE_FLAG_NAME))
        # Atomic and durable like the unit's records: a crash leaves no
        # half-written drop-in for systemd to parse at the next boot, and
        # the retry removes the temporary file the crash left.
        _state.atomic_write(path, text.encode(), mode=0o644)
        _state.drop_temporaries(path.parent)
    systemctl('daemon-reload')


def let_start(unit_ids: Iterable[str]) -> bool:
    """Open the releasable holds of units, so that a start runs them; no reload.

    The drop-ins stay until :func:`release`, which costs a ``daemon-reload`` that
    can then wait until the units run. Returns False, changing nothing, if one of
    the units has another hold (or none loaded): :func:`release` it first.
    """
    units = list(unit_ids)
    for unit_id in units:
        try:
            text = hold_path(unit_id).read_text(encoding='utf-8')
        except (OSError, UnicodeDecodeError):
            return False
        if text != _RELEASABLE_HOLD_DROPIN:
            return False
    for unit_id in units:
        # Its existence is all systemd checks; a crash that loses it leaves the unit
        # held, which the caller's next run opens again.
        hold_path(unit_id).with_name(RELEASE_FLAG_NAME).touch(mode=0o644)
    return True


def release(unit_ids: Iterable[str]) -> None:
    """Release held units: remove their hold drop-ins, then reload systemd once.

    Idempotent: units that are not held are left alone (but systemd is still
    reloaded, so that a hold removed by hand, or links changed since, take effect).
    """
    for unit_id in unit_ids:
        path = hold_path(unit_id)
        for name in (HOLD_DROPIN_NAME, *_OLD_HOLD_DROPIN_NAMES, RELEASE_FLAG_NAME):
            _state.remove(path.with_name(name))
        _state.drop_temporaries(path.parent)  # of a hold killed while it was written
        try:
            path.parent.rmdir()  # only if the drop-in directory is now empty
        except OSError:
            pass
    systemctl('daemon-reload')


def is_held(unit_id: str) -> bool:
    """Tell whether ``unit_id`` has a hold drop-in."""
    path = hold_path(unit_id)
    return any(path.with_name(n).exists() for n in (HOLD_DROPIN_NAME, *_OLD_HOLD_DROPIN_NAMES))
