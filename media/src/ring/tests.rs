use super::*;
use proptest::prelude::*;

fn le(samples: &[i16]) -> Vec<u8> {
    samples.iter().flat_map(|s| s.to_le_bytes()).collect()
}

fn ring_8k(ms: u64) -> (PcmProducer, PcmConsumer) {
    pcm_ring(RingConfig::with_capacity_ms(SampleRate::HZ_8000, ms))
}

#[test]
fn empty_ring_pulls_idle_silence() {
    let (_tx, mut rx) = ring_8k(100);
    let mut out = [5i16; 160];
    assert_eq!(rx.pull_frame(&mut out), Pull::Idle);
    assert!(out.iter().all(|&s| s == 0));
    let s = rx.stats().snapshot();
    assert_eq!((s.idle_pulls, s.underruns, s.frames_pulled), (1, 0, 0));
}

#[test]
fn capacity_rounds_up_to_whole_frames() {
    let (tx, _rx) = ring_8k(30);
    assert_eq!(tx.free_samples(), 320);
    let (tx, _rx) = ring_8k(0);
    assert_eq!(tx.free_samples(), 160);
}

#[test]
fn odd_byte_counts_are_held_until_paired() {
    let (mut tx, mut rx) = ring_8k(100);
    let samples: Vec<i16> = (0..160).map(|i| i * 100 - 8000).collect();
    let bytes = le(&samples);
    // 3 + 5 + 7 + ... odd-sized writes.
    let mut at = 0;
    let mut size = 3;
    while at < bytes.len() {
        let end = (at + size).min(bytes.len());
        tx.push_bytes(&bytes[at..end]);
        at = end;
        size += 2;
    }
    assert!(!tx.has_pending_byte());
    let mut out = [0i16; 160];
    assert_eq!(rx.pull_frame(&mut out), Pull::Frame);
    assert_eq!(&out[..], &samples[..]);
}

#[test]
fn a_single_byte_write_queues_nothing_until_its_pair() {
    let (mut tx, _rx) = ring_8k(100);
    assert_eq!(tx.push_bytes(&[0x34]).accepted, 0);
    assert!(tx.has_pending_byte());
    assert_eq!(tx.push_bytes(&[]).accepted, 0);
    assert_eq!(tx.push_bytes(&[0x12]).accepted, 1);
    assert_eq!(tx.queued_samples(), 1);
}

#[test]
fn overrun_drops_the_newest_samples_and_counts() {
    let (mut tx, mut rx) = ring_8k(40); // 320 samples
    let first: Vec<i16> = (0..300).collect();
    assert_eq!(tx.push_samples(&first).dropped, 0);
    let second: Vec<i16> = (1000..1100).collect();
    let outcome = tx.push_bytes(&le(&second));
    assert_eq!(
        outcome,
        PushOutcome {
            accepted: 20,
            dropped: 80
        }
    );
    let s = tx.stats().snapshot();
    assert_eq!(
        (s.overruns, s.samples_dropped, s.samples_written),
        (1, 80, 320)
    );
    // What plays is the oldest audio, continuous, then the head of the second write.
    let mut out = [0i16; 160];
    rx.pull_frame(&mut out);
    assert_eq!(out[0], 0);
    rx.pull_frame(&mut out);
    assert_eq!(&out[..140], &first[160..]);
    assert_eq!(&out[140..], &second[..20]);
}

#[test]
fn partial_frame_waits_one_tick_then_plays_padded() {
    let (mut tx, mut rx) = ring_8k(100);
    tx.push_samples(&[9; 100]);
    let mut out = [1i16; 160];
    assert_eq!(rx.pull_frame(&mut out), Pull::Underrun);
    assert!(out.iter().all(|&s| s == 0));
    assert_eq!(rx.pull_frame(&mut out), Pull::Partial(100));
    assert!(out[..100].iter().all(|&s| s == 9));
    assert!(out[100..].iter().all(|&s| s == 0));
    let s = rx.stats().snapshot();
    assert_eq!(
        (s.underruns, s.samples_played, s.frames_pulled),
        (2, 100, 1)
    );
}

