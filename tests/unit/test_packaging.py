# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""What a charm installs: the built wheel and sdist, and the distributions the package declares.

A wheel without ``py.typed`` or a module, or a module that imports a distribution nobody
declared, passes every other test here (this environment has everything installed) and breaks
in a charm. These tests build both distributions with the real build backend and read them,
and check every import in ``charm_upgrade`` against ``pyproject.toml``.
"""

from __future__ import annotations

import ast
import configparser
import dataclasses
import email.parser
import importlib.metadata
import importlib.util
import inspect
import pathlib
import re
import subprocess
import sys
import tarfile
import zipfile

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

if sys.version_info >= (3, 11):
    import tomllib
else:  # the testing extra brings tomli on Python 3.10
    import tomli as tomllib

ROOT = pathlib.Path(__file__).resolve().parents[2]
PACKAGE = ROOT / 'charm_upgrade'
PYPROJECT = tomllib.loads((ROOT / 'pyproject.toml').read_text())
PROJECT = PYPROJECT['project']
DIST_NAME = PROJECT['name']

# The part of the package each extra serves; the rest may import only the core dependencies.
EXTRA_OF = {'reactive.py': 'reactive', 'testing': 'testing'}

# Importing these modules needs a distribution's extra, not only the distribution.
MODULE_NEEDS_EXTRA = {'ops.testing': ('ops', 'testing')}


def build(source: pathlib.Path, out: pathlib.Path, *kinds: str) -> list[pathlib.Path]:
    """Build ``kinds`` ('wheel', 'sdist') of ``source`` with hatchling, as pip or uv would."""
    if importlib.util.find_spec('hatchling') is None:
        pytest.fail('hatchling is not installed: it is in the unit dependency group')
    code = (
        'import sys, hatchling.build as backend\n'
        'for kind in sys.argv[2:]:\n'
        '    print(getattr(backend, f"build_{kind}")(sys.argv[1]))\n'
    )
    result = subprocess.run(
        [sys.executable, '-c', code, str(out), *kinds],
        cwd=source,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return [out / name for name in result.stdout.split()]


@dataclasses.dataclass(frozen=True)
class Built:
    wheel: pathlib.Path
    sdist: pathlib.Path

    def wheel_names(self) -> list[str]:
        with zipfile.ZipFile(self.wheel) as wheel:
            return wheel.namelist()

    def wheel_text(self, name: str) -> str:
        with zipfile.ZipFile(self.wheel) as wheel:
            return wheel.read(name).decode()

    @property
    def dist_info(self) -> str:
        (dist_info,) = {n.split('/')[0] for n in self.wheel_names() if '.dist-info/' in n}
        return dist_info


@pytest.fixture(scope='module')
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    wheel, sdist = build(ROOT, tmp_path_factory.mktemp('dist'), 'wheel', 'sdist')
    return Built(wheel, sdist)


def package_files() -> set[str]:
    """The package's files in this checkout, as paths in a wheel."""
    return {
        path.relative_to(ROOT).as_posix()
        for path in PACKAGE.rglob('*')
        if path.is_file() and '__pycache__' not in path.parts
    }


# -- The wheel ------------------------------------------------------------------------------


def test_the_wheel_holds_the_package_and_nothing_else(built: Built):
    names = built.wheel_names()
    in_package = {n for n in names if not n.startswith(f'{built.dist_info}/')}

    assert in_package == package_files()
    assert 'charm_upgrade/py.typed' in in_package
    assert 'charm_upgrade/testing/__init__.py' in in_package
    assert not [n for n in names if n.startswith('tests/') or '/tests/' in n]


def test_the_wheel_carries_the_licence(built: Built):
    licence = (ROOT / 'LICENSE').read_text()
    metadata = email.parser.Parser().parsestr(built.wheel_text(f'{built.dist_info}/METADATA'))

    assert built.wheel_text(f'{built.dist_info}/licenses/LICENSE') == licence
    assert metadata['License-Expression'] == 'Apache-2.0'
    # The text as the Apache Software Foundation publishes it, with no one's copyright line.
    assert licence.lstrip().startswith('Apache License\n')
    assert 'Version 2.0, January 2004' in licence
    assert 'Copyright [yyyy] [name of copyright owner]' in licence


