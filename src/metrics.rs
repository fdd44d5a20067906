//! `GET /metrics`: the mixer shards' counters in the Prometheus text format, for operators
//! and for the load driver (deadline misses, tick durations). It carries no user data, so it
//! needs no key; turn it off with `metrics = false`.

use std::fmt::Write as _;

use actix_web::{HttpResponse, web};
use chamade_actors::shard::{ShardSnapshot, TICK_BUCKET_BOUNDS_US};

use crate::media_plane::MediaPlane;
use crate::state::AppState;

/// Renders every shard's counters.
pub fn render(shards: &[ShardSnapshot]) -> String {
    let mut out = String::new();
    let counter = |out: &mut String,
                   name: &str,
                   help: &str,
                   kind: &str,
                   f: &dyn Fn(&ShardSnapshot) -> u64| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (i, s) in shards.iter().enumerate() {
            let _ = writeln!(out, "{name}{{shard=\"{i}\"}} {}", f(s));
        }
    };
    counter(
        &mut out,
        "chamade_shard_ticks_total",
        "Mixer ticks run.",
        "counter",
        &|s| s.ticks,
    );
    counter(
        &mut out,
        "chamade_shard_deadline_misses_total",
        "Ticks whose 20 ms period had passed before the shard woke to run them.",
        "counter",
        &|s| s.deadline_misses,
    );
    counter(
        &mut out,
        "chamade_shard_skipped_ticks_total",
        "Ticks given up after a long stall (lost audio time).",
        "counter",
        &|s| s.skipped_ticks,
    );
    counter(
        &mut out,
        "chamade_shard_rooms",
        "Rooms mixed by the shard.",
        "gauge",
        &|s| s.rooms,
    );
    counter(
        &mut out,
        "chamade_shard_participants",
        "Participants mixed by the shard.",
        "gauge",
        &|s| s.participants,
    );
    counter(
        &mut out,
        "chamade_shard_rejected_commands_total",
        "Control commands the shard could not apply.",
        "counter",
        &|s| s.rejected_commands,
    );
    counter(
        &mut out,
        "chamade_shard_shared_resamples_total",
        "Shared-mix frames resampled (once per room, listener rate and tick).",
        "counter",
        &|s| s.shared_resamples,
    );
    counter(
        &mut out,
        "chamade_shard_private_resamples_total",
        "Private mix-minus frames resampled.",
        "counter",
        &|s| s.private_resamples,
    );
    counter(
        &mut out,
        "chamade_shard_tick_duration_max_us",
        "Longest tick measured, in microseconds.",
        "gauge",
        &|s| s.max_tick_us,
    );
    let name = "chamade_shard_tick_duration_us";
    let _ = writeln!(out, "# HELP {name} Tick durations, in microseconds.");
    let _ = writeln!(out, "# TYPE {name} histogram");
    for (i, s) in shards.iter().enumerate() {
        let mut cumulative = 0;
        for (b, count) in s.tick_us.iter().enumerate() {
            cumulative += count;
            let le = TICK_BUCKET_BOUNDS_US
                .get(b)
                .map_or_else(|| "+Inf".to_string(), |v| v.to_string());
            let _ = writeln!(
                out,
                "{name}_bucket{{shard=\"{i}\",le=\"{le}\"}} {cumulative}"
            );
        }
        let _ = writeln!(out, "{name}_count{{shard=\"{i}\"}} {cumulative}");
    }
    out
}

/// The endpoint.
pub async fn metrics(state: web::Data<AppState>, media: web::Data<MediaPlane>) -> HttpResponse {
    if !state.config.metrics {
        return actix_web::ResponseError::error_response(&crate::error::ApiError::NotFound(
            "metrics are disabled on this server".into(),
        ));
    }
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(render(&media.stats()))
}
