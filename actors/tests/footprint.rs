//! What one phone call's media costs in heap: the agent's seat (rings, resamplers, spare
//! lane) and the phone leg's seat and codec, built exactly as the server builds them, with
//! a counting allocator. The figure per part is printed, so the memory per call in
//! docs/PERFORMANCE.md can be traced to its parts; the bounds (about 1.6 times today's figures) fail
//! the test if a part grows by that much.
//!
//! A counting allocator is the one thing here that needs `unsafe`: it forwards every call
//! to the system allocator unchanged.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use chamade_actors::bridge::rtp::{RtpCodec, RtpReceiver, RtpSender};
use chamade_actors::shard::ParticipantMedia;
use chamade_media::SampleRate;
use chamade_media::mixer::MixMode;

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Bytes still allocated by what `build` returns.
fn held<T>(build: impl FnOnce() -> T) -> (T, isize) {
    let before = LIVE.load(Ordering::Relaxed);
    let value = build();
    (value, LIVE.load(Ordering::Relaxed) - before)
}

#[test]
fn one_phone_calls_media_footprint() {
    let room = SampleRate::HZ_8000;
    let agent_rate = SampleRate::HZ_16000;
    // As MediaPlane::join (agent, 300 ms output ring) and join_paced (phone leg, 200 ms).
    let (agent, agent_bytes) = held(|| {
        ParticipantMedia::with_output_ms(room, agent_rate, agent_rate, MixMode::Full, 300)
            .expect("rates")
    });
    let (phone, phone_bytes) =
        held(|| ParticipantMedia::paced(room, room, MixMode::Full, 200).expect("rates"));
    let (codec, codec_bytes) = held(|| {
        (
            RtpReceiver::new(RtpCodec::Pcmu).expect("receiver"),
            RtpSender::new(RtpCodec::Pcmu, 1, 1, 1).expect("sender"),
        )
    });
    let (resampler, resampler_bytes) =
        held(|| chamade_media::resample::Resampler::new(room, agent_rate).expect("rates"));
    println!(
        "agent seat {} KB (of which one 8→16 kHz resampler {} bytes), phone seat {} KB, \
         PCMU receiver and sender {} KB",
        agent_bytes / 1024,
        resampler_bytes,
        phone_bytes / 1024,
        codec_bytes / 1024
    );
    // A 400 ms input ring (12.8 KB at 16 kHz), a 300 ms output ring (9.6 KB) and three
    // polyphase resamplers of a few hundred bytes each.
    assert!(agent_bytes < 32 * 1024, "agent seat: {agent_bytes} bytes");
    assert!(
        resampler_bytes < 1024,
        "8→16 kHz resampler: {resampler_bytes} bytes"
    );
    assert!(phone_bytes < 16 * 1024, "phone seat: {phone_bytes} bytes");
    assert!(codec_bytes < 16 * 1024, "PCMU codec: {codec_bytes} bytes");
    drop((agent, phone, codec, resampler));
}
