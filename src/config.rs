//! Configuration: defaults, then `chamade.toml`, then `CHAMADE_*` environment variables,
//! then command-line flags. One struct, documented in `docs/CONFIGURATION.md`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// Everything the gateway reads at start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address the HTTP/WebSocket API listens on. Loopback by default so that a first start
    /// exposes nothing to the network.
    pub listen: SocketAddr,
    /// Folder for the embedded database and any other state.
    pub data_dir: PathBuf,
    /// `postgres://…` for a shared PostgreSQL; unset means SQLite inside `data_dir`.
    pub database_url: Option<String>,
    /// Mixer shard threads; 0 means one per core.
    pub mixer_shards: usize,
    /// Whether `GET /metrics` answers (the shards' counters; no user data).
    pub metrics: bool,
    /// Whether `POST /api/signup` creates accounts (turn off on a private server).
    pub signup: bool,
    /// Most concurrent calls per account.
    pub max_concurrent_calls: u32,
    /// Database connections in the pool.
    pub db_pool_size: u32,
    /// The URL people and agents reach this server at (printed at start, used in links);
    /// default `http://<listen>`.
    pub public_url: Option<String>,
    /// Base64 of the 32-byte key that seals bot tokens, SIP passwords and speech keys at
    /// rest; unset means `<data_dir>/secret.key`, made on first start. Set it when several
    /// nodes share one PostgreSQL, so that they all open what any of them sealed.
    pub secret_key: Option<String>,
    /// Microsoft Entra application (client) id for linking Teams accounts.
    pub oauth_microsoft_client_id: Option<String>,
    /// Google OAuth client id for linking Meet accounts.
    pub oauth_google_client_id: Option<String>,
    /// Discord application id for linking Discord accounts.
    pub oauth_discord_client_id: Option<String>,
    /// Slack app client id for `POST /api/slack/install`.
    pub slack_client_id: Option<String>,
    /// Username of the shared Telegram bot for `POST /api/telegram/connect` (without `@`).
    pub telegram_bot_username: Option<String>,
    /// UDP address of the SIP user agent that registers to users' trunks and takes their
    /// calls; port 0 picks a free one. Unset: port 5060 on the API's IP, so that a server
    /// kept on loopback exposes nothing. A port that cannot be bound turns SIP off with an
    /// error in the log rather than stopping the server.
    pub sip_listen: Option<SocketAddr>,
    /// Whether the SIP user agent runs at all.
    pub sip_enabled: bool,
    /// The address put in SIP Contact headers and SDP, when the one the trunk can reach
    /// differs from the local one (behind NAT); unset means the local address on the route
    /// to the trunk.
    pub sip_public_ip: Option<std::net::IpAddr>,
    /// Seconds an unanswered inbound call rings before it becomes `missed`.
    pub sip_ring_timeout_secs: u64,
    /// Seconds without RTP from the phone after which a call is taken for dead and ended.
    pub rtp_timeout_secs: u64,
    /// Lowest UDP port for phone calls' RTP (and RTCP on the next port), for firewalls;
    /// unset with `rtp_port_max` means any free port.
    pub rtp_port_min: Option<u16>,
    /// Highest UDP port for phone calls' RTP.
    pub rtp_port_max: Option<u16>,
    /// REGISTER expiry asked of trunks, in seconds; the binding is refreshed before it.
    pub sip_register_expiry_secs: u64,
    /// The address WebRTC legs' UDP sockets bind to; unset means the API's IP (a server on
    /// 0.0.0.0 binds every interface).
    pub webrtc_bind_ip: Option<std::net::IpAddr>,
    /// Public addresses announced in WebRTC host candidates instead of the local one, for a
    /// server behind 1:1 NAT (a cloud VM's public IP).
    pub webrtc_public_ips: Vec<std::net::IpAddr>,
    /// Lowest UDP port for WebRTC legs (one port per browser or WHIP client); unset with
    /// `webrtc_port_max` means any free port.
    pub webrtc_port_min: Option<u16>,
    /// Highest UDP port for WebRTC legs.
    pub webrtc_port_max: Option<u16>,
    /// STUN/TURN servers handed to browsers on the join page, as a JSON array of
    /// `{"urls":[…],"username":…,"credential":…}` in the file or environment.
    pub webrtc_ice_servers: Vec<chamade_actors::bridge::webrtc::IceServer>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("./data"),
            database_url: None,
            mixer_shards: 0,
            signup: true,
            metrics: true,
            max_concurrent_calls: 10,
            db_pool_size: 8,
            public_url: None,
            secret_key: None,
            oauth_microsoft_client_id: None,
            oauth_google_client_id: None,
            oauth_discord_client_id: None,
            slack_client_id: None,
            telegram_bot_username: None,
            sip_listen: None,
            sip_enabled: true,
            sip_public_ip: None,
            sip_ring_timeout_secs: 60,
            rtp_timeout_secs: 30,
            sip_register_expiry_secs: 300,
            rtp_port_min: None,
            rtp_port_max: None,
            webrtc_bind_ip: None,
            webrtc_public_ips: Vec::new(),
            webrtc_port_min: None,
            webrtc_port_max: None,
            webrtc_ice_servers: Vec::new(),
        }
    }
}

