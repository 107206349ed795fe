"""A count of each user's stored idempotency keys on their counter row, so that a keyed create
checks the key quota (IDEMPOTENCY_KEY_QUOTA) in O(1) and under the row lock that orders the
user's writes: concurrent keyed creates at the quota cannot overshoot. A claim of a new key
raises it (db/idempotency.py, only while under the quota); whatever deletes keys (the claim's
own cleanup at the quota, housekeeping's purge) lowers it in the same transaction.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("user_revisions", sa.Column("key_count", sa.BigInteger, nullable=False, server_default="0"))
    op.execute(
        """
        UPDATE user_revisions SET key_count = counted.n
        FROM (SELECT user_id, count(*) AS n FROM idempotency_keys GROUP BY user_id) AS counted
        WHERE user_revisions.user_id = counted.user_id
        """
    )


def downgrade() -> None:
    op.drop_column("user_revisions", "key_count")
