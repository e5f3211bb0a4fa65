-- What the dashboard reads, kept as the interactions are written, so that its pages cost the same
-- however many sessions there are (indexed and rolled up, never scanned).
-- A session's token totals and last activity, beside its cost and count.
ALTER TABLE sessions ADD COLUMN prompt_tokens INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN completion_tokens INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN last_activity TEXT;
UPDATE sessions SET
    prompt_tokens = COALESCE((SELECT SUM(i.prompt_tokens) FROM interactions i WHERE i.session_id = sessions.id), 0),
    completion_tokens = COALESCE(
        (SELECT SUM(i.completion_tokens) FROM interactions i WHERE i.session_id = sessions.id), 0
    ),
    last_activity = (SELECT MAX(i.timestamp) FROM interactions i WHERE i.session_id = sessions.id);

-- Interactions per hour, model, provider and type: the overview's totals and charts.
CREATE TABLE usage_hourly (
    hour              TEXT NOT NULL,  -- 2026-11-29T10 (UTC)
    model             TEXT NOT NULL,  -- '' for interactions that are not chats
    provider          TEXT NOT NULL,  -- '' when unknown
    type              TEXT NOT NULL,
    interactions      INTEGER NOT NULL DEFAULT 0,
    failures          INTEGER NOT NULL DEFAULT 0,
    unpriced          INTEGER NOT NULL DEFAULT 0,  -- chats of a model with no known price
    prompt_tokens     INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    cost_mc           INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (hour, model, provider, type)
) WITHOUT ROWID;
INSERT INTO usage_hourly
SELECT substr(timestamp, 1, 13), COALESCE(model_name, ''), COALESCE(json_extract(metadata, '$.provider'), ''), type,
       COUNT(*), SUM(status != 'completed'), SUM(COALESCE(json_extract(metadata, '$.pricing') = 'unknown_model', 0)),
       COALESCE(SUM(prompt_tokens), 0), COALESCE(SUM(completion_tokens), 0), SUM(total_cost_mc)
FROM interactions GROUP BY 1, 2, 3, 4;

-- Interactions per day and user, and the sessions each user started that day: the users' pages,
-- the top users, the counts of sessions and users of a period.
CREATE TABLE usage_user_daily (
    day               TEXT NOT NULL,  -- 2026-11-29 (UTC)
    user_id           TEXT NOT NULL,
    sessions          INTEGER NOT NULL DEFAULT 0,  -- started that day
    interactions      INTEGER NOT NULL DEFAULT 0,
    prompt_tokens     INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    cost_mc           INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, day)
) WITHOUT ROWID;
CREATE INDEX usage_user_daily_day ON usage_user_daily (day);
INSERT INTO usage_user_daily (day, user_id, interactions, prompt_tokens, completion_tokens, cost_mc)
SELECT substr(timestamp, 1, 10), user_id, COUNT(*), COALESCE(SUM(prompt_tokens), 0),
       COALESCE(SUM(completion_tokens), 0), SUM(total_cost_mc)
FROM interactions GROUP BY 1, 2;
INSERT INTO usage_user_daily (day, user_id, sessions)
SELECT substr(start_time, 1, 10), user_id, COUNT(*) FROM sessions WHERE true GROUP BY 1, 2
ON CONFLICT (user_id, day) DO UPDATE SET sessions = excluded.sessions;

-- Chat latency and time to first chunk per day and model, as counts in buckets (upper bounds in
-- ms, the last one open): percentiles read from them are the bucket's bound.
CREATE TABLE latency_daily (
    day     TEXT NOT NULL,
    model   TEXT NOT NULL,
    measure TEXT NOT NULL,  -- 'duration' or 'ttfc'
    bucket  INTEGER NOT NULL,
    count   INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (day, model, measure, bucket)
) WITHOUT ROWID;
INSERT INTO latency_daily
SELECT substr(timestamp, 1, 10), model_name, 'duration',
       CASE WHEN duration_ms <= 10 THEN 0 WHEN duration_ms <= 25 THEN 1 WHEN duration_ms <= 50 THEN 2
            WHEN duration_ms <= 100 THEN 3 WHEN duration_ms <= 250 THEN 4 WHEN duration_ms <= 500 THEN 5
            WHEN duration_ms <= 1000 THEN 6 WHEN duration_ms <= 2500 THEN 7 WHEN duration_ms <= 5000 THEN 8
            WHEN duration_ms <= 10000 THEN 9 WHEN duration_ms <= 30000 THEN 10 WHEN duration_ms <= 60000 THEN 11
            ELSE 12 END,
       COUNT(*)
FROM interactions WHERE type = 'chat' AND duration_ms IS NOT NULL AND model_name IS NOT NULL GROUP BY 1, 2, 3, 4;

-- Sessions started per day: the count of an unfiltered list, without counting the table.
CREATE TABLE sessions_daily (
    day      TEXT PRIMARY KEY,
    sessions INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
INSERT INTO sessions_daily SELECT substr(start_time, 1, 10), COUNT(*) FROM sessions GROUP BY 1;

-- The sessions list's sorts, each with the id as its tie-breaker: a page continues after the last
-- row of the one before (keyset pagination), as fast at the end of 100k sessions as at the start.
-- They serve the read API's sorts as well as the indexes they replace.
DROP INDEX sessions_user_start;
DROP INDEX sessions_start;
DROP INDEX sessions_cost;
CREATE INDEX sessions_start_id ON sessions (start_time, id);
CREATE INDEX sessions_cost_id ON sessions (total_cost_mc, id);
CREATE INDEX sessions_user_start_id ON sessions (user_id, start_time, id);
CREATE INDEX sessions_user_cost_id ON sessions (user_id, total_cost_mc, id);
-- The model filter: does this session have a chat of that model?
CREATE INDEX interactions_session_model ON interactions (session_id, model_name);
