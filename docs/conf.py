# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""Sphinx configuration for the charm-upgrade documentation.

Build with warnings as errors, offline:

    sphinx-build -W --keep-going -b html docs docs/_build/html
"""

from __future__ import annotations

import pathlib
import sys
from typing import Any

# Document the package from this checkout, installed or not.
_ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(_ROOT))

import charm_upgrade  # noqa: E402

# -- Project ------------------------------------------------------------------

project = 'charm-upgrade'
author = 'charm-upgrade developers'
copyright = '2026, charm-upgrade developers'
release = charm_upgrade.__version__
version = '.'.join(release.split('.')[:2])

# -- General ------------------------------------------------------------------

extensions = [
    'myst_parser',
    'sphinx.ext.autodoc',
    'sphinx.ext.napoleon',
    'sphinx.ext.viewcode',
]

source_suffix = {'.rst': 'restructuredtext', '.md': 'markdown'}
root_doc = 'index'
exclude_patterns = ['_build', 'Thumbs.db', '.DS_Store', 'requirements.txt']
language = 'en'

# Headings get anchors, so that pages can link to `page.md#a-heading`.
myst_heading_anchors = 3
myst_enable_extensions = ['deflist']

# -- autodoc and napoleon -----------------------------------------------------

# charms.reactive and charmhelpers come with the `reactive` extra, and fail to
# import on hosts that are not Ubuntu: the docs build without them. Nothing
# else is mocked: ops and charm-refresh are real dependencies.
autodoc_mock_imports = ['charms', 'charmhelpers']
autodoc_member_order = 'bysource'
autodoc_typehints = 'signature'
autodoc_default_options: dict[str, Any] = {}
autoclass_content = 'class'

napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_include_init_with_doc = False
# `Attributes:` sections become fields, not separate attribute entries, so a
# dataclass field that autodoc also finds is not described twice.
napoleon_use_ivar = True

# No intersphinx: the build must work offline.

# -- HTML ---------------------------------------------------------------------

html_theme = 'alabaster'
html_title = f'charm-upgrade {release}'
html_theme_options = {
    'description': 'Series upgrades and snap refreshes for Juju machine charms.',
    'fixed_sidebar': True,
}
