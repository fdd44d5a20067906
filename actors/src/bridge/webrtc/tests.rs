//! WebRTC endpoints on a shard, fed through their channels (no network): the gate, and
//! the room's shared encode for those who did not talk.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use chamade_media::analysis::{sine, tone_amplitude};
use chamade_media::mixer::MixMode;
use chamade_media::opus::{MAX_PACKET_BYTES, OpusConfig, OpusDecoder, OpusEncoder};
use chamade_media::{Frame, SampleRate};
use crossbeam_channel::{Sender, bounded};
use tokio::sync::mpsc;

use super::*;
use crate::ids::{ParticipantId, RoomId};
use crate::shard::{ParticipantMedia, RoomMedia, ShardCommand, ShardCore};

const ROOM: RoomId = RoomId(9);
const R48: SampleRate = SampleRate::HZ_48000;

struct Peer {
    to_gateway: Sender<Inbound>,
    wake: Option<Arc<EventFd>>,
    from_gateway: mpsc::Receiver<Outbound>,
    counters: Arc<WebRtcCounters>,
    encoder: OpusEncoder,
    sequence: u16,
}

impl Peer {
    /// Sends one 20 ms frame as the peer's next packet.
    fn send(&mut self, samples: &[i16]) {
        let frame = Frame::from_samples(R48, samples).expect("frame");
        let mut out = [0u8; MAX_PACKET_BYTES];
        let n = self.encoder.encode(&frame, &mut out).expect("encode");
        let header = PacketHeader {
            payload_type: 111,
            sequence: self.sequence,
            timestamp: u32::from(self.sequence) * 960,
            ssrc: 7,
        };
        self.sequence = self.sequence.wrapping_add(1);
        self.to_gateway
            .try_send(Inbound {
                header,
                payload: Payload::new(&out[..n]),
            })
            .expect("inbound room");
        if let Some(w) = &self.wake {
            w.write(1).expect("wake");
        }
    }

    fn received(&mut self) -> Vec<Outbound> {
        let mut got = Vec::new();
        while let Ok(p) = self.from_gateway.try_recv() {
            got.push(p);
        }
        got
    }
}

fn peer(core: &mut ShardCore, id: u64, shared: &Arc<SharedEncoder>) -> Peer {
    peer_with(core, id, shared, None)
}

fn peer_with(
    core: &mut ShardCore,
    id: u64,
    shared: &Arc<SharedEncoder>,
    wake: Option<Arc<EventFd>>,
) -> Peer {
    let (media, ends) = ParticipantMedia::paced(R48, R48, MixMode::Full, 200).expect("rates");
    core.apply(ShardCommand::AddParticipant {
        room: ROOM,
        participant: ParticipantId(id),
        media: Box::new(media),
    });
    let (to_gateway, inbound) = bounded(INBOUND_PACKETS);
    let (outbound, from_gateway) = mpsc::channel(128);
    let counters = Arc::new(WebRtcCounters::default());
    let endpoint = WebRtcEndpoint::new(EndpointParts {
        inbound,
        wake: wake.clone(),
        outbound,
        receive_payload_type: 111,
        ends,
        shared: Some(Arc::clone(shared)),
        stop: Arc::new(AtomicBool::new(false)),
        counters: Arc::clone(&counters),
        label: format!("peer {id}"),
        first_sequence: 0,
        first_timestamp: 0,
    })
    .expect("endpoint");
    core.apply(ShardCommand::AddEndpoint {
        room: ROOM,
        participant: ParticipantId(id),
        endpoint: Box::new(endpoint),
    });
    Peer {
        to_gateway,
        wake,
        from_gateway,
        counters,
        encoder: OpusEncoder::new(R48, OpusConfig::default()).expect("encoder"),
        sequence: 0,
    }
}

fn decode(packets: &[Outbound]) -> Vec<i16> {
    let mut decoder = OpusDecoder::new(R48).expect("decoder");
    let mut frame = Frame::silence(R48);
    let mut pcm = Vec::new();
    for p in packets {
        decoder
            .decode(p.payload.bytes(), &mut frame)
            .expect("decode");
        pcm.extend_from_slice(frame.samples());
    }
    pcm
}

#[test]
fn listeners_share_one_encode_and_the_talker_gets_its_own() {
    let (mut core, shared) = room();
    let mut talker = peer(&mut core, 1, &shared);
    let mut listeners = [peer(&mut core, 2, &shared), peer(&mut core, 3, &shared)];
    let tone = sine(R48, 440.0, -12.0, 960 * 100);
    let silence = [0i16; 960];
    for chunk in tone.chunks_exact(960) {
        talker.send(chunk);
        for l in &mut listeners {
            l.send(&silence);
        }
        core.tick();
    }

    let heard_by_talker = talker.received();
    let heard: Vec<Vec<Outbound>> = listeners.iter_mut().map(Peer::received).collect();
    assert_eq!(heard_by_talker.len(), 100);
    assert!(heard.iter().all(|h| h.len() == 100));
    // The listeners sent only silence: the gate kept them out of the mix, every frame.
    for l in &listeners {
        assert_eq!(l.counters.gated.load(Ordering::Relaxed), 100);
    }
    // Once the talker's audio flows (after the jitter buffer's first frames), the two
    // listeners are sent the same bytes, from one encode per tick.
    let steady = 10..100;
    for i in steady.clone() {
        assert_eq!(
            heard[0][i].payload.bytes(),
            heard[1][i].payload.bytes(),
            "tick {i}: the listeners' packets differ"
        );
    }
    for l in &listeners {
        assert_eq!(l.counters.shared_sends.load(Ordering::Relaxed), 100);
        assert_eq!(l.counters.private_encodes.load(Ordering::Relaxed), 0);
    }
    assert_eq!(shared.encodes(), 100, "one shared encode per tick");
    // The talker hears a mix without itself, encoded for it alone once it talks.
    assert!(talker.counters.private_encodes.load(Ordering::Relaxed) >= 90);
    let talker_pcm = decode(&heard_by_talker[steady.clone()]);
    assert!(
        tone_amplitude(&talker_pcm, R48, 440.0) < 0.005,
        "the talker hears itself"
    );
    // And each listener hears the tone, with its own RTP numbering.
    for h in &heard {
        let pcm = decode(&h[steady.clone()]);
        let a = tone_amplitude(&pcm, R48, 440.0);
        assert!(a > 0.1, "a listener hears the talker: {a}");
        assert!(
            h.windows(2)
                .all(|w| w[1].sequence == w[0].sequence.wrapping_add(1))
        );
        assert!(
            h.windows(2)
                .all(|w| w[1].timestamp == w[0].timestamp.wrapping_add(960))
        );
    }
}

