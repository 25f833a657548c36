"""robustness: pending provider deletions, reschedule counts (issue 13)

Revision ID: 0005
Revises: 0004
"""

from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("photos", "selfies"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("planned_generations", sa.Integer(), server_default="0", nullable=False))
    op.create_table(
        "provider_face_deletions",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("event_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("provider_face_id", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_provider_face_deletions")),
    )
    with op.batch_alter_table("provider_face_deletions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_provider_face_deletions_event_id"), ["event_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("provider_face_deletions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_provider_face_deletions_event_id"))
    op.drop_table("provider_face_deletions")
    for table in ("selfies", "photos"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("planned_generations")

