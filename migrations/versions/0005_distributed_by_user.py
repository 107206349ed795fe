"""On a Citus cluster, distribute every table of user data by user_id, co-located, and put the
functions the triggers call on every node (migrations/distribution.py says which and how). On
plain PostgreSQL this changes nothing.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

from migrations import distribution

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    distribution.distribute()


def downgrade() -> None:
    distribution.undistribute()