/// Why the configuration could not be read.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(#[from] Box<figment::Error>);

impl Config {
    /// Reads the layered configuration. `file` is read when it exists; a missing default
    /// file is not an error, a missing explicitly named one is.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigError> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        match file {
            Some(path) => fig = fig.merge(Toml::file_exact(path)),
            None => fig = fig.merge(Toml::file("chamade.toml")),
        }
        // Only variables that name a setting: others (CHAMADE_URL of MCP clients, test
        // settings) share the prefix and must not stop the server.
        let keys: Vec<String> = serde_json::to_value(Config::default())
            .ok()
            .and_then(|v| v.as_object().map(|o| o.keys().cloned().collect()))
            .unwrap_or_default();
        fig = fig
            .merge(Env::prefixed("CHAMADE_").filter(move |k| keys.iter().any(|f| k == f.as_str())))
            .merge(Env::raw().only(&["DATABASE_URL"]))
            .merge(Serialized::defaults(overrides));
        fig.extract().map_err(|e| ConfigError(Box::new(e)))
    }

    /// The database the gateway will use, as a human-readable string (no password).
    pub fn database_display(&self) -> String {
        match &self.database_url {
            Some(url) => redact_password(url),
            None => format!("sqlite:{}", self.data_dir.join("chamade.db").display()),
        }
    }

    /// The database URL after resolving the embedded default (creates the data folder).
    pub fn database_url(&self) -> Result<String, crate::db::DbError> {
        match &self.database_url {
            Some(url) => Ok(url.clone()),
            None => crate::db::sqlite_url_in(&self.data_dir),
        }
    }

    /// The base URL to show people.
    pub fn public_url(&self) -> String {
        self.public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.listen))
            .trim_end_matches('/')
            .to_string()
    }

    /// The SIP address after resolving the default (5060 on the API's IP).
    pub fn effective_sip_listen(&self) -> SocketAddr {
        self.sip_listen
            .unwrap_or_else(|| SocketAddr::new(self.listen.ip(), 5060))
    }

    /// The RTP port range when both ends are set and in order.
    pub fn rtp_port_range(&self) -> Option<(u16, u16)> {
        match (self.rtp_port_min, self.rtp_port_max) {
            (Some(lo), Some(hi)) if lo < hi => Some((lo, hi)),
            _ => None,
        }
    }

    /// Where WebRTC legs listen and what they announce.
    pub fn webrtc_settings(&self) -> chamade_actors::bridge::webrtc::WebRtcSettings {
        let ports = match (self.webrtc_port_min, self.webrtc_port_max) {
            (Some(lo), Some(hi)) if lo <= hi => Some((lo, hi)),
            _ => None,
        };
        chamade_actors::bridge::webrtc::WebRtcSettings {
            bind_ip: self.webrtc_bind_ip.unwrap_or_else(|| self.listen.ip()),
            public_ips: self.webrtc_public_ips.clone(),
            ports,
            ice_servers: self.webrtc_ice_servers.clone(),
        }
    }

    /// Mixer shard threads after resolving "one per core".
    pub fn effective_mixer_shards(&self) -> usize {
        if self.mixer_shards > 0 {
            return self.mixer_shards;
        }
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }
}

