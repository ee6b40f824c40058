"""The tables of the store (created by :mod:`parley.store.migrations`, described here for SQLAlchemy)."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()
responses = sa.Table(
    "parley_responses", metadata,
    sa.Column("id", sa.String(80), primary_key=True),
    sa.Column("tenant", sa.String(200), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("previous_response_id", sa.String(80)),
    sa.Column("response", sa.Text, nullable=False),
    sa.Column("messages", sa.Text, nullable=False),
    sa.Column("owner", sa.String(64)),
    sa.Column("call_ids", sa.Text),
)
instances = sa.Table(
    "parley_instances", metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("heartbeat_at", sa.Float, nullable=False),
)
input_items = sa.Table(
    "parley_input_items", metadata,
    sa.Column("response_id", sa.String(80), primary_key=True),
    sa.Column("position", sa.Integer, primary_key=True),
    sa.Column("item_id", sa.String(120), nullable=False),
    sa.Column("item", sa.Text, nullable=False),
)
output_items = sa.Table(
    "parley_output_items", metadata,
    sa.Column("response_id", sa.String(80), primary_key=True),
    sa.Column("position", sa.Integer, primary_key=True),
    sa.Column("item_id", sa.String(120), nullable=False),
)
migrations_table = sa.Table(
    "parley_migrations", metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("applied_at", sa.Float, nullable=False),
)
background = sa.Table(
    "parley_background", metadata,
    sa.Column("response_id", sa.String(80), primary_key=True),
    sa.Column("tenant", sa.String(200), nullable=False),
    sa.Column("request", sa.Text, nullable=False),  # the create body, run by whichever instance claims it
    sa.Column("cancel_requested", sa.Boolean, nullable=False),
)
response_events = sa.Table(
    "parley_response_events", metadata,
    sa.Column("response_id", sa.String(80), primary_key=True),
    sa.Column("first_seq", sa.Integer, primary_key=True),
    sa.Column("last_seq", sa.Integer, nullable=False),
    sa.Column("terminal", sa.Boolean, nullable=False),
    sa.Column("frames", sa.Text, nullable=False),  # the events first_seq..last_seq as SSE frames
)
