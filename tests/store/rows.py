"""Rows the store tests write directly: a vector store and a completed file in it."""

from __future__ import annotations

import sqlalchemy as sa


def store_and_file(conn: sa.Connection, store_id: str, file_id: str, attributes: str = "{}") -> None:
    """The vector store ``store_id`` (unless it exists) and its completed file ``file_id``."""
    conn.execute(sa.text("INSERT INTO parley_vector_stores (id, tenant, created_at, created_ns, last_active_at, "
                         "embedding_model) VALUES (:s, '', 0, 0, 0, 'local') ON CONFLICT DO NOTHING"), {"s": store_id})
    conn.execute(sa.text("INSERT INTO parley_vector_store_files (vector_store_id, file_id, tenant, filename, "
                         "created_at, created_ns, status, chunking, usage_bytes, attributes) VALUES (:s, :f, '', "
                         "'notes.txt', 0, 0, 'completed', '{}', 0, :a)"), {"s": store_id, "f": file_id, "a": attributes})
