//! Throughput of `process_frames` on a synthetic 512×512 12-bit CT-like series (native ELE
//! → HTJ2K and → JPEG 2000 lossless, verification included):
//! `cargo run --release -p lightbox-frames --example bench [frames]`.

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use lightbox_frames::{ProcessOptions, StorageFormat, process_frames_with};

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(16);
    let (rows, cols) = (512usize, 512usize);
    let mut o = InMemDicomObject::new_empty();
    let us = |t, v: u16| DataElement::new(t, VR::US, PrimitiveValue::from(v));
    o.put(us(tags::ROWS, rows as u16));
    o.put(us(tags::COLUMNS, cols as u16));
    o.put(us(tags::SAMPLES_PER_PIXEL, 1));
    o.put(us(tags::BITS_ALLOCATED, 16));
    o.put(us(tags::BITS_STORED, 12));
    o.put(us(tags::PIXEL_REPRESENTATION, 1));
    o.put(DataElement::new(
        tags::NUMBER_OF_FRAMES,
        VR::IS,
        PrimitiveValue::from(n.to_string()),
    ));
    // A smooth disc with noise, roughly like a CT slice.
    let mut seed = 1u32;
    let mut px = Vec::with_capacity(n * rows * cols * 2);
    for k in 0..n {
        for y in 0..rows {
            for x in 0..cols {
                seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                let (dx, dy) = (x as f32 - 256.0, y as f32 - 256.0 + k as f32);
                let r = (dx * dx + dy * dy).sqrt();
                let base = if r < 220.0 {
                    40.0 + 300.0 * (r / 40.0).sin()
                } else {
                    -1000.0
                };
                let v = (base + (seed >> 28) as f32 - 8.0).clamp(-2048.0, 2047.0) as i16;
                px.extend_from_slice(&v.to_le_bytes());
            }
        }
    }
    o.put(DataElement::new(
        tags::PIXEL_DATA,
        VR::OW,
        PrimitiveValue::from(px),
    ));
    for threads in [1, 0] {
        for format in [StorageFormat::Htj2k, StorageFormat::Jpeg2000Lossless] {
            let t = std::time::Instant::now();
            let mut bytes = 0usize;
            let opts = ProcessOptions { threads };
            process_frames_with(&o, "1.2.840.10008.1.2.1", format, &opts, &mut |_, f| {
                bytes += f.bytes.len();
                Ok(())
            })
            .unwrap();
            let ms = t.elapsed().as_secs_f64() * 1000.0 / n as f64;
            println!(
                "{format:?} threads={threads}: {ms:.1} ms/frame, ratio {:.2}",
                (n * rows * cols * 2) as f64 / bytes as f64
            );
        }
    }
}
