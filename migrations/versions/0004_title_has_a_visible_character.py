"""A title has at least one visible character, as the contract's Title pattern says: not only
white space, controls (U+001C-U+001F, DEL, U+0085) or invisible format characters (U+200B).
`~` with a constant pattern is IMMUTABLE, as a check on a distributed (Citus) table needs.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

UNTITLED = "(untitled)"
TITLE_VISIBLE = (  # as db/tables.py says it today
    "title ~ '[^\\u0001-\\u0020\\u007f-\\u00a0\\u00ad\\u115f\\u1160\\u1680\\u180e\\u2000-\\u200f"
    "\\u2028-\\u202f\\u205f-\\u206f\\u3000\\u3164\\ufe00-\\ufe0f\\ufeff\\uffa0]'"
)


def upgrade() -> None:
    # A title made only of invisible characters was accepted before; it reads as nothing.
    op.execute(f"UPDATE tasks SET title = '{UNTITLED}' WHERE NOT ({TITLE_VISIBLE})")
    op.drop_constraint("title_not_blank", "tasks", type_="check")
    op.create_check_constraint("title_not_blank", "tasks", f"{TITLE_VISIBLE} AND char_length(title) <= 500")


def downgrade() -> None:
    op.drop_constraint("title_not_blank", "tasks", type_="check")
    op.create_check_constraint("title_not_blank", "tasks", "title ~ '\\S' AND char_length(title) <= 500")
