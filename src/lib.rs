//! chamade: a self-hostable voice and chat gateway for AI agents.
//!
//! This crate holds the configuration and command line, and (as the gateway grows) the
//! HTTP/WebSocket API, persistence and connectors. The real-time audio core lives in
//! `chamade-media` and the live call tree in `chamade-actors`.

pub mod config;

pub use config::{Config, ConfigError, Overrides};

/// The gateway's version, as printed by `chamade --version` and at start.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
