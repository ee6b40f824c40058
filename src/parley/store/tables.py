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
    # what the console lists and filters by (parley.store.base.ResponseFacts)
    sa.Column("model", sa.String(200)),
    sa.Column("duration_ms", sa.Float),
    sa.Column("input_tokens", sa.Integer),
    sa.Column("output_tokens", sa.Integer),
    sa.Column("error_code", sa.String(100)),
    sa.Column("search_text", sa.Text),
    sa.Column("search_rowid", sa.BigInteger),  # its row in parley_response_search (SQLite's word index)
    sa.Column("trace", sa.Text),
    sa.Column("ended_at", sa.Float),  # when it reached its final state (epoch seconds): retention counts from it
)
LATENCY_BOUNDS_MS = (50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 120000)
usage = sa.Table(  # per tenant and minute or hour (period 60 or 3600): the responses that ended, for the overview
    "parley_usage", metadata,
    sa.Column("period", sa.Integer, primary_key=True),
    sa.Column("slot", sa.BigInteger, primary_key=True),  # created_at // period
    sa.Column("tenant", sa.String(200), primary_key=True),
    sa.Column("model", sa.String(200), primary_key=True),  # ('' when not known)
    sa.Column("responses", sa.Integer, nullable=False),
    sa.Column("failed", sa.Integer, nullable=False),
    sa.Column("input_tokens", sa.BigInteger, nullable=False),
    sa.Column("output_tokens", sa.BigInteger, nullable=False),
    sa.Column("timed", sa.Integer, nullable=False),
    *(sa.Column(f"ms_{bound}", sa.Integer, nullable=False, default=0) for bound in LATENCY_BOUNDS_MS),
    sa.Column("ms_over", sa.Integer, nullable=False, default=0),
)
usage_errors = sa.Table(
    "parley_usage_errors", metadata,
    sa.Column("period", sa.Integer, primary_key=True),
    sa.Column("slot", sa.BigInteger, primary_key=True),
    sa.Column("tenant", sa.String(200), primary_key=True),
    sa.Column("code", sa.String(100), primary_key=True),
    sa.Column("count", sa.Integer, nullable=False),
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
