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
        ("XX", "not an ISO 3166-1 alpha-2 country code"),
        ("US-XX", "not an ISO 3166-2 subdivision of US"),
        ("QQ-01", "the part before '-' is not a country code"),
        ("", "not an ISO 3166-1 alpha-2 country code"),
        ("D", "not an ISO 3166-1 alpha-2 country code"),
        ("1987-11-03", "the part before '-' is not a country code"),
        ("03.11.1987", "not an ISO 3166-1 alpha-2 country code"),
    ],
)
def test_unknown_codes_say_what_is_wrong_never_what_was_given(raw: str, message: str) -> None:
    with pytest.raises(codes.CodeError, match=message.replace("?", r"\?")) as caught:
        codes.normalize(raw)
    if len(raw) > 2:
        assert raw.upper() not in str(caught.value)


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
