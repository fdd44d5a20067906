//! The engine stepped by hand: every test counts frames and measures tones, none sleeps.

use chamade_media::SampleRate;
use chamade_media::analysis::{rms, sine, tone_amplitude};
use chamade_media::mixer::MixMode;
use chamade_media::ring::{PcmConsumer, Pull};
use crossbeam_channel::{Receiver, bounded};

use super::*;
use crate::ids::{ParticipantId, RoomId};

const R16: SampleRate = SampleRate::HZ_16000;
const R24: SampleRate = SampleRate::HZ_24000;
const R48: SampleRate = SampleRate::HZ_48000;
const ROOM: RoomId = RoomId(1);

/// Frames skipped before measuring: the resamplers' delays (up to 5 ms) and the tone onset.
const WARM_UP: usize = 5;
/// Frames measured: 0.8 s holds a whole number of periods of every tone used here.
const MEASURED: usize = 40;

fn shard() -> (ShardCore, Receiver<Disposed>) {
    let (tx, rx) = bounded(256);
    (ShardCore::new(tx), rx)
}

fn add_room(core: &mut ShardCore, room: RoomId, rate: SampleRate, max: usize) {
    core.apply(ShardCommand::AddRoom {
        room,
        media: Box::new(RoomMedia::new(rate, max)),
    });
}

fn join(
    core: &mut ShardCore,
    id: u64,
    room_rate: SampleRate,
    rate: SampleRate,
    mode: MixMode,
) -> LegEnds {
    join_with(core, id, room_rate, rate, mode, OUTPUT_RING_MS)
}

fn join_with(
    core: &mut ShardCore,
    id: u64,
    room_rate: SampleRate,
    rate: SampleRate,
    mode: MixMode,
    output_ms: u64,
) -> LegEnds {
    // The tests queue whole utterances and tick with no session to top the ring up from
    // its overflow, so the ring holds all of it (an agent's streaming ring otherwise).
    let input = chamade_media::ring::RingConfig {
        capacity_ms: chamade_media::ring::DEFAULT_CAPACITY_MS,
        overflow_ms: 0,
        ..chamade_media::ring::RingConfig::streaming_playout(rate)
    };
    let (media, ends) = ParticipantMedia::with_rings(room_rate, rate, rate, mode, input, output_ms)
        .expect("supported rates");
    core.apply(ShardCommand::AddParticipant {
        room: ROOM,
        participant: ParticipantId(id),
        media: Box::new(media),
    });
    ends
}

/// Queues `frames` frames of a −12 dBFS tone at the leg's input rate.
fn talk(leg: &mut LegEnds, freq: f64, frames: usize) {
    let rate = leg.input.rate();
    let tone = sine(rate, freq, -12.0, rate.frame_samples() * frames);
    let pushed = leg.input.push_samples(&tone);
    assert_eq!(pushed.dropped, 0);
}

/// Pulls every whole frame queued in an output ring.
fn read_all(out: &mut PcmConsumer) -> Vec<Vec<i16>> {
    let mut frames = Vec::new();
    loop {
        let mut frame = vec![0i16; out.rate().frame_samples()];
        match out.pull_frame(&mut frame) {
            Pull::Frame => frames.push(frame),
            _ => return frames,
        }
    }
}

fn heard(leg: &mut LegEnds) -> (SampleRate, Vec<i16>) {
    let out = leg.output.as_mut().expect("listens");
    let rate = out.rate();
    let frames = read_all(out);
    let measured: Vec<i16> = frames
        .iter()
        .skip(WARM_UP)
        .take(MEASURED)
        .flatten()
        .copied()
        .collect();
    assert_eq!(measured.len(), MEASURED * rate.frame_samples());
    (rate, measured)
}

fn hears(leg: &mut LegEnds, present: &[f64], absent: &[f64]) {
    let (rate, samples) = heard(leg);
    for &f in present {
        let a = tone_amplitude(&samples, rate, f);
        assert!(a > 0.2, "{f} Hz should be heard at {rate}, amplitude {a}");
    }
    for &f in absent {
        let a = tone_amplitude(&samples, rate, f);
        assert!(
            a < 0.005,
            "{f} Hz should not be heard at {rate}, amplitude {a}"
        );
    }
}

fn ticks(core: &mut ShardCore, n: usize) {
    for _ in 0..n {
        core.tick();
    }
}

fn disposed(rx: &Receiver<Disposed>) -> Vec<Disposed> {
    rx.try_iter().collect()
}

#[test]
fn media_can_cross_to_the_shard_thread() {
    fn send<T: Send>() {}
    send::<ShardCommand>();
    send::<Disposed>();
    send::<ShardCore>();
    send::<LegEnds>();
}

#[test]
fn two_rates_each_hear_the_other_through_a_48k_room() {
    let (mut core, _rx) = shard();
    add_room(&mut core, ROOM, R48, 4);
    let mut a = join(&mut core, 1, R48, R16, MixMode::Full);
    let mut b = join(&mut core, 2, R48, R24, MixMode::Full);
    talk(&mut a, 440.0, 50);
    talk(&mut b, 1000.0, 50);
    ticks(&mut core, 50);
    hears(&mut a, &[1000.0], &[440.0]);
    hears(&mut b, &[440.0], &[1000.0]);
    let s = core.stats().snapshot();
    assert_eq!(s.ticks, 50);
    assert_eq!((s.rooms, s.participants), (1, 2));
}

