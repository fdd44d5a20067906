use super::*;
use proptest::prelude::*;

/// The reference: for each listener, the saturated sum of every other talker, computed
/// naively per participant.
fn reference(inputs: &[(MixMode, Option<Vec<i16>>)], me: usize, n: usize) -> Vec<i16> {
    (0..n)
        .map(|k| {
            let s: i32 = inputs
                .iter()
                .enumerate()
                .filter(|(j, (mode, input))| {
                    *j != me && *mode != MixMode::ListenOnly && input.is_some()
                })
                .map(|(_, (_, input))| i32::from(input.as_ref().map_or(0, |v| v[k])))
                .sum();
            s.clamp(-32768, 32767) as i16
        })
        .collect()
}

fn mode_strategy() -> impl Strategy<Value = MixMode> {
    prop_oneof![
        6 => Just(MixMode::Full),
        1 => Just(MixMode::ListenOnly),
        1 => Just(MixMode::SendOnly),
    ]
}

proptest! {
    /// Every output equals the saturated sum of the others, bit-exact, whatever the modes,
    /// the silences and the loudness (clipping included, in some blocks of a frame and not
    /// in others).
    #[test]
    fn every_output_is_the_saturated_sum_of_the_others(
        n in 1usize..24,
        frame in 1usize..130,
        modes in proptest::collection::vec(mode_strategy(), 24),
        talk in proptest::collection::vec(any::<bool>(), 24),
        loud_from in 0usize..140,
        seed in any::<u64>(),
    ) {
        let mut rng = seed;
        let mut next = move || {
            rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
            rng
        };
        let inputs: Vec<(MixMode, Option<Vec<i16>>)> = (0..n)
            .map(|i| {
                let samples = talk[i].then(|| {
                    (0..frame)
                        .enumerate()
                        .map(|(k, _)| {
                            // Quiet samples never clip; from `loud_from` on most blocks do,
                            // so frames mix clipped and unclipped blocks.
                            let v = next() as i16;
                            if k >= loud_from { v } else { v / 64 }
                        })
                        .collect()
                });
                (modes[i], samples)
            })
            .collect();
        let mut mixer = MixMinus::new(frame, 32);
        let slots: Vec<Slot> = inputs.iter().map(|(m, _)| mixer.join(*m).unwrap()).collect();
        for (slot, (_, input)) in slots.iter().zip(&inputs) {
            match input {
                Some(samples) => mixer.input_mut(*slot).unwrap().copy_from_slice(samples),
                None => mixer.set_silent(*slot).unwrap(),
            }
        }
        mixer.mix();
        for (i, slot) in slots.iter().enumerate() {
            let out = mixer.output(*slot).unwrap();
            if inputs[i].0 == MixMode::SendOnly {
                prop_assert_eq!(out, Output::None);
                continue;
            }
            let expected = reference(&inputs, i, frame);
            prop_assert_eq!(out.samples().unwrap(), &expected[..]);
            let talked = inputs[i].1.is_some() && inputs[i].0 == MixMode::Full;
            prop_assert_eq!(matches!(out, Output::Private(_)), talked);
        }
    }
}

#[test]
fn two_participants_hear_each_other_not_themselves() {
    let mut m = MixMinus::new(4, 8);
    let a = m.join(MixMode::Full).unwrap();
    let b = m.join(MixMode::Full).unwrap();
    m.input_mut(a)
        .unwrap()
        .copy_from_slice(&[100, 200, 300, 400]);
    m.input_mut(b).unwrap().copy_from_slice(&[-1, -2, -3, -4]);
    m.mix();
    assert_eq!(m.output(a).unwrap(), Output::Private(&[-1, -2, -3, -4]));
    assert_eq!(m.output(b).unwrap(), Output::Private(&[100, 200, 300, 400]));
    assert_eq!(m.shared(), &[99, 198, 297, 396]);
}

