//! G.711 μ-law and A-law companding (ITU-T G.711): the codecs of the SIP and PSTN legs.
//!
//! Written by hand because the whole codec is a few lines of integer arithmetic: a
//! dependency would add nothing but supply-chain surface. Both laws follow the classic Sun
//! `g711.c` semantics, which are the ITU decision levels applied to 16-bit PCM:
//!
//! - μ-law adds the bias `0x84` to the magnitude clipped at 32,635, finds the segment from
//!   the highest set bit and keeps four mantissa bits, then inverts every bit;
//! - A-law drops the three bits below G.711's 13-bit resolution, takes the one's-complement
//!   magnitude of negative values, searches the segment and toggles the even bits (`0x55`).
//!   This is the 13-bit form of Sun's `linear2alaw`; its older 16-bit form (`-pcm_val - 8`)
//!   turns −7..=−1 into −248, which this form does not.
//!
//! Decoding goes through 256-entry tables built at compile time.
//!
//! # Agreement with sox
//!
//! The tests compare against vectors made by SoX v14.4.2 (`media/tests/data/g711/`).
//! Decoding agrees bit for bit for all 256 codes of both laws. Encoding uses the same
//! companding law, and the tests check that bit for bit on every one of the 65,536 inputs.
//! But sox first *rounds* 16-bit samples to G.711's 14-bit (μ-law) or 13-bit (A-law)
//! resolution, as it does for any narrowing conversion, which moves every decision level
//! by half a step of that resolution. sox's code is therefore one step away from G.711's
//! table for 383 μ-law inputs and 1,020 A-law inputs. Here the encoder keeps G.711's
//! decision levels. For example, 16-bit 122 is 30.5 in μ-law units, below the decision
//! value 31, so its code is `0xF0` where sox gives `0xEF`. Likewise A-law −1 becomes
//! `0x55` (−8), the nearest level, where sox gives `0xD5` (+8). The tests pin both counts
//! so that any drift shows up.
//!
//! Every call is allocation-free and branch-light, so a 160-sample frame costs well under a
//! microsecond.

use crate::opus::CodecError;

/// Checks that `out` can hold `needed` items and returns exactly that prefix.
///
/// Shared by the slice APIs so a short buffer is refused rather than silently truncated:
/// a truncated frame would desynchronise the RTP timestamp from the audio.
fn prefix<T>(out: &mut [T], needed: usize) -> Result<&mut [T], CodecError> {
    let got = out.len();
    out.get_mut(..needed)
        .ok_or(CodecError::OutputTooSmall { needed, got })
}

/// μ-law (PCMU, RTP payload type 0): the North American and Japanese PSTN law.
pub mod ulaw {
    use super::{CodecError, prefix};

    /// The code for digital silence (+0), used to fill gaps on a PCMU leg.
    pub const SILENCE: u8 = 0xFF;

    /// Bias added to the magnitude so the segment boundaries fall on powers of two.
    const BIAS: u16 = 0x84;
    /// The largest magnitude that still fits the top segment once biased.
    const CLIP: u16 = 32_635;

    /// Decoded value of every code, built at compile time so decoding is one lookup.
    static DECODE: [i16; 256] = decode_table();

    /// Encodes one sample following G.711's μ-law decision levels.
    ///
    /// Usable in `const` contexts so fixed tones and comfort noise can be pre-encoded.
    ///
    /// ```
    /// use chamade_media::g711::ulaw;
    /// assert_eq!(ulaw::encode_sample(0), ulaw::SILENCE);
    /// assert_eq!(ulaw::encode_sample(i16::MAX), 0x80);
    /// assert_eq!(ulaw::encode_sample(i16::MIN), 0x00);
    /// ```
    pub const fn encode_sample(pcm: i16) -> u8 {
        // Classic formulation: bias the clipped 16-bit magnitude. Dividing it by four gives
        // G.711's 14-bit magnitude, which `compress` works on (132 = 4 × 33, so the
        // segment and mantissa come out identical).
        compress(pcm < 0, pcm.unsigned_abs() >> 2)
    }