#[test]
fn three_participants_hear_the_other_two_and_not_themselves() {
    let (mut core, _rx) = shard();
    add_room(&mut core, ROOM, R48, 4);
    let mut legs = [
        join(&mut core, 1, R48, SampleRate::HZ_8000, MixMode::Full),
        join(&mut core, 2, R48, R16, MixMode::Full),
        join(&mut core, 3, R48, R48, MixMode::Full),
    ];
    let tones = [300.0, 700.0, 1100.0];
    for (leg, &f) in legs.iter_mut().zip(&tones) {
        talk(leg, f, 50);
    }
    ticks(&mut core, 50);
    for (i, leg) in legs.iter_mut().enumerate() {
        let others: Vec<f64> = (0..3).filter(|&j| j != i).map(|j| tones[j]).collect();
        hears(leg, &others, &[tones[i]]);
    }
}

#[test]
fn listen_only_participant_adds_nothing() {
    let (mut core, _rx) = shard();
    add_room(&mut core, ROOM, R48, 4);
    let mut talker = join(&mut core, 1, R48, R16, MixMode::Full);
    let mut recorder = join(&mut core, 2, R48, R16, MixMode::ListenOnly);
    let mut listener = join(&mut core, 3, R48, R24, MixMode::Full);
    talk(&mut talker, 440.0, 50);
    talk(&mut recorder, 1000.0, 50);
    ticks(&mut core, 50);
    hears(&mut listener, &[440.0], &[1000.0]);
    hears(&mut recorder, &[440.0], &[1000.0]);
    let (_, own) = heard(&mut talker);
    assert!(
        rms(&own) < 1e-4,
        "the talker hears nobody, got rms {}",
        rms(&own)
    );
    // The recorder's ring is still drained in real time, so unmuting starts from now.
    assert_eq!(recorder.stats.snapshot().frames_in, 50);
}

#[test]
fn send_only_participant_gets_no_output_ring_and_cannot_listen() {
    let (mut core, rx) = shard();
    add_room(&mut core, ROOM, R48, 4);
    let mut announcer = join(&mut core, 1, R48, R16, MixMode::SendOnly);
    let mut listener = join(&mut core, 2, R48, R16, MixMode::Full);
    assert!(announcer.output.is_none());
    talk(&mut announcer, 440.0, 50);
    ticks(&mut core, 50);
    hears(&mut listener, &[440.0], &[]);
    assert_eq!(announcer.stats.snapshot().frames_out, 0);

    core.apply(ShardCommand::SetMode {
        room: ROOM,
        participant: ParticipantId(1),
        mode: MixMode::Full,
    });
    assert_eq!(core.stats().snapshot().rejected_commands, 1);
    assert!(matches!(
        disposed(&rx).as_slice(),
        [Disposed::Rejected {
            reason: Rejection::NoOutput { .. },
            ..
        }]
    ));
}

#[test]
fn idle_room_gives_every_listener_one_silent_frame_per_tick() {
    let (mut core, _rx) = shard();
    add_room(&mut core, ROOM, R48, 4);
    let mut legs = [
        join(&mut core, 1, R48, R16, MixMode::Full),
        join(&mut core, 2, R48, R24, MixMode::ListenOnly),
        join(&mut core, 3, R48, R48, MixMode::Full),
    ];
    ticks(&mut core, 20);
    for leg in &mut legs {
        let frames = read_all(leg.output.as_mut().expect("listens"));
        assert_eq!(frames.len(), 20);
        assert!(frames.iter().flatten().all(|&s| s == 0));
        let s = leg.stats.snapshot();
        assert_eq!((s.frames_out, s.frames_silent, s.frames_in), (20, 20, 0));
    }
    // Silence through a flushed lane costs a fill, not an FFT.
    assert_eq!(core.stats().snapshot().shared_resamples, 0);
}

#[test]
fn slow_reader_does_not_stall_room() {
    let (mut core, _rx) = shard();
    add_room(&mut core, ROOM, R48, 4);
    let mut talker = join(&mut core, 1, R48, R16, MixMode::Full);
    let slow = join_with(&mut core, 2, R48, R16, MixMode::Full, 100);
    let mut reader = join(&mut core, 3, R48, R24, MixMode::Full);
    talk(&mut talker, 440.0, 30);
    let mut read = 0;
    for _ in 0..30 {
        core.tick();
        read += read_all(reader.output.as_mut().expect("listens")).len();
    }
    assert_eq!(read, 30);
    let s = slow.stats.snapshot();
    assert_eq!((s.frames_out, s.output_overruns), (5, 25));
    assert_eq!(talker.stats.snapshot().frames_out, 30);
    assert_eq!(reader.stats.snapshot().output_overruns, 0);
    // The slow reader's ring holds whole frames only.
    let out = slow.output.as_ref().expect("listens");
    assert_eq!(out.queued_samples(), 5 * R16.frame_samples());
}

