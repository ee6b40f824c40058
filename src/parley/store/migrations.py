"""Named, append-only schema migrations.

Never edit or reorder an entry that has shipped: add a new one at the end.  Each is
applied once, in order, and recorded in ``parley_migrations``.  An entry's statements are one list for both
databases, or a mapping from the dialect's name (``sqlite``, ``postgresql``) to its own list where they differ.
"""

from __future__ import annotations

Statements = list[str] | dict[str, list[str]]


def statements_for(statements: Statements, dialect: str) -> list[str]:
    return statements if isinstance(statements, list) else statements[dialect]


_VECTOR_STORES = [
    """CREATE TABLE parley_vector_stores (
        id VARCHAR(80) PRIMARY KEY,
        tenant VARCHAR(200) NOT NULL,
        name VARCHAR(512),
        description TEXT,
        created_at BIGINT NOT NULL,
        created_ns BIGINT NOT NULL,
        last_active_at BIGINT NOT NULL,
        metadata TEXT,
        expires_after TEXT,
        embedding_model VARCHAR(200) NOT NULL
    )""",
    "CREATE INDEX ix_parley_vector_stores_tenant ON parley_vector_stores (tenant, created_ns)",
    """CREATE TABLE parley_vector_store_files (
        vector_store_id VARCHAR(80) NOT NULL,
        file_id VARCHAR(80) NOT NULL,
        tenant VARCHAR(200) NOT NULL,
        filename VARCHAR(512) NOT NULL,
        batch_id VARCHAR(80),
        created_at BIGINT NOT NULL,
        created_ns BIGINT NOT NULL,
        status VARCHAR(20) NOT NULL,
        last_error TEXT,
        attributes TEXT,
        chunking TEXT NOT NULL,
        usage_bytes BIGINT NOT NULL,
        owner VARCHAR(64),
        PRIMARY KEY (vector_store_id, file_id)
    )""",
    "CREATE INDEX ix_parley_vector_store_files_status ON parley_vector_store_files (status)",
    "CREATE INDEX ix_parley_vector_store_files_batch ON parley_vector_store_files (batch_id)",
    """CREATE TABLE parley_vector_store_batches (
        id VARCHAR(80) PRIMARY KEY,
        vector_store_id VARCHAR(80) NOT NULL,
        tenant VARCHAR(200) NOT NULL,
        created_at BIGINT NOT NULL,
        cancelled BOOLEAN NOT NULL
    )""",
]
_USAGE_BACKFILL = (
    "INSERT INTO parley_usage (period, tenant, slot, model, responses, failed, input_tokens, output_tokens, timed) "
    "SELECT {period}, tenant, {slot}, COALESCE(model, ''), COUNT(*), SUM(CASE WHEN status = 'failed' THEN 1 ELSE 0 END), "
    "COALESCE(SUM(input_tokens), 0), COALESCE(SUM(output_tokens), 0), 0 FROM parley_responses "
    "WHERE status IN ('completed', 'incomplete', 'failed', 'cancelled') GROUP BY tenant, {slot}, COALESCE(model, '')",
    "INSERT INTO parley_usage_errors (period, tenant, slot, code, count) "
    "SELECT {period}, tenant, {slot}, error_code, COUNT(*) "
    "FROM parley_responses WHERE error_code IS NOT NULL GROUP BY tenant, {slot}, error_code",
)


