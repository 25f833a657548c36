"""photo analysis (Gemini) and search (issue 18)

Revision ID: 0007
Revises: 0006
"""

from alembic import op
import sqlalchemy as sa


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
SEARCH_INDEX_SQL = (
    "CREATE INDEX ix_photo_analyses_search ON photo_analyses "
    "USING gin (to_tsvector('english'::regconfig, COALESCE(search_text, ''::text)))"
)


def upgrade() -> None:
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('analysis_mode', sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column('search_event_wide', sa.Boolean(), server_default=sa.false(), nullable=False))

    op.create_table('photo_analyses',
    sa.Column('photo_id', Id, nullable=False),
    sa.Column('event_id', Id, nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('mode', sa.String(length=16), nullable=False),
    sa.Column('enqueue_count', sa.Integer(), server_default='0', nullable=False),
    sa.Column('attempts', sa.Integer(), server_default='0', nullable=False),
    sa.Column('first_started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('batch_name', sa.String(length=128), nullable=True),
    sa.Column('submitted_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('caption', sa.Text(), nullable=True),
    sa.Column('tags', sa.Text(), nullable=True),
    sa.Column('numbers', sa.Text(), nullable=True),
    sa.Column('visible_text', sa.Text(), nullable=True),
    sa.Column('people_count', sa.Integer(), nullable=True),
    sa.Column('blurry', sa.Boolean(), nullable=True),
    sa.Column('eyes_closed', sa.Boolean(), nullable=True),
    sa.Column('overexposed', sa.Boolean(), nullable=True),
    sa.Column('underexposed', sa.Boolean(), nullable=True),
    sa.Column('search_text', sa.Text(), nullable=True),
    sa.Column('tokens_in', sa.Integer(), nullable=True),
    sa.Column('tokens_out', sa.Integer(), nullable=True),
    sa.Column('error_code', sa.String(length=64), nullable=True),
    sa.Column('error_message', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['event_id'], ['events.id'], name=op.f('fk_photo_analyses_event_id_events'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['photo_id'], ['photos.id'], name=op.f('fk_photo_analyses_photo_id_photos'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('photo_id', name=op.f('pk_photo_analyses'))
    )
    with op.batch_alter_table('photo_analyses', schema=None) as batch_op:
        batch_op.create_index('ix_photo_analyses_event_status', ['event_id', 'status'], unique=False)
        batch_op.create_index('ix_photo_analyses_status_updated', ['status', 'updated_at'], unique=False)
        batch_op.create_index('ix_photo_analyses_batch_name', ['batch_name'], unique=False)

    if op.get_bind().dialect.name == 'postgresql':
        # Full-text search over caption, tags and visible text (snapmatch.analysis.search uses this exact
        # expression, so the planner can use the index). SQLite searches without it.
        op.execute(SEARCH_INDEX_SQL)

    op.create_table('photo_numbers',
    sa.Column('photo_id', Id, nullable=False),
    sa.Column('number', sa.String(length=16), nullable=False),
    sa.Column('event_id', Id, nullable=False),
    sa.ForeignKeyConstraint(['event_id'], ['events.id'], name=op.f('fk_photo_numbers_event_id_events'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['photo_id'], ['photos.id'], name=op.f('fk_photo_numbers_photo_id_photos'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('photo_id', 'number', name=op.f('pk_photo_numbers'))
    )
    with op.batch_alter_table('photo_numbers', schema=None) as batch_op:
        batch_op.create_index('ix_photo_numbers_event_number', ['event_id', 'number'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('photo_numbers', schema=None) as batch_op:
        batch_op.drop_index('ix_photo_numbers_event_number')
    op.drop_table('photo_numbers')
    if op.get_bind().dialect.name == 'postgresql':
        op.execute('DROP INDEX IF EXISTS ix_photo_analyses_search')
    with op.batch_alter_table('photo_analyses', schema=None) as batch_op:
        batch_op.drop_index('ix_photo_analyses_batch_name')
        batch_op.drop_index('ix_photo_analyses_status_updated')
        batch_op.drop_index('ix_photo_analyses_event_status')
    op.drop_table('photo_analyses')
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.drop_column('search_event_wide')
        batch_op.drop_column('analysis_mode')