    /// Encodes a sign and a 14-bit magnitude (G.711's own resolution for μ-law).
    ///
    /// Split out so the tests can feed it sox's rounded 14-bit values and check the
    /// companding law itself bit for bit.
    pub(super) const fn compress(negative: bool, magnitude14: u16) -> u8 {
        let clipped = if magnitude14 > CLIP >> 2 {
            CLIP >> 2
        } else {
            magnitude14
        };
        // 33..=8191: the highest set bit is bit 5 + segment.
        let biased = clipped + (BIAS >> 2);
        let segment = (15 - biased.leading_zeros() as u16) - 5;
        let mantissa = (biased >> (segment + 1)) & 0x0F;
        let sign = if negative { 0x80 } else { 0x00 };
        // The cast keeps the low byte; every field above fits in it.
        !((sign | (segment << 4) | mantissa) as u8)
    }

    /// Decodes one code to 16-bit PCM (the Sun `ulaw2linear` values, ±32,124 at most).
    ///
    /// ```
    /// use chamade_media::g711::ulaw;
    /// assert_eq!(ulaw::decode_sample(ulaw::SILENCE), 0);
    /// assert_eq!(ulaw::decode_sample(0x80), 32_124);
    /// ```
    pub fn decode_sample(code: u8) -> i16 {
        DECODE[usize::from(code)]
    }

    /// Encodes `pcm` into the first `pcm.len()` bytes of `out`; returns the bytes written.
    ///
    /// Refuses a short `out` instead of truncating, so a frame is never half sent.
    ///
    /// ```
    /// use chamade_media::g711::ulaw;
    /// let pcm = [0i16, 1_000, -1_000, i16::MAX];
    /// let mut codes = [0u8; 4];
    /// assert_eq!(ulaw::encode(&pcm, &mut codes), Ok(4));
    /// let mut back = [0i16; 4];
    /// assert_eq!(ulaw::decode(&codes, &mut back), Ok(4));
    /// assert_eq!(back, [0, 988, -988, 32_124]);
    /// assert!(ulaw::encode(&pcm, &mut [0u8; 3]).is_err());
    /// ```
    pub fn encode(pcm: &[i16], out: &mut [u8]) -> Result<usize, CodecError> {
        let out = prefix(out, pcm.len())?;
        for (code, &sample) in out.iter_mut().zip(pcm) {
            *code = encode_sample(sample);
        }
        Ok(pcm.len())
    }

    /// Decodes `codes` into the first `codes.len()` samples of `out`; returns the samples
    /// written.
    ///
    /// Refuses a short `out` instead of truncating, so a packet is never half played.
    ///
    /// ```
    /// use chamade_media::g711::ulaw;
    /// let mut pcm = [1i16; 160];
    /// assert_eq!(ulaw::decode(&[ulaw::SILENCE; 160], &mut pcm), Ok(160));
    /// assert!(pcm.iter().all(|&s| s == 0));
    /// ```
    pub fn decode(codes: &[u8], out: &mut [i16]) -> Result<usize, CodecError> {
        let out = prefix(out, codes.len())?;
        for (sample, &code) in out.iter_mut().zip(codes) {
            *sample = decode_sample(code);
        }
        Ok(codes.len())
    }

    /// Sun `ulaw2linear` for every code.
    const fn decode_table() -> [i16; 256] {
        let mut table = [0i16; 256];
        let mut code = 0;
        while code < 256 {
            let inverted = !(code as u8);
            let mantissa = (inverted & 0x0F) as i16;
            let segment = ((inverted & 0x70) >> 4) as i16;
            // At most (15 × 8 + 132) << 7 = 32,256: fits an i16.
            let magnitude = (((mantissa << 3) + BIAS as i16) << segment) - BIAS as i16;
            table[code] = if inverted & 0x80 != 0 {
                -magnitude
            } else {
                magnitude
            };
            code += 1;
        }
        table
    }
}

/// A-law (PCMA, RTP payload type 8): the European and international PSTN law.
pub mod alaw {
    use super::{CodecError, prefix};

    /// The code for the smallest positive level (+8), A-law's usual silence byte, used to
    /// fill gaps on a PCMA leg (A-law has no zero level).
    pub const SILENCE: u8 = 0xD5;

