"""Imports every model module, so that Base.metadata knows every table (Alembic, tests)."""

from agegate import store
from agegate.api_keys import models as api_keys_models
from agegate.audit import models as audit_models
from agegate.jurisdictions import models as jurisdictions_models

__all__ = ["api_keys_models", "audit_models", "jurisdictions_models", "store"]