/// A shard with one 48 kHz room and the room's shared encoder.
fn room() -> (ShardCore, Arc<SharedEncoder>) {
    let (tx, _rx) = bounded(64);
    let mut core = ShardCore::new(tx);
    core.apply(ShardCommand::AddRoom {
        room: ROOM,
        media: Box::new(RoomMedia::new(R48, 8)),
    });
    (core, Arc::new(SharedEncoder::new().expect("shared")))
}

/// Seats an agent that listens (and talks only if it writes).
fn agent(core: &mut ShardCore, id: u64) -> crate::shard::LegEnds {
    let (media, ends) = ParticipantMedia::new(R48, R48, R48, MixMode::Full).expect("rates");
    core.apply(ShardCommand::AddParticipant {
        room: ROOM,
        participant: ParticipantId(id),
        media: Box::new(media),
    });
    ends
}

fn wake_fd() -> Option<Arc<EventFd>> {
    use nix::sys::eventfd::EfdFlags;
    Some(Arc::new(
        EventFd::from_flags(EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC).expect("eventfd"),
    ))
}

#[test]
fn two_forwarding_peers_hear_each_other_and_not_themselves() {
    let (mut core, shared) = room();
    let mut bob = peer_with(&mut core, 1, &shared, wake_fd());
    let mut carol = peer_with(&mut core, 2, &shared, wake_fd());
    // A listening agent: it hears both, so the legs also feed the mix.
    let mut agent = agent(&mut core, 3);
    let (b_tone, c_tone) = (
        sine(R48, 660.0, -12.0, 960 * 100),
        sine(R48, 440.0, -12.0, 960 * 100),
    );
    core.tick();
    assert_eq!(core.forwarding_endpoints(), 2);
    for (b, c) in b_tone.chunks_exact(960).zip(c_tone.chunks_exact(960)) {
        bob.send(b);
        core.wait_for_arrivals(std::time::Duration::from_millis(5));
        carol.send(c);
        core.wait_for_arrivals(std::time::Duration::from_millis(5));
        core.tick();
    }
    let steady = 10..90;
    for (who, p, own, other) in [
        ("Bob", &mut bob, 660.0, 440.0),
        ("Carol", &mut carol, 440.0, 660.0),
    ] {
        let got = p.received();
        assert!(got.len() >= 95, "{who} got {} packets", got.len());
        let pcm = decode(&got[steady.clone()]);
        let (o, me) = (
            tone_amplitude(&pcm, R48, other),
            tone_amplitude(&pcm, R48, own),
        );
        assert!(o > 0.1, "{who} hears the other: {o}");
        assert!(me < 0.005, "{who} hears itself: {me}");
    }
    let out = agent.output.as_mut().expect("listens");
    let mut heard = Vec::new();
    let mut frame = [0i16; 960];
    while out.pull_frame(&mut frame) == chamade_media::ring::Pull::Frame {
        heard.extend_from_slice(&frame);
    }
    let heard = &heard[960 * 10..heard.len().min(960 * 90)];
    let (a, b) = (
        tone_amplitude(heard, R48, 440.0),
        tone_amplitude(heard, R48, 660.0),
    );
    assert!(a > 0.05 && b > 0.05, "the agent hears both: {a} {b}");
}

#[test]
fn a_leg_that_forwarded_before_the_room_mixed_does_not_hear_itself_after() {
    let (mut core, shared) = room();
    let mut agent = agent(&mut core, 1);
    let mut carol = peer_with(&mut core, 2, &shared, wake_fd());
    let c_tone = sine(R48, 440.0, -12.0, 960 * 200);
    let b_tone = sine(R48, 660.0, -12.0, 960 * 200);
    let a_tone = sine(R48, 1000.0, -12.0, 960 * 200);
    let mut bob: Option<Peer> = None;
    for (i, c) in c_tone.chunks_exact(960).enumerate() {
        if i == 4 {
            agent.input.push_samples(&a_tone);
        }
        if i == 8 {
            bob = Some(peer_with(&mut core, 3, &shared, wake_fd()));
        }
        carol.send(c);
        core.wait_for_arrivals(std::time::Duration::from_millis(2));
        if let Some(b) = bob.as_mut() {
            b.send(&b_tone[i * 960..(i + 1) * 960]);
            core.wait_for_arrivals(std::time::Duration::from_millis(2));
        }
        core.tick();
    }
    let got = carol.received();
    let pcm = decode(&got);
    for (k, second) in pcm.chunks(48_000 / 5).enumerate() {
        let me = tone_amplitude(second, R48, 440.0);
        assert!(me < 0.01, "Carol hears herself in window {k}: {me}");
    }
}
