//! Where an import's CPU time goes, measured outside the server on the same files:
//! `cargo run --release -p lightbox-frames --example import-profile -- DIR [--pgm-dir OUT]
//! [--pgm-every K] [--threads T]`.
//!
//! For every `*.dcm` under DIR (native, i.e. explicit / implicit VR little endian, 8- or 16-bit
//! grey pixel data), single-threaded unless `--threads` is given:
//! - `read`: reading the file into memory;
//! - `parse`: dicom-object parsing of the P10 bytes (what `lightbox_dicom::parse_p10` starts
//!   with; its metadata JSON work is not included);
//! - `process`: `process_frames_with`, the importer's whole per-frame pipeline (split, decode,
//!   HTJ2K encode with per-level checksums, verification decode and compare);
//! - `encode`: `lightbox_codec::encode_lossless_with_checksums` alone, from the native samples;
//! - `verify`: `lightbox_codec::decode` of those codestreams alone.
//!
//! With `--pgm-dir`, every K-th frame (default 1) is also written as a PGM (signed samples
//! shifted by 2^(bits-1), which JPEG 2000's DC level shift makes an identical coding problem)
//! for an external encoder such as `ojph_compress`. Prints one JSON object.

use std::path::{Path, PathBuf};
use std::time::Instant;

use dicom_dictionary_std::tags;
use dicom_object::OpenFileOptions;
use dicom_object::file::ReadPreamble;
use lightbox_frames::{ProcessOptions, StorageFormat, process_frames_with};

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("dir entry").path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            files(&p, out);
        } else if p.extension().is_some_and(|e| e == "dcm") {
            out.push(p);
        }
    }
}

