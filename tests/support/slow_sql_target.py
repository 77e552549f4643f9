"""A purge target kind for drills: `slow-sql`, the `sql` kind with a pause before each batch.

The pause (SLOW_SQL_DELAY seconds, 0.05 by default) makes a purge last long enough for a
test to act while it runs. Loaded into a worker with
AGEGATE_TARGET_PLUGINS=tests.support.slow_sql_target.
"""

from __future__ import annotations

import os
import time

from agegate.remediation.targets.base import PurgeContext
from agegate.remediation.targets.config import register_kind
from agegate.remediation.targets.sql import SQLTarget


class SlowSQLTarget(SQLTarget):
    kind = "slow-sql"

    def purge_batch(self, account_id: str, limit: int, context: PurgeContext) -> int:
        time.sleep(float(os.environ.get("SLOW_SQL_DELAY", "0.05")))
        return super().purge_batch(account_id, limit, context)


register_kind("slow-sql", SlowSQLTarget.from_config)