#[test]
fn silent_participants_share_the_full_mix() {
    let mut m = MixMinus::new(2, 8);
    let talker = m.join(MixMode::Full).unwrap();
    let quiet: Vec<Slot> = (0..5).map(|_| m.join(MixMode::Full).unwrap()).collect();
    m.input_mut(talker).unwrap().copy_from_slice(&[7, 8]);
    m.mix();
    for q in &quiet {
        let out = m.output(*q).unwrap();
        assert!(matches!(out, Output::Shared(_)));
        assert_eq!(out.samples().unwrap(), &[7, 8]);
    }
    assert_eq!(m.output(talker).unwrap(), Output::Private(&[0, 0]));
    assert_eq!(m.talkers().collect::<Vec<_>>(), vec![talker]);
}

#[test]
fn input_is_consumed_by_one_tick() {
    let mut m = MixMinus::new(1, 4);
    let a = m.join(MixMode::Full).unwrap();
    let b = m.join(MixMode::Full).unwrap();
    m.input_mut(a).unwrap()[0] = 1000;
    m.mix();
    assert_eq!(m.output(b).unwrap().samples().unwrap(), &[1000]);
    // Next tick nobody writes: silence, not a repeat of the last frame.
    m.mix();
    assert_eq!(m.output(b).unwrap().samples().unwrap(), &[0]);
    assert_eq!(m.talkers().count(), 0);
}

#[test]
fn listen_only_adds_nothing_and_send_only_hears_nothing() {
    let mut m = MixMinus::new(1, 4);
    let listener = m.join(MixMode::ListenOnly).unwrap();
    let source = m.join(MixMode::SendOnly).unwrap();
    let other = m.join(MixMode::Full).unwrap();
    m.input_mut(listener).unwrap()[0] = 5000;
    m.input_mut(source).unwrap()[0] = 300;
    m.set_silent(other).unwrap();
    m.mix();
    assert_eq!(m.output(other).unwrap().samples().unwrap(), &[300]);
    assert_eq!(m.output(listener).unwrap().samples().unwrap(), &[300]);
    assert_eq!(m.output(source).unwrap(), Output::None);
}

#[test]
fn loud_sums_saturate_instead_of_wrapping() {
    let mut m = MixMinus::new(1, 4);
    let slots: Vec<Slot> = (0..3).map(|_| m.join(MixMode::Full).unwrap()).collect();
    for s in &slots {
        m.input_mut(*s).unwrap()[0] = 30_000;
    }
    m.mix();
    assert_eq!(m.shared(), &[i16::MAX]);
    assert_eq!(m.output(slots[0]).unwrap().samples().unwrap(), &[i16::MAX]);
}

#[test]
fn join_and_leave_between_ticks_reuse_slots() {
    let mut m = MixMinus::new(1, 2);
    let a = m.join(MixMode::Full).unwrap();
    let b = m.join(MixMode::Full).unwrap();
    assert_eq!(m.join(MixMode::Full), Err(MixError::Full(2)));
    m.input_mut(a).unwrap()[0] = 10;
    m.input_mut(b).unwrap()[0] = 20;
    m.mix();
    m.leave(a).unwrap();
    assert_eq!(m.leave(a), Err(MixError::UnknownSlot(a)));
    assert!(m.output(a).is_err());
    assert_eq!(m.len(), 1);
    let c = m.join(MixMode::Full).unwrap();
    assert_eq!(c, a, "the freed slot is reused");
    m.input_mut(c).unwrap()[0] = 1;
    m.mix();
    assert_eq!(m.output(b).unwrap().samples().unwrap(), &[1]);
    assert!(m.input_mut(Slot(99)).is_err());
}

#[test]
fn empty_room_mixes_silence() {
    let mut m = MixMinus::new(8, 2);
    assert!(m.is_empty());
    m.mix();
    assert!(m.shared().iter().all(|&s| s == 0));
}