#[test]
fn partial_frame_completed_within_grace_plays_whole() {
    let (mut tx, mut rx) = ring_8k(100);
    tx.push_samples(&[3; 100]);
    let mut out = [0i16; 160];
    assert_eq!(rx.pull_frame(&mut out), Pull::Underrun);
    tx.push_samples(&[4; 60]);
    assert_eq!(rx.pull_frame(&mut out), Pull::Frame);
    assert_eq!(out[99], 3);
    assert_eq!(out[100], 4);
}

#[test]
fn flush_discards_everything_and_counts() {
    let (mut tx, mut rx) = ring_8k(1_000);
    tx.push_samples(&[1; 1_000]);
    assert_eq!(rx.queued_ms(), 125);
    assert_eq!(rx.flush(), 1_000);
    assert_eq!(tx.queued_samples(), 0);
    assert_eq!(rx.stats().snapshot().samples_flushed, 1_000);
    assert_eq!(rx.stats().consumed_position(), 1_000);
    let mut out = [0i16; 160];
    assert_eq!(rx.pull_frame(&mut out), Pull::Idle);
}

#[test]
fn trim_keeps_the_newest_audio() {
    let (mut tx, mut rx) = ring_8k(1_000);
    let samples: Vec<i16> = (0..800).collect();
    tx.push_samples(&samples);
    assert_eq!(rx.trim_to(320), 480);
    assert_eq!(rx.trim_to(320), 0);
    let mut out = [0i16; 160];
    rx.pull_frame(&mut out);
    assert_eq!(out[0], 480);
    assert_eq!(rx.stats().snapshot().samples_trimmed, 480);
}

#[test]
fn a_long_utterance_fits_the_default_playout_queue() {
    // 11 s at 48 kHz: the spec's 1 MB frame.
    let (mut tx, mut rx) = pcm_ring(RingConfig::playout(SampleRate::HZ_48000));
    let bytes = vec![0x11u8; 1 << 20];
    let outcome = tx.push_bytes(&bytes);
    assert_eq!(outcome.dropped, 0);
    assert_eq!(outcome.accepted, 1 << 19);
    assert_eq!(rx.queued_ms(), (1u64 << 19) * 1000 / 48_000);
    let mut out = [0i16; 960];
    let mut frames = 0;
    while rx.pull_frame(&mut out) == Pull::Frame {
        frames += 1;
    }
    assert_eq!(frames, (1 << 19) / 960);
}

#[test]
fn short_output_slice_is_not_a_panic() {
    let (mut tx, mut rx) = ring_8k(100);
    tx.push_samples(&[1; 160]);
    let mut out = [0i16; 10];
    assert_eq!(rx.pull_frame(&mut out), Pull::Frame);
    assert_eq!(rx.queued_samples(), 150);
}

proptest! {
    /// Any chunking of a byte stream, odd sizes included, comes out as the same samples.
    #[test]
    fn reframing_preserves_the_stream(
        samples in proptest::collection::vec(any::<i16>(), 0..2_000),
        cuts in proptest::collection::vec(1usize..700, 1..40),
    ) {
        let (mut tx, mut rx) = ring_8k(1_000);
        let bytes = le(&samples);
        let mut at = 0;
        let mut i = 0;
        while at < bytes.len() {
            let end = (at + cuts[i % cuts.len()]).min(bytes.len());
            tx.push_bytes(&bytes[at..end]);
            at = end;
            i += 1;
        }
        let mut got = Vec::new();
        let mut out = [0i16; 160];
        loop {
            match rx.pull_frame(&mut out) {
                Pull::Frame => got.extend_from_slice(&out),
                Pull::Partial(n) => got.extend_from_slice(&out[..n]),
                Pull::Underrun => continue,
                Pull::Idle => break,
            }
        }
        prop_assert_eq!(got, samples);
    }

    /// Across a producer thread and a consumer thread, within capacity, no sample is lost,
    /// duplicated or reordered.
    #[test]
    fn threads_preserve_the_stream(
        len in 1usize..40_000,
        chunk in 1usize..700,
        seed in any::<u16>(),
    ) {
        let (mut tx, mut rx) = ring_8k(100);
        let samples: Vec<i16> = (0..len).map(|i| (i as u16).wrapping_mul(31).wrapping_add(seed) as i16).collect();
        let expected = samples.clone();
        let writer = std::thread::spawn(move || {
            let bytes = le(&samples);
            for piece in bytes.chunks(chunk * 2 + 1) {
                // Wait for room so that nothing is dropped: this test is about ordering.
                while tx.free_samples() < piece.len() / 2 + 1 {
                    std::thread::yield_now();
                }
                let out = tx.push_bytes(piece);
                assert_eq!(out.dropped, 0);
            }
            tx
        });
        let mut got = Vec::with_capacity(len);
        let mut out = [0i16; 160];
        while got.len() < len {
            match rx.pull_frame(&mut out) {
                Pull::Frame => got.extend_from_slice(&out),
                Pull::Partial(n) => got.extend_from_slice(&out[..n]),
                Pull::Underrun | Pull::Idle => std::thread::yield_now(),
            }
        }
        let tx = writer.join().expect("writer thread");
        prop_assert_eq!(&got[..], &expected[..]);
        prop_assert_eq!(tx.stats().snapshot().samples_dropped, 0);
    }
}

