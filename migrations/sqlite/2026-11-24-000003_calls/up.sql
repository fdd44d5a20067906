-- Calls and their transcripts, kept after the call ends so GET /api/call/{id} still answers.
CREATE TABLE calls (
    id TEXT PRIMARY KEY NOT NULL,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    platform TEXT NOT NULL,
    meeting_url TEXT NOT NULL,
    agent_name TEXT NOT NULL,
    direction TEXT NOT NULL,
    caller TEXT NOT NULL,
    state TEXT NOT NULL,
    sample_rate INTEGER NOT NULL,
    created_at BIGINT NOT NULL,
    ended_at BIGINT
);
CREATE INDEX calls_user ON calls(user_id);

CREATE TABLE transcript_lines (
    call_id TEXT NOT NULL REFERENCES calls(id) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    speaker TEXT NOT NULL,
    text TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (call_id, idx)
);
CREATE INDEX transcript_lines_user ON transcript_lines(user_id);
