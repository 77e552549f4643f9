"""ISO 3166 codes: the only module that talks to pycountry."""

from __future__ import annotations

import functools
import re

import pycountry

from agegate.jurisdictions.models import DEFAULT_CODE

# The longest place code a request may send: codes are a few characters, a short country
# name gets a suggestion; longer input is refused before any lookup.
MAX_INPUT = 16
# Codes people write that ISO 3166-1 does not have, and what they mean.
_COMMON_MISTAKES = {"UK": "GB", "EL": "GR", "EN": "GB", "KV": "XK"}
_SEPARATORS = re.compile(r"[\s_.]+")


class CodeError(ValueError):
    """A code that is not an ISO 3166 country or subdivision. The message says the rule and
    may suggest a code, but never repeats what was given: error bodies carry it, and a
    birth date typed into the wrong field must not come back."""


def normalize(raw: str) -> str:
    """`de` → `DE`, `ca-qc` → `CA-QC`, `Default` → `default`; raise CodeError if unknown."""
    text = raw.strip()
    if text.lower() == DEFAULT_CODE:
        return DEFAULT_CODE
    upper = text.upper()
    if "-" in upper:
        return _subdivision(upper)
    return _country(upper)


def normalize_country(raw: str) -> str:
    """A country code (ISO 3166-1 alpha-2), normalised; subdivisions are refused."""
    code = normalize(raw)
    if code == DEFAULT_CODE or "-" in code:
        raise CodeError("not a country code: use ISO 3166-1 alpha-2, e.g. DE")
    return code


def country_of(code: str) -> str | None:
    """The country part of a subdivision code, None for a country or `default`."""
    return code.split("-", 1)[0] if "-" in code else None


def name(code: str) -> str:
    """A human name: `Germany`, `Quebec (Canada)`, `Everywhere else`."""
    if code == DEFAULT_CODE:
        return "Everywhere else"
    if "-" in code:
        subdivision = pycountry.subdivisions.get(code=code)
        return f"{subdivision.name} ({_country_name(code.split('-', 1)[0])})"
    return _country_name(code)


@functools.cache
def _country_name(alpha_2: str) -> str:
    country = pycountry.countries.get(alpha_2=alpha_2)
    if country is None:
        return alpha_2
    return str(getattr(country, "common_name", None) or country.name)


def _country(upper: str) -> str:
    if len(upper) == 2 and pycountry.countries.get(alpha_2=upper) is not None:
        return upper
    raise CodeError(f"not an ISO 3166-1 alpha-2 country code{_hint(upper)}")


def _subdivision(upper: str) -> str:
    if pycountry.subdivisions.get(code=upper) is not None:
        return upper
    country = upper.split("-", 1)[0]
    if pycountry.countries.get(alpha_2=country) is None:
        raise CodeError(f"the part before '-' is not a country code{_hint(country)}")
    raise CodeError(f"not an ISO 3166-2 subdivision of {country}")  # a real country's code


def _hint(upper: str) -> str:
    suggestion = _suggest(upper)
    return f"; did you mean {suggestion}?" if suggestion else ""


def _suggest(upper: str) -> str | None:
    if upper in _COMMON_MISTAKES and pycountry.countries.get(alpha_2=_COMMON_MISTAKES[upper]):
        return _COMMON_MISTAKES[upper]
    if len(upper) == 3:
        country = pycountry.countries.get(alpha_3=upper)
        if country is not None:
            return str(country.alpha_2)
    compact = _SEPARATORS.sub("", upper)
    if len(compact) > 2 and pycountry.subdivisions.get(code=f"{compact[:2]}-{compact[2:]}"):
        return f"{compact[:2]}-{compact[2:]}"
    if len(upper) > 3:
        try:
            return str(pycountry.countries.lookup(upper.title()).alpha_2)
        except LookupError:
            return None
    return None