/// Streams one frame per tick; at each `(tick, k)` of `stalls` the writer stops for `k`
/// ticks, then sends the chunks it owes one by one. Returns the audio left after each pull.
fn stream_with_stalls(config: RingConfig, ticks: usize, stalls: &[(usize, usize)]) -> Vec<usize> {
    let frame = config.rate.frame_samples();
    let (mut tx, mut rx) = pcm_ring(config);
    let chunk = vec![1000i16; frame];
    let mut out = vec![0i16; frame];
    let mut owed = 0;
    let mut stalled_until = 0;
    let mut standing = Vec::with_capacity(ticks);
    for t in 0..ticks {
        if let Some(&(_, k)) = stalls.iter().find(|&&(at, _)| at == t) {
            stalled_until = t + k;
        }
        if t < stalled_until {
            owed += 1;
        } else {
            for _ in 0..=owed {
                tx.push_samples(&chunk);
            }
            owed = 0;
        }
        rx.pull_frame(&mut out);
        standing.push(rx.queued_samples() / frame);
    }
    standing
}

#[test]
fn a_stalled_stream_does_not_keep_its_stall_as_latency() {
    let rate = SampleRate::HZ_16000;
    // A 100 ms stall at 2 s: without a guard those five frames stand for good.
    let plain = stream_with_stalls(RingConfig::playout(rate), 1_000, &[(100, 5)]);
    assert_eq!(*plain.last().unwrap(), 5, "the ratchet this guards against");
    let guarded = stream_with_stalls(RingConfig::streaming_playout(rate), 1_000, &[(100, 5)]);
    // Within the next five-second window the standing audio is dropped, and stays gone.
    assert!(guarded[..100].iter().all(|&f| f == 0));
    assert!(
        guarded[500..].iter().all(|&f| f == 0),
        "{:?}",
        &guarded[240..260]
    );
}

#[test]
fn the_guard_keeps_latency_flat_over_ten_minutes_of_growing_stalls() {
    let rate = SampleRate::HZ_8000;
    // Ten minutes of 20 ms ticks; every 20 s the writer stalls a little longer (1–10 ticks).
    let stalls: Vec<(usize, usize)> = (1..=29).map(|i| (i * 1_000, 1 + i % 10)).collect();
    let plain = stream_with_stalls(RingConfig::playout(rate), 30_000, &stalls);
    assert_eq!(
        *plain.last().unwrap(),
        10,
        "without the guard: the worst stall, for good"
    );
    let guarded = stream_with_stalls(RingConfig::streaming_playout(rate), 30_000, &stalls);
    // Each stall is gone again within two windows (ten seconds) of its end.
    for &(at, k) in &stalls {
        let after = &guarded[at + k + 500..(at + 1_000).min(guarded.len())];
        assert!(
            after.iter().all(|&f| f == 0),
            "stall at {at} still standing"
        );
    }
    assert_eq!(*guarded.last().unwrap(), 0);
}

#[test]
fn the_guard_never_cuts_an_utterance_queued_at_once() {
    let rate = SampleRate::HZ_16000;
    let frame = rate.frame_samples();
    let (mut tx, mut rx) = pcm_ring(RingConfig::streaming_playout(rate));
    // Eleven seconds in one write, then small writes keep coming while it plays.
    tx.push_samples(&vec![500i16; 550 * frame]);
    let mut out = vec![0i16; frame];
    let mut frames = 0;
    for _ in 0..600 {
        tx.push_samples(&[7i16; 4]);
        if rx.pull_frame(&mut out) == Pull::Frame {
            frames += 1;
        }
    }
    assert_eq!(rx.stats().snapshot().samples_trimmed, 0);
    assert!(frames >= 550, "every queued frame played: {frames}");
}

