//! Bot tokens, voice-provider presets, platform connections, OAuth starts and link tokens:
//! happy paths, refusals, secrets at rest, and one user never reaching another's rows.

use diesel::prelude::*;
use reqwest::Method;
use serde_json::{Value, json};

use chamade::db::schema::{bot_tokens, link_tokens, voice_providers};
use chamade::db::{models, now_ms, repo};

use crate::on_both_backends;
use crate::support::{Backend, TestServer, json};

const DISCORD_TOKEN: &str = "MTIzNDU2Nzg5MDEyMzQ1Njc4.GhIjKl.abcdefghijklmnopqrstuvwxyz0123";

fn discord_bot(token: &str) -> Value {
    json!({"platform": "discord", "bot_token": token, "discord_app_id": "123456789012345678"})
}

fn bot_tokens_are_sealed_and_never_returned_whole(b: Backend) {
    let s = TestServer::start(b);
    let (user_id, key) = s.signup("byob@example.org");
    let (other_id, _) = s.signup("other@example.org");
    let created = json(
        s.post("/api/bot-tokens", &key, &discord_bot(DISCORD_TOKEN)),
        201,
    );
    assert_eq!(created["platform"], "discord");
    assert_eq!(created["token_hint"], "…0123");
    assert_eq!(created["discord_app_id"], "123456789012345678");
    assert!(!created.to_string().contains(&DISCORD_TOKEN[..20]));
    let slack = json(
        s.post(
            "/api/bot-tokens",
            &key,
            &json!({"platform": "slack", "bot_token": "xoxb-1-2-slacksecretvalue",
                    "slack_signing_secret": "8f742231b10e8888abcd99yyyzzz85a5"}),
        ),
        201,
    );
    assert_eq!(slack["slack_signing_secret_set"], true);
    let list = json(s.get("/api/bot-tokens", &key), 200);
    let text = list.to_string();
    assert_eq!(list["bot_tokens"].as_array().unwrap().len(), 2);
    for secret in [
        &DISCORD_TOKEN[..20],
        "slacksecretvalue",
        "8f742231b10e8888abcd99yyyzzz85a5",
    ] {
        assert!(!text.contains(secret), "{secret} listed");
    }
    let id = created["bot_id"].as_str().unwrap();
    let (sealed, hash): (String, String) = bot_tokens::table
        .filter(bot_tokens::id.eq(id))
        .select((bot_tokens::token_sealed, bot_tokens::token_hash))
        .first(&mut *s.conn())
        .unwrap();
    assert!(!sealed.contains(&DISCORD_TOKEN[..20]) && !hash.contains(&DISCORD_TOKEN[..20]));
    assert_eq!(s.secrets.open(&user_id, &sealed).unwrap(), DISCORD_TOKEN);
    assert!(
        s.secrets.open(&other_id, &sealed).is_err(),
        "a sealed token copied to another user's row does not open"
    );
    let export = json(s.get("/api/export", &key), 200).to_string();
    assert!(!export.contains(&DISCORD_TOKEN[..20]) && !export.contains(&sealed));
    let del = s.delete(&format!("/api/bot-tokens/{id}"), &key);
    assert_eq!(del.status(), 204);
    json(s.delete(&format!("/api/bot-tokens/{id}"), &key), 404);
    assert_eq!(
        json(s.get("/api/bot-tokens", &key), 200)["bot_tokens"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

fn bot_token_bodies_are_checked(b: Backend) {
    let s = TestServer::start(b);
    let (_, key) = s.signup("checks@example.org");
    let (_, other) = s.signup("second@example.org");
    for body in [
        json!({}),
        json!({"platform": "discord"}),
        json!({"platform": "myspace", "bot_token": "x"}),
        json!({"platform": "discord", "bot_token": DISCORD_TOKEN}),
        json!({"platform": "discord", "bot_token": DISCORD_TOKEN, "discord_app_id": "abc"}),
        json!({"platform": "telegram", "bot_token": "no-colon"}),
        json!({"platform": "telegram", "bot_token": "123:abc", "discord_app_id": "1"}),
        json!({"platform": "slack", "bot_token": "xoxb-1-2-3"}),
        json!({"platform": "slack", "bot_token": "xoxp-1-2-3", "slack_signing_secret": "s"}),
        json!({"platform": "telegram", "bot_token": ""}),
        json!({"platform": "telegram", "bot_token": "123:abc", "surprise": 1}),
        json!({"platform": "telegram", "bot_token": 123}),
    ] {
        let v = json(s.post("/api/bot-tokens", &key, &body), 422);
        assert_eq!(v["code"], "validation_error", "{body}");
    }
    let raw = s
        .req(Method::POST, "/api/bot-tokens", &key)
        .header("Content-Type", "application/json")
        .body("{not json")
        .send()
        .unwrap();
    json(raw, 422);
    json(
        s.post("/api/bot-tokens", &key, &discord_bot(DISCORD_TOKEN)),
        201,
    );
    let again = s.post("/api/bot-tokens", &other, &discord_bot(DISCORD_TOKEN));
    assert_eq!(
        json(again, 409)["code"],
        "conflict",
        "one bot belongs to one account"
    );
    assert_eq!(
        json(s.get("/api/bot-tokens", &other), 200)["bot_tokens"],
        json!([])
    );
}

fn another_users_bot_token_cannot_be_seen_or_deleted(b: Backend) {
    let s = TestServer::start(b);
    let (_, alice) = s.signup("alice@example.org");
    let (_, bob) = s.signup("bob@example.org");
    let bobs = json(
        s.post("/api/bot-tokens", &bob, &discord_bot(DISCORD_TOKEN)),
        201,
    );
    let id = bobs["bot_id"].as_str().unwrap();
    let seen = json(s.get("/api/bot-tokens", &alice), 200);
    assert_eq!(seen["bot_tokens"], json!([]));
    assert_eq!(
        json(s.delete(&format!("/api/bot-tokens/{id}"), &alice), 404)["code"],
        "not_found"
    );
    let still = json(s.get("/api/bot-tokens", &bob), 200);
    assert_eq!(still["bot_tokens"][0]["bot_id"], id);
}

fn voice_provider_presets_drive_hosted_features(b: Backend) {
    let s = TestServer::start(b);
    let (user_id, key) = s.signup("voice@example.org");
    let features = |k: &str| json(s.get("/api/account", k), 200)["features"].clone();
    assert_eq!(features(&key)["hosted_tts"], "byok");
    let secret = "sk_elevenlabs_0123456789abcdef";
    let p = json(
        s.post(
            "/api/voice-providers",
            &key,
            &json!({"kind": "tts", "provider": "elevenlabs", "api_key": secret}),
        ),
        201,
    );
    assert_eq!(p["enabled"], true);
    assert_eq!(p["key_hint"], "…cdef");
    assert!(!p.to_string().contains(&secret[..20]));
    assert_eq!(features(&key)["hosted_tts"], "ready");
    assert_eq!(features(&key)["hosted_stt"], "byok");
    let stt = json(
        s.post(
            "/api/voice-providers",
            &key,
            &json!({"kind": "stt", "provider": "deepgram", "api_key": "dg-0123456789abcdef",
                    "enabled": false}),
        ),
        201,
    );
    assert_eq!(
        features(&key)["hosted_stt"],
        "byok",
        "a disabled preset is not used"
    );
    let stt_id = stt["preset_id"].as_str().unwrap();
    let on = s
        .req(
            Method::PATCH,
            &format!("/api/voice-providers/{stt_id}"),
            &key,
        )
        .json(&json!({"enabled": true}))
        .send()
        .unwrap();
    assert_eq!(json(on, 200)["enabled"], true);
    assert_eq!(features(&key)["hosted_stt"], "ready");
    let id = p["preset_id"].as_str().unwrap();
    let off = s
        .req(Method::PATCH, &format!("/api/voice-providers/{id}"), &key)
        .json(&json!({"enabled": false}))
        .send()
        .unwrap();
    assert_eq!(json(off, 200)["enabled"], false);
    assert_eq!(features(&key)["hosted_tts"], "byok");
    let list = json(s.get("/api/voice-providers", &key), 200);
    assert_eq!(list["voice_providers"].as_array().unwrap().len(), 2);
    assert!(!list.to_string().contains(&secret[..20]));
    let sealed: String = voice_providers::table
        .filter(voice_providers::id.eq(id))
        .select(voice_providers::key_sealed)
        .first(&mut *s.conn())
        .unwrap();
    assert!(!sealed.contains(&secret[..20]));
    assert_eq!(s.secrets.open(&user_id, &sealed).unwrap(), secret);
    assert_eq!(
        s.delete(&format!("/api/voice-providers/{stt_id}"), &key)
            .status(),
        204
    );
    assert_eq!(features(&key)["hosted_stt"], "byok");
}

fn voice_provider_bodies_are_checked(b: Backend) {
    let s = TestServer::start(b);
    let (_, key) = s.signup("vchecks@example.org");
    for body in [
        json!({}),
        json!({"kind": "tts", "provider": "elevenlabs"}),
        json!({"kind": "music", "provider": "elevenlabs", "api_key": "k"}),
        json!({"kind": "tts", "provider": "acme", "api_key": "k"}),
        json!({"kind": "tts", "provider": "openai", "api_key": ""}),
        json!({"kind": "tts", "provider": "openai", "api_key": "k", "voice": "x"}),
        json!({"kind": "tts", "provider": "openai", "api_key": "k", "enabled": "yes"}),
    ] {
        json(s.post("/api/voice-providers", &key, &body), 422);
    }
    let p = json(
        s.post(
            "/api/voice-providers",
            &key,
            &json!({"kind": "stt", "provider": "openai", "api_key": "sk-0123456789abcd"}),
        ),
        201,
    );
    let id = p["preset_id"].as_str().unwrap();
    let bad = s
        .req(Method::PATCH, &format!("/api/voice-providers/{id}"), &key)
        .json(&json!({"enabled": 1}))
        .send()
        .unwrap();
    json(bad, 422);
}

fn another_users_voice_provider_cannot_be_changed(b: Backend) {
    let s = TestServer::start(b);
    let (_, alice) = s.signup("alice@example.org");
    let (_, bob) = s.signup("bob@example.org");
    let p = json(
        s.post(
            "/api/voice-providers",
            &bob,
            &json!({"kind": "tts", "provider": "cartesia", "api_key": "cartesia-0123456789"}),
        ),
        201,
    );
    let id = p["preset_id"].as_str().unwrap();
    assert_eq!(
        json(s.get("/api/voice-providers", &alice), 200)["voice_providers"],
        json!([])
    );
    let patch = s
        .req(Method::PATCH, &format!("/api/voice-providers/{id}"), &alice)
        .json(&json!({"enabled": false}))
        .send()
        .unwrap();
    json(patch, 404);
    json(s.delete(&format!("/api/voice-providers/{id}"), &alice), 404);
    assert_eq!(
        json(s.get("/api/account", &alice), 200)["features"]["hosted_tts"],
        "byok"
    );
    let still = json(s.get("/api/voice-providers", &bob), 200);
    assert_eq!(still["voice_providers"][0]["enabled"], true);
    assert_eq!(
        json(s.get("/api/account", &bob), 200)["features"]["hosted_tts"],
        "ready"
    );
}

fn configured(c: &mut chamade::Config) {
    c.public_url = Some("https://gw.example.org/".into());
    c.oauth_microsoft_client_id = Some("11111111-2222-3333-4444-555555555555".into());
    c.oauth_google_client_id = Some("1234-abc.apps.googleusercontent.com".into());
    c.oauth_discord_client_id = Some("987654321098765432".into());
    c.slack_client_id = Some("1601185624273.8899143856786".into());
    c.telegram_bot_username = Some("chamade_test_bot".into());
}

fn insert_connection(s: &TestServer, user_id: &str, provider: &str) -> String {
    let id = uuid::Uuid::new_v4().to_string();
    repo::insert_connection(
        &mut s.conn(),
        &models::Connection {
            id: id.clone(),
            user_id: user_id.to_string(),
            provider: provider.to_string(),
            external_id: "U0KRQLJ9H".into(),
            display_name: "Ada".into(),
            created_at: now_ms(),
        },
    )
    .unwrap();
    id
}

fn platforms_list_connections_and_provider_configuration(b: Backend) {
    let s = TestServer::start_with(b, |c| {
        c.oauth_google_client_id = Some("google-client".into());
        c.telegram_bot_username = Some("chamade_test_bot".into());
    });
    let (user_id, key) = s.signup("plat@example.org");
    let empty = json(s.get("/api/platforms", &key), 200);
    assert_eq!(empty["connections"], json!([]));
    let id = insert_connection(&s, &user_id, "slack");
    let p = json(s.get("/api/platforms", &key), 200);
    assert_eq!(p["connections"][0]["connection_id"], id.as_str());
    assert_eq!(p["connections"][0]["provider"], "slack");
    assert_eq!(p["connections"][0]["display_name"], "Ada");
    let providers = p["providers"].as_array().unwrap();
    let names: Vec<&str> = providers
        .iter()
        .map(|p| p["provider"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["microsoft", "google", "discord", "telegram", "slack"]
    );
    let by = |name: &str| providers.iter().find(|p| p["provider"] == name).unwrap();
    assert_eq!(by("google")["configured"], true);
    assert_eq!(by("google")["flow"], "oauth");
    assert_eq!(by("microsoft")["configured"], false);
    assert_eq!(by("telegram")["configured"], true);
    assert_eq!(by("telegram")["flow"], "deeplink");
    assert_eq!(by("slack")["connected"], true);
    assert_eq!(by("slack")["flow"], "install");
    assert_eq!(by("discord")["connected"], false);
    let del = s.delete(&format!("/api/connections/{id}"), &key);
    assert_eq!(del.status(), 204);
    json(s.delete(&format!("/api/connections/{id}"), &key), 404);
    assert_eq!(
        json(s.get("/api/platforms", &key), 200)["connections"],
        json!([])
    );
}

fn another_users_connection_cannot_be_seen_or_deleted(b: Backend) {
    let s = TestServer::start(b);
    let (_, alice) = s.signup("alice@example.org");
    let (bob_id, bob) = s.signup("bob@example.org");
    let id = insert_connection(&s, &bob_id, "discord");
    assert_eq!(
        json(s.get("/api/platforms", &alice), 200)["connections"],
        json!([])
    );
    json(s.delete(&format!("/api/connections/{id}"), &alice), 404);
    let still = json(s.get("/api/platforms", &bob), 200);
    assert_eq!(still["connections"][0]["connection_id"], id.as_str());
}

/// The query parameters of a URL.
fn query(url: &str) -> std::collections::HashMap<String, String> {
    let parsed = reqwest::Url::parse(url).unwrap();
    parsed.query_pairs().into_owned().collect()
}

fn stored_link(s: &TestServer, token: &str) -> models::LinkToken {
    link_tokens::table
        .filter(link_tokens::id.eq(chamade::auth::secrets::hash_token(token)))
        .select(models::LinkToken::as_select())
        .first(&mut *s.conn())
        .unwrap()
}

fn oauth_start_builds_the_real_authorize_url(b: Backend) {
    let s = TestServer::start_with(b, configured);
    let (user_id, key) = s.signup("oauth@example.org");
    for (provider, endpoint, client) in [
        (
            "microsoft",
            "https://login.microsoftonline.com/common/oauth2/v2.0/authorize?",
            "11111111-2222-3333-4444-555555555555",
        ),
        (
            "google",
            "https://accounts.google.com/o/oauth2/v2/auth?",
            "1234-abc.apps.googleusercontent.com",
        ),
        (
            "discord",
            "https://discord.com/oauth2/authorize?",
            "987654321098765432",
        ),
    ] {
        let r = s.post(&format!("/api/oauth/start/{provider}"), &key, &json!({}));
        let url = json(r, 200)["auth_url"].as_str().unwrap().to_string();
        assert!(url.starts_with(endpoint), "{url}");
        let q = query(&url);
        assert_eq!(q["client_id"], client);
        assert_eq!(q["response_type"], "code");
        assert_eq!(
            q["redirect_uri"],
            format!("https://gw.example.org/api/oauth/callback/{provider}")
        );
        assert!(!q["scope"].is_empty());
        let state = &q["state"];
        assert!(state.len() >= 32, "unguessable state");
        let row = stored_link(&s, state);
        assert_eq!(row.user_id, user_id);
        assert_eq!(row.kind, "oauth_state");
        assert_eq!(row.provider.as_deref(), Some(provider));
        assert!(row.used_at.is_none());
    }
    let two = |p: &str| {
        let r = s.post(&format!("/api/oauth/start/{p}"), &key, &json!({}));
        query(json(r, 200)["auth_url"].as_str().unwrap())["state"].clone()
    };
    assert_ne!(two("google"), two("google"));
    for bad in ["myspace", "slack", "telegram"] {
        let r = s.post(&format!("/api/oauth/start/{bad}"), &key, &json!({}));
        assert_eq!(json(r, 400)["code"], "unsupported_provider");
    }
}

fn unconfigured_flows_are_400_naming_the_setting(b: Backend) {
    let s = TestServer::start(b);
    let (_, key) = s.signup("bare@example.org");
    for (path, setting) in [
        ("/api/oauth/start/microsoft", "oauth_microsoft_client_id"),
        ("/api/oauth/start/google", "oauth_google_client_id"),
        ("/api/oauth/start/discord", "oauth_discord_client_id"),
        ("/api/slack/install", "slack_client_id"),
        ("/api/telegram/connect", "telegram_bot_username"),
    ] {
        let v = json(s.post(path, &key, &json!({})), 400);
        assert_eq!(v["code"], "provider_not_configured", "{path}");
        assert!(v["detail"].as_str().unwrap().contains(setting), "{v}");
    }
    let invite = json(s.post("/api/invite-link", &key, &json!({})), 201);
    assert!(invite["telegram_deeplink"].is_null());
}

fn slack_install_and_telegram_connect_give_real_links(b: Backend) {
    let s = TestServer::start_with(b, configured);
    let (user_id, key) = s.signup("links@example.org");
    let url = json(s.post("/api/slack/install", &key, &json!({})), 200)["url"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        url.starts_with("https://slack.com/oauth/v2/authorize?"),
        "{url}"
    );
    let q = query(&url);
    assert_eq!(q["client_id"], "1601185624273.8899143856786");
    assert!(q["scope"].split(',').any(|s| s == "chat:write"), "{url}");
    assert_eq!(
        q["redirect_uri"],
        "https://gw.example.org/api/oauth/callback/slack"
    );
    let row = stored_link(&s, &q["state"]);
    assert_eq!(
        (row.kind.as_str(), row.provider.as_deref()),
        ("oauth_state", Some("slack"))
    );

    let t = json(s.post("/api/telegram/connect", &key, &json!({})), 200);
    let link = t["deeplink"].as_str().unwrap();
    let payload = link
        .strip_prefix("https://t.me/chamade_test_bot?start=")
        .unwrap_or_else(|| panic!("{link}"));
    assert!(payload.starts_with("TGLINK_"));
    assert!(
        (1..=64).contains(&payload.len())
            && payload
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'),
        "Telegram start payloads are 1-64 chars of A-Za-z0-9_-: {payload}"
    );
    let row = stored_link(&s, payload);
    assert_eq!(row.user_id, user_id);
    assert_eq!(row.kind, "telegram_connect");
    assert_eq!(row.expires_at - row.created_at, 15 * 60 * 1000);
}

fn invite_links_are_single_use_tokens_valid_for_15_minutes(b: Backend) {
    let s = TestServer::start_with(b, configured);
    let (user_id, key) = s.signup("invite@example.org");
    let before = now_ms();
    let v = json(s.post("/api/invite-link", &key, &json!({})), 201);
    let token = v["token"].as_str().unwrap();
    assert!(token.starts_with("INVITE_") && token.len() >= 32);
    let expires = chrono::DateTime::parse_from_rfc3339(v["expires_at"].as_str().unwrap())
        .unwrap()
        .timestamp_millis();
    let fifteen = 15 * 60 * 1000;
    assert!(
        (before + fifteen - 1000..=now_ms() + fifteen + 1000).contains(&expires),
        "expires_at is 15 minutes ahead"
    );
    assert_eq!(
        v["telegram_deeplink"],
        format!("https://t.me/chamade_test_bot?start={token}")
    );
    let row = stored_link(&s, token);
    assert_eq!(row.user_id, user_id);
    assert_eq!(row.kind, "invite");
    assert_eq!(row.expires_at - row.created_at, fifteen);
    assert!(row.used_at.is_none(), "unused until redeemed");
    let all = repo::link_tokens_of(&mut s.conn(), &user_id).unwrap();
    assert!(all.iter().all(|t| t.id != token), "only the hash is stored");
    let second = json(s.post("/api/invite-link", &key, &json!({})), 201);
    assert_ne!(second["token"], v["token"]);
}

fn every_settings_route_needs_a_key(b: Backend) {
    let s = TestServer::start_with(b, configured);
    let id = "00000000-0000-0000-0000-000000000000";
    for (m, p) in [
        (Method::GET, "/api/bot-tokens".to_string()),
        (Method::POST, "/api/bot-tokens".into()),
        (Method::DELETE, format!("/api/bot-tokens/{id}")),
        (Method::GET, "/api/platforms".into()),
        (Method::POST, "/api/oauth/start/google".into()),
        (Method::DELETE, format!("/api/connections/{id}")),
        (Method::POST, "/api/telegram/connect".into()),
        (Method::POST, "/api/slack/install".into()),
        (Method::POST, "/api/invite-link".into()),
        (Method::GET, "/api/voice-providers".into()),
        (Method::POST, "/api/voice-providers".into()),
        (Method::PATCH, format!("/api/voice-providers/{id}")),
        (Method::DELETE, format!("/api/voice-providers/{id}")),
        (Method::GET, "/api/sip/trunk".into()),
        (Method::POST, "/api/sip/trunk".into()),
        (Method::DELETE, "/api/sip/trunk".into()),
        (Method::GET, "/api/sip/trunk/dids".into()),
        (Method::POST, "/api/sip/trunk/dids".into()),
        (Method::DELETE, format!("/api/sip/trunk/dids/{id}")),
        (Method::POST, format!("/api/sip/trunk/dids/{id}/settings")),
    ] {
        let r = s
            .client()
            .request(m.clone(), format!("{}{p}", s.url))
            .json(&json!({}))
            .send()
            .unwrap();
        assert_eq!(json(r, 401)["code"], "unauthorized", "{m} {p}");
        // A wrong key is checked against the database while the body is parsed, so a
        // body that does not parse may answer first (422): try the routes without one.
        if m == Method::GET || m == Method::DELETE {
            let wrong = format!("chmd_{}", "A".repeat(43));
            json(s.req(m.clone(), &p, &wrong).send().unwrap(), 401);
        }
    }
}

on_both_backends!(
    bot_tokens_are_sealed_and_never_returned_whole,
    bot_token_bodies_are_checked,
    another_users_bot_token_cannot_be_seen_or_deleted,
    voice_provider_presets_drive_hosted_features,
    voice_provider_bodies_are_checked,
    another_users_voice_provider_cannot_be_changed,
    platforms_list_connections_and_provider_configuration,
    another_users_connection_cannot_be_seen_or_deleted,
    oauth_start_builds_the_real_authorize_url,
    unconfigured_flows_are_400_naming_the_setting,
    slack_install_and_telegram_connect_give_real_links,
    invite_links_are_single_use_tokens_valid_for_15_minutes,
    every_settings_route_needs_a_key,
);