MIGRATIONS: list[tuple[str, Statements]] = [
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
    (
        # Vector stores: their files (the ingestion work, claimed by an instance through ``owner``), batches, and
        # the chunks with their embeddings (float32, little-endian) and a full-text index of their text: FTS5 on
        # SQLite (sqlite-vec gives the vector distance), a tsvector with a GIN index on PostgreSQL.
        "0006_vector_stores",
        {
            "sqlite": _VECTOR_STORES + [
                """CREATE TABLE parley_vector_store_chunks (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    vector_store_id VARCHAR(80) NOT NULL,
                    file_id VARCHAR(80) NOT NULL,
                    seq INTEGER NOT NULL,
                    text TEXT NOT NULL,
                    embedding BLOB NOT NULL
                )""",
                "CREATE INDEX ix_parley_vector_store_chunks_file ON parley_vector_store_chunks (vector_store_id, file_id)",
                """CREATE VIRTUAL TABLE parley_vector_store_fts USING fts5(
                    text, content='parley_vector_store_chunks', content_rowid='id', tokenize='porter unicode61')""",
                """CREATE TRIGGER parley_vector_store_chunks_ai AFTER INSERT ON parley_vector_store_chunks BEGIN
                    INSERT INTO parley_vector_store_fts(rowid, text) VALUES (new.id, new.text);
                END""",
                """CREATE TRIGGER parley_vector_store_chunks_ad AFTER DELETE ON parley_vector_store_chunks BEGIN
                    INSERT INTO parley_vector_store_fts(parley_vector_store_fts, rowid, text)
                    VALUES ('delete', old.id, old.text);
                END""",
            ],
            "postgresql": _VECTOR_STORES + [
                """CREATE TABLE parley_vector_store_chunks (
                    id BIGSERIAL PRIMARY KEY,
                    vector_store_id VARCHAR(80) NOT NULL,
                    file_id VARCHAR(80) NOT NULL,
                    seq INTEGER NOT NULL,
                    text TEXT NOT NULL,
                    embedding BYTEA NOT NULL,
                    tsv TSVECTOR GENERATED ALWAYS AS (to_tsvector('english', text)) STORED
                )""",
                "CREATE INDEX ix_parley_vector_store_chunks_file ON parley_vector_store_chunks (vector_store_id, file_id)",
                "CREATE INDEX ix_parley_vector_store_chunks_tsv ON parley_vector_store_chunks USING GIN (tsv)",
            ],
        },
    ),
    (
        # Where an uploaded file's bytes are when they are not in parley_file_chunks (--files-dir).
        "0007_file_paths",
        ["ALTER TABLE parley_files ADD COLUMN path TEXT"],
    ),
    (
        # Conversations (/v1/conversations) and their items, in order; a turn's items are appended as one block.
        "0008_conversations",
        [
            """CREATE TABLE parley_conversations (
                id VARCHAR(80) PRIMARY KEY,
                tenant VARCHAR(200) NOT NULL,
                created_at BIGINT NOT NULL,
                metadata TEXT
            )""",
            """CREATE TABLE parley_conversation_items (
                conversation_id VARCHAR(80) NOT NULL,
                position INTEGER NOT NULL,
                item_id VARCHAR(120) NOT NULL,
                item TEXT NOT NULL,
                PRIMARY KEY (conversation_id, position)
            )""",
            "CREATE INDEX ix_parley_conversation_items_item_id ON parley_conversation_items (conversation_id, item_id)",
        ],
    ),
    (
        # When a conversation was last used: retention counts from there.
        "0009_conversation_activity",
        [
            "ALTER TABLE parley_conversations ADD COLUMN updated_at BIGINT",
            "UPDATE parley_conversations SET updated_at = created_at",
            "CREATE INDEX ix_parley_conversations_updated_at ON parley_conversations (updated_at)",
            "CREATE INDEX ix_parley_responses_created_at ON parley_responses (created_at)",
        ],
    ),
    (
        # Background responses: the request each queued one runs (any instance claims it), a cancel asked of
        # it, and the events of its stream, kept so a client can resume it from any instance.
        "0010_background",
        [
            """CREATE TABLE parley_background (
                response_id VARCHAR(80) PRIMARY KEY,
                tenant VARCHAR(200) NOT NULL,
                request TEXT NOT NULL,
                cancel_requested BOOLEAN NOT NULL DEFAULT FALSE
            )""",
            # A run of consecutive events per row, as SSE frames: one row per write, not one per event.
            """CREATE TABLE parley_response_events (
                response_id VARCHAR(80) NOT NULL,
                first_seq INTEGER NOT NULL,
                last_seq INTEGER NOT NULL,
                terminal BOOLEAN NOT NULL,
                frames TEXT NOT NULL,
                PRIMARY KEY (response_id, first_seq)
            )""",
            # The queue: only queued rows are in it, oldest first.
            "CREATE INDEX ix_parley_responses_queued ON parley_responses (created_at) WHERE status = 'queued'",
        ],
    ),
    (
        # The console: a response's facts in columns of their own (listed and filtered by queries that use an
        # index), the timeline of its run, a word index of its text, and usage counts per minute and hour for
        # the overview's charts (kept as responses end, so a chart reads minutes or hours, not responses).
        # Existing rows get what their JSON holds; their text is not indexed (it was never extracted).
        "0011_console",
        {dialect: [
            "ALTER TABLE parley_responses ADD COLUMN model VARCHAR(200)",
            "ALTER TABLE parley_responses ADD COLUMN duration_ms DOUBLE PRECISION",
            "ALTER TABLE parley_responses ADD COLUMN input_tokens INTEGER",
            "ALTER TABLE parley_responses ADD COLUMN output_tokens INTEGER",
            "ALTER TABLE parley_responses ADD COLUMN error_code VARCHAR(100)",
            "ALTER TABLE parley_responses ADD COLUMN search_text TEXT",
            "ALTER TABLE parley_responses ADD COLUMN search_rowid BIGINT",  # its row in the SQLite word index
            "ALTER TABLE parley_responses ADD COLUMN trace TEXT",
            *backfill,
            "CREATE INDEX ix_parley_responses_tenant_created ON parley_responses (tenant, created_at, id)",
            # (status, created_at, id) and (created_at, id) serve what the narrower ones served, and sort pages
            "DROP INDEX ix_parley_responses_status",
            "CREATE INDEX ix_parley_responses_status ON parley_responses (status, created_at, id)",
            "DROP INDEX ix_parley_responses_created_at",
            "CREATE INDEX ix_parley_responses_created_at ON parley_responses (created_at, id)",
            "CREATE INDEX ix_parley_responses_previous ON parley_responses (previous_response_id, created_at)",
            # each response counted twice, per minute and per hour (period 60 and 3600): a chart of a day
            # reads at most 1,440 rows per tenant, one of a month 720
            f"""CREATE TABLE parley_usage (
                period INTEGER NOT NULL,
                tenant VARCHAR(200) NOT NULL,
                slot BIGINT NOT NULL,
                model VARCHAR(200) NOT NULL,
                responses INTEGER NOT NULL,
                failed INTEGER NOT NULL,
                input_tokens BIGINT NOT NULL,
                output_tokens BIGINT NOT NULL,
                timed INTEGER NOT NULL,
                -- responses per latency bucket: ms_N counts those over the bound before N and up to N ms
                ms_50 INTEGER NOT NULL DEFAULT 0,
                ms_100 INTEGER NOT NULL DEFAULT 0,
                ms_250 INTEGER NOT NULL DEFAULT 0,
                ms_500 INTEGER NOT NULL DEFAULT 0,
                ms_1000 INTEGER NOT NULL DEFAULT 0,
                ms_2500 INTEGER NOT NULL DEFAULT 0,
                ms_5000 INTEGER NOT NULL DEFAULT 0,
                ms_10000 INTEGER NOT NULL DEFAULT 0,
                ms_30000 INTEGER NOT NULL DEFAULT 0,
                ms_60000 INTEGER NOT NULL DEFAULT 0,
                ms_120000 INTEGER NOT NULL DEFAULT 0,
                ms_over INTEGER NOT NULL DEFAULT 0,
                PRIMARY KEY (period, slot, tenant, model)
            ){clustered}""",
            f"""CREATE TABLE parley_usage_errors (
                period INTEGER NOT NULL,
                tenant VARCHAR(200) NOT NULL,
                slot BIGINT NOT NULL,
                code VARCHAR(100) NOT NULL,
                count INTEGER NOT NULL,
                PRIMARY KEY (period, slot, tenant, code)
            ){clustered}""",
            *(statement.format(period=period, slot=slot.format(period=period))
              for period in (60, 3600) for statement in _USAGE_BACKFILL),
            *search,
        ] for dialect, slot, clustered, backfill, search in (
            # (SQLite: the rows in the primary key's order, so a count touches one page, not three)
            ("sqlite", "CAST(created_at / {period} AS INTEGER)", " WITHOUT ROWID", [
                "UPDATE parley_responses SET model = json_extract(response, '$.model'), "
                "input_tokens = json_extract(response, '$.usage.input_tokens'), "
                "output_tokens = json_extract(response, '$.usage.output_tokens'), "
                "error_code = json_extract(response, '$.error.code')",
            ], [
                # (detail=none: which responses hold a word, not where; enough for words and their starts, and
                # the cheapest to write on the request path)
                "CREATE VIRTUAL TABLE parley_response_search USING fts5(search_text, "
                "tokenize = 'unicode61 remove_diacritics 2', detail = none, columnsize = 0)",
                "CREATE INDEX ix_parley_responses_search_rowid ON parley_responses (search_rowid)",
                "UPDATE parley_responses SET search_rowid = 0",  # (their text was never extracted)
            ]),
            ("postgresql", "CAST(floor(created_at / {period}) AS BIGINT)", "", [
                "UPDATE parley_responses SET model = response::json->>'model', "
                "input_tokens = (response::json->'usage'->>'input_tokens')::integer, "
                "output_tokens = (response::json->'usage'->>'output_tokens')::integer, "
                "error_code = response::json->'error'->>'code'",
            ], [
                "ALTER TABLE parley_responses ADD COLUMN search_tsv tsvector GENERATED ALWAYS AS "
                "(to_tsvector('simple', coalesce(search_text, ''))) STORED",
                "CREATE INDEX ix_parley_responses_search ON parley_responses USING GIN (search_tsv)",
            ]),
        )},
    ),
    (
        # How many times an instance claimed a vector store file's ingestion: a file whose indexing kept being
        # cut off (its instance stopped, or lost the database) fails after a few tries instead of looping.
        "0012_ingestion_attempts",
        ["ALTER TABLE parley_vector_store_files ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0"],
    ),
    (
        # When a response reached its final state: retention counts from the end of the work, not its start.
        # Rows that ended before this migration get their start plus their duration (or their start).
        "0013_response_ended_at",
        [
            "ALTER TABLE parley_responses ADD COLUMN ended_at DOUBLE PRECISION",
            "UPDATE parley_responses SET ended_at = created_at + COALESCE(duration_ms, 0) / 1000.0 "
            "WHERE status IN ('completed', 'incomplete', 'failed', 'cancelled')",
            "CREATE INDEX ix_parley_responses_ended_at ON parley_responses (ended_at)",
        ],
    ),
    (
        # The console's sign-in sessions: the SHA-256 of the cookie's random id and of the key it was opened
        # with (never the key), until it expires or its viewer signs out.
        "0014_console_sessions",
        [
            """CREATE TABLE parley_console_sessions (
                id_hash VARCHAR(64) PRIMARY KEY,
                key_hash VARCHAR(64) NOT NULL,
                created_at DOUBLE PRECISION NOT NULL,
                expires_at DOUBLE PRECISION NOT NULL
            )""",
            "CREATE INDEX ix_parley_console_sessions_expires_at ON parley_console_sessions (expires_at)",
        ],
    ),
    (
        # Containers (code_interpreter, the hosted shell) and their files; a file's bytes are a parley_files
        # row of purpose 'container' (its blob).
        "0015_containers",
        [
            """CREATE TABLE parley_containers (
                id VARCHAR(80) PRIMARY KEY,
                tenant VARCHAR(200) NOT NULL,
                name VARCHAR(256) NOT NULL,
                created_at BIGINT NOT NULL,
                created_ns BIGINT NOT NULL,
                last_active_at BIGINT NOT NULL,
                expires_minutes INTEGER NOT NULL,
                memory_limit VARCHAR(8) NOT NULL,
                status VARCHAR(16) NOT NULL,
                host VARCHAR(64)
            )""",
            "CREATE INDEX ix_parley_containers_tenant ON parley_containers (tenant, created_ns)",
            "CREATE INDEX ix_parley_containers_status ON parley_containers (status)",
            """CREATE TABLE parley_container_files (
                id VARCHAR(80) PRIMARY KEY,
                container_id VARCHAR(80) NOT NULL,
                path VARCHAR(1024) NOT NULL,
                bytes BIGINT NOT NULL,
                sha256 VARCHAR(64) NOT NULL,
                source VARCHAR(16) NOT NULL,
                blob VARCHAR(80) NOT NULL,
                created_at BIGINT NOT NULL,
                created_ns BIGINT NOT NULL
            )""",
            "CREATE UNIQUE INDEX ix_parley_container_files_path ON parley_container_files (container_id, path)",
        ],
    ),
    (
        # What names a container's session to every instance, where the sandbox is shared (a kernel gateway's
        # kernel id).
        "0016_container_session_ref",
        ["ALTER TABLE parley_containers ADD COLUMN session_ref VARCHAR(200)"],
    ),
    (
        # Skills and their versions (each version's files a parley_files row of purpose 'skill'), and the
        # skills a container mounts.
        "0017_skills",
        [
            """CREATE TABLE parley_skills (
                id VARCHAR(80) PRIMARY KEY,
                tenant VARCHAR(200) NOT NULL,
                name VARCHAR(64) NOT NULL,
                description TEXT NOT NULL,
                created_at BIGINT NOT NULL,
                created_ns BIGINT NOT NULL,
                default_version INTEGER NOT NULL,
                latest_version INTEGER NOT NULL
            )""",
            "CREATE INDEX ix_parley_skills_tenant ON parley_skills (tenant, created_ns)",
            """CREATE TABLE parley_skill_versions (
                skill_id VARCHAR(80) NOT NULL,
                version INTEGER NOT NULL,
                id VARCHAR(80) NOT NULL,
                name VARCHAR(64) NOT NULL,
                description TEXT NOT NULL,
                created_at BIGINT NOT NULL,
                blob VARCHAR(80) NOT NULL,
                PRIMARY KEY (skill_id, version)
            )""",
            "ALTER TABLE parley_containers ADD COLUMN skills TEXT",
        ],
    ),
    (
        # What live web searches found, per tenant, for web_search with external_web_access false.
        "0018_web_cache",
        [
            """CREATE TABLE parley_web_cache (
                tenant VARCHAR(200) NOT NULL,
                url VARCHAR(1000) NOT NULL,
                title TEXT NOT NULL,
                content TEXT NOT NULL,
                fetched_at DOUBLE PRECISION NOT NULL,
                PRIMARY KEY (tenant, url)
            )""",
            "CREATE INDEX ix_parley_web_cache_fetched ON parley_web_cache (tenant, fetched_at)",
        ],
    ),
    (
        # Stored prompts: a prompt per tenant and its versions, each a template of a create (JSON).
        "0019_prompts",
        [
            """CREATE TABLE parley_prompts (
                id VARCHAR(80) PRIMARY KEY,
                tenant VARCHAR(200) NOT NULL,
                name VARCHAR(256) NOT NULL,
                created_at BIGINT NOT NULL,
                created_ns BIGINT NOT NULL,
                latest_version INTEGER NOT NULL
            )""",
            "CREATE INDEX ix_parley_prompts_tenant ON parley_prompts (tenant, created_ns)",
            """CREATE TABLE parley_prompt_versions (
                prompt_id VARCHAR(80) NOT NULL,
                version INTEGER NOT NULL,
                created_at BIGINT NOT NULL,
                template TEXT NOT NULL,
                PRIMARY KEY (prompt_id, version)
            )""",
        ],
    ),
    (
        # SQLite: the vector stores' full-text index also holds each chunk's store, so that a keyword search ranks
        # one store's chunks inside FTS5 (the store id a phrase of its own column) instead of joining every match.
        "0020_vector_store_fts_by_store",
        {
            "sqlite": [
                "DROP TRIGGER parley_vector_store_chunks_ai",
                "DROP TRIGGER parley_vector_store_chunks_ad",
                "DROP TABLE parley_vector_store_fts",
                """CREATE VIRTUAL TABLE parley_vector_store_fts USING fts5(
                    text, vector_store_id, content='parley_vector_store_chunks', content_rowid='id',
                    tokenize='porter unicode61')""",
                "INSERT INTO parley_vector_store_fts(parley_vector_store_fts) VALUES ('rebuild')",
                """CREATE TRIGGER parley_vector_store_chunks_ai AFTER INSERT ON parley_vector_store_chunks BEGIN
                    INSERT INTO parley_vector_store_fts(rowid, text, vector_store_id)
                    VALUES (new.id, new.text, new.vector_store_id);
                END""",
                """CREATE TRIGGER parley_vector_store_chunks_ad AFTER DELETE ON parley_vector_store_chunks BEGIN
                    INSERT INTO parley_vector_store_fts(parley_vector_store_fts, rowid, text, vector_store_id)
                    VALUES ('delete', old.id, old.text, old.vector_store_id);
                END""",
            ],
            "postgresql": [],
        },
    ),
    (
        # SQLite: how many chunks have been inserted into and deleted from each vector store, counted by triggers
        # whichever process writes them, so that a store's embeddings held in memory know when they are stale
        # (parley.store.embedding_matrices). Chunks stored before this count from 0.
        "0021_vector_store_changes",
        {
            "sqlite": [
                """CREATE TABLE parley_vector_store_changes (
                    vector_store_id VARCHAR(80) PRIMARY KEY,
                    inserted INTEGER NOT NULL DEFAULT 0,
                    deleted INTEGER NOT NULL DEFAULT 0
                )""",
                """CREATE TRIGGER parley_vector_store_changes_ai AFTER INSERT ON parley_vector_store_chunks BEGIN
                    INSERT INTO parley_vector_store_changes (vector_store_id, inserted) VALUES (new.vector_store_id, 1)
                    ON CONFLICT (vector_store_id) DO UPDATE SET inserted = inserted + 1;
                END""",
                """CREATE TRIGGER parley_vector_store_changes_ad AFTER DELETE ON parley_vector_store_chunks BEGIN
                    INSERT INTO parley_vector_store_changes (vector_store_id, deleted) VALUES (old.vector_store_id, 1)
                    ON CONFLICT (vector_store_id) DO UPDATE SET deleted = deleted + 1;
                END""",
            ],
            "postgresql": [],
        },
    ),
    (
        # SQLite: the keyword half ranked in memory (parley.store.fts_postings) reads FTS5's postings through an
        # fts5vocab table (the search's connections may not create one of their own: they are query_only), and
        # knows it is current by the chunks inserted into and deleted from all stores, counted by triggers (the
        # per-store counts go when a store is deleted, so their sum can come back to a value it had).
        "0022_vector_store_fts_postings",
        {
            "sqlite": [
                "CREATE VIRTUAL TABLE parley_vector_store_fts_instances USING fts5vocab(parley_vector_store_fts, "
                "instance)",
                """CREATE TABLE parley_vector_store_fts_changes (
                    id INTEGER PRIMARY KEY CHECK (id = 0),
                    inserted INTEGER NOT NULL,
                    deleted INTEGER NOT NULL
                )""",
                "INSERT INTO parley_vector_store_fts_changes (id, inserted, deleted) VALUES (0, 0, 0)",
                """CREATE TRIGGER parley_vector_store_fts_changes_ai AFTER INSERT ON parley_vector_store_chunks BEGIN
                    UPDATE parley_vector_store_fts_changes SET inserted = inserted + 1 WHERE id = 0;
                END""",
                """CREATE TRIGGER parley_vector_store_fts_changes_ad AFTER DELETE ON parley_vector_store_chunks BEGIN
                    UPDATE parley_vector_store_fts_changes SET deleted = deleted + 1 WHERE id = 0;
                END""",
            ],
            "postgresql": [],
        },
    ),
]
