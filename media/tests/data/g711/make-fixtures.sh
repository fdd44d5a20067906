#!/bin/sh
# Regenerates the G.711 reference vectors from sox (SoX v14.4.2 made the committed files).
# Run from anywhere: sh media/tests/data/g711/make-fixtures.sh
#
# `-D` is essential: without it sox adds random TPDF dither when narrowing 16-bit PCM to
# G.711, and the encoded files change from run to run.
set -eu
cd "$(dirname "$0")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Inputs (not committed; the tests rebuild them): every s16le value from -32768 to 32767,
# and every 8-bit code from 0 to 255.
perl -e 'print pack("s<*", -32768 .. 32767)' > "$tmp/ramp.s16"
perl -e 'print pack("C*", 0 .. 255)' > "$tmp/codes.bin"

pcm="-t raw -r 8000 -e signed-integer -b 16 -c 1"
sox -D $pcm "$tmp/ramp.s16" -t raw -e u-law ulaw_encode.ul
sox -D $pcm "$tmp/ramp.s16" -t raw -e a-law alaw_encode.al
sox -D -t raw -r 8000 -e u-law -c 1 "$tmp/codes.bin" $pcm ulaw_decode.s16
sox -D -t raw -r 8000 -e a-law -c 1 "$tmp/codes.bin" $pcm alaw_decode.s16

sha256sum ulaw_encode.ul alaw_encode.al ulaw_decode.s16 alaw_decode.s16
