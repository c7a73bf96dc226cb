//! Benchmark: encode/decode throughput of lightbox-codec versus OpenJPH's `ojph_compress` /
//! `ojph_expand` on the same images, plus compressed size relative to OpenJPH.
//!
//! ```text
//! cargo run --release -p lightbox-codec --example bench [-- --reps N --threads T --reuse --out DIR]
//! ```
//! Images: a 512×512 16-bit CT-like image, 2048×2048 12-bit, 3000×3000 15-bit radiograph and
//! an 8-bit RGB image. When `target-codec/corpus` (scripts/codec-corpus.py extract) exists,
//! they are built by mirror-tiling real DICOM frames (CT_small, MR2_UNCR, RG1_UNCR, US1_UNCR);
//! otherwise synthetic content is used. OpenJPH time is the "Elapsed time" the tools print
//! (codec work without process start-up); ours is measured in-process, best of N runs.

#[path = "../tests/common/pnm.rs"]
mod pnm;

use lightbox_codec::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

struct Img {
    name: &'static str,
    w: u32,
    h: u32,
    comps: u8,
    bits: u8,
    samples: Vec<u16>,
}

fn mirror_tile(src: &[u16], sw: u32, sh: u32, comps: u8, w: u32, h: u32) -> Vec<u16> {
    let c = comps as usize;
    let mut out = Vec::with_capacity((w * h) as usize * c);
    for y in 0..h {
        let ty = y / sh;
        let sy = if ty.is_multiple_of(2) {
            y % sh
        } else {
            sh - 1 - y % sh
        };
        for x in 0..w {
            let tx = x / sw;
            let sx = if tx.is_multiple_of(2) {
                x % sw
            } else {
                sw - 1 - x % sw
            };
            let i = (sy * sw + sx) as usize * c;
            out.extend_from_slice(&src[i..i + c]);
        }
    }
    out
}

fn synthetic(w: u32, h: u32, comps: u8, bits: u8, seed: u64) -> Vec<u16> {
    let mut s = seed | 1;
    let max = (1u32 << bits) - 1;
    let mut v = Vec::with_capacity((w * h) as usize * comps as usize);
    let (cx, cy) = (w as f64 / 2.0, h as f64 / 2.0);
    for y in 0..h {
        for x in 0..w {
            let r = (((x as f64 - cx).powi(2) + (y as f64 - cy).powi(2)).sqrt())
                / (w.min(h) as f64 / 2.0);
            for c in 0..comps {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                let body = if r < 0.9 {
                    0.45 + 0.1 * ((x as f64 / 17.0).sin() * (y as f64 / 23.0).cos())
                } else {
                    0.02
                };
                let noise = (s % 64) as f64 / 64.0 - 0.5;
                let val = body * max as f64 + noise * (max as f64 / 200.0) + c as f64 * 7.0;
                v.push(val.clamp(0.0, max as f64) as u16);
            }
        }
    }
    v
}

fn load_corpus(dir: &Path, name: &str) -> Option<pnm::Pnm> {
    pnm::read_pnm(&dir.join(format!("{name}.pnm"))).ok()
}

fn images(corpus: &Path) -> Vec<Img> {
    let mut out = Vec::new();
    // 512x512 16-bit CT-like. CT_small is signed; shift to unsigned 16-bit for PGM.
    let ct = std::fs::read(corpus.join("ct_small_s16.raw"))
        .ok()
        .map(|raw| {
            let v: Vec<u16> = raw
                .chunks(2)
                .map(|c| (i16::from_le_bytes([c[0], c[1]]) as i32 + 32768) as u16)
                .collect();
            mirror_tile(&v, 128, 128, 1, 512, 512)
        });
    out.push(Img {
        name: "ct512_u16",
        w: 512,
        h: 512,
        comps: 1,
        bits: 16,
        samples: ct.unwrap_or_else(|| synthetic(512, 512, 1, 16, 1)),
    });
    let mr = load_corpus(corpus, "mr2_u12")
        .map(|p| mirror_tile(&p.samples, p.width, p.height, 1, 2048, 2048));
    out.push(Img {
        name: "mr2048_u12",
        w: 2048,
        h: 2048,
        comps: 1,
        bits: 12,
        samples: mr.unwrap_or_else(|| synthetic(2048, 2048, 1, 12, 2)),
    });
    let rg = load_corpus(corpus, "rg1_u15")
        .map(|p| mirror_tile(&p.samples, p.width, p.height, 1, 3000, 3000));
    out.push(Img {
        name: "rg3000_u15",
        w: 3000,
        h: 3000,
        comps: 1,
        bits: 15,
        samples: rg.unwrap_or_else(|| synthetic(3000, 3000, 1, 15, 3)),
    });
    let us = load_corpus(corpus, "us1_rgb8")
        .map(|p| mirror_tile(&p.samples, p.width, p.height, 3, 1920, 1440));
    out.push(Img {
        name: "us1920x1440_rgb8",
        w: 1920,
        h: 1440,
        comps: 3,
        bits: 8,
        samples: us.unwrap_or_else(|| synthetic(1920, 1440, 3, 8, 4)),
    });
    out
}