/// Values given as command-line flags: only the ones present override the layers below.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Overrides {
    /// `--listen`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    /// `--data-dir`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// `--database-url`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
    /// `--mixer-shards`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mixer_shards: Option<usize>,
}

fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let Some((creds, host)) = rest.rsplit_once('@') else {
        return url.to_string();
    };
    match creds.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_string(),
    }
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail's closure signature is fixed.
mod tests {
    use super::*;

    #[test]
    fn defaults_are_loopback_and_sqlite() {
        let c = Config::default();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert!(c.database_display().starts_with("sqlite:"));
    }

    #[test]
    fn passwords_are_not_displayed() {
        assert_eq!(
            redact_password("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact_password("postgres://h/db"), "postgres://h/db");
    }

    #[test]
    fn layers_apply_in_order() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "chamade.toml",
                "listen = \"127.0.0.1:9000\"\nmixer_shards = 3",
            )?;
            jail.set_env("CHAMADE_MIXER_SHARDS", "5");
            jail.set_env("CHAMADE_URL", "https://elsewhere.example");
            jail.set_env("CHAMADE_TEST_POSTGRES_URL", "postgres://x/y");
            let c = Config::load(None, &Overrides::default()).map_err(|e| e.to_string())?;
            assert_eq!(c.listen.port(), 9000);
            assert_eq!(c.mixer_shards, 5);
            let flags = Overrides {
                mixer_shards: Some(7),
                ..Overrides::default()
            };
            let c = Config::load(None, &flags).map_err(|e| e.to_string())?;
            assert_eq!(c.mixer_shards, 7);
            jail.set_env(
                "CHAMADE_SECRET_KEY",
                "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
            );
            jail.set_env("CHAMADE_TELEGRAM_BOT_USERNAME", "chamade_bot");
            let c = Config::load(None, &flags).map_err(|e| e.to_string())?;
            assert_eq!(
                c.secret_key.as_deref(),
                Some("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=")
            );
            assert_eq!(c.telegram_bot_username.as_deref(), Some("chamade_bot"));
            Ok(())
        });
    }

    #[test]
    fn webrtc_settings_come_from_the_file_and_the_environment() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "chamade.toml",
                "listen = \"0.0.0.0:8080\"\nwebrtc_port_min = 40000\nwebrtc_port_max = 40099\n\
                 webrtc_ice_servers = [{urls = [\"turn:turn.example.org:3478\"], username = \"u\", credential = \"p\"}]",
            )?;
            jail.set_env("CHAMADE_WEBRTC_PUBLIC_IPS", "[\"203.0.113.5\"]");
            let c = Config::load(None, &Overrides::default()).map_err(|e| e.to_string())?;
            let w = c.webrtc_settings();
            assert_eq!(w.bind_ip.to_string(), "0.0.0.0");
            assert_eq!(w.ports, Some((40000, 40099)));
            assert_eq!(
                w.public_ips,
                vec!["203.0.113.5".parse::<std::net::IpAddr>().unwrap()]
            );
            assert_eq!(w.ice_servers.len(), 1);
            assert_eq!(w.ice_servers[0].username, "u");
            jail.set_env("CHAMADE_WEBRTC_PUBLIC_IPS", "[\"not-an-ip\"]");
            assert!(Config::load(None, &Overrides::default()).is_err());
            Ok(())
        });
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("chamade.toml", "lisen = \"127.0.0.1:9000\"")?;
            assert!(Config::load(None, &Overrides::default()).is_err());
            jail.create_file("chamade.toml", "listen = \"not an address\"")?;
            assert!(Config::load(None, &Overrides::default()).is_err());
            Ok(())
        });
    }
}
