use proptest::prelude::*;

use super::*;
use crate::{Frame, SampleRate};

fn fixed(depth: u32) -> JitterBuffer<u32> {
    let config = JitterConfig::fixed(FrameCount::new(depth), JitterConfig::DEFAULT_MAX_DEPTH)
        .expect("valid depth");
    JitterBuffer::new(config)
}

fn adaptive(min: u32, max: u32) -> JitterBuffer<u32> {
    let config =
        JitterConfig::adaptive(FrameCount::new(min), FrameCount::new(max)).expect("valid depths");
    JitterBuffer::new(config)
}

/// The RTP sequence number of the `k`-th packet of a stream starting at `start`.
fn seq(start: u16, k: u32) -> u16 {
    start.wrapping_add(k as u16)
}

/// Pushes `arrivals[t]` (packet indices) before pop `t`, payload = packet index, then pops
/// `extra` more ticks; returns every playout.
fn run(
    jitter: &mut JitterBuffer<u32>,
    start: u16,
    arrivals: &[Vec<u32>],
    extra: usize,
) -> Vec<Playout<u32>> {
    let mut out = Vec::new();
    for tick in arrivals {
        for &k in tick {
            jitter.push(seq(start, k), k);
        }
        out.push(jitter.pop());
    }
    for _ in 0..extra {
        out.push(jitter.pop());
    }
    out
}

/// Packet `k` arrives at tick `arrival(k)`, for `count` packets.
fn schedule(count: u32, mut arrival: impl FnMut(u32) -> usize) -> Vec<Vec<u32>> {
    let mut ticks: Vec<Vec<u32>> = Vec::new();
    for k in 0..count {
        let t = arrival(k);
        if ticks.len() <= t {
            ticks.resize(t + 1, Vec::new());
        }
        ticks[t].push(k);
    }
    ticks
}

fn packets(out: &[Playout<u32>]) -> Vec<u32> {
    out.iter()
        .filter_map(|p| match p {
            Playout::Packet(k) => Some(*k),
            _ => None,
        })
        .collect()
}

fn count_lost(out: &[Playout<u32>]) -> usize {
    out.iter().filter(|p| **p == Playout::Lost).count()
}

/// Small deterministic generator, so the network simulations need no extra dependency.
struct XorShift(u64);

