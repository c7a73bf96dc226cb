//! Synthetic instances for the cases the real corpus lacks: no pixel data, signed 12-bit
//! multi-frame, native YBR_FULL_422, bit-packed frames (plain and binary segmentation),
//! 32-bit samples, RLE with a broken offset table, video, errors.

use dicom_core::value::{PixelFragmentSequence, Value};
use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use lightbox_frames::*;

fn image(
    rows: u16,
    cols: u16,
    spp: u16,
    bits: u16,
    stored: u16,
    signed: bool,
    pi: &str,
) -> InMemDicomObject {
    let mut o = InMemDicomObject::new_empty();
    o.put(DataElement::new(
        tags::SOP_CLASS_UID,
        VR::UI,
        PrimitiveValue::from("1.2.840.10008.5.1.4.1.1.7"),
    ));
    o.put(DataElement::new(
        tags::ROWS,
        VR::US,
        PrimitiveValue::from(rows),
    ));
    o.put(DataElement::new(
        tags::COLUMNS,
        VR::US,
        PrimitiveValue::from(cols),
    ));
    o.put(DataElement::new(
        tags::SAMPLES_PER_PIXEL,
        VR::US,
        PrimitiveValue::from(spp),
    ));
    o.put(DataElement::new(
        tags::BITS_ALLOCATED,
        VR::US,
        PrimitiveValue::from(bits),
    ));
    o.put(DataElement::new(
        tags::BITS_STORED,
        VR::US,
        PrimitiveValue::from(stored),
    ));
    o.put(DataElement::new(
        tags::HIGH_BIT,
        VR::US,
        PrimitiveValue::from(stored - 1),
    ));
    o.put(DataElement::new(
        tags::PIXEL_REPRESENTATION,
        VR::US,
        PrimitiveValue::from(signed as u16),
    ));
    o.put(DataElement::new(
        tags::PHOTOMETRIC_INTERPRETATION,
        VR::CS,
        PrimitiveValue::from(pi),
    ));
    o
}

fn frames_of(n: &str, o: &mut InMemDicomObject) {
    o.put(DataElement::new(
        tags::NUMBER_OF_FRAMES,
        VR::IS,
        PrimitiveValue::from(n),
    ));
}

fn native(o: &mut InMemDicomObject, bytes: Vec<u8>) {
    o.put(DataElement::new(
        tags::PIXEL_DATA,
        VR::OB,
        PrimitiveValue::from(bytes),
    ));
}

fn run(
    o: &InMemDicomObject,
    ts: &str,
    format: StorageFormat,
) -> Result<(FramesInfo, Vec<StoredFrame>), FrameError> {
    let mut frames = Vec::new();
    let info = process_frames(o, ts, format, &mut |i, f| {
        assert_eq!(i, frames.len());
        frames.push(f);
        Ok(())
    })?;
    Ok((info, frames))
}

const ELE: &str = "1.2.840.10008.1.2.1";

#[test]
fn no_pixel_data() {
    let o = image(2, 2, 1, 8, 8, false, "MONOCHROME2");
    let (info, frames) = run(&o, ELE, StorageFormat::Htj2k).unwrap();
    assert_eq!(info.frame_count, 0);
    assert!(frames.is_empty());
}