fn uint(obj: &dicom_object::InMemDicomObject, tag: dicom_core::Tag) -> u32 {
    obj.element(tag)
        .ok()
        .and_then(|e| e.to_int::<u32>().ok())
        .unwrap_or(0)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |k: &str| {
        args.iter()
            .position(|a| a == k)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let dir = PathBuf::from(args.get(1).expect("usage: import-profile DIR [options]"));
    let threads: usize = arg("--threads").and_then(|s| s.parse().ok()).unwrap_or(1);
    let pgm_dir = arg("--pgm-dir").map(PathBuf::from);
    let pgm_every: usize = arg("--pgm-every")
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
        .max(1);
    if let Some(d) = &pgm_dir {
        std::fs::create_dir_all(d).expect("pgm dir");
    }
    let mut paths = Vec::new();
    files(&dir, &mut paths);

    let (mut t_read, mut t_parse, mut t_process, mut t_encode, mut t_verify) =
        (0f64, 0f64, 0f64, 0f64, 0f64);
    let (mut in_bytes, mut frames, mut pixels, mut out_bytes, mut pgms, mut raw) =
        (0u64, 0u64, 0u64, 0u64, 0u64, 0u64);
    let mut frame_no = 0usize;
    for path in &paths {
        let t = Instant::now();
        let bytes = std::fs::read(path).expect("read");
        t_read += t.elapsed().as_secs_f64();
        in_bytes += bytes.len() as u64;

        let t = Instant::now();
        let obj = OpenFileOptions::new()
            .read_preamble(ReadPreamble::Always)
            .from_reader(&bytes[..])
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        t_parse += t.elapsed().as_secs_f64();
        let ts = obj
            .meta()
            .transfer_syntax()
            .trim_end_matches(['\0', ' '])
            .to_string();

        let t = Instant::now();
        let opts = ProcessOptions { threads };
        process_frames_with(&obj, &ts, StorageFormat::Htj2k, &opts, &mut |_, f| {
            out_bytes += f.bytes.len() as u64;
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{}: {}", path.display(), e.message));
        t_process += t.elapsed().as_secs_f64();

        // The codec alone, from the native samples.
        assert!(
            ts == "1.2.840.10008.1.2.1" || ts == "1.2.840.10008.1.2",
            "{}: only native little-endian files can be profiled (transfer syntax {ts})",
            path.display()
        );
        let rows = uint(&obj, tags::ROWS);
        let cols = uint(&obj, tags::COLUMNS);
        let alloc = uint(&obj, tags::BITS_ALLOCATED);
        let stored = uint(&obj, tags::BITS_STORED) as u8;
        let signed = uint(&obj, tags::PIXEL_REPRESENTATION) == 1;
        assert_eq!(
            uint(&obj, tags::SAMPLES_PER_PIXEL).max(1),
            1,
            "grey images only"
        );
        let n = uint(&obj, tags::NUMBER_OF_FRAMES).max(1) as usize;
        let data = obj
            .element(tags::PIXEL_DATA)
            .expect("PixelData")
            .to_bytes()
            .expect("native PixelData");
        let per = (rows * cols) as usize;
        let desc = lightbox_codec::ImageDesc {
            width: cols,
            height: rows,
            components: 1,
            bits_stored: stored,
            signed,
        };
        let eopts = lightbox_codec::EncodeOptions {
            threads,
            ..Default::default()
        };
        let dopts = lightbox_codec::DecodeOptions {
            threads,
            ..Default::default()
        };
        for f in 0..n {
            let (u16s, u8s): (Vec<u16>, Vec<u8>) = match alloc {
                16 => (
                    data[f * per * 2..(f + 1) * per * 2]
                        .chunks_exact(2)
                        .map(|c| u16::from_le_bytes([c[0], c[1]]))
                        .collect(),
                    Vec::new(),
                ),
                8 => (Vec::new(), data[f * per..(f + 1) * per].to_vec()),
                b => panic!("BitsAllocated {b} not supported here"),
            };
            let i16s: Vec<i16> = u16s.iter().map(|&v| v as i16).collect();
            let i8s: Vec<i8> = u8s.iter().map(|&v| v as i8).collect();
            let samples = match (alloc, signed) {
                (16, false) => lightbox_codec::Samples::U16(&u16s),
                (16, true) => lightbox_codec::Samples::I16(&i16s),
                (_, false) => lightbox_codec::Samples::U8(&u8s),
                (_, true) => lightbox_codec::Samples::I8(&i8s),
            };
            let t = Instant::now();
            let (j2c, _sums) =
                lightbox_codec::encode_lossless_with_checksums(&desc, samples, &eopts)
                    .expect("encode");
            t_encode += t.elapsed().as_secs_f64();
            let t = Instant::now();
            lightbox_codec::decode(&j2c, &dopts).expect("decode");
            t_verify += t.elapsed().as_secs_f64();
            frames += 1;
            pixels += per as u64;
            raw += (per * alloc as usize / 8) as u64;

            if let Some(d) = &pgm_dir
                && frame_no.is_multiple_of(pgm_every)
            {
                let maxval = (1u32 << stored) - 1;
                let mut out = format!("P5\n{cols} {rows}\n{maxval}\n").into_bytes();
                let shift = if signed { 1i32 << (stored - 1) } else { 0 };
                if alloc == 16 {
                    let vals: Box<dyn Iterator<Item = i32>> = if signed {
                        Box::new(i16s.iter().map(|&v| v as i32))
                    } else {
                        Box::new(u16s.iter().map(|&v| v as i32))
                    };
                    for v in vals {
                        let v = (v + shift) as u16;
                        if maxval > 255 {
                            out.extend_from_slice(&v.to_be_bytes());
                        } else {
                            out.push(v as u8);
                        }
                    }
                } else {
                    for &v in &u8s {
                        let v = if signed {
                            (v as i8 as i32 + shift) as u8
                        } else {
                            v
                        };
                        out.push(v);
                    }
                }
                std::fs::write(d.join(format!("f{frame_no:06}.pgm")), out).expect("write pgm");
                pgms += 1;
            }
            frame_no += 1;
        }
    }
    let mp = pixels as f64 / 1e6;
    println!(
        "{{\"files\": {}, \"frames\": {frames}, \"input_bytes\": {in_bytes}, \"megapixels\": {mp:.3}, \
         \"htj2k_bytes\": {out_bytes}, \"ratio\": {:.3}, \"threads\": {threads}, \
         \"read_s\": {t_read:.4}, \"parse_s\": {t_parse:.4}, \"process_s\": {t_process:.4}, \
         \"encode_s\": {t_encode:.4}, \"verify_decode_s\": {t_verify:.4}, \
         \"encode_ms_per_frame\": {:.3}, \"encode_mp_per_s\": {:.1}, \"pgm_frames\": {pgms}}}",
        paths.len(),
        raw as f64 / out_bytes.max(1) as f64,
        t_encode * 1e3 / frames.max(1) as f64,
        mp / t_encode.max(1e-9),
    );
}
