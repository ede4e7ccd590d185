#!/usr/bin/env python3
# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""Run the demo, the tests or the benchmarks on a machine that has nothing but python3.

    python3 tools/dev.py demo          # the demo: a rolling refresh and a series upgrade
    python3 tools/dev.py test          # every test that needs no container, on every Python
    python3 tools/dev.py bench         # the benchmarks: medians and ratios
    python3 tools/dev.py integration   # the real systemd and snapd tier (root)
    python3 tools/dev.py tox -e docs   # anything else tox can do

It makes a virtual environment in .venv-dev with tox and tox-uv (tox's environments are
made with uv), then runs tox. Where python3 has no ensurepip (Debian without python3-venv),
it fetches pip's wheel from PyPI and bootstraps pip from it.

`test` runs tox's env_list side by side. Its unit, reactive and demo tiers run on each
Python the project supports (the py3XX factors in tox.ini), found on PATH or where pyenv or
uv installed it. A missing one is named with the way to get it; the other tiers still run,
and then `test` fails if CI is set (as in CI: a Python the README promises is never
silently left out) and passes otherwise.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.request
import venv

ROOT = pathlib.Path(__file__).resolve().parent.parent
VENV = ROOT / '.venv-dev'
BIN = VENV / 'bin'
REQUIREMENTS = ['tox>=4.22', 'tox-uv>=1.25']
COMMANDS = {
    'demo': ['run', '-e', 'demo'],
    'bench': ['run', '-e', 'bench'],
    'integration': ['run', '-e', 'integration'],
}


def ensure_venv() -> None:
    """Create .venv-dev with pip, tox and tox-uv, once."""
    installed = VENV / 'requirements.json'
    if installed.exists() and json.loads(installed.read_text()) == REQUIREMENTS:
        return
    try:
        venv.create(VENV, with_pip=True, clear=True)
    except (subprocess.CalledProcessError, OSError):
        venv.create(VENV, with_pip=False, clear=True)
    if not (BIN / 'pip').exists():
        bootstrap_pip()
    pip = [str(BIN / 'python'), '-m', 'pip', 'install', '--quiet', '--upgrade']
    run([*pip, 'pip', *REQUIREMENTS])
    installed.write_text(json.dumps(REQUIREMENTS))


def bootstrap_pip() -> None:
    """Install pip into .venv-dev from pip's own wheel on PyPI."""
    index = os.environ.get('PIP_INDEX_URL', 'https://pypi.org/simple').rstrip('/')
    base = index.removesuffix('/simple')
    if not base.startswith(('https://', 'http://')):
        sys.exit(f'cannot bootstrap pip from the index {index!r}: install python3-venv')
    with urllib.request.urlopen(f'{base}/pypi/pip/json', timeout=60) as response:  # noqa: S310
        release = json.load(response)
    url = next(f['url'] for f in release['urls'] if f['filename'].endswith('.whl'))
    with tempfile.TemporaryDirectory() as tmp:
        wheel = pathlib.Path(tmp) / url.rsplit('/', 1)[1]
        with urllib.request.urlopen(url, timeout=120) as response:  # noqa: S310 (PyPI's https URL)
            wheel.write_bytes(response.read())
        # A pip wheel is runnable: it installs itself.
        run([str(BIN / 'python'), f'{wheel}/pip', 'install', '--quiet', str(wheel)])


def run(command: list[str]) -> None:
    """Run ``command`` in the repository root; exit with its status if it fails."""
    returncode = subprocess.run(command, cwd=ROOT, check=False).returncode
    if returncode != 0:
        sys.exit(returncode)