#[test]
fn removed_participant_stops_receiving_and_its_media_is_disposed() {
    let (mut core, rx) = shard();
    add_room(&mut core, ROOM, R48, 4);
    let mut a = join(&mut core, 1, R48, R16, MixMode::Full);
    let mut b = join(&mut core, 2, R48, R24, MixMode::Full);
    talk(&mut a, 440.0, 20);
    talk(&mut b, 1000.0, 20);
    ticks(&mut core, 10);
    core.apply(ShardCommand::RemoveParticipant {
        room: ROOM,
        participant: ParticipantId(2),
    });
    ticks(&mut core, 10);

    assert_eq!(read_all(b.output.as_mut().expect("listens")).len(), 10);
    assert_eq!(b.stats.snapshot().frames_out, 10);
    assert_eq!(a.stats.snapshot().frames_out, 20);
    // B is gone from A's mix after the removal (the resampler's tail aside).
    let after: Vec<i16> = read_all(a.output.as_mut().expect("listens"))
        .into_iter()
        .skip(11)
        .flatten()
        .collect();
    assert!(rms(&after) < 1e-4);
    let gone = disposed(&rx);
    assert!(matches!(
        gone.as_slice(),
        [Disposed::Participant { participant: ParticipantId(2), media, .. }, ..]
            if media.rate_out() == R24
    ));
    assert_eq!(
        (core.participants(), core.stats().snapshot().participants),
        (1, 1)
    );
}

#[test]
fn silent_listeners_at_one_rate_share_one_resample_per_tick() {
    let (mut core, _rx) = shard();
    add_room(&mut core, ROOM, R48, 8);
    let mut talker = join(&mut core, 1, R48, R16, MixMode::Full);
    let mut listeners: Vec<LegEnds> = (2..7)
        .map(|id| join(&mut core, id, R48, R16, MixMode::Full))
        .collect();
    talk(&mut talker, 440.0, 50);
    ticks(&mut core, 50);
    let s = core.stats().snapshot();
    assert_eq!(
        s.shared_resamples, 50,
        "one shared resample per tick, not five"
    );
    assert_eq!(s.private_resamples, 50, "the talker's own mix-minus");
    assert_eq!(core.room(ROOM).expect("room").shared_lanes(), 1);
    let first = read_all(listeners[0].output.as_mut().expect("listens"));
    assert_eq!(first.len(), 50);
    for leg in &mut listeners[1..] {
        assert_eq!(read_all(leg.output.as_mut().expect("listens")), first);
    }
}

#[test]
fn each_distinct_listener_rate_is_resampled_once() {
    let (mut core, _rx) = shard();
    add_room(&mut core, ROOM, R48, 8);
    let mut talker = join(&mut core, 1, R48, R48, MixMode::Full);
    let _listeners: Vec<LegEnds> = [R16, R16, R24, R24, R48]
        .into_iter()
        .enumerate()
        .map(|(i, rate)| join(&mut core, 2 + i as u64, R48, rate, MixMode::Full))
        .collect();
    talk(&mut talker, 440.0, 10);
    ticks(&mut core, 10);
    let s = core.stats().snapshot();
    assert_eq!(s.shared_resamples, 20);
    assert_eq!(s.private_resamples, 0, "the talker is at the room rate");
    assert_eq!(core.room(ROOM).expect("room").shared_lanes(), 2);
}

#[test]
fn shared_lane_outlives_the_participant_that_brought_it() {
    let (mut core, rx) = shard();
    add_room(&mut core, ROOM, R48, 4);
    let mut talker = join(&mut core, 1, R48, R48, MixMode::Full);
    let _owner = join(&mut core, 2, R48, R16, MixMode::Full);
    let mut other = join(&mut core, 3, R48, R16, MixMode::Full);
    talk(&mut talker, 440.0, 50);
    ticks(&mut core, 5);
    core.apply(ShardCommand::RemoveParticipant {
        room: ROOM,
        participant: ParticipantId(2),
    });
    assert!(
        !disposed(&rx).iter().any(|d| matches!(d, Disposed::Lane(_))),
        "another reader at 16 kHz still needs the lane"
    );
    assert_eq!(core.room(ROOM).expect("room").shared_lanes(), 1);
    ticks(&mut core, 45);
    hears(&mut other, &[440.0], &[]);
    core.apply(ShardCommand::RemoveParticipant {
        room: ROOM,
        participant: ParticipantId(3),
    });
    assert!(disposed(&rx).iter().any(|d| matches!(d, Disposed::Lane(_))));
    assert_eq!(core.room(ROOM).expect("room").shared_lanes(), 0);
}

