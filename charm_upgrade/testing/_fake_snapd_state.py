# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""The REST semantics of :class:`~charm_upgrade.testing.FakeSnapd`: :class:`SnapdState`.

Everything here runs under :attr:`SnapdState.lock`; the HTTP layer in
``_fake_snapd`` only parses requests, calls :meth:`SnapdState.handle` and
writes the answer. Changes progress on a :class:`Scheduler` thread.

The answers follow snapd 2.68 (Debian trixie), or 2.57 (Debian bookworm) for
a version below 2.58, as the contract test checks against both: the fields,
the statuses, the error kinds, and the texts of the errors snapd sends
without a kind.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Any, cast

from ._fake_snapd_model import (
    READY_STATUSES,
    SYSTEM_SNAP,
    ApiError,
    Change,
    Form,
    RefreshFault,
    Scheduler,
    Service,
    Snap,
    Task,
    conflict,
    envelope,
    hold_until,
    now,
    parse_revision,
    read_snap_file,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from ._fake_systemd_model import Machine

__all__ = ['READY_STATUSES', 'RefreshFault', 'Service', 'Snap', 'SnapdState', 'parse_revision']

_SELECTS = ('all', 'in-progress', 'ready')
_Connection = tuple[str, str, str, str]  # plug snap, plug, slot snap, slot


def _version(text: str) -> tuple[int, ...]:
    digits = text.split('+')[0].split('-')[0]
    return tuple(int(part) for part in digits.split('.') if part.isdigit())


def _channel(text: str) -> str:
    """A channel as snapd writes it: ``stable`` is ``latest/stable``."""
    return text if '/' in text else f'latest/{text}'


class SnapdState:
    """The fake's snaps, changes and pending faults, all guarded by :attr:`lock`.

    Args:
        change_duration: Seconds each change takes from spawn to ready.
        version: The snapd version to answer as (``2.68``, ``2.57``...).
    """

    def __init__(self, change_duration: float, version: str = '2.68') -> None:
        self.lock = threading.Lock()
        self.idle = threading.Condition(self.lock)
        self.scheduler = Scheduler()
        self.snaps: dict[str, Snap] = {}
        self.changes: dict[str, Change] = {}
        self.change_duration = change_duration
        self.version = version
        self.refresh_faults: deque[RefreshFault] = deque()
        self.conflicts: deque[str] = deque()
        self.store: dict[str, Snap] = {}
        self.connections: dict[_Connection, bool] = {}  # -> made by hand
        self.machine: Machine | None = None
        self._change_ids = itertools.count(1)
        self._task_ids = itertools.count(1)

    def bind(self, snap: Snap) -> None:
        """Keep the snap's services in the attached machine, if there is one."""
        if self.machine is not None:
            for app, service in snap.services.items():
                service.bind(self.machine, f'snap.{snap.name}.{app}.service')

    @property
    def holds_supported(self) -> bool:
        """Whether this snapd knows the ``hold`` action (2.58 and later)."""
        return _version(self.version) >= (2, 58)

    # Entry point --------------------------------------------------------------

    def handle(
        self, method: str, path: str, query: dict[str, str], body: Any
    ) -> tuple[int, dict[str, Any]]:
        """Answer one request: return the status code and the JSON envelope.

        ``body`` is the decoded JSON, or a :class:`Form` for a multipart body.
        """
        with self.lock:
            try:
                return self._route(method, path, query, body)
            except ApiError as e:
                return e.status, e.envelope()

    def _route(
        self, method: str, path: str, query: dict[str, str], body: Any
    ) -> tuple[int, dict[str, Any]]:
        parts = path.rstrip('/').split('/')[1:]
        if len(parts) < 2 or parts[0] != 'v2' or len(parts) > 4:
            raise ApiError(404, 'not found')
        endpoint, rest = parts[1], tuple(parts[2:])
        arg = rest[0] if rest else ''
        routes: dict[tuple[str, int], dict[str, Callable[[], Any]]] = {
            ('snaps', 0): {
                'GET': lambda: self._list_snaps(query),
                'POST': lambda: self._sideload(body),
            },
            ('snaps', 1): {
                'GET': lambda: self._snap(arg).info(),
                'POST': lambda: self._snap_action(arg, body),
            },
            ('apps', 0): {
                'GET': lambda: self._list_apps(query),
                'POST': lambda: self._service_control(body),
            },
            ('changes', 0): {'GET': lambda: self._list_changes(query)},
            ('changes', 1): {'GET': lambda: self._change(arg).to_json()},
            ('interfaces', 0): {'POST': lambda: self._interfaces(body)},
            ('connections', 0): {'GET': lambda: self._list_connections(query)},
            ('system-info', 0): {'GET': self._system_info},
        }
        if endpoint == 'snaps' and rest[1:] == ('conf',):
            methods: dict[str, Callable[[], Any]] | None = {
                'GET': lambda: self._get_conf(arg, query),
                'PUT': lambda: self._set_conf(arg, body),
            }
        else:
            methods = routes.get((endpoint, len(rest)))
        if methods is None:
            raise ApiError(404, 'not found')
        if method not in methods:
            raise ApiError(405, f'method "{method}" not allowed')
        result = methods[method]()
        if isinstance(result, Change):
            return 202, envelope('async', 202, None, change=result.id)
        if endpoint == 'snaps' and not rest and method == 'GET':
            return 200, envelope('sync', 200, result, sources=['local'])
        return 200, envelope('sync', 200, result)

    # Reads ----------------------------------------------------------------------

    def _system_info(self) -> dict[str, Any]:
        return {'version': self.version, 'series': '16', 'on-classic': True}

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

    def _get_conf(self, name: str, query: dict[str, str]) -> dict[str, Any]:
        # snapd answers a snap it does not know with an empty configuration.
        conf = self.snaps[name].conf if name in self.snaps else {}
        keys = [k for k in query.get('keys', '').split(',') if k]
        if not keys:
            return json.loads(json.dumps(conf))
        result: dict[str, Any] = {}
        for key in keys:
            node: Any = conf
            for part in key.split('.'):
                if not isinstance(node, dict) or part not in node:
                    raise ApiError(
                        400,
                        f'snap "{name}" has no "{key}" configuration option',
                        kind='option-not-found',
                        value={'SnapName': name, 'Key': key},
                    )
                node = cast('dict[str, Any]', node)[part]
            result[key] = json.loads(json.dumps(node))
        return result

    def _list_connections(self, query: dict[str, str]) -> dict[str, Any]:
        snap = query.get('snap', '')
        established = [
            {
                'slot': {'snap': slot_snap, 'slot': slot},
                'plug': {'snap': plug_snap, 'plug': plug},
                'interface': self._interface(plug_snap, plug),
                **({'manual': True} if manual else {}),
            }
            for (plug_snap, plug, slot_snap, slot), manual in sorted(self.connections.items())
            if not snap or snap in (plug_snap, slot_snap)
        ]
        return {'established': established, 'plugs': [], 'slots': []}

    def _interface(self, snap: str, plug: str) -> str:
        owner = self.snaps.get(snap)
        return owner.plugs.get(plug, plug) if owner is not None else plug

    # Writes ---------------------------------------------------------------------

    def _check_conflict(self, snaps: Iterable[str], *, kind: bool = True) -> None:
        snaps = list(snaps)
        if self.conflicts:
            raise conflict(snaps[0] if snaps else '', self.conflicts.popleft(), kind=kind)
        for change in self.changes.values():
            busy = [s for s in snaps if s in change.snaps]
            if busy and not change.ready:
                raise conflict(busy[0], change.kind, kind=kind)

    def _snap_action(self, name: str, body: Any) -> Change:
        if not isinstance(body, dict):
            raise ApiError(400, 'cannot decode request body into snap instruction: EOF')
        instruction = cast('dict[str, Any]', body)
        action = instruction.get('action')
        revision = parse_revision(instruction['revision']) if 'revision' in instruction else None
        holds = ('hold', 'unhold') if self.holds_supported else ()
        if action not in ('refresh', 'revert', 'install', *holds):
            if action in ('remove', 'enable', 'disable', 'switch'):
                raise ApiError(400, f'the fake snapd does not implement action "{action}"')
            raise ApiError(400, f'unknown action {action}')
        snap = self.snaps.get(name)
        if action == 'install':
            if snap is not None:
                raise ApiError(
                    400,
                    f'snap "{name}" is already installed',
                    kind='snap-already-installed',
                    value=name,
                )
            return self._install(name, revision, instruction)
        if action in ('hold', 'unhold'):
            return self._hold(name, snap, instruction)
        if snap is None:
            if self.holds_supported:  # 2.68 sends this one without a kind
                raise ApiError(400, f'cannot {action} "{name}": snap "{name}" is not installed')
            raise ApiError(
                400, f'snap "{name}" is not installed', kind='snap-not-installed', value=name
            )
        self._check_conflict([name])
        if action == 'refresh':
            return self._refresh(snap, revision, instruction.get('channel'))
        return self._revert(snap, revision)

    def _hold(self, name: str, snap: Snap | None, instruction: dict[str, Any]) -> Change:
        if instruction['action'] == 'unhold':
            # snapd removes a hold of a snap it does not know without a word.
            if snap is not None:
                snap.hold = ''
            change = self._new_change('unhold-snap', f'Remove refresh hold on "{name}"', [name])
            self._finish(change, 'Done')
            return change
        level = instruction.get('hold-level')
        time_ = instruction.get('time')
        if not isinstance(time_, str) or not time_:
            raise ApiError(400, 'hold action requires a non-empty time value')
        if level not in ('general', 'auto-refresh'):
            raise ApiError(
                400, 'hold action requires hold-level to be either "auto-refresh" or "general"'
            )
        until = hold_until(time_)
        if snap is None:
            raise ApiError(400, f'cannot hold "{name}": snap "{name}" is not installed')
        snap.hold = until
        what = 'general refreshes' if level == 'general' else 'auto-refreshes'
        change = self._new_change('hold-snap', f'Hold {what} for "{name}"', [name])
        self._finish(change, 'Done')
        return change

    def _refresh(self, snap: Snap, revision: str | None, channel: Any) -> Change:
        if snap.local and (revision is None or revision not in snap.available):
            # A local snap has no store to ask: only revisions on disk.
            raise ApiError(
                400, 'cannot perform operation on local snap', kind='snap-local', value=''
            )
        if revision is None:
            if isinstance(channel, str) and channel and snap.channels:
                revision = snap.channels.get(_channel(channel))
            store = [r for r in snap.available if r.isdigit()]
            revision = revision or (max(store, key=int) if store else snap.revision)
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
            snap.channel = _channel(channel)
        fault = self.refresh_faults.popleft() if self.refresh_faults else None
        return self._relink(snap, revision, 'refresh-snap', f'Refresh "{snap.name}" snap', fault)

    def _install(self, name: str, revision: str | None, instruction: dict[str, Any]) -> Change:
        offer = self.store.get(name)
        if offer is None:
            raise ApiError(404, 'snap not found', kind='snap-not-found', value=name)
        channel = instruction.get('channel')
        tracking = _channel(channel) if isinstance(channel, str) and channel else 'latest/stable'
        if revision is None:
            if offer.channels:
                revision = offer.channels.get(tracking)
                if revision is None:
                    raise ApiError(
                        404,
                        f'no snap revision on specified channel "{tracking}"',
                        kind='snap-channel-not-available',
                        value=name,
                    )
            else:
                revision = max(offer.available, key=lambda r: int(r.lstrip('x')))
        elif revision not in offer.available:
            raise ApiError(
                404,
                'no snap revision available as specified',
                kind='snap-revision-not-available',
                value=name,
            )
        _check_classic(name, offer.confinement, bool(instruction.get('classic')))
        self._check_conflict([name])
        installed = dataclasses.replace(
            offer,
            revision=revision,
            sequence=[revision],
            available=set(offer.available),
            channel=tracking,
            services={app: Service(True, True) for app in offer.services},
            conf={},
        )
        return self._add(installed, f'Install "{name}" snap')

    def _add(self, snap: Snap, summary: str) -> Change:
        """A change that installs ``snap`` (not installed yet): its services run when done."""

        def link() -> None:
            self.snaps[snap.name] = snap
            self.bind(snap)

        task = f'Make snap "{snap.name}" ({snap.revision}) available'
        return self._one_task('install-snap', summary, [snap.name], 'link-snap', task, link)

    def _sideload(self, body: Any) -> Change:
        if not isinstance(body, Form):
            raise ApiError(400, 'the fake snapd does not implement multi-snap operations')
        if 'snap' not in body.files:
            raise ApiError(
                400, 'cannot find "snap" file field in provided multipart/form-data payload'
            )
        filename, content = body.files['snap']
        if body.fields.get('dangerous') != 'true':
            raise ApiError(
                400, f'cannot find signatures with metadata for snap/component "{filename}"'
            )
        manifest = read_snap_file(filename, content)
        name = str(manifest['name'])
        confinement = str(manifest.get('confinement', 'strict'))
        _check_classic(name, confinement, body.fields.get('classic') == 'true')
        self._check_conflict([name])
        snap = self.snaps.get(name)
        on_disk = [*(snap.available if snap else ()), *(snap.sequence if snap else ())]
        revision = f'x{max((int(r[1:]) for r in on_disk if r[:1] == "x"), default=0) + 1}'
        summary = f'Install "{name}" snap from file "{filename}"'
        services = [str(s) for s in cast('list[Any]', manifest.get('services', []))]
        if snap is None:
            new = Snap(
                name=name,
                revision=revision,
                available={revision},
                sequence=[revision],
                version=str(manifest.get('version', '')),
                channel='',
                services={app: Service(True, True) for app in services},
                confinement=confinement,
                plugs={str(p): str(p) for p in cast('list[Any]', manifest.get('plugs', []))},
            )
            return self._add(new, summary)
        snap.available.add(revision)
        snap.version = str(manifest.get('version', snap.version))
        return self._relink(snap, revision, 'install-snap', summary, None)

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
            if kind != 'revert-snap':
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
        instruction = cast('dict[str, Any]', body)
        action = instruction.get('action')
        names = instruction.get('names')
        if action not in ('start', 'stop', 'restart'):
            raise ApiError(400, f'unknown action "{action}"')
        if not isinstance(names, list) or not names:
            raise ApiError(
                400,
                'cannot perform operation on services without a list of services to operate on',
            )
        pairs = self._resolve((str(n) for n in cast('list[Any]', names)), 'service')
        snaps = sorted({snap for snap, _ in pairs})
        self._check_conflict(snaps, kind=False)
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

    def _set_conf(self, name: str, body: Any) -> Change:
        snap = self.snaps.get(name)
        if snap is None:
            raise ApiError(
                404, f'snap "{name}" is not installed', kind='snap-not-found', value=name
            )
        if not isinstance(body, dict):
            raise ApiError(400, 'cannot decode request body into patch values: EOF')
        self._check_conflict([name])
        values = cast('dict[str, Any]', body)

        def configure() -> None:
            for key, value in values.items():
                _set_path(snap.conf, key.split('.'), value)

        summary = f'Change configuration of "{name}" snap'
        task = f'Run configure hook of "{name}" snap'
        return self._one_task('configure-snap', summary, [name], 'run-hook', task, configure)

    def _interfaces(self, body: Any) -> Change:
        if not isinstance(body, dict):
            raise ApiError(400, 'cannot decode request body into an interface action: EOF')
        instruction = cast('dict[str, Any]', body)
        action = instruction.get('action')
        plugs = cast('list[dict[str, str]]', instruction.get('plugs') or [{}])
        slots = cast('list[dict[str, str]]', instruction.get('slots') or [{}])
        if action not in ('connect', 'disconnect') or len(plugs) != 1 or len(slots) != 1:
            raise ApiError(400, f'the fake snapd does not implement this {action} request')
        plug_snap, plug = plugs[0].get('snap', ''), plugs[0].get('plug', '')
        slot_snap, slot = slots[0].get('snap', ''), slots[0].get('slot', '')
        snap = self.snaps.get(plug_snap)
        if snap is None:
            raise ApiError(400, f'snap "{plug_snap}" is not installed')
        if plug not in snap.plugs:
            raise ApiError(400, f'snap "{plug_snap}" has no plug named "{plug}"')
        interface = snap.plugs[plug]
        slot_snap = slot_snap or SYSTEM_SNAP
        owner = self.snaps.get(slot_snap)
        if slot_snap == SYSTEM_SNAP:
            # The system has a slot for each interface; the fake knows those its snaps plug.
            known = {i for s in self.snaps.values() for i in s.plugs.values()}
        else:
            known = set(owner.slots) if owner is not None else set[str]()
        if slot and slot not in known:
            raise ApiError(400, f'snap "{slot_snap}" has no slot named "{slot}"')
        slot = slot or interface
        key = (plug_snap, plug, slot_snap, slot)
        self._check_conflict(sorted({plug_snap, slot_snap}))
        if action == 'connect':
            summary = f'Connect {plug_snap}:{plug} to {slot_snap}:{slot}'
        else:
            matching = [c for c in self.connections if c[:2] == (plug_snap, plug)]
            if not matching or (slots[0].get('slot') and key not in matching):
                raise ApiError(400, 'nothing to do', kind='interfaces-unchanged')
            summary = (
                f'Disconnect {plug_snap}:{plug} from {slots[0].get("snap", "")}:'
                f'{slots[0].get("slot", "")}'
            )

        def apply() -> None:
            if action == 'connect':
                self.connections[key] = True
            else:
                for made in [c for c in self.connections if c[:2] == (plug_snap, plug)]:
                    del self.connections[made]

        snaps = [plug_snap, slot_snap]
        return self._one_task(f'{action}-snap', summary, snaps, action, summary, apply)

    # Changes ----------------------------------------------------------------------

    def _task(self, kind: str, summary: str) -> Task:
        return Task(str(next(self._task_ids)), kind, summary)

    def _new_change(
        self, kind: str, summary: str, snaps: list[str], tasks: list[Task] | None = None
    ) -> Change:
        change = Change(str(next(self._change_ids)), kind, summary, snaps, tasks or [])
        self.changes[change.id] = change
        return change

    def _finish(self, change: Change, status: str) -> None:
        change.status = status
        change.ready_time = now()
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
        summary = f'Fake {kind} change of "{snap}"'
        return self._one_task(kind, f'{kind} of "{snap}"', [snap], kind, summary, None, duration)

    def _one_task(
        self,
        kind: str,
        summary: str,
        snaps: list[str],
        task_kind: str,
        task_summary: str,
        effect: Callable[[], None] | None,
        duration: float | None = None,
    ) -> Change:
        """A change of one task, Doing at once; ``effect`` happens when it is Done."""
        task = self._task(task_kind, task_summary)
        task.set('Doing')
        change = self._new_change(kind, summary, snaps, [task])
        change.status = 'Doing'

        def finish() -> None:
            if effect is not None:
                effect()
            task.set('Done')
            self._finish(change, 'Done')

        self._schedule(change, self.change_duration if duration is None else duration, finish)
        return change

    def in_progress(self) -> list[Change]:
        """The changes that are not ready."""
        return [c for c in self.changes.values() if not c.ready]


def _check_classic(name: str, confinement: str, allowed: bool) -> None:
    if confinement == 'classic' and not allowed:
        raise ApiError(
            400,
            f'snap "{name}" requires classic confinement',
            kind='snap-needs-classic',
            value=name,
        )


def _set_path(conf: dict[str, Any], path: list[str], value: Any) -> None:
    """Set (or, for None, unset) the option at a dotted path, as snapd's PUT does."""
    node = conf
    for part in path[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            if value is None:
                return
            child = node[part] = {}
        node = cast('dict[str, Any]', child)
    if value is None:
        node.pop(path[-1], None)
    else:
        node[path[-1]] = value
