//! Command-line front end for manual interop checks: PGM/PPM/raw <-> HTJ2K codestream.
//!
//! ```text
//! j2c encode in.pgm|in.ppm out.j2c [levels]
//! j2c encode-raw in.raw out.j2c WIDTH HEIGHT COMPONENTS BITS SIGNED(0|1)
//! j2c decode in.j2c out.pgm|out.ppm|out.raw [resolution_levels]
//! j2c info in.j2c
//! j2c checksums in.j2c
//! ```
//! Raw files hold interleaved samples, 1 byte each for <= 8 bits, else 2 bytes little-endian.

#[path = "../tests/common/pnm.rs"]
mod pnm;

use lightbox_codec::*;
use std::path::Path;

fn main() {
    let a: Vec<String> = std::env::args().collect();
    if let Err(e) = run(&a) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run(a: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    let cmd = a.get(1).map(String::as_str).unwrap_or("");
    match cmd {
        "encode" => {
            let p = pnm::read_pnm(Path::new(&a[2]))?;
            let desc = ImageDesc {
                width: p.width,
                height: p.height,
                components: p.components,
                bits_stored: p.bits(),
                signed: false,
            };
            let opts = EncodeOptions {
                levels: a.get(4).map(|s| s.parse()).transpose()?,
                ..Default::default()
            };
            let out = if p.maxval < 256 {
                let v: Vec<u8> = p.samples.iter().map(|&s| s as u8).collect();
                encode_lossless(&desc, Samples::U8(&v), &opts)?
            } else {
                encode_lossless(&desc, Samples::U16(&p.samples), &opts)?
            };
            std::fs::write(&a[3], out)?;
        }
        "encode-raw" => {
            let data = std::fs::read(&a[2])?;
            let n = |i: usize| -> Result<u32, Box<dyn std::error::Error>> { Ok(a[i].parse()?) };
            let desc = ImageDesc {
                width: n(4)?,
                height: n(5)?,
                components: n(6)? as u8,
                bits_stored: n(7)? as u8,
                signed: n(8)? == 1,
            };
            let opts = EncodeOptions::default();
            let out = match (desc.signed, desc.bits_stored <= 8) {
                (false, true) => encode_lossless(&desc, Samples::U8(&data), &opts)?,
                (true, true) => {
                    let v: Vec<i8> = data.iter().map(|&b| b as i8).collect();
                    encode_lossless(&desc, Samples::I8(&v), &opts)?
                }
                (false, false) => {
                    let v: Vec<u16> = data
                        .chunks(2)
                        .map(|c| u16::from_le_bytes([c[0], c[1]]))
                        .collect();
                    encode_lossless(&desc, Samples::U16(&v), &opts)?
                }
                (true, false) => {
                    let v: Vec<i16> = data
                        .chunks(2)
                        .map(|c| i16::from_le_bytes([c[0], c[1]]))
                        .collect();
                    encode_lossless(&desc, Samples::I16(&v), &opts)?
                }
            };
            std::fs::write(&a[3], out)?;
        }
        "decode" => {
            let data = std::fs::read(&a[2])?;
            let opts = DecodeOptions {
                max_resolution_levels: a.get(4).map(|s| s.parse()).transpose()?,
                ..Default::default()
            };
            let img = decode(&data, &opts)?;
            if a[3].ends_with(".raw") {
                std::fs::write(&a[3], img.to_le_bytes())?;
            } else {
                let samples: Vec<u16> = match &img.samples {
                    DecodedSamples::U8(v) => v.iter().map(|&x| x as u16).collect(),
                    DecodedSamples::U16(v) => v.clone(),
                    _ => return Err("signed images need a .raw output".into()),
                };
                let p = pnm::Pnm {
                    width: img.width,
                    height: img.height,
                    components: img.components,
                    maxval: (1u32 << img.bits_stored) - 1,
                    samples,
                };
                pnm::write_pnm(Path::new(&a[3]), &p)?;
            }
        }
        "info" => {
            let data = std::fs::read(&a[2])?;
            println!("{:#?}", info(&data)?);
        }
        "checksums" => {
            let data = std::fs::read(&a[2])?;
            for c in resolution_checksums(&data, &DecodeOptions::default())? {
                println!("{}x{} {:08x}", c.width, c.height, c.crc32);
            }
        }
        _ => return Err("usage: j2c encode|encode-raw|decode|info|checksums ...".into()),
    }
    Ok(())
}
