# Copyright 2026 charm-upgrade developers
# SPDX-License-Identifier: Apache-2.0
"""Sphinx configuration for the charm-upgrade documentation.

Build with warnings as errors, offline:

    sphinx-build -W --keep-going -b html docs docs/_build/html
"""

from __future__ import annotations

import importlib.util
import pathlib
import sys
from typing import TYPE_CHECKING, Any, ClassVar

from docutils.parsers.rst import directives
from sphinx.util.docutils import SphinxDirective

if TYPE_CHECKING:
    from collections.abc import Callable

    from docutils import nodes
    from sphinx.application import Sphinx

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
# else is mocked: ops and snap-http are real dependencies.
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


# -- Modules that may not exist yet -------------------------------------------


class AutomoduleIfPresent(SphinxDirective):
    """``automodule-if-present:: NAME``: autodoc NAME if it can be found, else the content.

    Lets the reference page name a module that another change is adding,
    without failing the warnings-as-errors build while it is absent.
    """

    required_arguments = 1
    has_content = True
    option_spec: ClassVar[dict[str, Callable[[str], Any]]] = {'members': directives.unchanged}

    def run(self) -> list[nodes.Node]:
        name = self.arguments[0]
        try:
            present = importlib.util.find_spec(name) is not None
        except ImportError:
            present = False
        if present:
            lines = [f'.. automodule:: {name}']
            members = self.options.get('members')
            if members is not None:
                lines.append(f'   :members: {members}'.rstrip())
            text = '\n'.join(lines)
        else:
            text = '\n'.join(self.content)
        return self.parse_text_to_nodes(text)


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive('automodule-if-present', AutomoduleIfPresent)
    return {'parallel_read_safe': True}