#[test]
fn commands_for_unknown_rooms_and_participants_are_counted_and_ignored() {
    let (mut core, rx) = shard();
    add_room(&mut core, ROOM, R48, 1);
    let (media, _ends) =
        ParticipantMedia::new(R48, R16, R16, MixMode::Full).expect("supported rates");
    core.apply(ShardCommand::AddParticipant {
        room: RoomId(9),
        participant: ParticipantId(1),
        media: Box::new(media),
    });
    core.apply(ShardCommand::RemoveRoom { room: RoomId(9) });
    core.apply(ShardCommand::RemoveParticipant {
        room: ROOM,
        participant: ParticipantId(5),
    });
    core.apply(ShardCommand::SetMode {
        room: RoomId(9),
        participant: ParticipantId(5),
        mode: MixMode::ListenOnly,
    });
    add_room(&mut core, ROOM, R48, 1);
    let (wrong_rate, _ends) =
        ParticipantMedia::new(R16, R16, R16, MixMode::Full).expect("supported rates");
    core.apply(ShardCommand::AddParticipant {
        room: ROOM,
        participant: ParticipantId(1),
        media: Box::new(wrong_rate),
    });
    let _a = join(&mut core, 1, R48, R16, MixMode::Full);
    let _dup = join(&mut core, 1, R48, R16, MixMode::Full);
    let _full = join(&mut core, 2, R48, R16, MixMode::Full);
    ticks(&mut core, 3);

    let s = core.stats().snapshot();
    assert_eq!(s.rejected_commands, 8);
    assert_eq!(s.commands, 10);
    assert_eq!((s.rooms, s.participants, s.ticks), (1, 1, 3));
    let reasons: Vec<Rejection> = disposed(&rx)
        .into_iter()
        .filter_map(|d| match d {
            Disposed::Rejected { reason, .. } => Some(reason),
            _ => None,
        })
        .collect();
    assert_eq!(
        reasons,
        [
            Rejection::UnknownRoom(RoomId(9)),
            Rejection::UnknownRoom(RoomId(9)),
            Rejection::UnknownParticipant {
                room: ROOM,
                participant: ParticipantId(5)
            },
            Rejection::UnknownRoom(RoomId(9)),
            Rejection::DuplicateRoom(ROOM),
            Rejection::RateMismatch {
                room: ROOM,
                room_rate: R48,
                media_rate: R16
            },
            Rejection::DuplicateParticipant {
                room: ROOM,
                participant: ParticipantId(1)
            },
            Rejection::RoomFull { room: ROOM, max: 1 },
        ]
    );
}

#[test]
fn removing_a_room_disposes_it_with_its_participants() {
    let (mut core, rx) = shard();
    add_room(&mut core, ROOM, R48, 4);
    add_room(&mut core, RoomId(2), R16, 4);
    let _a = join(&mut core, 1, R48, R16, MixMode::Full);
    let _b = join(&mut core, 2, R48, R24, MixMode::Full);
    ticks(&mut core, 2);
    core.apply(ShardCommand::RemoveRoom { room: ROOM });
    let s = core.stats().snapshot();
    assert_eq!((s.rooms, s.participants), (1, 0));
    match disposed(&rx).as_slice() {
        [Disposed::Room { room, media }] => {
            assert_eq!(*room, ROOM);
            assert_eq!(media.len(), 2);
        }
        other => panic!("expected the room back, got {other:?}"),
    }
    core.shutdown();
    assert_eq!(core.rooms(), 0);
    assert_eq!(disposed(&rx).len(), 1);
}

#[test]
fn muting_a_talker_takes_it_out_of_the_mix() {
    let (mut core, _rx) = shard();
    add_room(&mut core, ROOM, R48, 4);
    let mut a = join(&mut core, 1, R48, R16, MixMode::Full);
    let mut b = join(&mut core, 2, R48, R16, MixMode::Full);
    talk(&mut a, 440.0, 100);
    ticks(&mut core, 50);
    hears(&mut b, &[440.0], &[]);
    core.apply(ShardCommand::SetMode {
        room: ROOM,
        participant: ParticipantId(1),
        mode: MixMode::ListenOnly,
    });
    ticks(&mut core, 50);
    let (_, muted) = heard(&mut b);
    assert!(rms(&muted) < 1e-4);
    assert_eq!(core.stats().snapshot().rejected_commands, 0);
}

#[test]
fn a_full_disposal_queue_drops_on_the_shard_and_counts() {
    let (tx, rx) = bounded(1);
    let mut core = ShardCore::new(tx);
    core.apply(ShardCommand::RemoveRoom { room: RoomId(1) });
    core.apply(ShardCommand::RemoveRoom { room: RoomId(2) });
    assert_eq!(core.stats().snapshot().disposal_overflows, 1);
    assert_eq!(rx.try_iter().count(), 1);
}

#[test]
fn flush_request_drops_queued_input_at_the_next_tick() {
    let (mut core, _rx) = shard();
    add_room(&mut core, ROOM, R48, 4);
    let mut agent = join(&mut core, 1, R48, R24, MixMode::Full);
    let _caller = join(&mut core, 2, R48, R16, MixMode::Full);
    talk(&mut agent, 440.0, 50);
    ticks(&mut core, 5);
    agent.stats.request_flush();
    ticks(&mut core, 5);
    let s = agent.stats.snapshot();
    assert_eq!((s.frames_in, s.frames_silent), (5, 5));
    assert_eq!(
        s.input_ring.samples_flushed,
        45 * R24.frame_samples() as u64
    );
    // A request is taken once: later audio plays.
    talk(&mut agent, 440.0, 2);
    ticks(&mut core, 2);
    assert_eq!(agent.stats.snapshot().frames_in, 7);
}