def test_the_wheel_metadata_is_pyprojects(built: Built):
    metadata = email.parser.Parser().parsestr(built.wheel_text(f'{built.dist_info}/METADATA'))
    requires = [Requirement(r) for r in metadata.get_all('Requires-Dist') or []]

    assert metadata['Name'] == DIST_NAME
    assert metadata['Requires-Python'] == PROJECT['requires-python']
    assert set(metadata.get_all('Provides-Extra') or []) == set(PROJECT['optional-dependencies'])
    # Each extra's requirements, and the core's ('' here), as the wheel states them.
    for extra in ['', *PROJECT['optional-dependencies']]:
        declared = (
            PROJECT['dependencies'] if not extra else PROJECT['optional-dependencies'][extra]
        )
        stated = [r for r in requires if _applies(r, extra)]
        assert sorted(map(_without_marker, stated)) == sorted(
            _without_marker(Requirement(r)) for r in declared
        ), extra


def _applies(requirement: Requirement, extra: str) -> bool:
    """Whether the wheel's requirement belongs to ``extra`` ('' for the core), on Python 3.10."""
    if requirement.marker is None:
        return extra == ''
    environment = {'extra': extra, 'python_version': '3.10', 'python_full_version': '3.10.0'}
    core = requirement.marker.evaluate({**environment, 'extra': ''})
    return requirement.marker.evaluate(environment) and (extra == '' or not core)


def _without_marker(requirement: Requirement) -> str:
    return (
        f'{canonicalize_name(requirement.name)}{sorted(requirement.extras)}{requirement.specifier}'
    )


def test_the_entry_points_are_declared_and_resolve(built: Built):
    entry_points = configparser.ConfigParser(delimiters=('=',))
    entry_points.optionxform = str  # type: ignore[assignment,method-assign]  # keep the case
    entry_points.read_string(built.wheel_text(f'{built.dist_info}/entry_points.txt'))
    found = {group: dict(entry_points[group]) for group in entry_points.sections()}

    assert found == {'console_scripts': PROJECT['scripts'], **PROJECT['entry-points']}
    assert found['console_scripts'] == {'charm-upgrade': 'charm_upgrade.__main__:main'}
    assert found['pytest11'] == {'charm_upgrade': 'charm_upgrade.testing._pytest_plugin'}
    for target in [t for group in found.values() for t in group.values()]:
        module, _, attribute = target.partition(':')
        source = built.wheel_text(module.replace('.', '/') + '.py')
        if attribute:
            defined = {n.name for n in ast.parse(source).body if isinstance(n, ast.FunctionDef)}
            assert attribute in defined, target


# -- The sdist ------------------------------------------------------------------------------


def test_the_sdist_has_the_licence_changelog_and_tests_and_builds_the_same_wheel(
    built: Built, tmp_path: pathlib.Path
):
    with tarfile.open(built.sdist) as sdist:
        names = sdist.getnames()
        if hasattr(tarfile, 'data_filter'):  # Python 3.10.12 and later
            sdist.extractall(tmp_path, filter='data')
        else:
            sdist.extractall(tmp_path)  # noqa: S202 (the sdist this test just built)
    (top,) = {n.split('/')[0] for n in names}
    inside = {n.removeprefix(f'{top}/') for n in names}

    assert {'LICENSE', 'CHANGELOG.md', 'README.md', 'pyproject.toml', 'PKG-INFO'} <= inside
    assert {
        'charm_upgrade/py.typed',
        'tests/conftest.py',
        'tests/unit/test_packaging.py',
    } <= inside
    assert (tmp_path / top / 'LICENSE').read_text() == (ROOT / 'LICENSE').read_text()
    (rebuilt,) = build(tmp_path / top, tmp_path, 'wheel')
    with zipfile.ZipFile(rebuilt) as wheel:
        assert sorted(wheel.namelist()) == sorted(built.wheel_names())


# -- Declared dependencies ------------------------------------------------------------------


