//! What the RTP and WebRTC load drivers compute the same way: their reproducible noise,
//! nearest-rank percentiles (the rule of `ab_bench.py`, so figures compare with Janus's),
//! and the shard counters of a `GET /metrics` page. Included with `#[path]`.

use std::collections::HashMap;

/// xorshift64*: a fixed, reproducible noise source.
pub struct Noise(pub u64);

impl Noise {
    /// The next value, uniform in [-1, 1).
    pub fn next_unit(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let v = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D);
        (v >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    }
}

/// Nearest-rank percentile of sorted values.
pub fn pct(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let k = (q / 100.0 * (sorted.len() - 1) as f64).round() as usize;
    Some(sorted[k.min(sorted.len() - 1)])
}

/// A sorted copy.
pub fn sorted(v: &[f64]) -> Vec<f64> {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s
}

/// The shard counters of a `/metrics` page, summed over shards (the longest tick is the
/// largest of theirs).
pub fn shard_counters(metrics: &str) -> HashMap<String, f64> {
    const WANTED: [&str; 7] = [
        "chamade_shard_ticks_total",
        "chamade_shard_deadline_misses_total",
        "chamade_shard_skipped_ticks_total",
        "chamade_shard_rejected_commands_total",
        "chamade_shard_tick_duration_max_us",
        "chamade_shard_participants",
        "chamade_shard_rooms",
    ];
    let mut sums = HashMap::new();
    for line in metrics.lines() {
        if line.starts_with('#') {
            continue;
        }
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let name = series.split('{').next().unwrap_or(series);
        if WANTED.contains(&name)
            && let Ok(v) = value.trim().parse::<f64>()
        {
            let e = sums.entry(name.to_string()).or_insert(0.0);
            if name.ends_with("max_us") {
                *e = f64::max(*e, v);
            } else {
                *e += v;
            }
        }
    }
    sums
}
