//! The live call tree of chamade: the registry of calls, one room actor per call, one
//! participant actor per leg, the mixer shard threads that tick every 20 ms, and the
//! platform bridges.
//!
//! The call tree is built on `chamade-media`; this crate grows with the call API. Built so
//! far: the mixer shards ([`shard`]: the engine, its thread and pool, and the tick order)
//! and the one decision every shard and room shares, the mixing rate of each platform.
#![deny(missing_docs)]

pub mod bridge;
pub mod ids;
pub mod shard;

pub mod registry;
pub mod room;

use chamade_media::SampleRate;

/// The native mixing rate of a platform, from the product's audio table: a room mixes at
/// its platform's rate so that the platform leg never resamples, and each participant is
/// resampled to and from its own declared rate instead.
pub fn native_rate(platform: &str) -> Option<SampleRate> {
    match platform {
        "discord" | "meet" | "nctalk" | "web" => Some(SampleRate::HZ_48000),
        "teams" | "zoom" | "telegram" => Some(SampleRate::HZ_16000),
        "sip" => Some(SampleRate::HZ_8000),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platform_rates_follow_the_audio_table() {
        assert_eq!(native_rate("discord"), Some(SampleRate::HZ_48000));
        assert_eq!(native_rate("web"), Some(SampleRate::HZ_48000));
        assert_eq!(native_rate("teams"), Some(SampleRate::HZ_16000));
        assert_eq!(native_rate("sip"), Some(SampleRate::HZ_8000));
        assert_eq!(native_rate("myspace"), None);
    }
}