/// What a test endpoint saw, shared with the test.
#[derive(Default)]
struct Seen {
    /// Each call in order: 'r' for a datagram read, 'b' before the mix (upper case when
    /// the shard watched the socket), 'a' after it.
    calls: std::sync::Mutex<String>,
    /// The first sample of every frame pulled after a mix.
    heard: std::sync::Mutex<Vec<i16>>,
}

/// An endpoint over a real UDP socket: each datagram's first byte becomes one frame of
/// that sample value; after the mix it pulls the frame and records it. Done after
/// `ticks` ticks.
struct TestEndpoint {
    socket: std::net::UdpSocket,
    ends: LegEnds,
    seen: std::sync::Arc<Seen>,
    pending: Vec<i16>,
    ticks: usize,
}

impl TestEndpoint {
    fn log(&self, c: char) {
        self.seen.calls.lock().unwrap().push(c);
    }
}

impl Endpoint for TestEndpoint {
    fn readiness(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        use std::os::fd::AsFd;
        Some(self.socket.as_fd())
    }

    fn on_readable(&mut self) -> bool {
        let Some(value) = recv_value(&self.socket) else {
            return false;
        };
        self.log('r');
        self.pending.push(value);
        true
    }

    fn before_mix(&mut self, watched: bool) -> Step {
        self.log(if watched { 'B' } else { 'b' });
        if self.ticks == 0 {
            return Step::Done;
        }
        self.ticks -= 1;
        let value = if self.pending.is_empty() {
            0
        } else {
            self.pending.remove(0)
        };
        let frame = vec![value; self.ends.input.rate().frame_samples()];
        self.ends.input.push_samples(&frame);
        Step::Continue
    }

    fn after_mix(&mut self) -> Step {
        self.log('a');
        if let Some(out) = self.ends.output.as_mut() {
            let mut frame = vec![0i16; out.rate().frame_samples()];
            if out.pull_frame(&mut frame) == Pull::Frame {
                self.seen.heard.lock().unwrap().push(frame[0]);
            }
        }
        Step::Continue
    }
}

/// The sample value a test datagram carries (its first byte), if one was waiting.
fn recv_value(socket: &std::net::UdpSocket) -> Option<i16> {
    let mut buf = [0u8; 16];
    match socket.recv(&mut buf) {
        Ok(n) if n > 0 => Some(i16::from(buf[0])),
        _ => None,
    }
}

fn udp_pair() -> (std::net::UdpSocket, std::net::UdpSocket) {
    let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    a.connect(b.local_addr().unwrap()).unwrap();
    b.connect(a.local_addr().unwrap()).unwrap();
    a.set_nonblocking(true).unwrap();
    (a, b)
}

fn paced_endpoint(
    core: &mut ShardCore,
    id: u64,
    ticks: usize,
) -> (std::sync::Arc<Seen>, std::net::UdpSocket) {
    let (media, ends) = ParticipantMedia::paced(R16, R16, MixMode::Full, 100).unwrap();
    core.apply(ShardCommand::AddParticipant {
        room: ROOM,
        participant: ParticipantId(id),
        media: Box::new(media),
    });
    let (socket, remote) = udp_pair();
    let seen = std::sync::Arc::new(Seen::default());
    core.apply(ShardCommand::AddEndpoint {
        room: ROOM,
        participant: ParticipantId(id),
        endpoint: Box::new(TestEndpoint {
            socket,
            ends,
            seen: std::sync::Arc::clone(&seen),
            pending: Vec::new(),
            ticks,
        }),
    });
    (seen, remote)
}

#[test]
fn an_endpoint_reads_what_arrived_pushes_before_the_mix_and_hears_it_after() {
    let (mut core, rx) = shard();
    add_room(&mut core, ROOM, R16, 4);
    let (a_seen, a_remote) = paced_endpoint(&mut core, 1, 3);
    let (b_seen, _b_remote) = paced_endpoint(&mut core, 2, 3);
    assert_eq!(core.endpoints(), 2);

    // Three datagrams wait for A before the first tick: all three are read in that tick
    // (one per epoll round), and each is mixed on its own tick.
    for value in [10u8, 20, 30] {
        a_remote.send(&[value]).unwrap();
    }
    // Loopback delivery is synchronous, but give the kernel a moment all the same.
    std::thread::sleep(std::time::Duration::from_millis(20));
    core.tick();
    core.tick();
    core.tick();
    // B hears A's frames in the tick they were pushed, in order; A hears nobody.
    assert_eq!(*b_seen.heard.lock().unwrap(), vec![10, 20, 30]);
    assert_eq!(*a_seen.heard.lock().unwrap(), vec![0, 0, 0]);
    assert_eq!(*a_seen.calls.lock().unwrap(), "rrrBaBaBa");
    assert_eq!(*b_seen.calls.lock().unwrap(), "BaBaBa");

    // The fourth tick: both are done before the mix and go to disposal.
    core.tick();
    assert_eq!(core.endpoints(), 0);
    let gone = disposed(&rx)
        .into_iter()
        .filter(|d| matches!(d, Disposed::Endpoint(_)))
        .count();
    assert_eq!(gone, 2);
    assert_eq!(*a_seen.calls.lock().unwrap(), "rrrBaBaBaB");
}