def default_envs() -> list[str]:
    """tox.ini's env_list, as tox reads it."""
    listed = subprocess.run(
        [str(BIN / 'tox'), 'list', '-d', '--no-desc', '--quiet', '--quiet'],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return [line.strip() for line in listed.stdout.splitlines() if line.strip()]


def python_version(env: str) -> str | None:
    """'3.10' for an environment with the factor py310; None if it has no Python factor."""
    match = re.fullmatch(r'py3(\d+)', env.split('-')[0])
    return f'3.{match[1]}' if match else None


def find_python(version: str) -> str | None:
    """An interpreter of ``version`` that runs: on PATH, else installed by pyenv or uv."""
    home = pathlib.Path.home()
    pyenv = pathlib.Path(os.environ.get('PYENV_ROOT', home / '.pyenv')) / 'versions'
    uv = pathlib.Path(os.environ.get('UV_PYTHON_INSTALL_DIR', home / '.local/share/uv/python'))
    candidates = [
        shutil.which(f'python{version}'),
        # Newest patch release first.
        *sorted(map(str, pyenv.glob(f'{version}.*/bin/python{version}')), reverse=True),
        *sorted(map(str, uv.glob(f'cpython-{version}.*/bin/python{version}')), reverse=True),
    ]
    for candidate in filter(None, candidates):
        # A pyenv shim is on PATH for every version pyenv has, active or not; ask it.
        probe = subprocess.run(
            [candidate, '-c', 'import sys; print("%d.%d" % sys.version_info[:2])'],
            capture_output=True,
            text=True,
            check=False,
        )
        if probe.returncode == 0 and probe.stdout.strip() == version:
            return candidate
    return None


def how_to_get(version: str) -> str:
    """Where a missing interpreter comes from."""
    return (
        f'python{version} was not found on PATH, under pyenv or under uv. Install it with '
        f"`pyenv install {version}`, `uv python install {version}` or the system's package "
        f'(Ubuntu: python{version}-venv, from the deadsnakes PPA where Ubuntu has none).'
    )


def link_pythons(envs: list[str], directory: pathlib.Path) -> dict[str, list[str]]:
    """Link the interpreters the py3XX factors of ``envs`` need into ``directory``.

    ``directory`` goes first on tox's PATH, so that tox (and uv) find the interpreters pyenv or
    uv installed off PATH too. It must not be inside a virtual environment: uv would take the
    links for that environment's interpreters. Returns the missing versions, each with the
    environments that need it.
    """
    missing: dict[str, list[str]] = {}
    for version in sorted({v for v in map(python_version, envs) if v}):
        found = find_python(version)
        if found is None:
            missing[version] = [e for e in envs if python_version(e) == version]
        else:
            (directory / f'python{version}').symlink_to(found)
    return missing


def test(
    envs: list[str], missing: dict[str, list[str]], env: dict[str, str], args: list[str]
) -> int:
    """Run ``envs`` side by side, leaving out (but in CI, failing) those ``missing`` needs."""
    in_ci = os.environ.get('CI', '').lower() not in {'', '0', 'false', 'no'}
    notes = [f'{how_to_get(v)} Not run: {", ".join(names)}.' for v, names in missing.items()]
    for note in notes:
        print(f'dev.py: {note}', file=sys.stderr, flush=True)
    if not in_ci:
        envs = [e for e in envs if python_version(e) not in missing]
    # In CI tox is asked for the missing ones too: it fails them, after running the others.
    tox = [str(BIN / 'tox'), 'run-parallel', '--parallel-no-spinner', '-e', ','.join(envs)]
    returncode = subprocess.run([*tox, *args], cwd=ROOT, env=env, check=False).returncode
    for note in notes:
        print(f'dev.py: {note}', file=sys.stderr)
    if missing and in_ci:
        return returncode or 1
    if missing:
        print('dev.py: CI runs every tier on every supported Python.', file=sys.stderr)
    return returncode


def main(argv: list[str]) -> None:
    """Entry point."""
    if not argv or (argv[0] not in {*COMMANDS, 'test', 'tox'}):
        sys.exit(__doc__)
    ensure_venv()
    envs = default_envs()
    with tempfile.TemporaryDirectory(prefix='charm-upgrade-pythons-') as pythons:
        missing = link_pythons(envs, pathlib.Path(pythons))
        env = {**os.environ, 'PATH': f'{pythons}{os.pathsep}{os.environ.get("PATH", os.defpath)}'}
        env.setdefault('UV_PYTHON_DOWNLOADS', 'never')  # an interpreter is found, never fetched
        # uv trusts the system's certificates, as pip does (where a proxy re-signs TLS, say).
        env.setdefault('UV_SYSTEM_CERTS', '1')
        if argv[0] == 'test':
            returncode = test(envs, missing, env, argv[1:])
        else:
            tox_args = argv[1:] if argv[0] == 'tox' else COMMANDS[argv[0]] + argv[1:]
            tox = [str(BIN / 'tox'), *tox_args]
            returncode = subprocess.run(tox, cwd=ROOT, env=env, check=False).returncode
            if returncode and missing:
                for version in missing:
                    print(f'dev.py: {how_to_get(version)}', file=sys.stderr)
    sys.exit(returncode)


if __name__ == '__main__':
    main(sys.argv[1:])
