# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""Juju base strings (``ubuntu@22.04``): from /etc/os-release and from Juju's environment."""

from __future__ import annotations

import os
import pathlib
import shlex

from . import _state

__all__ = ['current_base', 'target_base_from_env']

OS_RELEASE = '/etc/os-release'
"""The file the current base is read from."""

OS_RELEASE_ENV = 'CHARM_UPGRADE_OS_RELEASE'
"""Environment variable naming another os-release file (the test kit's units)."""

_OS_RELEASE_ADVICE = (
    'the base of this machine cannot be read. The OS writes this file (on Ubuntu, the '
    'base-files package: `apt install --reinstall base-files`); fix it, then run again'
)

# Ubuntu releases by code name, for Juju 2.9's JUJU_TARGET_SERIES.
_UBUNTU_SERIES = {
    'trusty': '14.04',
    'xenial': '16.04',
    'bionic': '18.04',
    'cosmic': '18.10',
    'disco': '19.04',
    'eoan': '19.10',
    'focal': '20.04',
    'groovy': '20.10',
    'hirsute': '21.04',
    'impish': '21.10',
    'jammy': '22.04',
    'kinetic': '22.10',
    'lunar': '23.04',
    'mantic': '23.10',
    'noble': '24.04',
    'oracular': '24.10',
    'plucky': '25.04',
    'questing': '25.10',
    'resolute': '26.04',
}


def current_base(path: str | os.PathLike[str] | None = None) -> str | None:
    """Return this machine's base, ``ID@VERSION_ID`` from os-release, or None if unknown.

    Raises:
        StateFileError: os-release is not UTF-8, as its specification requires.
    """
    release = pathlib.Path(path or os.environ.get(OS_RELEASE_ENV) or OS_RELEASE)
    try:
        data = release.read_bytes()
    except OSError:
        return None
    text = _state.decode_text(release, data, advice=_OS_RELEASE_ADVICE)
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition('=')
        if sep and key.strip():
            try:
                parts = shlex.split(value)
            except ValueError:
                continue
            fields[key.strip()] = parts[0] if parts else ''
    if not fields.get('ID') or not fields.get('VERSION_ID'):
        return None
    return f'{fields["ID"]}@{fields["VERSION_ID"]}'


def base_from_series(series: str) -> str | None:
    """Return the base of a series name (``jammy`` -> ``ubuntu@22.04``), or None if unknown."""
    series = series.strip().lower()
    if series in _UBUNTU_SERIES:
        return f'ubuntu@{_UBUNTU_SERIES[series]}'
    if series.startswith('centos') and series[6:].isdigit():
        return f'centos@{series[6:]}'
    return None


def target_base_from_env(environ: os._Environ[str] | dict[str, str] | None = None) -> str | None:
    """Return the target base Juju gives a series-upgrade hook, or None if it gives none.

    ``JUJU_TARGET_BASE`` (Juju 3) first, then ``JUJU_TARGET_SERIES`` (Juju 2.9).
    """
    env = os.environ if environ is None else environ
    base = env.get('JUJU_TARGET_BASE', '').strip()
    if base:
        return base
    series = env.get('JUJU_TARGET_SERIES', '').strip()
    if series:
        return base_from_series(series) or series
    return None
