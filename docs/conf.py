"""Sphinx configuration for agegate's documentation: Markdown pages read by MyST, Furo theme.

CI builds it strict, so a warning (a broken link, a missing page, a page left out of the
navigation) fails: `.venv/bin/python -m sphinx -W --keep-going -n -b html docs docs/_build/html`.
"""

project = "agegate"
author = "the agegate contributors"
copyright = "the agegate contributors"

extensions = ["myst_parser"]
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build"]

# Headings down to ### get anchors, so `page.md#a-heading` links are checked like page links.
myst_heading_anchors = 3

html_theme = "furo"
html_title = "agegate"
html_show_sourcelink = False
html_copy_source = False
