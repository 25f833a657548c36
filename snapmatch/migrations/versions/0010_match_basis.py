"""matching: which rule made a face an attendee's (issue 14); events lose search_event_wide (attendees
search only the photos they may see)

Revision ID: 0010
Revises: 0009
"""

from alembic import op
import sqlalchemy as sa


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('matches', schema=None) as batch_op:
        batch_op.add_column(sa.Column('basis', sa.String(length=8), nullable=True))
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.drop_column('search_event_wide')


def downgrade() -> None:
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('search_event_wide', sa.Boolean(), server_default=sa.false(), nullable=False))
    with op.batch_alter_table('matches', schema=None) as batch_op:
        batch_op.drop_column('basis')
