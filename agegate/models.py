"""Imports every model module, so that Base.metadata knows every table (Alembic, tests)."""

from agegate import store
from agegate.age_checks import models as age_checks_models
from agegate.api_keys import models as api_keys_models
from agegate.audit import models as audit_models
from agegate.flags import models as flags_models
from agegate.jurisdictions import models as jurisdictions_models
from agegate.remediation import models as remediation_models

__all__ = [
    "age_checks_models",
    "api_keys_models",
    "audit_models",
    "flags_models",
    "jurisdictions_models",
    "remediation_models",
    "store",
]
