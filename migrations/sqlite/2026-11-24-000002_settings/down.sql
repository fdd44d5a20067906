DROP TABLE link_tokens;
DROP TABLE voice_providers;
DROP TABLE sip_dids;
DROP TABLE sip_trunks;
DROP TABLE connections;
DROP TABLE bot_tokens;