#[test]
fn signed_12_bit_multiframe_both_formats() {
    let (rows, cols, n) = (37usize, 50usize, 5usize);
    let mut o = image(rows as u16, cols as u16, 1, 16, 12, true, "MONOCHROME2");
    frames_of("5", &mut o);
    let mut values = Vec::new();
    for k in 0..n * rows * cols {
        values.push(((k * 37 % 4096) as i32 - 2048) as i16);
    }
    // Container bits above BitsStored are sign extension already; check it stays lossless.
    native(
        &mut o,
        values.iter().flat_map(|v| v.to_le_bytes()).collect(),
    );
    for format in [StorageFormat::Htj2k, StorageFormat::Jpeg2000Lossless] {
        let (info, frames) = run(&o, ELE, format).unwrap();
        assert_eq!(info.frame_count, n);
        assert!(info.warnings.is_empty());
        // One thread gives the same frames.
        let mut single = Vec::new();
        process_frames_with(
            &o,
            ELE,
            format,
            &ProcessOptions { threads: 1 },
            &mut |_, f| {
                single.push(f);
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(single, frames);
        for (k, f) in frames.iter().enumerate() {
            let want: Vec<i64> = values[k * rows * cols..(k + 1) * rows * cols]
                .iter()
                .map(|&v| v as i64)
                .collect();
            let dec = decode_stored_frame(&o, &info.stored_transfer_syntax, &f.bytes).unwrap();
            assert_eq!(dec.values(), want);
            assert!(dec.signed);
            assert_eq!(f.min_pixel_value, want.iter().min().copied());
            assert_eq!(f.max_pixel_value, want.iter().max().copied());
            let le: Vec<u8> = want
                .iter()
                .flat_map(|&v| (v as i16).to_le_bytes())
                .collect();
            assert_eq!(
                f.checksums.last().unwrap(),
                &(cols as u32, rows as u32, crc32fast::hash(&le))
            );
        }
    }
}

#[test]
fn native_ybr_full_422_is_upsampled() {
    let mut o = image(2, 4, 3, 8, 8, false, "YBR_FULL_422");
    // Two rows of two pixel pairs: Y0 Y1 Cb Cr.
    native(
        &mut o,
        vec![
            10, 11, 100, 200, 12, 13, 101, 201, 14, 15, 102, 202, 16, 17, 103, 203,
        ],
    );
    let (info, frames) = run(&o, ELE, StorageFormat::Htj2k).unwrap();
    assert_eq!(
        info.stored_photometric_interpretation.as_deref(),
        Some("YBR_FULL")
    );
    let dec = decode_stored_frame(&o, &info.stored_transfer_syntax, &frames[0].bytes).unwrap();
    let v = dec.values();
    assert_eq!(
        &v[..12],
        &[10, 100, 200, 11, 100, 200, 12, 101, 201, 13, 101, 201]
    );
    assert_eq!(v.len(), 2 * 4 * 3);
}

#[test]
fn bit_packed_frames_unpack_to_0_1() {
    // Two 3x3 frames: 18 bits, the second frame starts at bit 9 (not byte aligned).
    let bits: Vec<u8> = (0..18).map(|i| ((i * 5 + 1) % 3 == 0) as u8).collect();
    let mut packed = vec![0u8; 3];
    for (i, &b) in bits.iter().enumerate() {
        packed[i / 8] |= b << (i % 8);
    }
    let mut o = image(3, 3, 1, 1, 1, false, "MONOCHROME2");
    frames_of("2", &mut o);
    native(&mut o, packed.clone());
    let (info, frames) = run(&o, ELE, StorageFormat::Htj2k).unwrap();
    assert_eq!(info.stored_transfer_syntax, "1.2.840.10008.1.2.4.202");
    for k in 0..2 {
        let dec = decode_stored_frame(&o, &info.stored_transfer_syntax, &frames[k].bytes).unwrap();
        let want: Vec<i64> = bits[9 * k..9 * k + 9].iter().map(|&b| b as i64).collect();
        assert_eq!(dec.values(), want);
    }

    // Binary segmentation: kept as Explicit VR LE, each frame re-packed from bit 0.
    o.put(DataElement::new(
        tags::SOP_CLASS_UID,
        VR::UI,
        PrimitiveValue::from("1.2.840.10008.5.1.4.1.1.66.4"),
    ));
    let (info, frames) = run(&o, ELE, StorageFormat::Htj2k).unwrap();
    assert_eq!(info.stored_transfer_syntax, ELE);
    let mut second = vec![0u8; 2];
    for i in 0..9 {
        second[i / 8] |= bits[9 + i] << (i % 8);
    }
    assert_eq!(frames[1].bytes, second);
    let dec = decode_stored_frame(&o, ELE, &frames[1].bytes).unwrap();
    assert_eq!(
        dec.values(),
        bits[9..].iter().map(|&b| b as i64).collect::<Vec<_>>()
    );
    assert_eq!(
        frames[1].checksums,
        vec![(3, 3, crc32fast::hash(&bits[9..]))]
    );
}

#[test]
fn thirty_two_bit_is_kept_native_with_warning() {
    let mut o = image(2, 3, 1, 32, 32, false, "MONOCHROME2");
    let vals: Vec<u32> = vec![0, 1, 70000, 4_000_000_000, 5, 6];
    native(&mut o, vals.iter().flat_map(|v| v.to_le_bytes()).collect());
    let (info, frames) = run(&o, ELE, StorageFormat::Htj2k).unwrap();
    assert_eq!(info.stored_transfer_syntax, ELE);
    assert_eq!(info.warnings[0].code, 45312);
    let le: Vec<u8> = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
    assert_eq!(frames[0].bytes, le);
    assert_eq!(frames[0].checksums, vec![(3, 2, crc32fast::hash(&le))]);
    assert_eq!(frames[0].max_pixel_value, Some(4_000_000_000));
}

/// RLE segment with literal runs only.
fn rle_literal(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for chunk in bytes.chunks(128) {
        out.push((chunk.len() - 1) as u8);
        out.extend_from_slice(chunk);
    }
    if out.len() % 2 == 1 {
        out.push(0x80); // no-op
    }
    out
}

fn rle_frame(planes: &[Vec<u8>]) -> Vec<u8> {
    let mut header = vec![0u8; 64];
    header[..4].copy_from_slice(&(planes.len() as u32).to_le_bytes());
    let mut body = Vec::new();
    for (i, p) in planes.iter().enumerate() {
        let off = 64 + body.len() as u32;
        header[4 + 4 * i..8 + 4 * i].copy_from_slice(&off.to_le_bytes());
        body.extend(rle_literal(p));
    }
    header.extend(body);
    header
}

#[test]
fn rle_32_bit_and_invalid_offset_table() {
    let mut o = image(2, 2, 1, 32, 32, false, "MONOCHROME2");
    frames_of("2", &mut o);
    let frames_vals: Vec<Vec<u32>> = vec![vec![1, 2, 3, 0xFFFF_FFFF], vec![7, 8, 9, 0x0102_0304]];
    let fragments: Vec<Vec<u8>> = frames_vals
        .iter()
        .map(|v| {
            let planes: Vec<Vec<u8>> = (0..4)
                .map(|b| v.iter().map(|x| (x >> (24 - 8 * b)) as u8).collect())
                .collect();
            rle_frame(&planes)
        })
        .collect();
    // A Basic Offset Table that points into the middle of a fragment.
    let seq = PixelFragmentSequence::new(vec![0u32, 3], fragments);
    o.put(DataElement::new(
        tags::PIXEL_DATA,
        VR::OB,
        Value::PixelSequence(seq),
    ));
    let (info, frames) = run(&o, "1.2.840.10008.1.2.5", StorageFormat::Htj2k).unwrap();
    assert_eq!(info.frame_count, 2);
    assert!(
        info.warnings
            .iter()
            .any(|w| w.code == 45330 && w.kind == "InvalidOffsetTable")
    );
    assert_eq!(info.stored_transfer_syntax, ELE);
    for (f, v) in frames.iter().zip(&frames_vals) {
        let le: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        assert_eq!(f.bytes, le);
    }
}

#[test]
fn rle_16_bit_rgb_transcodes() {
    let mut o = image(2, 2, 3, 16, 16, false, "RGB");
    let vals: Vec<u16> = (0..12).map(|i| i * 5000).collect();
    let mut planes = Vec::new();
    for c in 0..3 {
        for shift in [8, 0] {
            planes.push((0..4).map(|p| (vals[p * 3 + c] >> shift) as u8).collect());
        }
    }
    let seq = PixelFragmentSequence::new(Vec::<u32>::new(), vec![rle_frame(&planes)]);
    o.put(DataElement::new(
        tags::PIXEL_DATA,
        VR::OB,
        Value::PixelSequence(seq),
    ));
    let (info, frames) = run(&o, "1.2.840.10008.1.2.5", StorageFormat::Htj2k).unwrap();
    let dec = decode_stored_frame(&o, &info.stored_transfer_syntax, &frames[0].bytes).unwrap();
    assert_eq!(
        dec.values(),
        vals.iter().map(|&v| v as i64).collect::<Vec<_>>()
    );
}

#[test]
fn video_is_one_object() {
    let mut o = image(4, 4, 3, 8, 8, false, "YBR_PARTIAL_420");
    frames_of("30", &mut o);
    let seq = PixelFragmentSequence::new(Vec::<u32>::new(), vec![vec![0, 0, 1, 0xB3], vec![9, 9]]);
    o.put(DataElement::new(
        tags::PIXEL_DATA,
        VR::OB,
        Value::PixelSequence(seq),
    ));
    let (info, frames) = run(&o, "1.2.840.10008.1.2.4.102", StorageFormat::Htj2k).unwrap();
    assert_eq!(info.stored_transfer_syntax, "1.2.840.10008.1.2.4.102");
    assert_eq!(info.frame_count, 1);
    assert_eq!(frames[0].bytes, vec![0, 0, 1, 0xB3, 9, 9]);
    assert!(frames[0].checksums.is_empty());
    assert_eq!(frames[0].min_pixel_value, None);
}

#[test]
fn extended_offset_table_splits_frames() {
    // Two 1x1 8-bit RLE frames; the EOT is authoritative, the BOT is empty.
    let mut o = image(1, 1, 1, 8, 8, false, "MONOCHROME2");
    frames_of("2", &mut o);
    let f1 = rle_frame(&[vec![42]]);
    let f2 = rle_frame(&[vec![43]]);
    let second = 8 + f1.len() as u64;
    o.put(DataElement::new(
        Tag(0x7FE0, 0x0001),
        VR::OV,
        PrimitiveValue::U64(vec![0, second].into()),
    ));
    o.put(DataElement::new(
        Tag(0x7FE0, 0x0002),
        VR::OV,
        PrimitiveValue::U64(vec![f1.len() as u64, f2.len() as u64].into()),
    ));
    let seq = PixelFragmentSequence::new(Vec::<u32>::new(), vec![f1, f2]);
    o.put(DataElement::new(
        tags::PIXEL_DATA,
        VR::OB,
        Value::PixelSequence(seq),
    ));
    let (info, frames) = run(&o, "1.2.840.10008.1.2.5", StorageFormat::Htj2k).unwrap();
    assert!(info.warnings.is_empty());
    assert_eq!(frames[1].max_pixel_value, Some(43));
}

#[test]
fn errors_are_validation_exceptions_without_data() {
    let mut o = image(2, 2, 1, 8, 8, false, "MONOCHROME2");
    native(&mut o, vec![1, 2, 3]);
    let e = run(&o, ELE, StorageFormat::Htj2k).unwrap_err();
    assert_eq!(e.exception_type, "ValidationException");
    let e = run(&o, "1.2.3.4", StorageFormat::Htj2k).unwrap_err();
    assert_eq!(e.exception_type, "ValidationException");
    // A failing sink stops processing and its error is returned.
    native(&mut o, vec![1, 2, 3, 4]);
    let e = process_frames(&o, ELE, StorageFormat::Htj2k, &mut |_, _| {
        Err(FrameError {
            exception_type: "InternalServerException",
            message: "upload failed".into(),
        })
    })
    .unwrap_err();
    assert_eq!(e.message, "upload failed");
}

#[test]
fn jpeg_xl_frames_are_kept_without_checksums() {
    let mut o = image(4, 4, 1, 8, 8, false, "MONOCHROME2");
    frames_of("2", &mut o);
    let seq = PixelFragmentSequence::new(
        Vec::<u32>::new(),
        vec![vec![0xFF, 0x0A, 1], vec![0xFF, 0x0A, 2]],
    );
    o.put(DataElement::new(
        tags::PIXEL_DATA,
        VR::OB,
        Value::PixelSequence(seq),
    ));
    let (info, frames) = run(
        &o,
        "1.2.840.10008.1.2.4.112",
        StorageFormat::Jpeg2000Lossless,
    )
    .unwrap();
    assert_eq!(info.stored_transfer_syntax, "1.2.840.10008.1.2.4.112");
    assert_eq!(frames.len(), 2);
    assert_eq!(frames[1].bytes, vec![0xFF, 0x0A, 2]);
    assert!(frames[1].checksums.is_empty());
}
