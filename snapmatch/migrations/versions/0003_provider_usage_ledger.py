"""provider usage ledger

Revision ID: 0003
Revises: 0002
"""

from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('provider_usage',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('provider', sa.String(length=32), nullable=False),
    sa.Column('operation', sa.String(length=64), nullable=False),
    sa.Column('event_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('units', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_provider_usage'))
    )
    with op.batch_alter_table('provider_usage', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_provider_usage_event_id'), ['event_id'], unique=False)
        batch_op.create_index('ix_provider_usage_provider_event', ['provider', 'event_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('provider_usage', schema=None) as batch_op:
        batch_op.drop_index('ix_provider_usage_provider_event')
        batch_op.drop_index(batch_op.f('ix_provider_usage_event_id'))

    op.drop_table('provider_usage')
