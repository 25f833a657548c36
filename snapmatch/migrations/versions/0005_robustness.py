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
        "pending_deletions",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("event_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("provider_face_id", sa.String(length=64), nullable=True),
        sa.Column("storage_key", sa.String(length=255), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pending_deletions")),
    )
    with op.batch_alter_table("pending_deletions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_pending_deletions_event_id"), ["event_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_pending_deletions_storage_key"), ["storage_key"], unique=False)
    _replace_stored_error_text()


def _replace_stored_error_text() -> None:
    """Failed rows stored raw exception text (paths, database host) that users could read: give
    each the sentence for its code, as new failures get (issue 13, item 5)."""
    from snapmatch.errors import user_message

    bind = op.get_bind()
    for table in ("photos", "selfies"):
        rows = sa.table(table, sa.column("error_code", sa.String), sa.column("error_message", sa.Text))
        codes = bind.execute(sa.select(rows.c.error_code).where(rows.c.error_code.is_not(None)).distinct()).scalars()
        for code in list(codes):
            bind.execute(sa.update(rows).where(rows.c.error_code == code).values(error_message=user_message(code)))


def downgrade() -> None:
    with op.batch_alter_table("pending_deletions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_pending_deletions_storage_key"))
        batch_op.drop_index(batch_op.f("ix_pending_deletions_event_id"))
    op.drop_table("pending_deletions")
    for table in ("selfies", "photos"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("planned_generations")

