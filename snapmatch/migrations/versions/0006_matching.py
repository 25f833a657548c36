"""matching: attendee references, not-me, maybe (issue 14)

Revision ID: 0006
Revises: 0005
"""

from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('selfie_references',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('selfie_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('image_key', sa.String(length=255), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('embedding', sa.LargeBinary(), nullable=True),
    sa.Column('error_code', sa.String(length=64), nullable=True),
    sa.Column('error_message', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['selfie_id'], ['selfies.id'], name=op.f('fk_selfie_references_selfie_id_selfies'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_selfie_references'))
    )
    with op.batch_alter_table('selfie_references', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_selfie_references_selfie_id'), ['selfie_id'], unique=False)

    op.create_table('match_corrections',
    sa.Column('event_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('user_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('photo_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('verdict', sa.String(length=10), nullable=False),
    sa.Column('embedding', sa.LargeBinary(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['event_id'], ['events.id'], name=op.f('fk_match_corrections_event_id_events'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['photo_id'], ['photos.id'], name=op.f('fk_match_corrections_photo_id_photos'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_match_corrections_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('user_id', 'photo_id', name=op.f('pk_match_corrections'))
    )
    with op.batch_alter_table('match_corrections', schema=None) as batch_op:
        batch_op.create_index('ix_match_corrections_event_user', ['event_id', 'user_id'], unique=False)

    op.create_table('face_groups',
    sa.Column('face_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('event_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('group_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.ForeignKeyConstraint(['event_id'], ['events.id'], name=op.f('fk_face_groups_event_id_events'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['face_id'], ['faces.id'], name=op.f('fk_face_groups_face_id_faces'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('face_id', name=op.f('pk_face_groups'))
    )
    with op.batch_alter_table('face_groups', schema=None) as batch_op:
        batch_op.create_index('ix_face_groups_event_group', ['event_id', 'group_id'], unique=False)

    op.create_table('maybe_matches',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('selfie_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('face_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('photo_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('event_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('distance', sa.Float(), nullable=False),
    sa.ForeignKeyConstraint(['event_id'], ['events.id'], name=op.f('fk_maybe_matches_event_id_events'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['face_id'], ['faces.id'], name=op.f('fk_maybe_matches_face_id_faces'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['photo_id'], ['photos.id'], name=op.f('fk_maybe_matches_photo_id_photos'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['selfie_id'], ['selfies.id'], name=op.f('fk_maybe_matches_selfie_id_selfies'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_maybe_matches')),
    sa.UniqueConstraint('selfie_id', 'face_id', name='uq_maybe_matches_selfie_face')
    )
    with op.batch_alter_table('maybe_matches', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_maybe_matches_face_id'), ['face_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_maybe_matches_photo_id'), ['photo_id'], unique=False)
        batch_op.create_index('ix_maybe_matches_selfie_photo', ['selfie_id', 'photo_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('maybe_matches', schema=None) as batch_op:
        batch_op.drop_index('ix_maybe_matches_selfie_photo')
        batch_op.drop_index(batch_op.f('ix_maybe_matches_photo_id'))
        batch_op.drop_index(batch_op.f('ix_maybe_matches_face_id'))

    op.drop_table('maybe_matches')
    with op.batch_alter_table('face_groups', schema=None) as batch_op:
        batch_op.drop_index('ix_face_groups_event_group')

    op.drop_table('face_groups')
    with op.batch_alter_table('match_corrections', schema=None) as batch_op:
        batch_op.drop_index('ix_match_corrections_event_user')

    op.drop_table('match_corrections')
    with op.batch_alter_table('selfie_references', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_selfie_references_selfie_id'))

    op.drop_table('selfie_references')