def imported_modules(source: str) -> set[str]:
    """The absolute imports in ``source``: 'ops', 'ops.testing' for `from ops import testing`."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            found.update(f'{node.module}.{alias.name}' for alias in node.names)
    return found


def declared_for(part: str) -> list[Requirement]:
    """What modules in ``part`` of the package may rely on: the core, and its extra if any."""
    declared = list(PROJECT['dependencies'])
    if part in EXTRA_OF:
        declared += PROJECT['optional-dependencies'][EXTRA_OF[part]]
    return [Requirement(r) for r in declared]


def satisfied(distribution: str, declared: list[Requirement]) -> bool:
    """Declared by name, or brought by an extra of a declared requirement (ops[testing])."""
    wanted = canonicalize_name(distribution)
    for requirement in declared:
        if canonicalize_name(requirement.name) == wanted:
            return True
        for extra in requirement.extras:
            for brought in importlib.metadata.requires(requirement.name) or []:
                brought_req = Requirement(brought)
                marker = brought_req.marker or Marker('extra == ""')
                if canonicalize_name(brought_req.name) == wanted and marker.evaluate(
                    {'extra': extra}
                ):
                    return True
    return False


def import_providers() -> dict[str, list[str]]:
    """Top-level import name -> the installed distributions whose files provide it.

    ``importlib.metadata.packages_distributions()`` on Python 3.10 reads only
    ``top_level.txt``, which wheels built by hatchling (and installs by uv) lack; this reads
    each distribution's file list, as Python 3.11 and later do when that file is missing.
    """
    found: dict[str, list[str]] = {}
    for dist in importlib.metadata.distributions():
        names = set()
        for file in dist.files or []:
            top = file.parts[0] if len(file.parts) > 1 else inspect.getmodulename(file.name)
            if top and '.' not in top and top != '__pycache__':
                names.add(top)
        for name in names:
            found.setdefault(name, []).append(dist.metadata['Name'])
    return found


def undeclared_imports(source: str, part: str) -> list[str]:
    """What ``source`` (in ``part`` of the package) imports that no requirement of it provides."""
    providers = import_providers()
    declared = declared_for(part)
    problems: list[str] = []
    # tomllib: the standard library's from Python 3.11; the kit falls back to tomli before.
    checked = {'charm_upgrade', '__future__', 'tomllib', *sys.stdlib_module_names}
    for module in sorted(imported_modules(source)):
        if module in MODULE_NEEDS_EXTRA:
            name, extra = MODULE_NEEDS_EXTRA[module]
            if not any(canonicalize_name(r.name) == name and extra in r.extras for r in declared):
                problems.append(f'{module} needs {name}[{extra}]')
        top = module.split('.')[0]
        if top in checked:
            continue
        checked.add(top)
        distributions = providers.get(top)
        if not distributions:
            problems.append(f'{top}: no installed distribution provides it')
        elif not any(satisfied(d, declared) for d in distributions):
            problems.append(f'{top}: from {" or ".join(distributions)}, not declared')
    return problems


@pytest.mark.parametrize(
    'path',
    sorted(p for p in PACKAGE.rglob('*.py') if '__pycache__' not in p.parts),
    ids=lambda p: p.relative_to(ROOT).as_posix(),
)
def test_every_import_is_declared(path: pathlib.Path):
    problems = undeclared_imports(path.read_text(), path.relative_to(PACKAGE).parts[0])

    assert not problems, (
        f'{path.relative_to(ROOT)} imports distributions that pyproject.toml does not declare '
        f'for it (core dependencies, plus the extra {EXTRA_OF} names for its part): {problems}'
    )


def test_the_declaration_check_catches_an_undeclared_import():
    source = 'import ops, yaml\nfrom ops import testing\nfrom scenario import State\n'

    # In the core, ops.testing and scenario are undeclared (and so is yaml, everywhere).
    assert undeclared_imports(source, '_series.py') == [
        'ops.testing needs ops[testing]',
        'scenario: from ops-scenario, not declared',
        'yaml: from PyYAML, not declared',
    ]
    # In the test kit, ops[testing] brings them.
    assert undeclared_imports(source, 'testing') == ['yaml: from PyYAML, not declared']


# -- Supported Pythons ----------------------------------------------------------------------


def tox_pythons() -> list[str]:
    """The Pythons of tox.ini's env_list factors (py310 -> '3.10'), what CI runs the tiers on."""
    tox = configparser.ConfigParser()
    tox.read(ROOT / 'tox.ini')
    env_list = tox['tox']['env_list']
    found: set[str] = set()
    for group in re.findall(r'py3\{([\d,]+)\}', env_list):
        found.update(group.split(','))
    found.update(re.findall(r'\bpy3(\d+)\b', env_list))
    return sorted((f'3.{minor}' for minor in found), key=lambda v: int(v.split('.')[1]))


def test_the_readme_and_pyproject_name_the_pythons_ci_runs():
    pythons = tox_pythons()
    readme_row = next(
        line
        for line in (ROOT / 'README.md').read_text().splitlines()
        if line.startswith('| Python')
    )
    classifiers = [
        c.rsplit(' :: ', 1)[1]
        for c in PROJECT['classifiers']
        if re.fullmatch(r'Programming Language :: Python :: 3\.\d+', c)
    ]

    assert pythons == ['3.10', '3.11', '3.12', '3.13']
    assert re.findall(r'\b3\.\d+\b', readme_row) == pythons
    assert '3.10 (ubuntu@22.04)' in readme_row
    assert '3.12 (ubuntu@24.04)' in readme_row
    assert classifiers == pythons
    assert PROJECT['requires-python'] == f'>={pythons[0]}'
