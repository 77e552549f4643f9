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


def test_operations_document_every_status_they_return(client: FlaskClient) -> None:
    # Found by fuzzing: these came back while the operation documented only `default`.
    paths = client.get("/openapi.json").get_json()["paths"]
    operations = {
        (method.upper(), path): operation
        for path, item in paths.items()
        for method, operation in item.items()
        if method != "parameters"
    }

    def documented(method: str, path: str) -> set[str]:
        return set(operations[(method, path)]["responses"]) - {"default"}

    for (method, path), operation in operations.items():
        if "requestBody" in operation:  # too large, of another type, malformed JSON
            assert {"400", "413", "415"} <= documented(method, path), (method, path)
        if "{" in path:  # a path parameter can name nothing
            assert "404" in documented(method, path), (method, path)
    assert "422" in documented("GET", "/v1/jurisdictions/{code}")  # not an ISO code
    assert "422" in documented("GET", "/v1/jurisdictions/{code}/history")
    for method, path in [
        ("PUT", "/v1/jurisdictions/{code}"),  # concurrent_change
        ("DELETE", "/v1/jurisdictions/{code}"),
        ("POST", "/v1/jurisdictions/import"),
        ("POST", "/v1/accounts/{account_id}/flags"),  # a case changed at the same moment
        ("POST", "/v1/cases/{case_id}/dismiss"),
        ("POST", "/v1/cases/{case_id}/expedite"),
        ("POST", "/v1/cases/{case_id}/retry"),
        ("GET", "/v1/cases/{case_id}/receipt"),
        ("DELETE", "/v1/legal-holds/{hold_id}"),
    ]:
        assert "409" in documented(method, path), (method, path)


def test_import_documents_its_json_rows(client: FlaskClient) -> None:
    spec = client.get("/openapi.json").get_json()
    body = spec["paths"]["/v1/jurisdictions/import"]["post"]["requestBody"]["content"]
    schema = body["application/json"]["schema"]
    assert schema["required"] == ["rules"]
    row = schema["properties"]["rules"]["items"]["$ref"].rsplit("/", 1)[-1]
    assert set(spec["components"]["schemas"][row]["required"]) == {
        "code",
        "minimum_age",
        "effective_from",
        "status",
        "citation",
    }
