"""provider face ids and first start

Revision ID: 0002
Revises: 0001
"""

from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('faces', schema=None) as batch_op:
        batch_op.add_column(sa.Column('provider_face_id', sa.String(length=64), nullable=True))
        batch_op.create_index(batch_op.f('ix_faces_provider_face_id'), ['provider_face_id'], unique=False)

    with op.batch_alter_table('photos', schema=None) as batch_op:
        batch_op.add_column(sa.Column('first_started_at', sa.DateTime(timezone=True), nullable=True))

    with op.batch_alter_table('selfies', schema=None) as batch_op:
        batch_op.add_column(sa.Column('provider_face_id', sa.String(length=64), nullable=True))



def downgrade() -> None:
    with op.batch_alter_table('selfies', schema=None) as batch_op:
        batch_op.drop_column('provider_face_id')

    with op.batch_alter_table('photos', schema=None) as batch_op:
        batch_op.drop_column('first_started_at')

    with op.batch_alter_table('faces', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_faces_provider_face_id'))
        batch_op.drop_column('provider_face_id')

