"""Sphinx configuration for agegate's documentation: Markdown pages read by MyST, Furo theme.

CI builds it strict, so a warning (a broken link, a missing page, a page left out of the
navigation) fails: `.venv/bin/python -m sphinx -W --keep-going -n -b html docs docs/_build/html`.
"""

import json
import os
import tempfile
from pathlib import Path

project = "agegate"
author = "the agegate contributors"
copyright = "the agegate contributors"

extensions = ["myst_parser", "sphinxcontrib.openapi"]
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build", "_generated"]

# Headings down to ### get anchors, so `page.md#a-heading` links are checked like page links.
myst_heading_anchors = 3

html_theme = "furo"
html_title = "agegate"
html_show_sourcelink = False
html_copy_source = False


def _write_openapi_document() -> None:
    """Write the OpenAPI document the service serves at /openapi.json, for the reference page.

    It comes from a throw-away app on the embedded default, whatever AGEGATE_* says, so the
    build needs no server and no network.
    """
    from agegate import create_app

    target = Path(__file__).parent / "_generated" / "openapi.json"
    with tempfile.TemporaryDirectory() as var_dir:
        embedded = {"database_url": "", "redis_url": "", "var_dir": var_dir}
        nothing_to_load = {"targets_file": "", "target_plugins": "", "seed_jurisdictions": False}
        app = create_app({**embedded, **nothing_to_load})
        try:
            document = app.test_client().get("/openapi.json").get_json()
        finally:
            app.extensions["agegate.check_recorder"].close()
            app.extensions["agegate.store"].close()
            app.extensions["agegate.engine"].dispose()
    # The renderer takes numeric statuses only. Every operation lists each status it returns,
    # so only the catch-all `default` (a problem details body) is left out; the page says so.
    for item in document["paths"].values():
        for operation in item.values():
            if isinstance(operation, dict):
                operation.get("responses", {}).pop("default", None)
    target.parent.mkdir(exist_ok=True)
    target.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")


os.environ.setdefault("AGEGATE_LOG_LEVEL", "WARNING")
_write_openapi_document()
