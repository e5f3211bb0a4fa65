-- Schema close to the deployed D1 one (shared/tracker-api.md, "Storage"), plus the idempotency
-- key and the columns the real client sends (db/api counts, duration).
CREATE TABLE sessions (
    id                  TEXT PRIMARY KEY,
    user_id             TEXT NOT NULL,
    start_time          TEXT NOT NULL,
    end_time            TEXT,
    total_interactions  INTEGER NOT NULL DEFAULT 0,
    total_cost_mc       INTEGER NOT NULL DEFAULT 0,
    metadata            TEXT NOT NULL DEFAULT '{}',
    trace_id            TEXT NOT NULL,
    created_at          TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at          TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX sessions_user_start ON sessions (user_id, start_time DESC);
CREATE INDEX sessions_start ON sessions (start_time DESC);
CREATE INDEX sessions_cost ON sessions (total_cost_mc DESC);

CREATE TABLE interactions (
    id                   TEXT PRIMARY KEY,
    idempotency_key      TEXT UNIQUE,
    session_id           TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    user_id              TEXT NOT NULL,
    timestamp            TEXT NOT NULL,
    type                 TEXT NOT NULL CHECK (type IN ('chat', 'db', 'api', 'cost-event')),
    status               TEXT NOT NULL DEFAULT 'completed' CHECK (status IN ('completed', 'failed', 'timeout')),
    model_name           TEXT,
    prompt_tokens        INTEGER CHECK (prompt_tokens >= 0),
    completion_tokens    INTEGER CHECK (completion_tokens >= 0),
    db_read_ops          INTEGER CHECK (db_read_ops >= 0),
    db_write_ops         INTEGER CHECK (db_write_ops >= 0),
    api_call_count       INTEGER CHECK (api_call_count >= 1),
    duration_ms          REAL CHECK (duration_ms >= 0),
    ai_tokens_cost_mc    INTEGER NOT NULL DEFAULT 0,
    db_ops_cost_mc       INTEGER NOT NULL DEFAULT 0,
    api_calls_cost_mc    INTEGER NOT NULL DEFAULT 0,
    compute_time_cost_mc INTEGER NOT NULL DEFAULT 0,
    total_cost_mc        INTEGER NOT NULL DEFAULT 0,
    metadata             TEXT NOT NULL DEFAULT '{}',
    created_at           TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX interactions_session_time ON interactions (session_id, timestamp);
CREATE INDEX interactions_user_time ON interactions (user_id, timestamp);
CREATE INDEX interactions_time ON interactions (timestamp);

-- USD per million tokens, per (provider, model, token kind); the active row is the price.
CREATE TABLE pricing (
    provider        TEXT NOT NULL,
    model           TEXT NOT NULL,
    token_kind      TEXT NOT NULL CHECK (token_kind IN ('input', 'output', 'cache_read', 'cache_write')),
    usd_per_million REAL NOT NULL CHECK (usd_per_million >= 0),
    effective_date  TEXT NOT NULL,
    active          INTEGER NOT NULL DEFAULT 1,
    source          TEXT NOT NULL,
    PRIMARY KEY (provider, model, token_kind, effective_date)
);
CREATE INDEX pricing_model ON pricing (model, active);
