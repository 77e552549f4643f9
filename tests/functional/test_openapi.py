from __future__ import annotations

import re

from flask.testing import FlaskClient
from openapi_spec_validator import validate


def test_openapi_document_is_valid_and_describes_security(client: FlaskClient) -> None:
    spec = client.get("/openapi.json").get_json()
    validate(spec)
    assert spec["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    problem = spec["components"]["responses"]["DEFAULT_ERROR"]["content"]
    assert list(problem) == ["application/problem+json"]
    assert {"/healthz", "/readyz"} <= set(spec["paths"])


def test_docs_page_loads_only_local_assets(client: FlaskClient) -> None:
    page = client.get("/docs").get_data(as_text=True)
    sources = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert sources, page
    for source in sources:
        assert source.startswith("/"), f"{source} would need the internet"
        asset = client.get(source)
        assert asset.status_code == 200, source
        asset.close()
