"""Sphinx configuration of numcnn's site; ``python docs/build_site.py`` uses it.

The sources are staged by ``docs/build_site.py`` (the guides of ``docs/``, the
course's executed notebooks, the API pages); this file only says how to render
them. Nothing is loaded from the network: the theme (furo) ships its files, the
search is Sphinx's own, and MathJax 2 comes from a local copy that the build
script puts into ``_static/mathjax`` (Debian's ``libjs-mathjax``).
"""
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import numcnn  # noqa: E402

project = "numcnn"
author = "the numcnn authors"
copyright = "numcnn's authors; PBC images: Acevedo et al., Data in Brief 30 (2020) 105474, CC BY 4.0"
release = version = numcnn.__version__

extensions = ["myst_nb", "sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.mathjax",
              "sphinx.ext.viewcode"]
exclude_patterns = ["_build", "**.ipynb_checkpoints"]
root_doc = "index"

# --- Markdown and notebooks (myst-nb) ---------------------------------------------------
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 4                  # GitHub's anchors: docs link to "page.md#a-heading"
nb_execution_mode = "off"                 # the course's notebooks arrive executed (run_lessons.py)
nb_merge_streams = True
suppress_warnings = ["mystnb.unknown_mime_type"]

# --- The API reference (autodoc, numpydoc docstrings through napoleon) ----------------
autodoc_default_options = {"members": True, "show-inheritance": True, "ignore-module-all": True,
                           "member-order": "bysource"}
autodoc_typehints = "description"
autodoc_mock_imports = []
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False
napoleon_custom_sections = ["Shapes", "Layouts", "Layout conventions"]

# --- Maths: MathJax 2 from a local copy (relative to _static) ------------------------
mathjax_path = "mathjax/MathJax.js?config=TeX-AMS_CHTML"
# MyST marks each page "mathjax_ignore" (so that a stray $ in prose is never maths) and its
# formulas with the class "math"; MathJax 2 is told so here (myst configures only MathJax 3).
mathjax2_config = {"tex2jax": {"processClass": "math|output_area|tex2jax_process|mathjax_process",
                               "ignoreClass": "tex2jax_ignore|mathjax_ignore|document"},
                   "showMathMenu": False, "messageStyle": "none"}

# --- HTML ----------------------------------------------------------------------------
html_theme = "furo"
html_title = f"numcnn {release}"
html_static_path = []
html_favicon = "favicon.svg"
html_last_updated_fmt = None
html_show_sourcelink = False
html_copy_source = False
