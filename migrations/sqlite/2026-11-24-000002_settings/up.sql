-- The per-user settings of the account API: bot tokens, platform connections, the SIP
-- trunk and its numbers, voice-provider presets, and short-lived link tokens.
-- Secrets are stored sealed (ChaCha20-Poly1305, base64 of nonce || ciphertext) next to a
-- short hint; times are Unix epoch milliseconds; ids are UUIDs made by the application.
CREATE TABLE bot_tokens (
    id TEXT PRIMARY KEY NOT NULL,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    platform TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    token_sealed TEXT NOT NULL,
    token_hint TEXT NOT NULL,
    discord_app_id TEXT,
    slack_signing_secret_sealed TEXT,
    created_at BIGINT NOT NULL
);
CREATE INDEX bot_tokens_user ON bot_tokens(user_id);

CREATE TABLE connections (
    id TEXT PRIMARY KEY NOT NULL,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    provider TEXT NOT NULL,
    external_id TEXT NOT NULL,
    display_name TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX connections_user ON connections(user_id);

CREATE TABLE sip_trunks (
    id TEXT PRIMARY KEY NOT NULL,
    user_id TEXT NOT NULL UNIQUE REFERENCES users(id) ON DELETE CASCADE,
    host TEXT NOT NULL,
    port INTEGER NOT NULL,
    username TEXT NOT NULL,
    password_sealed TEXT NOT NULL,
    realm TEXT,
    caller_id TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE sip_dids (
    id TEXT PRIMARY KEY NOT NULL,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    trunk_id TEXT NOT NULL REFERENCES sip_trunks(id) ON DELETE CASCADE,
    number TEXT NOT NULL UNIQUE,
    auto_answer BOOLEAN NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL
);
CREATE INDEX sip_dids_user ON sip_dids(user_id);

CREATE TABLE voice_providers (
    id TEXT PRIMARY KEY NOT NULL,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    provider TEXT NOT NULL,
    key_sealed TEXT NOT NULL,
    key_hint TEXT NOT NULL,
    enabled BOOLEAN NOT NULL DEFAULT 1,
    created_at BIGINT NOT NULL
);
CREATE INDEX voice_providers_user ON voice_providers(user_id);

CREATE TABLE link_tokens (
    id TEXT PRIMARY KEY NOT NULL,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    provider TEXT,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT
);
CREATE INDEX link_tokens_user ON link_tokens(user_id);
