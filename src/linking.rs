//! How platform accounts get linked to a chamade account: the providers, the flow each one
//! uses (OAuth, Slack install, Telegram deep link), their real authorize URLs, and the kinds
//! of short-lived link token the flows hand out.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::config::Config;

/// A platform whose accounts can be linked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// Teams, through Microsoft Entra OAuth.
    Microsoft,
    /// Meet, through Google OAuth.
    Google,
    /// Discord OAuth.
    Discord,
    /// Telegram, through a deep link to the shared bot.
    Telegram,
    /// Slack, by installing the app in a workspace.
    Slack,
}

/// How a provider's accounts are linked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Flow {
    /// `POST /api/oauth/start/{provider}`.
    Oauth,
    /// `POST /api/slack/install`.
    Install,
    /// `POST /api/telegram/connect`.
    Deeplink,
}

impl Provider {
    /// Every provider, in the order `GET /api/platforms` lists them.
    pub const ALL: [Provider; 5] = [
        Provider::Microsoft,
        Provider::Google,
        Provider::Discord,
        Provider::Telegram,
        Provider::Slack,
    ];

    /// The API and database name.
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Microsoft => "microsoft",
            Provider::Google => "google",
            Provider::Discord => "discord",
            Provider::Telegram => "telegram",
            Provider::Slack => "slack",
        }
    }

    /// The provider of an API or database name.
    pub fn parse(name: &str) -> Option<Provider> {
        Provider::ALL.into_iter().find(|p| p.as_str() == name)
    }

    /// Which route links it.
    pub fn flow(self) -> Flow {
        match self {
            Provider::Microsoft | Provider::Google | Provider::Discord => Flow::Oauth,
            Provider::Slack => Flow::Install,
            Provider::Telegram => Flow::Deeplink,
        }
    }

    /// What the configuration must hold for the flow to work: the OAuth client id, the
    /// Slack client id, or the Telegram bot's username. None when unset or blank.
    pub fn client_id(self, config: &Config) -> Option<&str> {
        let value = match self {
            Provider::Microsoft => &config.oauth_microsoft_client_id,
            Provider::Google => &config.oauth_google_client_id,
            Provider::Discord => &config.oauth_discord_client_id,
            Provider::Slack => &config.slack_client_id,
            Provider::Telegram => &config.telegram_bot_username,
        };
        value
            .as_deref()
            .map(|v| v.trim().trim_start_matches('@'))
            .filter(|v| !v.is_empty())
    }

    /// The configuration key naming [`Provider::client_id`], for error messages.
    pub fn config_key(self) -> &'static str {
        match self {
            Provider::Microsoft => "oauth_microsoft_client_id",
            Provider::Google => "oauth_google_client_id",
            Provider::Discord => "oauth_discord_client_id",
            Provider::Slack => "slack_client_id",
            Provider::Telegram => "telegram_bot_username",
        }
    }
}

/// Where a provider sends the browser back: `<public_url>/api/oauth/callback/<provider>`.
pub fn redirect_uri(public_url: &str, provider: Provider) -> String {
    format!("{public_url}/api/oauth/callback/{}", provider.as_str())
}

/// Bot scopes of the Slack app (the product's BYOB list).
pub const SLACK_BOT_SCOPES: &str = "chat:write,im:history,im:read,channels:history,channels:read,groups:history,groups:read,users:read,files:read,files:write";

/// The provider's authorize URL for an authorization-code flow with `state`; None for
/// Telegram, which links through a deep link instead.
pub fn authorize_url(
    provider: Provider,
    client_id: &str,
    redirect_uri: &str,
    state: &str,
) -> Option<String> {
    let (endpoint, extra): (&str, &[(&str, &str)]) = match provider {
        Provider::Microsoft => (
            "https://login.microsoftonline.com/common/oauth2/v2.0/authorize",
            &[
                ("response_type", "code"),
                ("response_mode", "query"),
                ("scope", "openid profile email offline_access User.Read"),
            ],
        ),
        Provider::Google => (
            "https://accounts.google.com/o/oauth2/v2/auth",
            &[
                ("response_type", "code"),
                ("scope", "openid email profile"),
                ("access_type", "offline"),
                ("prompt", "consent"),
            ],
        ),
        Provider::Discord => (
            "https://discord.com/oauth2/authorize",
            &[("response_type", "code"), ("scope", "identify")],
        ),
        Provider::Slack => (
            "https://slack.com/oauth/v2/authorize",
            &[("scope", SLACK_BOT_SCOPES)],
        ),
        Provider::Telegram => return None,
    };
    let mut query = form_urlencoded::Serializer::new(String::new());
    query.append_pair("client_id", client_id);
    query.append_pair("redirect_uri", redirect_uri);
    query.extend_pairs(extra);
    query.append_pair("state", state);
    Some(format!("{endpoint}?{}", query.finish()))
}

/// What a link token is for (stored in `link_tokens.kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkKind {
    /// A single-use invite for WhatsApp/Telegram messaging.
    Invite,
    /// The `/start` payload of a Telegram deep link.
    TelegramConnect,
    /// The `state` of an OAuth or Slack install flow.
    OauthState,
}

impl LinkKind {
    /// The database name.
    pub fn as_str(self) -> &'static str {
        match self {
            LinkKind::Invite => "invite",
            LinkKind::TelegramConnect => "telegram_connect",
            LinkKind::OauthState => "oauth_state",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorize_urls_carry_every_parameter_encoded() {
        let url = authorize_url(
            Provider::Microsoft,
            "app id",
            "https://gw.example.org/api/oauth/callback/microsoft",
            "st&te",
        )
        .unwrap();
        assert!(url.starts_with("https://login.microsoftonline.com/common/oauth2/v2.0/authorize?"));
        assert!(url.contains("client_id=app+id"));
        assert!(url.contains(
            "redirect_uri=https%3A%2F%2Fgw.example.org%2Fapi%2Foauth%2Fcallback%2Fmicrosoft"
        ));
        assert!(url.contains("response_type=code"));
        assert!(url.contains("state=st%26te"));
        let slack = authorize_url(Provider::Slack, "1.2", "https://x/cb", "s").unwrap();
        assert!(slack.starts_with("https://slack.com/oauth/v2/authorize?client_id=1.2"));
        assert!(slack.contains("scope=chat%3Awrite%2Cim%3Ahistory"));
        assert!(authorize_url(Provider::Telegram, "bot", "https://x/cb", "s").is_none());
    }

    #[test]
    fn names_round_trip_and_blank_ids_are_unset() {
        for p in Provider::ALL {
            assert_eq!(Provider::parse(p.as_str()), Some(p));
        }
        assert_eq!(Provider::parse("myspace"), None);
        let config = Config {
            oauth_google_client_id: Some("  ".into()),
            telegram_bot_username: Some("@chamade_bot".into()),
            ..Config::default()
        };
        assert_eq!(Provider::Google.client_id(&config), None);
        assert_eq!(Provider::Telegram.client_id(&config), Some("chamade_bot"));
    }
}
