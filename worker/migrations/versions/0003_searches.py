"""Searches: a job's kind, and a trial's search, number and outcome.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("kind", sa.String(length=16), server_default="train", nullable=False))
        batch.add_column(sa.Column("parent_id", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("trial", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("search", sa.JSON(), nullable=True))
        batch.create_index("ix_jobs_parent_id", ["parent_id"])
        batch.create_foreign_key("fk_jobs_parent_id", "jobs", ["parent_id"], ["id"], ondelete="CASCADE")


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_constraint("fk_jobs_parent_id", type_="foreignkey")
        batch.drop_index("ix_jobs_parent_id")
        for column in ("search", "trial", "parent_id", "kind"):
            batch.drop_column(column)