    /// Decoded value of every code, built at compile time so decoding is one lookup.
    static DECODE: [i16; 256] = decode_table();

    /// Encodes one sample following G.711's A-law decision levels.
    ///
    /// Usable in `const` contexts so fixed tones and comfort noise can be pre-encoded.
    ///
    /// ```
    /// use chamade_media::g711::alaw;
    /// assert_eq!(alaw::encode_sample(0), alaw::SILENCE);
    /// assert_eq!(alaw::encode_sample(-1), 0x55);
    /// assert_eq!(alaw::encode_sample(i16::MAX), 0xAA);
    /// ```
    pub const fn encode_sample(pcm: i16) -> u8 {
        // G.711 A-law works on 13-bit values: drop the three lowest bits (rounding towards
        // minus infinity), then take the one's complement of negative values so that
        // −1..=−8 share the first negative interval exactly as 0..=7 share the first
        // positive one.
        let value13 = pcm >> 3;
        if value13 >= 0 {
            compress(true, value13 as u16)
        } else {
            compress(false, !value13 as u16)
        }
    }

    /// Encodes a sign and a 12-bit magnitude (0..=4095, G.711's A-law resolution).
    ///
    /// Split out so the tests can feed it sox's rounded 13-bit values and check the
    /// companding law itself bit for bit.
    pub(super) const fn compress(positive: bool, magnitude12: u16) -> u8 {
        let magnitude = if magnitude12 > 0x0FFF {
            0x0FFF
        } else {
            magnitude12
        };
        // The segment search of Sun's `seg_aend` table ({0x1F, 0x3F, .., 0xFFF}), done with
        // the bit length: segment 0 and 1 both have a step of 2, later ones double.
        let bits = 16 - magnitude.leading_zeros() as u16;
        let segment = bits.saturating_sub(5);
        let shift = if segment < 2 { 1 } else { segment };
        let mantissa = (magnitude >> shift) & 0x0F;
        let mask = if positive { 0xD5 } else { 0x55 };
        // The cast keeps the low byte; every field above fits in it.
        ((segment << 4) | mantissa) as u8 ^ mask
    }

    /// Decodes one code to 16-bit PCM (the Sun `alaw2linear` values, ±32,256 at most).
    ///
    /// ```
    /// use chamade_media::g711::alaw;
    /// assert_eq!(alaw::decode_sample(alaw::SILENCE), 8);
    /// assert_eq!(alaw::decode_sample(0x2A), -32_256);
    /// ```
    pub fn decode_sample(code: u8) -> i16 {
        DECODE[usize::from(code)]
    }

    /// Encodes `pcm` into the first `pcm.len()` bytes of `out`; returns the bytes written.
    ///
    /// Refuses a short `out` instead of truncating, so a frame is never half sent.
    ///
    /// ```
    /// use chamade_media::g711::alaw;
    /// let mut codes = [0u8; 160];
    /// assert_eq!(alaw::encode(&[0; 160], &mut codes), Ok(160));
    /// assert!(codes.iter().all(|&c| c == alaw::SILENCE));
    /// ```
    pub fn encode(pcm: &[i16], out: &mut [u8]) -> Result<usize, CodecError> {
        let out = prefix(out, pcm.len())?;
        for (code, &sample) in out.iter_mut().zip(pcm) {
            *code = encode_sample(sample);
        }
        Ok(pcm.len())
    }

    /// Decodes `codes` into the first `codes.len()` samples of `out`; returns the samples
    /// written.
    ///
    /// Refuses a short `out` instead of truncating, so a packet is never half played.
    ///
    /// ```
    /// use chamade_media::g711::alaw;
    /// let mut pcm = [0i16; 2];
    /// assert_eq!(alaw::decode(&[0xD5, 0x55], &mut pcm), Ok(2));
    /// assert_eq!(pcm, [8, -8]);
    /// assert!(alaw::decode(&[0xD5; 3], &mut pcm).is_err());
    /// ```
    pub fn decode(codes: &[u8], out: &mut [i16]) -> Result<usize, CodecError> {
        let out = prefix(out, codes.len())?;
        for (sample, &code) in out.iter_mut().zip(codes) {
            *sample = decode_sample(code);
        }
        Ok(codes.len())
    }