#[test]
fn an_endpoint_for_an_unknown_room_is_refused_and_a_stopping_shard_disposes_of_the_rest() {
    let (mut core, rx) = shard();
    add_room(&mut core, ROOM, R16, 4);
    let (socket, _remote) = udp_pair();
    let (_media, ends) = ParticipantMedia::paced(R16, R16, MixMode::Full, 100).unwrap();
    core.apply(ShardCommand::AddEndpoint {
        room: RoomId(99),
        participant: ParticipantId(1),
        endpoint: Box::new(TestEndpoint {
            socket,
            ends,
            seen: Default::default(),
            pending: Vec::new(),
            ticks: 10,
        }),
    });
    assert_eq!(core.endpoints(), 0);
    assert!(disposed(&rx).iter().any(|d| matches!(
        d,
        Disposed::Rejected {
            reason: Rejection::UnknownRoom(RoomId(99)),
            command: ShardCommand::AddEndpoint { .. }
        }
    )));

    let (seen, _remote) = paced_endpoint(&mut core, 1, 10);
    core.tick();
    core.shutdown();
    assert_eq!(core.endpoints(), 0);
    assert!(
        disposed(&rx)
            .iter()
            .any(|d| matches!(d, Disposed::Endpoint(_)))
    );
    assert_eq!(*seen.calls.lock().unwrap(), "Ba");
}

