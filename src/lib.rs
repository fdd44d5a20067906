//! chamade: a self-hostable voice and chat gateway for AI agents.
//!
//! This crate holds the configuration and command line, the HTTP API (`api`), credentials
//! (`auth`) and persistence (`db`). The real-time audio core lives in `chamade-media` and
//! the live call tree in `chamade-actors`.

pub mod api;
pub mod auth;
pub mod cli;
pub mod config;
pub mod db;
pub mod error;
pub mod hub;
pub mod linking;
pub mod media_plane;
pub mod metrics;
pub mod platforms;
pub mod rtp_leg;
pub mod server;
pub mod sip;
pub mod state;
pub mod ws;

pub use config::{Config, ConfigError, Overrides};

/// The gateway's version, as printed by `chamade --version` and at start.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
