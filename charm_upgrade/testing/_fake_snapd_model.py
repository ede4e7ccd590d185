# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""What :class:`~charm_upgrade.testing.FakeSnapd` is made of: snaps, changes, answers.

The data of the fake (snaps with services, plugs and configuration; changes
with tasks), snapd's envelopes and errors, the format of the fake's own
``.snap`` files, and the :class:`Scheduler` thread on which changes progress.
The REST semantics are in ``_fake_snapd_state``.
"""

from __future__ import annotations

import dataclasses
import datetime
import heapq
import http
import itertools
import json
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import os
    from collections.abc import Callable, Iterable

    from ._fake_systemd_model import Machine

READY_STATUSES = frozenset({'Done', 'Undone', 'Hold', 'Error'})

SYSTEM_SNAP = 'snapd'
"""The snap that carries the system's own slots, as on a machine with the snapd snap."""

FAKE_SNAP_MAGIC = b'charm-upgrade fake snap\n'
"""How a file made by :func:`write_snap_file` starts; its manifest (JSON) follows."""

# Go's longest duration: snapd's hold "forever" ends this far from now.
_FOREVER = datetime.timedelta(microseconds=(2**63 - 1) // 1000)


class ApiError(Exception):
    """An error answer of the REST API: status code, message, optional kind and value."""

    def __init__(self, status: int, message: str, *, kind: str = '', value: Any = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind
        self.value = value

    def envelope(self) -> dict[str, Any]:
        """Return snapd's error envelope for this error."""
        result: dict[str, Any] = {'message': self.message}
        if self.kind:
            result['kind'] = self.kind
        if self.value is not None:
            result['value'] = self.value
        return envelope('error', self.status, result)


def envelope(type_: str, status: int, result: Any, **extra: Any) -> dict[str, Any]:
    """Return snapd's JSON envelope of an answer."""
    return {
        'type': type_,
        'status-code': status,
        'status': http.HTTPStatus(status).phrase,
        'result': result,
        **extra,
    }


def now() -> str:
    """The time now as snapd writes it (RFC 3339, UTC, ``Z``)."""
    return _rfc3339(datetime.datetime.now(datetime.timezone.utc))


def hold_until(time_: str) -> str:
    """The end of a hold as snapd reports it: ``forever`` is some 292 years away.

    Raises:
        ApiError: ``time_`` is neither ``forever`` nor an RFC 3339 time (snapd's 400).
    """
    if time_ == 'forever':
        return _rfc3339(datetime.datetime.now(datetime.timezone.utc) + _FOREVER)
    try:
        datetime.datetime.strptime(time_.replace('Z', '+00:00'), '%Y-%m-%dT%H:%M:%S%z')
    except ValueError:
        raise ApiError(
            400,
            'hold action requires time to be "forever" or in RFC3339 format: '
            f'parsing time "{time_}"',
        ) from None
    return time_


def _rfc3339(when: datetime.datetime) -> str:
    return when.isoformat().replace('+00:00', 'Z')


def conflict(snap: str, change_kind: str, *, kind: bool = True) -> ApiError:
    """Return snapd's answer to a write that another change of ``snap`` holds up.

    snapd answers 409 ``snap-change-conflict``, except to a start or stop of
    services: there it answers a plain 400 with the same text (``kind=False``).
    """
    message = f'snap "{snap}" has "{change_kind}" change in progress'
    if not kind:
        return ApiError(400, message)
    return ApiError(
        409,
        message,
        kind='snap-change-conflict',
        value={'change-kind': change_kind, 'snap-name': snap},
    )


def parse_revision(value: object) -> str | None:
    """Parse a ``revision`` of a request body as snapd does; None means unset.

    Raises:
        ApiError: the value is not a revision (snapd's 400 ``invalid snap revision``).
    """
    text = ''
    if isinstance(value, int) and not isinstance(value, bool):
        text = str(value) if value >= 0 else f'x{-value}'
    elif isinstance(value, str):
        text = value
    if text == 'unset':
        return None
    digits = text[1:] if text.startswith('x') else text
    if digits.isascii() and digits.isdigit() and (int(digits) > 0 or digits == text):
        number = int(digits)
        if number == 0:
            return None
        return f'x{number}' if text.startswith('x') else str(number)
    raise ApiError(
        400,
        'cannot decode request body into snap instruction: '
        f'invalid snap revision: {json.dumps(json.dumps(value))}',
    )


_SNAP_UNIT = """\
[Unit]
Description=Service for snap application {name}
[Service]
ExecStart=/usr/bin/snap run {name}
[Install]
WantedBy=multi-user.target
"""


class Service:
    """One service of a fake snap: whether it is enabled and whether it runs.

    Kept in the object until the fake snapd is attached to a
    :class:`~charm_upgrade.testing.FakeSystemd`; from then on it lives on that
    machine as the unit ``snap.<snap>.<app>.service`` (snapd's own name for
    it), so that ``systemctl`` and snapd see one state: a ``systemctl stop``
    shows in ``GET /v2/apps``, and a start through snapd of a unit held by a
    drop-in is skipped, as systemd skips it.
    """

    def __init__(self, enabled: bool, active: bool):
        self._enabled = enabled
        self._active = active
        self._machine: Machine | None = None
        self._unit = ''

    def __repr__(self) -> str:
        return f'Service(enabled={self.enabled}, active={self.active})'

    def bind(self, machine: Machine, unit: str) -> None:
        """Keep this service's state in ``machine`` as ``unit`` from now on."""
        if self._machine is machine:
            return
        path = machine.config_dir / unit
        if not path.exists():
            path.write_text(_SNAP_UNIT.format(name=unit[len('snap.') : -len('.service')]))
        enabled, active = self.enabled, self.active
        self._machine, self._unit = machine, unit
        machine.set_enabled(unit, enabled)
        with machine.state() as state:
            state['active'][unit] = 'active' if active else 'inactive'

    @property
    def enabled(self) -> bool:
        """Whether the service starts at boot."""
        return self._enabled if self._machine is None else self._machine.is_enabled(self._unit)

    @enabled.setter
    def enabled(self, value: bool) -> None:
        if self._machine is None:
            self._enabled = value
        elif value != self.enabled:
            self._machine.set_enabled(self._unit, value)

    @property
    def active(self) -> bool:
        """Whether the service runs."""
        return self._active if self._machine is None else self._machine.is_active(self._unit)

    @active.setter
    def active(self, value: bool) -> None:
        if self._machine is None:
            self._active = value
        else:
            self._machine.set_active(self._unit, value)


@dataclasses.dataclass
class Snap:
    """One installed fake snap (or one the fake store offers).

    ``available`` holds the revisions a refresh may go to: the store's for a
    store snap, those on disk for a local one (``x1``...). ``plugs`` maps
    each plug to its interface; ``conf`` is the snap's configuration.
    """

    name: str
    revision: str
    available: set[str]
    sequence: list[str]
    version: str
    channel: str
    services: dict[str, Service]
    hold: str = ''
    confinement: str = 'strict'
    plugs: dict[str, str] = dataclasses.field(default_factory=dict[str, str])
    slots: dict[str, str] = dataclasses.field(default_factory=dict[str, str])
    conf: dict[str, Any] = dataclasses.field(default_factory=dict[str, Any])
    channels: dict[str, str] = dataclasses.field(default_factory=dict[str, str])

    @property
    def local(self) -> bool:
        """Whether it was installed from a file: snapd cannot ask the store for it."""
        return self.revision.startswith('x')

    def app_info(self, app: str) -> dict[str, Any]:
        """Return an app as ``GET /v2/apps`` lists it (``enabled``/``active`` only if true)."""
        service = self.services[app]
        info: dict[str, Any] = {
            'snap': self.name,
            'name': app,
            'daemon': 'simple',
            'daemon-scope': 'system',
        }
        if service.enabled:
            info['enabled'] = True
        if service.active:
            info['active'] = True
        return info

    def info(self) -> dict[str, Any]:
        """Return the snap as ``GET /v2/snaps/{name}`` reports it."""
        info: dict[str, Any] = {
            'id': '' if self.local else f'fake-snap-id-{self.name}',
            'name': self.name,
            'type': 'app',
            'version': self.version,
            'channel': self.channel,
            'revision': self.revision,
            'confinement': self.confinement,
            'status': 'active',
            'apps': [self.app_info(app) for app in sorted(self.services)],
        }
        if self.channel:
            info['tracking-channel'] = self.channel
        if self.hold:
            info['hold'] = self.hold
        return info


@dataclasses.dataclass
class Task:
    """One task of a change."""

    id: str
    kind: str
    summary: str
    status: str = 'Do'
    spawn_time: str = dataclasses.field(default_factory=now)
    ready_time: str = ''

    def set(self, status: str) -> None:
        """Move the task to ``status``, stamping its ready time when it becomes ready."""
        self.status = status
        if status in READY_STATUSES and not self.ready_time:
            self.ready_time = now()

    def to_json(self) -> dict[str, Any]:
        """Return the task as snapd serves it."""
        ready = self.status in READY_STATUSES
        out: dict[str, Any] = {
            'id': self.id,
            'kind': self.kind,
            'summary': self.summary,
            'status': self.status,
            'progress': {'label': '', 'done': int(ready), 'total': 1},
            'spawn-time': self.spawn_time,
        }
        if self.ready_time:
            out['ready-time'] = self.ready_time
        return out


@dataclasses.dataclass
class Change:
    """A change (an asynchronous operation) and its tasks."""

    id: str
    kind: str
    summary: str
    snaps: list[str]
    tasks: list[Task]
    status: str = 'Do'
    err: str = ''
    spawn_time: str = dataclasses.field(default_factory=now)
    spawn_mono: float = dataclasses.field(default_factory=time.monotonic)
    ready_time: str = ''
    ready_mono: float | None = None

    @property
    def ready(self) -> bool:
        """Whether snapd would report the change ready."""
        return self.status in READY_STATUSES

    def to_json(self) -> dict[str, Any]:
        """Return the change as ``GET /v2/changes/{id}`` serves it."""
        out: dict[str, Any] = {
            'id': self.id,
            'kind': self.kind,
            'summary': self.summary,
            'status': self.status,
            'ready': self.ready,
            'spawn-time': self.spawn_time,
            'tasks': [task.to_json() for task in self.tasks],
        }
        if self.err:
            out['err'] = self.err
        if self.ready_time:
            out['ready-time'] = self.ready_time
        return out


@dataclasses.dataclass(frozen=True)
class RefreshFault:
    """How the next refresh fails (see ``FakeSnapd.fail_next_refresh``)."""

    undo: bool
    error: str
    duration: float | None


class Scheduler:
    """Runs callbacks at given times on one daemon thread; stop() drops what is pending."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None
        self._stopping = False

    def start(self) -> None:
        """Start the thread (no-op if running)."""
        with self._cond:
            if self._thread is not None:
                return
            self._stopping = False
            self._thread = threading.Thread(
                target=self._run, name='fake-snapd-scheduler', daemon=True
            )
            self._thread.start()

    def call_later(self, delay: float, callback: Callable[[], None]) -> None:
        """Run ``callback`` on the scheduler thread in ``delay`` seconds."""
        with self._cond:
            due = time.monotonic() + max(0.0, delay)
            heapq.heappush(self._heap, (due, next(self._seq), callback))
            self._cond.notify()

    def stop(self) -> None:
        """Drop the pending callbacks and join the thread (no-op if stopped)."""
        with self._cond:
            thread, self._thread = self._thread, None
            self._stopping = True
            self._heap.clear()
            self._cond.notify()
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopping:
                    now = time.monotonic()
                    if self._heap and self._heap[0][0] <= now:
                        break
                    self._cond.wait(self._heap[0][0] - now if self._heap else None)
                if self._stopping:
                    return
                callback = heapq.heappop(self._heap)[2]
            try:
                callback()
            except Exception:  # a bug in the fake: report it, keep serving
                exc_type, exc, tb = sys.exc_info()
                assert exc_type is not None
                threading.excepthook(
                    threading.ExceptHookArgs((exc_type, exc, tb, threading.current_thread()))
                )


@dataclasses.dataclass(frozen=True)
class Form:
    """A ``multipart/form-data`` request body: its fields and its files.

    Attributes:
        fields: Each plain field's value.
        files: Each file field's (file name, content).
    """

    fields: dict[str, str]
    files: dict[str, tuple[str, bytes]]

    @classmethod
    def parse(cls, content_type: str, raw: bytes) -> Form:
        """Parse a multipart body as the fake's HTTP layer received it.

        Raises:
            ApiError: the body is not multipart form data (snapd's 400).
        """
        import email.parser
        import email.policy

        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            f'Content-Type: {content_type}\r\n\r\n'.encode() + raw
        )
        if not message.is_multipart():
            raise ApiError(400, "cannot read POST form: request Content-Type isn't multipart")
        fields: dict[str, str] = {}
        files: dict[str, tuple[str, bytes]] = {}
        for part in message.iter_parts():
            name = part.get_param('name', header='content-disposition')
            payload = part.get_payload(decode=True)
            if not isinstance(name, str) or not isinstance(payload, bytes):
                continue
            filename = part.get_filename()
            if filename is None:
                fields[name] = payload.decode()
            else:
                files[name] = (filename, payload)
        return cls(fields, files)


def write_snap_file(
    path: str | os.PathLike[str],
    name: str,
    *,
    version: str = '1.0',
    services: Iterable[str] = ('daemon',),
    plugs: Iterable[str] = (),
    confinement: str = 'strict',
) -> None:
    """Write a ``.snap`` file that the fake installs from a sideload, as snapd would.

    The file is the fake's own format, not a squashfs: real snapd refuses it.
    Also :meth:`FakeSnapd.write_snap_file <charm_upgrade.testing.FakeSnapd.write_snap_file>`.

    Example::

        FakeSnapd.write_snap_file(tmp_path / 'foo.snap', 'foo', version='2.0')
        snapd.wait_done(snapd.sideload('foo', tmp_path / 'foo.snap', dangerous=True))
    """
    manifest = {
        'name': name,
        'version': version,
        'services': list(services),
        'plugs': list(plugs),
        'confinement': confinement,
    }
    with open(path, 'wb') as f:
        f.write(FAKE_SNAP_MAGIC + json.dumps(manifest).encode())


def read_snap_file(filename: str, content: bytes) -> dict[str, Any]:
    """The manifest of a file made by :func:`write_snap_file`.

    Raises:
        ApiError: the file is not one (snapd's 400 for a file it cannot read).
    """
    if not content.startswith(FAKE_SNAP_MAGIC):
        raise ApiError(
            400,
            f'cannot read snap file: the fake snapd installs only files made by '
            f'FakeSnapd.write_snap_file, not "{filename}"',
        )
    try:
        manifest = json.loads(content[len(FAKE_SNAP_MAGIC) :])
    except ValueError:
        manifest = None
    if not isinstance(manifest, dict) or not isinstance(manifest.get('name'), str):  # pyright: ignore[reportUnknownMemberType]
        raise ApiError(400, f'cannot read snap file "{filename}": no manifest')
    return manifest  # pyright: ignore[reportUnknownVariableType]