impl XorShift {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[test]
fn in_order_stream_plays_every_packet_after_the_depth() {
    let mut jitter = fixed(2);
    let out = run(&mut jitter, 1_000, &schedule(100, |k| k as usize), 1);
    assert_eq!(
        out[0],
        Playout::Buffering,
        "40 ms depth waits for a second frame"
    );
    assert_eq!(out[1], Playout::Packet(0));
    assert_eq!(packets(&out), (0..100).collect::<Vec<_>>());
    let stats = jitter.stats();
    assert_eq!((stats.received, stats.played, stats.lost), (100, 100, 0));
    assert_eq!(
        (stats.late, stats.duplicates, stats.trimmed, stats.stalled),
        (0, 0, 0, 0)
    );
}

#[test]
fn depth_of_one_frame_plays_the_first_packet_immediately() {
    let mut jitter = fixed(1);
    jitter.push(5, 5);
    assert_eq!(jitter.pop(), Playout::Packet(5));
}

#[test]
fn reordered_packets_within_depth_play_in_order() {
    let mut jitter = fixed(3);
    // Every odd packet two ticks late, so it arrives after its successor: within 60 ms.
    let arrival = |k: u32| -> usize { k as usize + if k % 2 == 1 { 2 } else { 0 } };
    let mut ticks = schedule(200, arrival);
    for tick in &mut ticks {
        tick.reverse();
    }
    let out = run(&mut jitter, 40_000, &ticks, 0);
    assert_eq!(packets(&out), (0..200).collect::<Vec<_>>());
    assert_eq!(out[2], Playout::Packet(0), "60 ms after the first packet");
    let stats = jitter.stats();
    assert_eq!(
        (stats.lost, stats.late, stats.trimmed, stats.stalled),
        (0, 0, 0, 0)
    );
}

#[test]
fn each_missing_packet_is_reported_lost_exactly_once() {
    let mut jitter = fixed(2);
    let missing = [5, 9, 23, 40];
    let mut ticks = schedule(60, |k| k as usize);
    for tick in &mut ticks {
        tick.retain(|k| !missing.contains(k));
    }
    let out = run(&mut jitter, 7, &ticks, 2);
    let expected: Vec<u32> = (0..60).filter(|k| !missing.contains(k)).collect();
    assert_eq!(packets(&out), expected);
    assert_eq!(count_lost(&out), missing.len());
    assert_eq!(jitter.stats().lost, missing.len() as u64);
    // Each loss sits exactly where the missing packet would have played.
    let sequence: Vec<Option<u32>> = out
        .iter()
        .filter_map(|p| match p {
            Playout::Packet(k) => Some(Some(*k)),
            Playout::Lost => Some(None),
            Playout::Buffering => None,
        })
        .collect();
    for m in missing {
        assert_eq!(sequence[m as usize], None);
    }
}

#[test]
fn losses_longer_than_the_depth_keep_the_timing() {
    let mut jitter = fixed(2);
    // Three in a row: more than the 40 ms look-ahead can see past, so the buffer runs dry
    // and restarts at the next packet, which still plays exactly when it was due.
    let missing = [9, 10, 11];
    let mut ticks = schedule(30, |k| k as usize);
    for tick in &mut ticks {
        tick.retain(|k| !missing.contains(k));
    }
    let out = run(&mut jitter, 0, &ticks, 0);
    // Packet k plays at tick k + 1 at this depth, gap or no gap.
    assert_eq!(out[8], Playout::Packet(7));
    assert_eq!(out[13], Playout::Packet(12));
    assert_eq!(out[14], Playout::Packet(13));
    let expected: Vec<u32> = (0..29).filter(|k| !missing.contains(k)).collect();
    assert_eq!(packets(&out), expected);
    let stats = jitter.stats();
    assert_eq!(stats.lost, 3);
    assert_eq!(stats.underruns, 1);
}

#[test]
fn duplicates_are_dropped_and_counted() {
    let mut jitter = fixed(2);
    assert_eq!(jitter.push(100, 0), PushOutcome::Accepted);
    assert_eq!(
        jitter.push(100, 99),
        PushOutcome::Duplicate,
        "still buffered"
    );
    assert_eq!(jitter.pop(), Playout::Buffering);
    jitter.push(101, 1);
    assert_eq!(
        jitter.pop(),
        Playout::Packet(0),
        "the first copy is the one kept"
    );
    assert_eq!(
        jitter.push(100, 99),
        PushOutcome::Duplicate,
        "already played"
    );
    assert_eq!(
        jitter.push(101, 99),
        PushOutcome::Duplicate,
        "still buffered"
    );
    jitter.push(102, 2);
    assert_eq!(jitter.pop(), Playout::Packet(1));
    assert_eq!(jitter.pop(), Playout::Packet(2));
    let stats = jitter.stats();
    assert_eq!(stats.duplicates, 3);
    assert_eq!(stats.played, 3);
    assert_eq!(stats.late, 0);
}

#[test]
fn packet_arriving_after_its_slot_is_dropped_as_late() {
    let mut jitter = fixed(2);
    // Packet 10 arrives four ticks late, long after its 40 ms allowance.
    let mut ticks = schedule(20, |k| k as usize);
    ticks[10].retain(|&k| k != 10);
    ticks[14].push(10);
    let out = run(&mut jitter, 0, &ticks, 2);
    assert_eq!(count_lost(&out), 1);
    assert!(!packets(&out).contains(&10));
    let stats = jitter.stats();
    assert_eq!((stats.late, stats.lost, stats.duplicates), (1, 1, 0));
}

#[test]
fn late_packet_is_refused_with_too_late() {
    let mut jitter = fixed(1);
    jitter.push(1, 1);
    assert_eq!(jitter.pop(), Playout::Packet(1));
    jitter.push(3, 3);
    assert_eq!(jitter.pop(), Playout::Lost);
    assert_eq!(jitter.push(2, 2), PushOutcome::TooLate);
}

#[test]
fn sequence_wraps_from_65535_to_0_seamlessly() {
    let mut jitter = fixed(2);
    // Starts at 65530; 65535 and 0 arrive swapped across the wrap.
    let arrival = |k: u32| -> usize {
        match k {
            5 => 6,
            6 => 5,
            _ => k as usize,
        }
    };
    let out = run(&mut jitter, 65_530, &schedule(20, arrival), 2);
    assert_eq!(packets(&out), (0..20).collect::<Vec<_>>());
    assert_eq!(count_lost(&out), 0);
    let stats = jitter.stats();
    assert_eq!((stats.late, stats.out_of_window, stats.resyncs), (0, 0, 0));
}

#[test]
fn burst_after_a_stall_keeps_every_packet_that_fits() {
    let mut jitter = fixed(2);
    // Nothing for five ticks, then the six delayed packets at once.
    let arrival = |k: u32| -> usize {
        if (20..26).contains(&k) {
            25
        } else {
            k as usize
        }
    };
    let out = run(&mut jitter, 500, &schedule(400, arrival), 10);
    let played = packets(&out);
    for k in 20..26 {
        assert!(played.contains(&k), "burst packet {k} played");
    }
    assert!(played.windows(2).all(|w| w[0] < w[1]), "in order");
    let stats = jitter.stats();
    assert_eq!((stats.lost, stats.late, stats.overruns), (0, 0, 0));
    assert_eq!(stats.underruns, 2, "the stall and the end of the stream");
    // The extra latency the stall left behind is trimmed away, one frame per second.
    assert!(stats.trimmed <= 5, "trimmed {}", stats.trimmed);
    assert_eq!(played.len() as u64 + stats.trimmed, 400);
}

#[test]
fn latency_after_a_burst_returns_to_the_target() {
    let mut jitter = fixed(2);
    let arrival = |k: u32| -> usize {
        if (20..26).contains(&k) {
            25
        } else {
            k as usize
        }
    };
    let ticks = schedule(600, arrival);
    let mut levels = Vec::new();
    for (t, tick) in ticks.iter().enumerate() {
        for &k in tick {
            jitter.push(seq(0, k), k);
        }
        levels.push((t, jitter.level().get()));
        jitter.pop();
    }
    assert!(
        levels.iter().any(|&(_, l)| l >= 6),
        "the burst raised the level"
    );
    assert!(
        levels[400..].iter().all(|&(_, l)| l == 2),
        "back at 40 ms: {:?}",
        &levels[400..410]
    );
}

/// Packets sent at `packets_per_100_ticks` per 100 ticks of the receiver's clock.
fn drifting(packets_per_100_ticks: u64, ticks: usize) -> Vec<Vec<u32>> {
    let count = (ticks as u64 * packets_per_100_ticks / 100) as u32;
    schedule(count, |k| {
        (u64::from(k) * 100 / packets_per_100_ticks) as usize
    })
}

#[test]
fn fast_sender_clock_is_trimmed_and_latency_stays_bounded() {
    let mut jitter = fixed(2);
    let ticks = drifting(101, 10_000);
    let mut max_level = 0;
    for tick in &ticks {
        for &k in tick {
            jitter.push(seq(9, k), k);
        }
        max_level = max_level.max(jitter.level().get());
        jitter.pop();
    }
    let stats = jitter.stats();
    // 1 % of 10,000 ticks is 100 surplus frames.
    assert!(
        (80..=120).contains(&stats.trimmed),
        "trimmed {}",
        stats.trimmed
    );
    assert!(max_level <= 4, "level reached {max_level}");
    assert_eq!(
        (stats.lost, stats.late, stats.underruns, stats.overruns),
        (0, 0, 0, 0)
    );
}

#[test]
fn slow_sender_clock_is_absorbed_by_rebuffering() {
    let mut jitter = fixed(2);
    let ticks = drifting(99, 10_000);
    let mut max_level = 0;
    for tick in &ticks {
        for &k in tick {
            jitter.push(seq(9, k), k);
        }
        max_level = max_level.max(jitter.level().get());
        jitter.pop();
    }
    let stats = jitter.stats();
    // 1 % of 10,000 ticks is 100 missing frames, inserted as stalls.
    assert!(
        (80..=120).contains(&stats.stalled),
        "stalled {}",
        stats.stalled
    );
    assert!(stats.underruns <= 100, "underruns {}", stats.underruns);
    assert!(max_level <= 2, "level reached {max_level}");
    assert_eq!((stats.lost, stats.late, stats.trimmed), (0, 0, 0));
    assert_eq!(stats.played, stats.received);
}

#[test]
fn sender_pause_drains_then_rebuffers_without_loss() {
    let mut jitter = fixed(2);
    // A talk spurt, 30 ticks of silence (DTX: no packets, consecutive sequence numbers),
    // then the next spurt.
    let arrival = |k: u32| -> usize { if k < 50 { k as usize } else { k as usize + 30 } };
    let out = run(&mut jitter, 0, &schedule(100, arrival), 3);
    assert_eq!(packets(&out), (0..100).collect::<Vec<_>>());
    assert_eq!(count_lost(&out), 0);
    assert_eq!(
        jitter.stats().underruns,
        2,
        "the pause and the end of the stream"
    );
}

#[test]
fn overrun_discards_oldest_and_resynchronises_to_the_target() {
    let config = JitterConfig::fixed(FrameCount::new(2), FrameCount::new(10)).expect("valid");
    let mut jitter: JitterBuffer<u32> = JitterBuffer::new(config);
    for k in 0..12 {
        assert_eq!(jitter.push(seq(0, k), k), PushOutcome::Accepted);
    }
    let stats = jitter.stats();
    assert_eq!(
        stats.overruns, 9,
        "ten fitted; the eleventh left two, the twelfth three"
    );
    assert_eq!(jitter.level(), FrameCount::new(3));
    assert_eq!(jitter.pop(), Playout::Packet(9));
}

#[test]
fn stray_sequence_number_far_ahead_is_ignored() {
    let mut jitter = fixed(2);
    let mut out = Vec::new();
    for k in 0..20u32 {
        jitter.push(seq(0, k), k);
        if k == 8 {
            assert_eq!(jitter.push(30_000, 999), PushOutcome::OutOfWindow);
        }
        out.push(jitter.pop());
    }
    assert_eq!(packets(&out), (0..19).collect::<Vec<_>>());
    let stats = jitter.stats();
    assert_eq!((stats.out_of_window, stats.resyncs, stats.lost), (1, 0, 0));
}

#[test]
fn confirmed_sequence_jump_restarts_the_stream() {
    let mut jitter = fixed(2);
    for k in 0..10u32 {
        jitter.push(seq(0, k), k);
        jitter.pop();
    }
    // The sender restarts its numbering: the first new packet is held back, the second
    // confirms the jump.
    assert_eq!(jitter.push(20_000, 100), PushOutcome::OutOfWindow);
    assert_eq!(jitter.push(20_001, 101), PushOutcome::Resynced);
    jitter.push(20_002, 102);
    assert_eq!(jitter.pop(), Playout::Packet(101));
    assert_eq!(jitter.pop(), Playout::Packet(102));
    assert_eq!(jitter.stats().resyncs, 1);
    assert_eq!(jitter.stats().overruns, 1, "packet 9 was still buffered");
}

#[test]
fn stream_resuming_after_a_long_outage_restarts_at_once() {
    let mut jitter = fixed(2);
    for k in 0..10u32 {
        jitter.push(seq(0, k), k);
        jitter.pop();
    }
    for _ in 0..5 {
        jitter.pop();
    }
    // Two seconds of packets lost on the way: numbering continues 100 further on.
    assert_eq!(jitter.push(110, 110), PushOutcome::Resynced);
    jitter.push(111, 111);
    assert_eq!(jitter.pop(), Playout::Packet(110));
    assert_eq!(jitter.stats().out_of_window, 0);
}

#[test]
fn reset_forgets_the_stream_but_keeps_the_counters() {
    let mut jitter = fixed(1);
    jitter.push(10, 10);
    jitter.push(11, 11);
    assert_eq!(jitter.pop(), Playout::Packet(10));
    jitter.reset();
    assert_eq!(jitter.level(), FrameCount::new(0));
    assert_eq!(jitter.pop(), Playout::Buffering);
    assert_eq!(
        jitter.push(50_000, 1),
        PushOutcome::Accepted,
        "any number starts the new stream"
    );
    assert_eq!(jitter.pop(), Playout::Packet(1));
    assert_eq!(jitter.stats().received, 3);
    assert_eq!(jitter.stats().overruns, 1, "packet 11 was discarded");
}

#[test]
fn adaptive_buffer_starts_after_one_frame_on_a_clean_network() {
    let mut jitter = adaptive(1, 25);
    let out = run(&mut jitter, 3, &schedule(500, |k| k as usize), 0);
    assert_eq!(out[0], Playout::Packet(0));
    assert_eq!(packets(&out), (0..500).collect::<Vec<_>>());
    assert_eq!(jitter.target_depth(), FrameCount::new(1));
    assert_eq!(jitter.stats().stalled, 0);
}

#[test]
fn adaptive_buffer_grows_under_jitter_and_shrinks_back() {
    let mut jitter = adaptive(1, 25);
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    // Clean for 10 s, up to 60 ms of random delay for 40 s, then clean again for 30 s.
    let arrival = |k: u32| -> usize {
        let delay = if (500..2_500).contains(&k) {
            rng.below(4)
        } else {
            0
        };
        k as usize + delay as usize
    };
    let ticks = schedule(4_000, arrival);
    let mut lost_settled = 0;
    for (t, tick) in ticks.iter().enumerate() {
        for &k in tick {
            jitter.push(seq(60_000, k), k);
        }
        if t == 499 {
            assert_eq!(
                jitter.target_depth(),
                FrameCount::new(1),
                "clean: the minimum"
            );
            assert_eq!(jitter.level(), FrameCount::new(1));
        }
        if t == 2_400 {
            assert_eq!(
                jitter.target_depth(),
                FrameCount::new(4),
                "60 ms of jitter needs 80 ms"
            );
        }
        let before = jitter.stats().lost;
        jitter.pop();
        if (1_000..2_500).contains(&t) {
            lost_settled += jitter.stats().lost - before;
        }
    }
    assert!(
        lost_settled <= 3,
        "{lost_settled} losses once the buffer had grown"
    );
    assert_eq!(
        jitter.target_depth(),
        FrameCount::new(1),
        "back to the minimum"
    );
    assert_eq!(
        jitter.level(),
        FrameCount::new(0),
        "drained after the last pop"
    );
    let stats = jitter.stats();
    assert_eq!(stats.overruns, 0);
    assert!(stats.trimmed <= 6, "trimmed {}", stats.trimmed);
}

#[test]
fn adaptive_buffer_level_returns_to_the_minimum_after_jitter() {
    let mut jitter = adaptive(1, 25);
    let mut rng = XorShift(42);
    let arrival = |k: u32| -> usize {
        let delay = if k < 1_000 { rng.below(5) } else { 0 };
        k as usize + delay as usize
    };
    let ticks = schedule(2_000, arrival);
    let mut last_levels = Vec::new();
    for (t, tick) in ticks.iter().enumerate() {
        for &k in tick {
            jitter.push(seq(0, k), k);
        }
        if t >= 1_800 {
            last_levels.push(jitter.level().get());
        }
        jitter.pop();
    }
    assert!(
        last_levels.iter().all(|&l| l == 1),
        "levels {:?}",
        &last_levels[..10]
    );
}

#[test]
fn fixed_buffer_ignores_jitter_for_its_target_but_reports_it() {
    let mut jitter = fixed(2);
    let arrival = |k: u32| -> usize { k as usize + if k % 10 == 3 { 3 } else { 0 } };
    run(&mut jitter, 0, &schedule(100, arrival), 0);
    assert_eq!(jitter.target_depth(), FrameCount::new(2));
    assert_eq!(jitter.observed_jitter(), FrameCount::new(3));
}

#[test]
fn config_refuses_zero_inverted_and_oversized_depths() {
    let n = FrameCount::new;
    assert_eq!(
        JitterConfig::fixed(n(0), n(10)),
        Err(JitterConfigError::ZeroDepth)
    );
    assert_eq!(
        JitterConfig::adaptive(n(11), n(10)),
        Err(JitterConfigError::DepthAboveMax {
            depth: n(11),
            max: n(10)
        })
    );
    assert_eq!(
        JitterConfig::fixed(n(2), n(501)),
        Err(JitterConfigError::MaxAboveLimit(n(501)))
    );
    let default = JitterConfig::default();
    assert_eq!(
        (default.min_depth().ms(), default.max_depth().ms()),
        (40, 1_000)
    );
    assert_eq!(default.mode(), DepthMode::Fixed);
}

fn tone(rate: SampleRate, amplitude: f32) -> Frame {
    let n = rate.frame_samples();
    let samples: Vec<i16> = (0..n)
        .map(|i| {
            (amplitude * (i as f32 * 2.0 * std::f32::consts::PI * 440.0 / rate.hz() as f32).sin())
                as i16
        })
        .collect();
    Frame::from_samples(rate, &samples).expect("one frame")
}

fn energy(frame: &Frame) -> f64 {
    frame
        .samples()
        .iter()
        .map(|&s| f64::from(s) * f64::from(s))
        .sum()
}

#[test]
fn concealment_fades_then_falls_silent() {
    let rate = SampleRate::HZ_16000;
    let mut concealer = Concealer::new(rate, FrameCount::new(3));
    let mut good = tone(rate, 10_000.0);
    let good_energy = energy(&good);
    concealer.good(&mut good);
    let mut out = Frame::silence(rate);
    let mut energies = Vec::new();
    for _ in 0..3 {
        concealer.conceal(&mut out);
        energies.push(energy(&out));
    }
    assert!(good_energy > energies[0], "{good_energy} then {energies:?}");
    assert!(
        energies.windows(2).all(|w| w[0] > w[1]),
        "decreasing: {energies:?}"
    );
    assert!(energies[2] > 0.0);
    for _ in 0..5 {
        concealer.conceal(&mut out);
        assert!(out.is_silent());
    }
}

#[test]
fn concealment_continues_from_the_last_sample_played() {
    let rate = SampleRate::HZ_8000;
    let mut concealer = Concealer::new(rate, Concealer::DEFAULT_FADE);
    let mut good = tone(rate, 8_000.0);
    let last = *good.samples().last().expect("non-empty");
    concealer.good(&mut good);
    let mut out = Frame::silence(rate);
    concealer.conceal(&mut out);
    assert_eq!(out.samples()[0], last);
}

#[test]
fn concealment_restarts_from_the_newest_good_frame() {
    let rate = SampleRate::HZ_8000;
    let mut concealer = Concealer::new(rate, FrameCount::new(2));
    let mut loud = tone(rate, 20_000.0);
    concealer.good(&mut loud);
    let mut out = Frame::silence(rate);
    for _ in 0..4 {
        concealer.conceal(&mut out);
    }
    assert!(out.is_silent());
    let mut quiet = Frame::from_samples(rate, &[100; 160]).expect("one frame");
    concealer.good(&mut quiet);
    concealer.conceal(&mut out);
    assert!(!out.is_silent());
    assert!(
        out.samples().iter().all(|&s| (0..=100).contains(&s)),
        "repeats the quiet frame"
    );
}

#[test]
fn recovery_after_concealment_is_cross_faded_and_otherwise_untouched() {
    let rate = SampleRate::HZ_8000;
    let mut concealer = Concealer::new(rate, FrameCount::new(3));
    let mut first = Frame::from_samples(rate, &[4_000; 160]).expect("one frame");
    concealer.good(&mut first);
    let mut out = Frame::silence(rate);
    concealer.conceal(&mut out);
    let last_concealed = out.samples()[159];
    let original = Frame::from_samples(rate, &[-4_000; 160]).expect("one frame");
    let mut next = original.clone();
    concealer.good(&mut next);
    let s = next.samples();
    // No jump from the concealment into the new frame: the ramp starts near where the
    // concealment was heading and reaches the new signal by 5 ms.
    assert!(
        (i32::from(s[0]) - i32::from(last_concealed)).abs() < 400,
        "{} after {}",
        s[0],
        last_concealed
    );
    assert!(
        s.windows(2)
            .all(|w| (i32::from(w[1]) - i32::from(w[0])).abs() < 400)
    );
    assert_eq!(&s[40..], &original.samples()[40..]);
    // Without a preceding loss a good frame passes through unchanged.
    let mut again = original.clone();
    concealer.good(&mut again);
    assert_eq!(again, original);
}

#[test]
fn concealment_before_any_good_frame_is_silence() {
    let mut concealer = Concealer::new(SampleRate::HZ_48000, Concealer::DEFAULT_FADE);
    let mut out = tone(SampleRate::HZ_48000, 1_000.0);
    concealer.conceal(&mut out);
    assert!(out.is_silent());
    assert!(!concealer.is_fading() || out.is_silent());
}

#[test]
fn concealment_follows_a_rate_change() {
    let mut concealer = Concealer::new(SampleRate::HZ_8000, Concealer::DEFAULT_FADE);
    let mut wide = tone(SampleRate::HZ_16000, 5_000.0);
    concealer.good(&mut wide);
    let mut out = Frame::silence(SampleRate::HZ_8000);
    concealer.conceal(&mut out);
    assert_eq!(out.rate(), SampleRate::HZ_16000);
    assert!(concealer.is_fading());
}

#[test]
fn zero_fade_conceals_with_silence() {
    let rate = SampleRate::HZ_8000;
    let mut concealer = Concealer::new(rate, FrameCount::new(0));
    let mut good = tone(rate, 5_000.0);
    concealer.good(&mut good);
    let mut out = tone(rate, 5_000.0);
    concealer.conceal(&mut out);
    assert!(out.is_silent());
}

proptest! {
    /// Any arrival order in which no packet is delayed by the depth or more plays every
    /// packet, in order, with nothing lost (a frame may be trimmed if playback started
    /// late and the surplus persisted, never lost).
    #[test]
    fn any_arrival_order_within_the_depth_plays_every_packet_in_order(
        depth in 1u32..=5,
        delays in prop::collection::vec(0u32..5, 1..300),
        start in any::<u16>(),
        flips in any::<u64>(),
        adaptive_mode in any::<bool>(),
    ) {
        let config = if adaptive_mode {
            JitterConfig::adaptive(FrameCount::new(depth), FrameCount::new(20))
        } else {
            JitterConfig::fixed(FrameCount::new(depth), FrameCount::new(20))
        }.expect("valid");
        let mut jitter: JitterBuffer<u32> = JitterBuffer::new(config);
        let count = delays.len() as u32;
        let mut ticks = schedule(count, |k| k as usize + (delays[k as usize] % depth) as usize);
        for (t, tick) in ticks.iter_mut().enumerate() {
            if flips >> (t % 64) & 1 == 1 {
                tick.reverse();
            }
        }
        let out = run(&mut jitter, start, &ticks, depth as usize + 30);
        let played = packets(&out);
        prop_assert!(played.windows(2).all(|w| w[0] < w[1]), "out of order: {:?}", played);
        let stats = jitter.stats();
        prop_assert_eq!(stats.lost, 0);
        prop_assert_eq!(stats.late, 0);
        prop_assert_eq!(stats.played + stats.trimmed, u64::from(count));
        prop_assert_eq!(played.len() as u64, stats.played);
    }

    /// Arbitrary interleavings of pushes (near, far, repeated, wrapped sequence numbers) and
    /// pops never panic, never play a packet twice, keep the level within the capacity, and
    /// account for every packet received.
    #[test]
    fn arbitrary_operations_keep_the_buffer_consistent(
        ops in prop::collection::vec(
            prop_oneof![
                4 => Just(None),
                6 => (-30i32..60).prop_map(Some),
                1 => any::<u16>().prop_map(|s| Some(i32::from(s))),
            ],
            0..600,
        ),
        base in any::<u16>(),
        adaptive_mode in any::<bool>(),
    ) {
        let max = FrameCount::new(8);
        let config = if adaptive_mode {
            JitterConfig::adaptive(FrameCount::new(1), max)
        } else {
            JitterConfig::fixed(FrameCount::new(2), max)
        }.expect("valid");
        let mut jitter: JitterBuffer<u32> = JitterBuffer::new(config);
        let mut cursor = i32::from(base);
        let mut id = 0u32;
        let mut seen = std::collections::HashSet::new();
        let mut outcomes = [0u64; 5];
        for op in ops {
            match op {
                None => {
                    cursor += 1;
                    if let Playout::Packet(p) = jitter.pop() {
                        prop_assert!(seen.insert(p), "packet {} played twice", p);
                    }
                }
                Some(offset) => {
                    let seq = (cursor + offset) as u16;
                    let slot = match jitter.push(seq, id) {
                        PushOutcome::Accepted => 0,
                        PushOutcome::Duplicate => 1,
                        PushOutcome::TooLate => 2,
                        PushOutcome::OutOfWindow => 3,
                        PushOutcome::Resynced => 4,
                    };
                    outcomes[slot] += 1;
                    id += 1;
                }
            }
            prop_assert!(jitter.level() <= max);
            prop_assert!(jitter.target_depth() <= max);
        }
        let stats = jitter.stats();
        prop_assert_eq!(stats.received, outcomes.iter().sum::<u64>());
        prop_assert_eq!(stats.duplicates, outcomes[1]);
        prop_assert_eq!(stats.late, outcomes[2]);
        prop_assert_eq!(stats.out_of_window, outcomes[3]);
        prop_assert_eq!(stats.resyncs, outcomes[4]);
        prop_assert!(stats.played <= outcomes[0] + outcomes[4]);
        prop_assert_eq!(stats.played, seen.len() as u64);
    }
}

#[test]
fn forwarded_stream_resumes_ticked_playout_after_one_frame() {
    // Forwarding: each packet leaves as it arrives, the clock still moving every tick.
    let mut j = adaptive(2, 50);
    for k in 0..50u32 {
        j.push(seq(100, k), k);
        assert_eq!(j.take_next(), Some(k));
        assert_eq!(j.take_next(), None);
        j.skip_tick();
    }
    // Back to the tick, which comes before the next packet: one frame is missing...
    assert_eq!(j.pop(), Playout::Buffering);
    // ...and the packet that arrives next plays on the following tick, not after the
    // two-frame floor: the stream was on time, only released early.
    j.push(seq(100, 50), 50);
    assert_eq!(j.pop(), Playout::Packet(50));
    for k in 51..60u32 {
        j.push(seq(100, k), k);
        assert_eq!(j.pop(), Playout::Packet(k));
    }
    assert_eq!(j.stats().lost, 0);
    assert_eq!(j.stats().played, 60);
}

#[test]
fn forwarding_skips_a_gap_and_refuses_the_straggler() {
    let mut j = fixed(2);
    j.push(seq(7, 0), 0);
    j.push(seq(7, 2), 2);
    assert_eq!(j.take_next(), Some(0));
    assert_eq!(j.take_next(), Some(2));
    assert_eq!(j.push(seq(7, 1), 1), PushOutcome::TooLate);
    assert_eq!(j.take_next(), None);
    assert_eq!(j.stats().lost, 1);
}