fn ojph_elapsed(args: &[&str]) -> Option<f64> {
    let out = Command::new(args[0]).args(&args[1..]).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    text.lines()
        .find_map(|l| l.strip_prefix("Elapsed time = "))
        .and_then(|v| v.trim().parse().ok())
}

fn best<F: FnMut() -> f64>(reps: usize, mut f: F) -> f64 {
    (0..reps).map(|_| f()).fold(f64::INFINITY, f64::min)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |k: &str| {
        args.iter()
            .position(|a| a == k)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let reps: usize = arg("--reps").and_then(|s| s.parse().ok()).unwrap_or(5);
    let threads: usize = arg("--threads").and_then(|s| s.parse().ok()).unwrap_or(1);
    let reuse = args.iter().any(|a| a == "--reuse");
    let only = arg("--only");
    if let Some(f) = arg("--decode-file") {
        // Profiling aid: decode one codestream repeatedly.
        let data = std::fs::read(&f).expect("read");
        let o = DecodeOptions {
            reuse_buffers: !args.iter().any(|a| a == "--no-reuse"),
            threads,
            ..Default::default()
        };
        let t = best(reps, || {
            let t = Instant::now();
            decode(&data, &o).expect("decode");
            t.elapsed().as_secs_f64()
        });
        println!("decode {f}: {:.2} ms", t * 1e3);
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out_dir = arg("--out")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target-codec/bench"));
    std::fs::create_dir_all(&out_dir).expect("bench dir");
    let corpus = root.join("target-codec/corpus");
    let have_ojph = Command::new("ojph_compress").output().is_ok();
    println!(
        "| image | MP | ours enc MP/s | ojph enc MP/s | ours dec MP/s | ojph dec MP/s | ours bytes | ojph bytes | size vs ojph |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for img in images(&corpus) {
        if only.as_deref().is_some_and(|o| !img.name.contains(o)) {
            continue;
        }
        let mp = (img.w as f64 * img.h as f64) / 1e6;
        let desc = ImageDesc {
            width: img.w,
            height: img.h,
            components: img.comps,
            bits_stored: img.bits,
            signed: false,
        };
        let eopts = EncodeOptions {
            threads,
            reuse_buffers: reuse,
            ..Default::default()
        };
        let dopts = DecodeOptions {
            threads,
            reuse_buffers: reuse,
            ..Default::default()
        };
        let u8s: Vec<u8> = img.samples.iter().map(|&s| s as u8).collect();
        let samples = if img.bits <= 8 {
            Samples::U8(&u8s)
        } else {
            Samples::U16(&img.samples)
        };
        let mut j2c = Vec::new();
        let enc = best(reps, || {
            let t = Instant::now();
            j2c = encode_lossless(&desc, samples, &eopts).expect("encode");
            t.elapsed().as_secs_f64()
        });
        let dec = best(reps, || {
            let t = Instant::now();
            let d = decode(&j2c, &dopts).expect("decode");
            let e = t.elapsed().as_secs_f64();
            assert_eq!(d.width, img.w);
            e
        });
        let ext = if img.comps == 3 { "ppm" } else { "pgm" };
        let src = out_dir.join(format!("{}.{ext}", img.name));
        let p = pnm::Pnm {
            width: img.w,
            height: img.h,
            components: img.comps,
            maxval: (1 << img.bits) - 1,
            samples: img.samples.clone(),
        };
        pnm::write_pnm(&src, &p).expect("write");
        let ours_f = out_dir.join(format!("{}.ours.j2c", img.name));
        std::fs::write(&ours_f, &j2c).expect("write");
        let (mut oenc, mut odec, mut obytes) = (f64::NAN, f64::NAN, 0usize);
        if have_ojph {
            let of = out_dir.join(format!("{}.ojph.j2c", img.name));
            let back = out_dir.join(format!("{}.ojph.{ext}", img.name));
            let s = |p: &Path| p.to_str().unwrap().to_string();
            let (src_s, of_s, back_s) = (s(&src), s(&of), s(&back));
            oenc = best(reps, || {
                ojph_elapsed(&[
                    "ojph_compress",
                    "-i",
                    &src_s,
                    "-o",
                    &of_s,
                    "-reversible",
                    "true",
                ])
                .unwrap_or(f64::NAN)
            });
            odec = best(reps, || {
                ojph_elapsed(&["ojph_expand", "-i", &of_s, "-o", &back_s]).unwrap_or(f64::NAN)
            });
            obytes = std::fs::metadata(&of)
                .map(|m| m.len() as usize)
                .unwrap_or(0);
        }
        println!(
            "| {} {}x{}x{} {}-bit | {:.2} | {:.1} | {:.1} | {:.1} | {:.1} | {} | {} | {:+.2}% |",
            img.name,
            img.w,
            img.h,
            img.comps,
            img.bits,
            mp,
            mp / enc,
            mp / oenc,
            mp / dec,
            mp / odec,
            j2c.len(),
            obytes,
            (j2c.len() as f64 / obytes as f64 - 1.0) * 100.0
        );
    }
}
