//! Table definitions shared by both backends (the migrations under `migrations/` create
//! the same columns on SQLite and PostgreSQL).

diesel::table! {
    users (id) {
        id -> Text,
        email -> Text,
        name -> Text,
        password_hash -> Text,
        email_verified -> Bool,
        pending_email -> Nullable<Text>,
        plan -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    api_keys (id) {
        id -> Text,
        user_id -> Text,
        name -> Text,
        prefix -> Text,
        key_hash -> Text,
        created_at -> BigInt,
        last_used_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    sessions (id) {
        id -> Text,
        user_id -> Text,
        created_at -> BigInt,
        expires_at -> BigInt,
    }
}

diesel::table! {
    bot_tokens (id) {
        id -> Text,
        user_id -> Text,
        platform -> Text,
        token_hash -> Text,
        token_sealed -> Text,
        token_hint -> Text,
        discord_app_id -> Nullable<Text>,
        slack_signing_secret_sealed -> Nullable<Text>,
        created_at -> BigInt,
    }
}

diesel::table! {
    connections (id) {
        id -> Text,
        user_id -> Text,
        provider -> Text,
        external_id -> Text,
        display_name -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    sip_trunks (id) {
        id -> Text,
        user_id -> Text,
        host -> Text,
        port -> Integer,
        username -> Text,
        password_sealed -> Text,
        realm -> Nullable<Text>,
        caller_id -> Nullable<Text>,
        created_at -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    sip_dids (id) {
        id -> Text,
        user_id -> Text,
        trunk_id -> Text,
        number -> Text,
        auto_answer -> Bool,
        created_at -> BigInt,
    }
}

diesel::table! {
    voice_providers (id) {
        id -> Text,
        user_id -> Text,
        kind -> Text,
        provider -> Text,
        key_sealed -> Text,
        key_hint -> Text,
        enabled -> Bool,
        created_at -> BigInt,
    }
}

diesel::table! {
    link_tokens (id) {
        id -> Text,
        user_id -> Text,
        kind -> Text,
        provider -> Nullable<Text>,
        created_at -> BigInt,
        expires_at -> BigInt,
        used_at -> Nullable<BigInt>,
    }
}

diesel::joinable!(api_keys -> users (user_id));
diesel::joinable!(sessions -> users (user_id));
diesel::joinable!(bot_tokens -> users (user_id));
diesel::joinable!(connections -> users (user_id));
diesel::joinable!(sip_trunks -> users (user_id));
diesel::joinable!(sip_dids -> sip_trunks (trunk_id));
diesel::joinable!(voice_providers -> users (user_id));
diesel::joinable!(link_tokens -> users (user_id));
diesel::allow_tables_to_appear_in_same_query!(
    users,
    api_keys,
    sessions,
    bot_tokens,
    connections,
    sip_trunks,
    sip_dids,
    voice_providers,
    link_tokens,
    calls,
    transcript_lines,
);

diesel::table! {
    calls (id) {
        id -> Text,
        user_id -> Text,
        platform -> Text,
        meeting_url -> Text,
        agent_name -> Text,
        direction -> Text,
        caller -> Text,
        state -> Text,
        sample_rate -> Integer,
        created_at -> BigInt,
        ended_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    transcript_lines (call_id, idx) {
        call_id -> Text,
        idx -> Integer,
        user_id -> Text,
        speaker -> Text,
        text -> Text,
        created_at -> BigInt,
    }
}