/// A leg that can forward: each datagram's first byte becomes one frame of that value,
/// handed over as it arrives while the shard has it forward, or pushed one per tick.
struct ForwardingEndpoint {
    socket: std::net::UdpSocket,
    ends: LegEnds,
    pending: std::collections::VecDeque<i16>,
    forwarding: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Endpoint for ForwardingEndpoint {
    fn readiness(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        use std::os::fd::AsFd;
        Some(self.socket.as_fd())
    }

    fn on_readable(&mut self) -> bool {
        let Some(value) = recv_value(&self.socket) else {
            return false;
        };
        self.pending.push_back(value);
        true
    }

    fn before_mix(&mut self, _watched: bool) -> Step {
        if !self.forwarding.load(std::sync::atomic::Ordering::Relaxed)
            && let Some(value) = self.pending.pop_front()
        {
            let frame = vec![value; self.ends.input.rate().frame_samples()];
            self.ends.input.push_samples(&frame);
        }
        Step::Continue
    }

    fn after_mix(&mut self) -> Step {
        Step::Continue
    }

    fn can_forward(&self) -> bool {
        true
    }

    fn set_forwarding(&mut self, on: bool) {
        self.forwarding
            .store(on, std::sync::atomic::Ordering::Relaxed);
    }

    fn forward(&mut self, sink: &mut dyn FnMut(&[i16])) -> usize {
        let mut n = 0;
        while let Some(value) = self.pending.pop_front() {
            sink(&vec![value; self.ends.input.rate().frame_samples()]);
            n += 1;
        }
        n
    }
}

/// Seats participant `id` with a forwarding endpoint; returns the socket that feeds it and
/// whether the shard has it forwarding.
fn forwarding_leg(
    core: &mut ShardCore,
    id: u64,
) -> (
    std::net::UdpSocket,
    std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    let (media, ends) = ParticipantMedia::paced(R16, R16, MixMode::Full, 100).unwrap();
    core.apply(ShardCommand::AddParticipant {
        room: ROOM,
        participant: ParticipantId(id),
        media: Box::new(media),
    });
    let (socket, remote) = udp_pair();
    let forwarding = std::sync::Arc::default();
    core.apply(ShardCommand::AddEndpoint {
        room: ROOM,
        participant: ParticipantId(id),
        endpoint: Box::new(ForwardingEndpoint {
            socket,
            ends,
            pending: Default::default(),
            forwarding: std::sync::Arc::clone(&forwarding),
        }),
    });
    (remote, forwarding)
}

/// Waits (a little, on loopback) for what was sent to reach the shard's sockets.
fn settle() {
    std::thread::sleep(std::time::Duration::from_millis(20));
}

fn room_snapshot(core: &ShardCore) -> RoomSnapshot {
    core.room(ROOM).unwrap().stats().snapshot()
}

fn values(frames: &[Vec<i16>]) -> Vec<i16> {
    frames
        .iter()
        .map(|f| {
            assert!(
                f.iter().all(|&s| s == f[0]),
                "a forwarded frame is unchanged"
            );
            f[0]
        })
        .collect()
}

#[test]
fn two_voices_forward_on_arrival_and_a_third_voice_switches_the_room_to_the_mix() {
    let (mut core, _rx) = shard();
    add_room(&mut core, ROOM, R16, 4);
    let (phone, forwarding) = forwarding_leg(&mut core, 1);
    let mut agent = join(&mut core, 2, R16, R16, MixMode::Full);
    talk(&mut agent, 1000.0, 200);
    core.tick();
    core.tick();
    // Two voices: the leg forwards, and the agent hears it through the fast path.
    assert!(forwarding.load(std::sync::atomic::Ordering::Relaxed));
    assert_eq!(core.forwarding_endpoints(), 1);
    assert!(agent.stats.is_forwarded());
    let out = agent.output.as_mut().unwrap();
    assert!(read_all(out).is_empty(), "nothing reached the agent yet");

    // A datagram between ticks reaches the agent's ring without a tick.
    phone.send(&[7]).unwrap();
    core.wait_for_arrivals(std::time::Duration::from_millis(500));
    assert_eq!(values(&read_all(out)), vec![7]);
    let snap = room_snapshot(&core);
    assert!(snap.forwarding);
    assert_eq!((snap.forwarded_frames, snap.mode_switches), (1, 0));
    assert_eq!(core.ticks(), 2);

    // The voice pauses: two ticks of grace, then one silent frame per tick keeps the
    // reader's cadence.
    core.tick();
    core.tick();
    assert!(read_all(out).is_empty());
    core.tick();
    assert_eq!(values(&read_all(out)), vec![0]);

    // A third participant is only a listener until it sends audio; then the room mixes.
    let mut third = join(&mut core, 3, R16, R16, MixMode::Full);
    core.tick();
    assert!(room_snapshot(&core).forwarding);
    third
        .input
        .push_samples(&vec![0; R16.frame_samples() * 100]);
    core.tick();
    core.tick();
    let snap = room_snapshot(&core);
    assert!(!snap.forwarding);
    assert_eq!(snap.mode_switches, 1);
    assert_eq!(core.forwarding_endpoints(), 0);
    assert!(!agent.stats.is_forwarded());
    let out = agent.output.as_mut().unwrap();
    read_all(out);

    // Mixing: the leg's frame waits for the tick and reaches the agent through the mix
    // (the third voice adds silence).
    phone.send(&[9]).unwrap();
    settle();
    core.wait_for_arrivals(std::time::Duration::from_millis(1));
    assert!(read_all(out).is_empty(), "a mixing room does not forward");
    core.tick();
    assert_eq!(values(&read_all(out)), vec![9]);
    assert_eq!(room_snapshot(&core).forwarded_frames, 1);

    // Back to two voices: what the leg buffered meanwhile is forwarded at once, in order.
    core.apply(ShardCommand::RemoveParticipant {
        room: ROOM,
        participant: ParticipantId(3),
    });
    phone.send(&[11]).unwrap();
    phone.send(&[12]).unwrap();
    settle();
    core.tick();
    assert_eq!(values(&read_all(out)), vec![11, 12]);
    let snap = room_snapshot(&core);
    assert!(snap.forwarding);
    assert_eq!((snap.forwarded_frames, snap.mode_switches), (3, 2));
    assert!(forwarding.load(std::sync::atomic::Ordering::Relaxed));
}

#[test]
fn a_listener_of_two_forwarding_legs_still_hears_both_through_the_mix() {
    let (mut core, _rx) = shard();
    add_room(&mut core, ROOM, R16, 4);
    let (a, _) = forwarding_leg(&mut core, 1);
    let (b, _) = forwarding_leg(&mut core, 2);
    let mut monitor = join(&mut core, 3, R16, R16, MixMode::Full);
    core.tick();
    // Two voices, each forwarded to the other; the monitor hears both, so mixes them.
    assert!(room_snapshot(&core).forwarding);
    assert_eq!(core.forwarding_endpoints(), 2);
    assert!(!monitor.stats.is_forwarded());
    let out = monitor.output.as_mut().unwrap();
    read_all(out);
    a.send(&[5]).unwrap();
    b.send(&[6]).unwrap();
    settle();
    core.wait_for_arrivals(std::time::Duration::from_millis(100));
    core.wait_for_arrivals(std::time::Duration::from_millis(1));
    assert!(
        read_all(out).is_empty(),
        "the monitor is served by the tick"
    );
    core.tick();
    assert_eq!(values(&read_all(out)), vec![11]);
    assert_eq!(room_snapshot(&core).forwarded_frames, 2);
}

/// A leg that records, per tick, the value of each frame it sends (flushed or after the
/// mix), and forwards nothing itself.
struct RecordingEndpoint {
    ends: LegEnds,
    tick: u64,
    sent: std::sync::Arc<std::sync::Mutex<Vec<(u64, i16)>>>,
}

impl RecordingEndpoint {
    fn send_all(&mut self) -> Step {
        let Some(out) = self.ends.output.as_mut() else {
            return Step::Continue;
        };
        let mut frame = vec![0i16; out.rate().frame_samples()];
        while out.queued_samples() >= frame.len() && out.pull_frame(&mut frame) == Pull::Frame {
            self.sent.lock().unwrap().push((self.tick, frame[0]));
        }
        Step::Continue
    }
}

impl Endpoint for RecordingEndpoint {
    fn before_mix(&mut self, _watched: bool) -> Step {
        self.tick += 1;
        Step::Continue
    }

    fn after_mix(&mut self) -> Step {
        self.send_all()
    }

