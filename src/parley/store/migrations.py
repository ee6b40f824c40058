"""Named, append-only schema migrations.

Never edit or reorder an entry that has shipped: add a new one at the end.  Each is
applied once, in order, and recorded in ``parley_migrations``.
"""

from __future__ import annotations

MIGRATIONS: list[tuple[str, list[str]]] = [
    (
        "0001_responses",
        [
            """CREATE TABLE parley_responses (
                id VARCHAR(80) PRIMARY KEY,
                tenant VARCHAR(200) NOT NULL DEFAULT '',
                created_at DOUBLE PRECISION NOT NULL,
                status VARCHAR(20) NOT NULL,
                previous_response_id VARCHAR(80),
                response TEXT NOT NULL,
                messages TEXT NOT NULL
            )""",
            "CREATE INDEX ix_parley_responses_status ON parley_responses (status)",
            """CREATE TABLE parley_input_items (
                response_id VARCHAR(80) NOT NULL,
                position INTEGER NOT NULL,
                item_id VARCHAR(120) NOT NULL,
                item TEXT NOT NULL,
                PRIMARY KEY (response_id, position)
            )""",
        ],
    ),
    (
        "0002_instances_and_owners",
        [
            "ALTER TABLE parley_responses ADD COLUMN owner VARCHAR(64)",
            """CREATE TABLE parley_instances (
                id VARCHAR(64) PRIMARY KEY,
                heartbeat_at DOUBLE PRECISION NOT NULL
            )""",
        ],
    ),
    (
        # The chat tool call id of each server-side output item (MCP calls and approval requests, web searches):
        # an approval answers its exact call, and a replayed item finds its call and result (JSON object).
        "0003_call_ids",
        ["ALTER TABLE parley_responses ADD COLUMN call_ids TEXT"],
    ),
    (
        # Which response holds each output item, and an index on input items' ids: item_reference finds an
        # item by its id without a scan.
        "0004_item_index",
        [
            """CREATE TABLE parley_output_items (
                response_id VARCHAR(80) NOT NULL,
                position INTEGER NOT NULL,
                item_id VARCHAR(120) NOT NULL,
                PRIMARY KEY (response_id, position)
            )""",
            "CREATE INDEX ix_parley_output_items_item_id ON parley_output_items (item_id)",
            "CREATE INDEX ix_parley_input_items_item_id ON parley_input_items (item_id)",
        ],
    ),
    (
        # Uploaded files (/v1/files): their description, and their bytes in chunks of at most 1 MiB, so that
        # every instance can read them and none holds a whole file in memory.
        "0005_files",
        [
            """CREATE TABLE parley_files (
                id VARCHAR(80) PRIMARY KEY,
                tenant VARCHAR(200) NOT NULL,
                purpose VARCHAR(40) NOT NULL,
                filename VARCHAR(512) NOT NULL,
                bytes BIGINT NOT NULL,
                created_at BIGINT NOT NULL,
                created_ns BIGINT NOT NULL,
                expires_at BIGINT,
                complete BOOLEAN NOT NULL
            )""",
            "CREATE INDEX ix_parley_files_tenant_created ON parley_files (tenant, created_ns)",
            """CREATE TABLE parley_file_chunks (
                file_id VARCHAR(80) NOT NULL,
                seq INTEGER NOT NULL,
                data BYTEA NOT NULL,
                PRIMARY KEY (file_id, seq)
            )""",
        ],
    ),
]
