"""Documentation-only use of flask-smorest's view decorators, for hot paths."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


def doc_only(*decorators: Callable[[F], F]) -> Callable[[F], F]:
    """Apply flask-smorest's documentation decorators for what they record, not their wrappers.

    `doc`, `alt_response` and (for a view that returns a Response itself) `response` keep
    their documentation in the `_apidoc` of a wrapper that, at request time, only calls
    through: one more call and `ensure_sync` per decorator per request. On a hot path the
    view takes the recorded documentation and is registered itself.
    """

    def decorator(view: F) -> F:
        documented = view
        for document in reversed(decorators):
            documented = document(documented)
        view._apidoc = documented._apidoc  # type: ignore[attr-defined]
        return view

    return decorator