    fn flush_output(&mut self) -> Step {
        self.send_all()
    }

    fn can_forward(&self) -> bool {
        true
    }
}

/// Seats participant `id` with a recording endpoint; returns what it sends.
fn recording_leg(
    core: &mut ShardCore,
    id: u64,
) -> std::sync::Arc<std::sync::Mutex<Vec<(u64, i16)>>> {
    let (media, ends) = ParticipantMedia::paced(R16, R16, MixMode::Full, 100).unwrap();
    core.apply(ShardCommand::AddParticipant {
        room: ROOM,
        participant: ParticipantId(id),
        media: Box::new(media),
    });
    let sent = std::sync::Arc::default();
    core.apply(ShardCommand::AddEndpoint {
        room: ROOM,
        participant: ParticipantId(id),
        endpoint: Box::new(RecordingEndpoint {
            ends,
            tick: 0,
            sent: std::sync::Arc::clone(&sent),
        }),
    });
    sent
}

/// Queues one frame whose every sample is `value`.
fn say(leg: &mut LegEnds, value: i16) {
    let frame = vec![value; leg.input.rate().frame_samples()];
    assert_eq!(leg.input.push_samples(&frame).dropped, 0);
}

#[test]
fn an_agent_frame_that_misses_its_tick_catches_up_instead_of_standing() {
    let (mut core, _rx) = shard();
    add_room(&mut core, ROOM, R16, 4);
    let sent = recording_leg(&mut core, 1);
    let mut agent = join(&mut core, 2, R16, R16, MixMode::Full);
    let take = |sent: &std::sync::Arc<std::sync::Mutex<Vec<(u64, i16)>>>| {
        std::mem::take(&mut *sent.lock().unwrap())
    };
    // The agent streams in real time: one frame per tick, each sent on that tick.
    for v in 1..=3 {
        say(&mut agent, v);
        core.tick();
    }
    assert_eq!(take(&sent), vec![(1, 1), (2, 2), (3, 3)]);
    assert!(room_snapshot(&core).forwarding);
    // Frame 4 misses tick 4: nothing leaves for that slot (no silence in the stream).
    core.tick();
    assert_eq!(take(&sent), vec![]);
    // It arrives with frame 5: both leave on tick 5, in order, and nothing stays queued.
    say(&mut agent, 4);
    say(&mut agent, 5);
    core.tick();
    assert_eq!(take(&sent), vec![(5, 4), (5, 5)]);
    assert_eq!(agent.input.queued_samples(), 0, "no standing latency");
    assert_eq!(room_snapshot(&core).caught_up_frames, 1);
    for v in 6..=8 {
        say(&mut agent, v);
        core.tick();
    }
    assert_eq!(take(&sent), vec![(6, 6), (7, 7), (8, 8)]);

    // Audio queued ahead (an utterance sent at once) still plays one frame per tick.
    for v in 10..15 {
        say(&mut agent, v);
    }
    ticks(&mut core, 5);
    assert_eq!(
        take(&sent),
        vec![(9, 10), (10, 11), (11, 12), (12, 13), (13, 14)]
    );

    // The stream ends: the slot held for a late frame is filled with silence at the next
    // tick, then one silent frame per tick; one frame per tick on average throughout.
    core.tick();
    assert_eq!(take(&sent), vec![]);
    core.tick();
    assert_eq!(take(&sent), vec![(15, 0), (15, 0)]);
    ticks(&mut core, 2);
    assert_eq!(take(&sent), vec![(16, 0), (17, 0)]);
    assert_eq!(room_snapshot(&core).caught_up_frames, 1);
    assert_eq!(
        room_snapshot(&core).forwarded_frames,
        0,
        "no leg frame arrived"
    );
}

#[test]
fn an_agent_heard_by_a_monitor_too_plays_one_frame_per_tick() {
    let (mut core, _rx) = shard();
    add_room(&mut core, ROOM, R16, 4);
    let sent = recording_leg(&mut core, 1);
    let mut agent = join(&mut core, 2, R16, R16, MixMode::Full);
    let mut monitor = join(&mut core, 3, R16, R16, MixMode::Full);
    // Until the agent has sent audio it is no voice, and the monitor hears the leg alone.
    say(&mut agent, 0);
    core.tick();
    read_all(monitor.output.as_mut().unwrap());
    sent.lock().unwrap().clear();
    for v in 1..=2 {
        say(&mut agent, v);
        core.tick();
    }
    // Late: the monitor hears the mix, so the agent does not catch up two frames at once.
    core.tick();
    say(&mut agent, 3);
    say(&mut agent, 4);
    core.tick();
    core.tick();
    let got = std::mem::take(&mut *sent.lock().unwrap());
    assert_eq!(got, vec![(2, 1), (3, 2), (4, 0), (5, 3), (6, 4)]);
    assert_eq!(room_snapshot(&core).caught_up_frames, 0);
    // The monitor heard the agent's frames through the mix, one per tick.
    let out = monitor.output.as_mut().unwrap();
    let heard: Vec<i16> = read_all(out).iter().map(|f| f[0]).collect();
    assert_eq!(heard, vec![1, 2, 0, 3, 4]);
}