#[test]
fn a_paused_writer_is_not_trimmed() {
    let rate = SampleRate::HZ_16000;
    let frame = rate.frame_samples();
    let (mut tx, mut rx) = pcm_ring(RingConfig::streaming_playout(rate));
    // Two frames queued, then nothing written for six seconds: no stream, nothing dropped.
    tx.push_samples(&vec![1i16; 2 * frame]);
    let mut out = vec![0i16; frame];
    for _ in 0..300 {
        rx.pull_frame(&mut out);
    }
    assert_eq!(rx.stats().snapshot().samples_trimmed, 0);
    assert_eq!(rx.stats().snapshot().samples_played, 2 * frame as u64);
}

#[test]
fn an_utterance_longer_than_the_ring_waits_in_the_overflow_and_plays_in_order() {
    let rate = SampleRate::HZ_16000;
    let frame = rate.frame_samples();
    let (mut tx, mut rx) = pcm_ring(RingConfig::streaming_playout(rate));
    // Eleven seconds, numbered, in one write: the ring takes what it holds, the rest waits.
    let utterance: Vec<i16> = (0..550 * frame).map(|i| (i % 30_000) as i16).collect();
    let out = tx.push_samples(&utterance);
    assert_eq!((out.accepted, out.dropped), (utterance.len(), 0));
    assert_eq!(tx.queued_samples(), utterance.len());
    let ring_frames = (STREAMING_RING_MS / 20) as usize;
    assert_eq!(
        rx.queued_samples(),
        ring_frames * frame,
        "the ring holds its capacity"
    );
    let mut played = Vec::with_capacity(utterance.len());
    let mut buf = vec![0i16; frame];
    for _ in 0..560 {
        tx.pump();
        if rx.pull_frame(&mut buf) == Pull::Frame {
            played.extend_from_slice(&buf);
        }
    }
    assert_eq!(played, utterance, "every sample, in order");
    assert_eq!(tx.queued_samples(), 0);
}

#[test]
fn the_overflow_is_bounded_at_thirty_seconds_and_emptied_by_a_barge_in() {
    let rate = SampleRate::HZ_8000;
    let (mut tx, rx) = pcm_ring(RingConfig::streaming_playout(rate));
    let out = tx.push_samples(&vec![1i16; 31 * 8_000]);
    assert_eq!(out.accepted, 30 * 8_000);
    assert_eq!(out.dropped, 8_000);
    assert_eq!(tx.free_samples(), 0);
    let waiting = tx.queued_samples() - rx.queued_samples();
    assert_eq!(tx.discard_overflow(), waiting);
    // Flushed samples count as consumed: playout positions stay consistent.
    let s = rx.stats().snapshot();
    assert_eq!(s.samples_flushed, waiting as u64);
    assert_eq!(tx.queued_samples(), rx.queued_samples());
}

#[test]
fn a_plain_ring_has_no_overflow() {
    let (mut tx, _rx) = ring_8k(100);
    let out = tx.push_samples(&[1i16; 2_000]);
    assert_eq!((out.accepted, out.dropped), (800, 1_200));
    assert_eq!(tx.pump(), 0);
}

#[test]
fn the_guard_never_cuts_the_end_of_a_stream_that_kept_a_lead() {
    let rate = SampleRate::HZ_16000;
    let frame = rate.frame_samples();
    // A writer that streams in real time 300 ms ahead of playout, then stops: whatever
    // pull the guard's window ends on, the last 300 ms drain and play, none is trimmed.
    for stop in (250..520).step_by(7) {
        let (mut tx, mut rx) = pcm_ring(RingConfig::streaming_playout(rate));
        tx.push_samples(&vec![3i16; 15 * frame]);
        let mut out = vec![0i16; frame];
        for t in 0..stop + 40 {
            if t < stop {
                tx.push_samples(&vec![3i16; frame]);
            }
            tx.pump();
            rx.pull_frame(&mut out);
        }
        let s = rx.stats().snapshot();
        assert_eq!(s.samples_trimmed, 0, "stopped at pull {stop}");
        assert_eq!(
            s.samples_played, s.samples_written,
            "stopped at pull {stop}"
        );
    }
}
