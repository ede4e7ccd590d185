# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""The state behind :class:`~charm_upgrade.testing.FakeSnapd` and snapd's REST semantics.

Everything here runs under :attr:`SnapdState.lock`; the HTTP layer in
``_fake_snapd`` only parses requests, calls :meth:`SnapdState.handle` and
writes the answer. Changes progress on a :class:`Scheduler` thread.
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
from collections import deque
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

READY_STATUSES = frozenset({'Done', 'Undone', 'Hold', 'Error'})
_SELECTS = ('all', 'in-progress', 'ready')


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
        return _envelope('error', self.status, result)


def _envelope(type_: str, status: int, result: Any, **extra: Any) -> dict[str, Any]:
    return {
        'type': type_,
        'status-code': status,
        'status': http.HTTPStatus(status).phrase,
        'result': result,
        **extra,
    }


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat().replace('+00:00', 'Z')


def _conflict(snap: str, change_kind: str) -> ApiError:
    return ApiError(
        409,
        f'snap "{snap}" has "{change_kind}" change in progress',
        kind='snap-change-conflict',
        value={'snap-name': snap, 'change-kind': change_kind},
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


@dataclasses.dataclass
class Service:
    """One service of a fake snap."""

    enabled: bool
    active: bool


@dataclasses.dataclass
class Snap:
    """One installed fake snap."""

    name: str
    revision: str
    available: set[str]
    sequence: list[str]
    version: str
    channel: str
    services: dict[str, Service]
    hold: str = ''
    hold_time: str = ''

    def app_info(self, app: str) -> dict[str, Any]:
        """Return an app as ``GET /v2/apps`` lists it (``enabled``/``active`` only if true)."""
        service = self.services[app]
        info: dict[str, Any] = {'snap': self.name, 'name': app, 'daemon': 'simple'}
        if service.enabled:
            info['enabled'] = True
        if service.active:
            info['active'] = True
        return info

    def info(self) -> dict[str, Any]:
        """Return the snap as ``GET /v2/snaps/{name}`` reports it."""
        info: dict[str, Any] = {
            'id': f'fake-snap-id-{self.name}',
            'name': self.name,
            'type': 'app',
            'version': self.version,
            'revision': self.revision,
            'confinement': 'strict',
            'status': 'active',
            'apps': [self.app_info(app) for app in sorted(self.services)],
        }
        if self.channel:
            info['channel'] = info['tracking-channel'] = self.channel
        if self.hold:
            info['hold'] = self.hold_time
        return info


@dataclasses.dataclass
class Task:
    """One task of a change."""

    id: str
    kind: str
    summary: str
    status: str = 'Do'
    spawn_time: str = dataclasses.field(default_factory=_now)
    ready_time: str = ''

    def set(self, status: str) -> None:
        """Move the task to ``status``, stamping its ready time when it becomes ready."""
        self.status = status
        if status in READY_STATUSES and not self.ready_time:
            self.ready_time = _now()

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
    spawn_time: str = dataclasses.field(default_factory=_now)
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


class SnapdState:
    """The fake's snaps, changes and pending faults, all guarded by :attr:`lock`."""

    def __init__(self, change_duration: float) -> None:
        self.lock = threading.Lock()
        self.idle = threading.Condition(self.lock)
        self.scheduler = Scheduler()
        self.snaps: dict[str, Snap] = {}
        self.changes: dict[str, Change] = {}
        self.change_duration = change_duration
        self.refresh_faults: deque[RefreshFault] = deque()
        self.conflicts: deque[str] = deque()
        self.store: dict[str, Snap] = {}
        self._change_ids = itertools.count(1)
        self._task_ids = itertools.count(1)

    # Entry point --------------------------------------------------------------

    def handle(
        self, method: str, path: str, query: dict[str, str], body: Any
    ) -> tuple[int, dict[str, Any]]:
        """Answer one request: return the status code and the JSON envelope."""
        with self.lock:
            try:
                return self._route(method, path, query, body)
            except ApiError as e:
                return e.status, e.envelope()

    def _route(
        self, method: str, path: str, query: dict[str, str], body: Any
    ) -> tuple[int, dict[str, Any]]:
        parts = path.rstrip('/').split('/')[1:]
        if len(parts) < 2 or parts[0] != 'v2' or len(parts) > 3:
            raise ApiError(404, 'not found')
        endpoint, arg = parts[1], (parts[2] if len(parts) == 3 else None)
        routes: dict[tuple[str, bool], dict[str, Callable[[], Any]]] = {
            ('snaps', False): {
                'GET': lambda: self._list_snaps(query),
                'POST': lambda: self._refuse_multi(),
            },
            ('snaps', True): {
                'GET': lambda: self._snap(arg or '').info(),
                'POST': lambda: self._snap_action(arg or '', body),
            },
            ('apps', False): {
                'GET': lambda: self._list_apps(query),
                'POST': lambda: self._service_control(body),
            },
            ('changes', False): {'GET': lambda: self._list_changes(query)},
            ('changes', True): {'GET': lambda: self._change(arg or '').to_json()},
        }
        methods = routes.get((endpoint, arg is not None))
        if methods is None:
            raise ApiError(404, 'not found')
        if method not in methods:
            raise ApiError(405, f'method "{method}" not allowed')
        result = methods[method]()
        if isinstance(result, Change):
            return 202, _envelope('async', 202, None, change=result.id)
        return 200, _envelope('sync', 200, result)

    # Reads ----------------------------------------------------------------------

    def _snap(self, name: str) -> Snap:
        snap = self.snaps.get(name)
        if snap is None:
            raise ApiError(404, 'snap not installed', kind='snap-not-found', value=name)
        return snap

    def _list_snaps(self, query: dict[str, str]) -> list[dict[str, Any]]:
        wanted = {n for n in query.get('snaps', '').split(',') if n}
        return [
            self.snaps[name].info() for name in sorted(self.snaps) if not wanted or name in wanted
        ]

    def _resolve(self, names: Iterable[str], what: str) -> list[tuple[str, str]]:
        """Turn ``snap`` / ``snap.app`` names into (snap, app) pairs, as snapd does."""
        found: list[tuple[str, str]] = []
        for name in names:
            snap_name, _, app = name.partition('.')
            snap = self.snaps.get(snap_name)
            if snap is None:
                raise ApiError(
                    404, f'snap "{snap_name}" not found', kind='snap-not-found', value=snap_name
                )
            if app and app not in snap.services:
                raise ApiError(
                    404, f'snap "{snap_name}" has no {what} "{app}"', kind='app-not-found'
                )
            apps = [app] if app else sorted(snap.services)
            found += [(snap_name, a) for a in apps if (snap_name, a) not in found]
        return found

    def _list_apps(self, query: dict[str, str]) -> list[dict[str, Any]]:
        select = query.get('select', '')
        if select not in ('', 'service'):
            raise ApiError(400, f'invalid select parameter: "{select}"')
        names = [n for n in query.get('names', '').split(',') if n] or sorted(self.snaps)
        pairs = self._resolve(names, 'service' if select else 'app')
        return [self.snaps[snap].app_info(app) for snap, app in sorted(pairs)]

    def _change(self, change_id: str) -> Change:
        change = self.changes.get(change_id)
        if change is None:
            raise ApiError(404, f'cannot find change with id "{change_id}"')
        return change

    def _list_changes(self, query: dict[str, str]) -> list[dict[str, Any]]:
        select = query.get('select') or 'in-progress'
        if select not in _SELECTS:
            raise ApiError(400, f'invalid select parameter: "{select}"')
        snap = query.get('for', '')
        return [
            change.to_json()
            for change in self.changes.values()
            if (not snap or snap in change.snaps)
            and (select == 'all' or change.ready == (select == 'ready'))
        ]

    # Writes ---------------------------------------------------------------------

    def _check_conflict(self, snaps: Iterable[str]) -> None:
        snaps = list(snaps)
        if self.conflicts:
            raise _conflict(snaps[0] if snaps else '', self.conflicts.popleft())
        for change in self.changes.values():
            busy = [s for s in snaps if s in change.snaps]
            if busy and not change.ready:
                raise _conflict(busy[0], change.kind)

    @staticmethod
    def _refuse_multi() -> Any:
        raise ApiError(400, 'the fake snapd does not implement multi-snap operations')

    def _snap_action(self, name: str, body: Any) -> Change:
        if not isinstance(body, dict):
            raise ApiError(400, 'cannot decode request body into snap instruction')
        instruction: dict[str, Any] = body  # pyright: ignore[reportUnknownVariableType]
        action = instruction.get('action')
        revision = parse_revision(instruction['revision']) if 'revision' in instruction else None
        if action not in ('refresh', 'revert', 'hold', 'unhold', 'install'):
            if action in ('remove', 'enable', 'disable', 'switch'):
                raise ApiError(400, f'the fake snapd does not implement action "{action}"')
            raise ApiError(400, f'unknown action "{action}"')
        snap = self.snaps.get(name)
        if action == 'install':
            if snap is None and name in self.store:
                return self._install(self.store[name], revision)
            if snap is None:
                raise ApiError(404, 'snap not found', kind='snap-not-found', value=name)
            raise ApiError(
                400,
                f'snap "{name}" is already installed',
                kind='snap-already-installed',
                value=name,
            )
        if snap is None:
            raise ApiError(
                400, f'snap "{name}" is not installed', kind='snap-not-installed', value=name
            )
        self._check_conflict([name])
        if action == 'refresh':
            return self._refresh(snap, revision, instruction.get('channel'))
        if action == 'revert':
            return self._revert(snap, revision)
        if action == 'hold':
            snap.hold = str(instruction.get('hold-level') or 'general')
            until = instruction.get('time') or 'forever'
            snap.hold_time = '2126-01-01T00:00:00Z' if until == 'forever' else str(until)
            summary = f'Hold {snap.hold} refreshes for "{name}"'
        else:
            snap.hold = snap.hold_time = ''
            summary = f'Remove refresh hold on "{name}"'
        change = self._new_change(f'{action}-snap', summary, [name], [])
        self._finish(change, 'Done')
        return change

    def _refresh(self, snap: Snap, revision: str | None, channel: Any) -> Change:
        if revision is None:
            store = [r for r in snap.available if r.isdigit()]
            revision = max(store, key=int) if store else snap.revision
            if revision == snap.revision and not channel:
                raise ApiError(
                    400,
                    f'snap "{snap.name}" has no updates available',
                    kind='snap-no-update-available',
                    value=snap.name,
                )
        elif revision not in snap.available:
            raise ApiError(
                404,
                'no snap revision available as specified',
                kind='snap-revision-not-available',
                value=snap.name,
            )
        if isinstance(channel, str) and channel:
            snap.channel = channel
        fault = self.refresh_faults.popleft() if self.refresh_faults else None
        return self._relink(snap, revision, 'refresh-snap', f'Refresh "{snap.name}" snap', fault)

    def _install(self, offer: Snap, revision: str | None) -> Change:
        if revision is None:
            revision = max(offer.available, key=lambda r: int(r.lstrip('x')))
        elif revision not in offer.available:
            raise ApiError(
                404,
                'no snap revision available as specified',
                kind='snap-revision-not-available',
                value=offer.name,
            )
        self._check_conflict([offer.name])
        task = self._task('link-snap', f'Make snap "{offer.name}" ({revision}) available')
        task.set('Doing')
        change = self._new_change(
            'install-snap', f'Install "{offer.name}" snap', [offer.name], [task]
        )
        change.status = 'Doing'

        def finish() -> None:
            # The snap appears, its services enabled and started, when the change ends.
            self.snaps[offer.name] = dataclasses.replace(
                offer,
                revision=revision,
                sequence=[revision],
                available=set(offer.available),
                services={app: Service(True, True) for app in offer.services},
            )
            task.set('Done')
            self._finish(change, 'Done')

        self._schedule(change, self.change_duration, finish)
        return change

    def _revert(self, snap: Snap, revision: str | None) -> Change:
        index = snap.sequence.index(snap.revision)
        if revision is None:
            if index == 0:
                raise ApiError(400, f'cannot revert "{snap.name}": no revision to revert to')
            revision = snap.sequence[index - 1]
        elif revision == snap.revision:
            raise ApiError(400, f'cannot revert "{snap.name}": already on requested revision')
        elif revision not in snap.sequence:
            raise ApiError(400, f'cannot find revision {revision} for snap "{snap.name}"')
        return self._relink(snap, revision, 'revert-snap', f'Revert "{snap.name}" snap', None)

    def _relink(
        self, snap: Snap, target: str, kind: str, summary: str, fault: RefreshFault | None
    ) -> Change:
        """A refresh-like change: stop services, link ``target``, hook, start services."""
        name, old, old_sequence = snap.name, snap.revision, list(snap.sequence)
        stop, link, hook, start = tasks = [
            self._task('stop-snap-services', f'Stop snap "{name}" services'),
            self._task('link-snap', f'Make snap "{name}" ({target}) available to the system'),
            self._task('run-hook', f'Run post-refresh hook of "{name}" snap if present'),
            self._task('start-snap-services', f'Start snap "{name}" ({target}) services'),
        ]
        change = self._new_change(kind, summary, [name], tasks)
        was_active: set[str] = set()

        def stop_services() -> None:
            change.status = 'Doing'
            for app, service in self.snaps[name].services.items():
                if service.active:
                    was_active.add(app)
                    service.active = False
            stop.set('Done')
            link.set('Doing')

        def link_target() -> None:
            snap = self.snaps[name]
            snap.revision = target
            if kind == 'refresh-snap':
                snap.sequence = [r for r in snap.sequence if r != target] + [target]
            link.set('Done')
            hook.set('Doing')

        def hook_fails() -> None:
            hook.set('Error')
            if fault is not None and fault.undo:
                change.status = 'Undoing'
                link.set('Undoing')

        def finish() -> None:
            snap = self.snaps[name]
            if fault is None:
                hook.set('Done')
                for service in snap.services.values():
                    service.active = service.active or service.enabled
                start.set('Done')
                self._finish(change, 'Done')
                return
            start.set('Hold')
            if fault.undo:
                snap.revision, snap.sequence = old, old_sequence
                for app, service in snap.services.items():
                    service.active = service.active or service.enabled or app in was_active
                link.set('Undone')
                stop.set('Undone')
            change.err = f'cannot perform the following tasks:\n- {hook.summary} ({fault.error})'
            self._finish(change, 'Error')

        duration = self.change_duration
        if fault is not None and fault.duration is not None:
            duration = fault.duration
        self._schedule(change, duration * 0.1, stop_services)
        self._schedule(change, duration * 0.5, link_target)
        if fault is not None:
            self._schedule(change, duration * 0.75, hook_fails)
        self._schedule(change, duration, finish)
        return change

    def _service_control(self, body: Any) -> Change:
        if not isinstance(body, dict):
            raise ApiError(400, 'cannot decode request body into service operation')
        instruction: dict[str, Any] = body  # pyright: ignore[reportUnknownVariableType]
        action = instruction.get('action')
        names = instruction.get('names')
        if action not in ('start', 'stop', 'restart'):
            raise ApiError(400, f'unknown action "{action}"')
        if not isinstance(names, list) or not names:
            raise ApiError(400, 'cannot perform operation on services without a list of services')
        pairs = self._resolve((str(n) for n in names), 'service')  # pyright: ignore[reportUnknownArgumentType, reportUnknownVariableType]
        snaps = sorted({snap for snap, _ in pairs})
        self._check_conflict(snaps)
        tasks = [
            self._task(
                'exec-command',
                f'Run service command "{action}" for services '
                f'{json.dumps([a for s, a in pairs if s == snap])} of snap "{snap}"',
            )
            for snap in snaps
        ]
        change = self._new_change('service-control', 'Running service command', snaps, tasks)
        enable = bool(instruction.get('enable')) and action == 'start'
        disable = bool(instruction.get('disable')) and action == 'stop'

        def doing() -> None:
            change.status = 'Doing'
            for task in tasks:
                task.set('Doing')

        def finish() -> None:
            for snap_name, app in pairs:
                snap = self.snaps.get(snap_name)
                if snap is None or app not in snap.services:
                    continue
                service = snap.services[app]
                service.active = action != 'stop'
                service.enabled = (service.enabled or enable) and not disable
            for task in tasks:
                task.set('Done')
            self._finish(change, 'Done')

        self._schedule(change, self.change_duration * 0.1, doing)
        self._schedule(change, self.change_duration, finish)
        return change

    # Changes ----------------------------------------------------------------------

    def _task(self, kind: str, summary: str) -> Task:
        return Task(str(next(self._task_ids)), kind, summary)

    def _new_change(self, kind: str, summary: str, snaps: list[str], tasks: list[Task]) -> Change:
        change = Change(str(next(self._change_ids)), kind, summary, snaps, tasks)
        self.changes[change.id] = change
        return change

    def _finish(self, change: Change, status: str) -> None:
        change.status = status
        change.ready_time = _now()
        change.ready_mono = time.monotonic()
        self.idle.notify_all()

    def _schedule(self, change: Change, delay: float, step: Callable[[], None]) -> None:
        """Run ``step`` under the lock in ``delay`` seconds, unless the change is ready."""

        def run() -> None:
            with self.lock:
                if not change.ready:
                    step()

        self.scheduler.call_later(delay, run)

    def start_change(self, snap: str, kind: str, duration: float) -> Change:
        """An in-flight change of ``snap`` with no effect, Done after ``duration``."""
        task = self._task(kind, f'Fake {kind} change of "{snap}"')
        task.set('Doing')
        change = self._new_change(kind, f'{kind} of "{snap}"', [snap], [task])
        change.status = 'Doing'

        def finish() -> None:
            task.set('Done')
            self._finish(change, 'Done')

        self._schedule(change, duration, finish)
        return change

    def in_progress(self) -> list[Change]:
        """The changes that are not ready."""
        return [c for c in self.changes.values() if not c.ready]
