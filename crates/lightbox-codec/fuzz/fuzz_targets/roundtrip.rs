//! Fuzz target: arbitrary small images must round-trip bit-exactly through encode and decode.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lightbox_codec::*;

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let w = 1 + (data[0] % 40) as u32;
    let h = 1 + (data[1] % 40) as u32;
    let comps = [1u8, 3][(data[2] & 1) as usize];
    let bits = 1 + (data[2] >> 1) % 16;
    let signed = data[3] & 1 == 1;
    let levels = if data[3] & 2 == 2 { Some((data[3] >> 2) % 8) } else { None };
    let n = (w * h) as usize * comps as usize;
    let body = &data[4..];
    let raw = |i: usize| -> u32 {
        let a = body.get(2 * i).copied().unwrap_or(0) as u32;
        let b = body.get(2 * i + 1).copied().unwrap_or(0) as u32;
        (a << 8 | b) & ((1 << bits) - 1)
    };
    let desc = ImageDesc { width: w, height: h, components: comps, bits_stored: bits, signed };
    let opts = EncodeOptions { levels, ..Default::default() };
    let dopts = DecodeOptions::default();
    let half = 1i32 << (bits - 1);
    match (signed, bits <= 8) {
        (false, true) => {
            let v: Vec<u8> = (0..n).map(|i| raw(i) as u8).collect();
            let j = encode_lossless(&desc, Samples::U8(&v), &opts).unwrap();
            assert_eq!(decode(&j, &dopts).unwrap().samples, DecodedSamples::U8(v));
        }
        (false, false) => {
            let v: Vec<u16> = (0..n).map(|i| raw(i) as u16).collect();
            let j = encode_lossless(&desc, Samples::U16(&v), &opts).unwrap();
            assert_eq!(decode(&j, &dopts).unwrap().samples, DecodedSamples::U16(v));
        }
        (true, true) => {
            let v: Vec<i8> = (0..n).map(|i| (raw(i) as i32 - half) as i8).collect();
            let j = encode_lossless(&desc, Samples::I8(&v), &opts).unwrap();
            assert_eq!(decode(&j, &dopts).unwrap().samples, DecodedSamples::I8(v));
        }
        (true, false) => {
            let v: Vec<i16> = (0..n).map(|i| (raw(i) as i32 - half) as i16).collect();
            let j = encode_lossless(&desc, Samples::I16(&v), &opts).unwrap();
            assert_eq!(decode(&j, &dopts).unwrap().samples, DecodedSamples::I16(v));
        }
    }
});
