from __future__ import annotations

import pytest

from agegate.jurisdictions import codes


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("de", "DE"),
        (" DE ", "DE"),
        ("ca-qc", "CA-QC"),
        ("US-FL", "US-FL"),
        ("Default", "default"),
        ("gp", "GP"),
    ],
)
def test_codes_are_case_insensitive_and_normalised(raw: str, expected: str) -> None:
    assert codes.normalize(raw) == expected


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("UK", "did you mean GB?"),
        ("GBR", "did you mean GB?"),
        ("DEU", "did you mean DE?"),
        ("EL", "did you mean GR?"),
        ("CA_QC", "did you mean CA-QC?"),
        ("Germany", "did you mean DE?"),
        ("XX", "'XX' is not an ISO 3166-1 alpha-2 country code"),
        ("US-XX", "'US-XX' is not an ISO 3166-2 subdivision of US"),
        ("QQ-01", "'QQ' is not a country code"),
        ("", "is not an ISO 3166-1 alpha-2 country code"),
        ("D", "is not an ISO 3166-1 alpha-2 country code"),
    ],
)
def test_unknown_codes_say_what_is_wrong(raw: str, message: str) -> None:
    with pytest.raises(codes.CodeError, match=message.replace("?", r"\?")):
        codes.normalize(raw)


def test_country_only_where_a_country_is_expected() -> None:
    assert codes.normalize_country("fr") == "FR"
    for raw in ("CA-QC", "default"):
        with pytest.raises(codes.CodeError, match="not a country code"):
            codes.normalize_country(raw)


def test_names() -> None:
    assert codes.name("DE") == "Germany"
    assert codes.name("CA-QC") == "Quebec (Canada)"
    assert codes.name("default") == "Everywhere else"
    assert codes.country_of("CA-QC") == "CA" and codes.country_of("CA") is None