    /// Sun `alaw2linear` for every code.
    const fn decode_table() -> [i16; 256] {
        let mut table = [0i16; 256];
        let mut code = 0;
        while code < 256 {
            let toggled = (code as u8) ^ 0x55;
            let mantissa = ((toggled & 0x0F) as i16) << 4;
            let segment = ((toggled & 0x70) >> 4) as i16;
            // At most (240 + 0x108) << 6 = 32,256: fits an i16.
            let magnitude = match segment {
                0 => mantissa + 8,
                1 => mantissa + 0x108,
                _ => (mantissa + 0x108) << (segment - 1),
            };
            table[code] = if toggled & 0x80 != 0 {
                magnitude
            } else {
                -magnitude
            };
            code += 1;
        }
        table
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// sox's μ-law encoding of every s16 value from -32768 to 32767, in order.
    const SOX_ULAW_ENCODE: &[u8] = include_bytes!("../tests/data/g711/ulaw_encode.ul");
    /// sox's A-law encoding of every s16 value from -32768 to 32767, in order.
    const SOX_ALAW_ENCODE: &[u8] = include_bytes!("../tests/data/g711/alaw_encode.al");
    /// sox's s16le decoding of μ-law codes 0 to 255.
    const SOX_ULAW_DECODE: &[u8] = include_bytes!("../tests/data/g711/ulaw_decode.s16");
    /// sox's s16le decoding of A-law codes 0 to 255.
    const SOX_ALAW_DECODE: &[u8] = include_bytes!("../tests/data/g711/alaw_decode.s16");

    /// The same ramp `make-fixtures.sh` feeds sox.
    fn every_sample() -> impl Iterator<Item = i16> {
        i16::MIN..=i16::MAX
    }

    fn sox_code(fixture: &[u8], pcm: i16) -> u8 {
        fixture[(i32::from(pcm) + 32_768) as usize]
    }

    fn s16le(bytes: &[u8]) -> Vec<i16> {
        bytes
            .chunks_exact(2)
            .map(|c| i16::from_le_bytes([c[0], c[1]]))
            .collect()
    }

    /// sox's `SOX_SAMPLE_TO_SIGNED(bits, ..)`: the s16 value widened to sox's 32-bit sample,
    /// rounded half up to `bits` bits, saturating at the top.
    fn sox_narrow(pcm: i16, bits: u32) -> i32 {
        let sample = i32::from(pcm) << 16;
        let half = 1i32 << (31 - bits);
        if sample > i32::MAX - half {
            (1 << (bits - 1)) - 1
        } else {
            (sample + half) >> (32 - bits)
        }
    }

    /// Codes sorted by decoded value, to tell whether two codes are neighbours.
    fn level_rank(decode: fn(u8) -> i16) -> [usize; 256] {
        let mut codes: Vec<u8> = (0..=255).collect();
        codes.sort_by_key(|&c| decode(c));
        let mut rank = [0; 256];
        for (i, &c) in codes.iter().enumerate() {
            rank[usize::from(c)] = i;
        }
        rank
    }

    #[test]
    fn fixtures_cover_every_input() {
        assert_eq!(SOX_ULAW_ENCODE.len(), 65_536);
        assert_eq!(SOX_ALAW_ENCODE.len(), 65_536);
        assert_eq!(SOX_ULAW_DECODE.len(), 512);
        assert_eq!(SOX_ALAW_DECODE.len(), 512);
    }

    #[test]
    fn ulaw_decode_matches_sox_for_every_code() {
        let sox = s16le(SOX_ULAW_DECODE);
        for code in 0..=255u8 {
            assert_eq!(
                ulaw::decode_sample(code),
                sox[usize::from(code)],
                "code {code:#04x}"
            );
        }
    }

    #[test]
    fn alaw_decode_matches_sox_for_every_code() {
        let sox = s16le(SOX_ALAW_DECODE);
        for code in 0..=255u8 {
            assert_eq!(
                alaw::decode_sample(code),
                sox[usize::from(code)],
                "code {code:#04x}"
            );
        }
    }

    #[test]
    fn ulaw_companding_law_matches_sox_for_every_input() {
        for pcm in every_sample() {
            let narrowed = sox_narrow(pcm, 14);
            let ours = ulaw::compress(narrowed < 0, narrowed.unsigned_abs() as u16);
            assert_eq!(ours, sox_code(SOX_ULAW_ENCODE, pcm), "pcm {pcm}");
        }
    }

    #[test]
    fn alaw_companding_law_matches_sox_for_every_input() {
        for pcm in every_sample() {
            let narrowed = sox_narrow(pcm, 13);
            let ours = if narrowed >= 0 {
                alaw::compress(true, narrowed as u16)
            } else {
                alaw::compress(false, !narrowed as u16)
            };
            assert_eq!(ours, sox_code(SOX_ALAW_ENCODE, pcm), "pcm {pcm}");
        }
    }

    #[test]
    fn ulaw_encoder_differs_from_sox_only_by_one_step_where_sox_rounds() {
        let rank = level_rank(ulaw::decode_sample);
        let mut differing = 0;
        for pcm in every_sample() {
            let (ours, sox) = (ulaw::encode_sample(pcm), sox_code(SOX_ULAW_ENCODE, pcm));
            if ours != sox {
                differing += 1;
                assert_eq!(
                    rank[usize::from(ours)].abs_diff(rank[usize::from(sox)]),
                    1,
                    "pcm {pcm}: ours {ours:#04x}, sox {sox:#04x}"
                );
                // Only sox's rounding can cause it: sign and 14-bit magnitude differ.
                // (−1 and −2 are the −0/+0 case: sox rounds them up to +0.)
                let narrowed = sox_narrow(pcm, 14);
                assert_ne!(
                    (pcm < 0, u32::from(pcm.unsigned_abs() >> 2)),
                    (narrowed < 0, narrowed.unsigned_abs()),
                    "pcm {pcm}"
                );
            }
        }
        assert_eq!(differing, 383);
    }

    #[test]
    fn alaw_encoder_differs_from_sox_only_by_one_step_where_sox_rounds() {
        let rank = level_rank(alaw::decode_sample);
        let mut differing = 0;
        for pcm in every_sample() {
            let (ours, sox) = (alaw::encode_sample(pcm), sox_code(SOX_ALAW_ENCODE, pcm));
            if ours != sox {
                differing += 1;
                assert_eq!(
                    rank[usize::from(ours)].abs_diff(rank[usize::from(sox)]),
                    1,
                    "pcm {pcm}: ours {ours:#04x}, sox {sox:#04x}"
                );
                // Only sox's rounding can cause it: the 13-bit values differ.
                assert_ne!(i32::from(pcm >> 3), sox_narrow(pcm, 13), "pcm {pcm}");
            }
        }
        assert_eq!(differing, 1_020);
    }

    #[test]
    fn itu_zero_codes_hold() {
        assert_eq!(ulaw::encode_sample(0), 0xFF);
        assert_eq!(alaw::encode_sample(0), 0xD5);
        assert_eq!(ulaw::decode_sample(0xFF), 0);
        assert_eq!(ulaw::decode_sample(0x7F), 0);
    }

    #[test]
    fn ulaw_follows_g711_decision_value_31_where_sox_does_not() {
        // G.711 Table 2a: 14-bit magnitude 31 starts the second segment (16-bit 124).
        assert_eq!(ulaw::encode_sample(123), 0xF0);
        assert_eq!(ulaw::encode_sample(124), 0xEF);
        assert_eq!(ulaw::encode_sample(-124), 0x6F);
        assert_eq!(sox_code(SOX_ULAW_ENCODE, 122), 0xEF);
        assert_eq!(ulaw::decode_sample(0xEF), 132);
    }

    #[test]
    fn alaw_follows_g711_first_decision_value_where_sox_does_not() {
        // G.711 Table 1a: the first interval is 0..2 in 12-bit units, 0..16 in 16-bit.
        assert_eq!(alaw::encode_sample(15), 0xD5);
        assert_eq!(alaw::encode_sample(16), 0xD4);
        assert_eq!(sox_code(SOX_ALAW_ENCODE, 12), 0xD4);
        // Small negative values stay negative (nearest level −8); sox rounds them to +8.
        // Sun's old 16-bit `linear2alaw` sent −7..=−1 to 0x5A (−248).
        for pcm in -8..=-1 {
            assert_eq!(alaw::encode_sample(pcm), 0x55, "pcm {pcm}");
        }
        assert_eq!(sox_code(SOX_ALAW_ENCODE, -1), 0xD5);
    }

    #[test]
    fn full_scale_saturates_to_the_outermost_codes() {
        assert_eq!(ulaw::encode_sample(i16::MAX), 0x80);
        assert_eq!(ulaw::encode_sample(32_635), 0x80);
        assert_eq!(ulaw::encode_sample(i16::MIN), 0x00);
        assert_eq!(alaw::encode_sample(i16::MAX), 0xAA);
        assert_eq!(alaw::encode_sample(i16::MIN), 0x2A);
    }

    #[test]
    fn decoding_an_encoded_level_gives_the_same_level() {
        for code in 0..=255u8 {
            let level = ulaw::decode_sample(code);
            assert_eq!(
                ulaw::decode_sample(ulaw::encode_sample(level)),
                level,
                "μ {code:#04x}"
            );
            let level = alaw::decode_sample(code);
            assert_eq!(alaw::encode_sample(level), code, "A {code:#04x}");
        }
    }

    #[test]
    fn round_trip_error_stays_within_half_the_top_step() {
        // The top segment's step is 1,024 for both laws. Beyond μ-law's largest level
        // (±32,124) the error is the saturation itself.
        for pcm in every_sample() {
            let err = i32::from(ulaw::decode_sample(ulaw::encode_sample(pcm))) - i32::from(pcm);
            let saturation = (i32::from(pcm).abs() - 32_124).max(0);
            assert!(err.abs() <= 512.max(saturation), "μ pcm {pcm} err {err}");
            let err = i32::from(alaw::decode_sample(alaw::encode_sample(pcm))) - i32::from(pcm);
            assert!(err.abs() <= 512, "A pcm {pcm} err {err}");
        }
    }

    #[test]
    fn slice_calls_match_sample_calls() {
        let pcm: Vec<i16> = (0..160).map(|i| (i * 409 - 32_768) as i16).collect();
        let mut codes = [0u8; 161];
        assert_eq!(ulaw::encode(&pcm, &mut codes), Ok(160));
        for (&c, &s) in codes.iter().zip(&pcm) {
            assert_eq!(c, ulaw::encode_sample(s));
        }
        assert_eq!(codes[160], 0, "bytes past the input are untouched");
        let mut back = [0i16; 160];
        assert_eq!(ulaw::decode(&codes[..160], &mut back), Ok(160));
        for (&s, &c) in back.iter().zip(&codes) {
            assert_eq!(s, ulaw::decode_sample(c));
        }
        assert_eq!(alaw::encode(&pcm, &mut codes), Ok(160));
        assert_eq!(alaw::decode(&codes[..160], &mut back), Ok(160));
        for (&s, &c) in back.iter().zip(&codes) {
            assert_eq!(s, alaw::decode_sample(c));
        }
    }

    #[test]
    fn short_output_is_refused_not_truncated() {
        let mut codes = [0u8; 159];
        assert_eq!(
            ulaw::encode(&[0; 160], &mut codes),
            Err(CodecError::OutputTooSmall {
                needed: 160,
                got: 159
            })
        );
        assert_eq!(codes, [0; 159], "nothing written on refusal");
        let mut pcm = [0i16; 10];
        assert_eq!(
            alaw::decode(&[0xD5; 11], &mut pcm),
            Err(CodecError::OutputTooSmall {
                needed: 11,
                got: 10
            })
        );
    }

    #[test]
    fn empty_input_writes_nothing() {
        assert_eq!(ulaw::encode(&[], &mut []), Ok(0));
        assert_eq!(alaw::decode(&[], &mut []), Ok(0));
    }
}
