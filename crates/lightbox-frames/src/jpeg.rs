//! JPEG (ISO 10918-1) frames: baseline/extended 8-bit and lossless through `jpeg-decoder`,
//! 12-bit extended (sequential DCT, Huffman) through our own decoder ([`crate::jpeg12`]),
//! and JPEG-LS through CharLS.

use crate::pixels::{Buf, Pixels};

/// Start-of-frame information: marker (0xC0..0xCF) and sample precision.
pub(crate) struct Sof {
    pub marker: u8,
    pub precision: u8,
    pub components: u8,
    /// Components have different sampling factors (chroma subsampling).
    #[cfg_attr(not(test), allow(dead_code))]
    pub subsampled: bool,
}

/// Finds the first SOF marker of a JPEG stream.
pub(crate) fn find_sof(data: &[u8]) -> Option<Sof> {
    if !data.starts_with(&[0xFF, 0xD8]) {
        return None;
    }
    let mut i = 2;
    while i + 4 <= data.len() {
        if data[i] != 0xFF {
            return None;
        }
        let m = data[i + 1];
        if m == 0xFF {
            i += 1;
            continue;
        }
        let len = u16::from_be_bytes([data[i + 2], data[i + 3]]) as usize;
        if matches!(m, 0xC0..=0xCF | 0xF7) && !matches!(m, 0xC4 | 0xC8 | 0xCC) {
            let p = *data.get(i + 4)?;
            let nc = *data.get(i + 9)?;
            let factors: Vec<u8> = (0..nc as usize)
                .filter_map(|c| data.get(i + 11 + 3 * c).copied())
                .collect();
            return Some(Sof {
                marker: m,
                precision: p,
                components: nc,
                subsampled: factors.windows(2).any(|w| w[0] != w[1]),
            });
        }
        if m == 0xDA || m == 0xD9 {
            return None;
        }
        i += 2 + len;
    }
    None
}

/// Decodes a JPEG (10918-1) frame. Three-component lossy frames are returned as RGB when
/// the DICOM photometric interpretation is YBR_* (as libjpeg, pydicom and viewers do) and
/// untransformed otherwise; lossless frames are never colour-transformed.
pub(crate) fn decode(data: &[u8], photometric: &str, max_samples: u64) -> Result<Pixels, String> {
    let sof = find_sof(data).ok_or("JPEG frame has no SOF marker")?;
    if sof.precision > 8 && matches!(sof.marker, 0xC0 | 0xC1) {
        let ycc = sof.components == 3 && photometric.starts_with("YBR");
        return crate::jpeg12::decode(data, max_samples, ycc);
    }
    let mut dec = jpeg_decoder::Decoder::new(data);
    dec.read_info().map_err(|e| format!("JPEG header: {e}"))?;
    let info = dec
        .info()
        .ok_or("JPEG decoder returned no image information")?;
    if info.width as u64 * info.height as u64 * sof.components.max(1) as u64 > max_samples {
        return Err("JPEG stream is larger than the frame".into());
    }
    if sof.components == 3 {
        let t = if photometric.starts_with("YBR") {
            jpeg_decoder::ColorTransform::YCbCr
        } else {
            jpeg_decoder::ColorTransform::RGB
        };
        dec.set_color_transform(t);
    }
    let out = dec
        .decode()
        .map_err(|e| format!("JPEG decoding failed: {e}"))?;
    let info = dec
        .info()
        .ok_or("JPEG decoder returned no image information")?;
    let (width, height) = (info.width as u32, info.height as u32);
    let (components, buf) = match info.pixel_format {
        jpeg_decoder::PixelFormat::L8 => (1, Buf::U8(out)),
        jpeg_decoder::PixelFormat::RGB24 => (3, Buf::U8(out)),
        jpeg_decoder::PixelFormat::L16 => (
            1,
            Buf::U16(
                out.chunks_exact(2)
                    .map(|c| u16::from_ne_bytes([c[0], c[1]]))
                    .collect(),
            ),
        ),
        jpeg_decoder::PixelFormat::CMYK32 => {
            return Err("CMYK JPEG frames are not supported".into());
        }
    };
    if buf.len() != width as usize * height as usize * components {
        return Err("JPEG decoder returned an unexpected number of samples".into());
    }
    Ok(Pixels {
        width,
        height,
        components: components as u8,
        precision: sof.precision,
        signed: false,
        buf,
    })
}

/// Decodes a JPEG-LS frame (lossless or near-lossless) with CharLS; samples interleaved.
pub(crate) fn decode_ls(data: &[u8], max_samples: u64) -> Result<Pixels, String> {
    let mut ls = charls::CharLS::default();
    let fi = ls
        .get_frame_info(data)
        .map_err(|e| format!("JPEG-LS header: {e:?}"))?;
    if fi.width as u64 * fi.height as u64 * fi.component_count.max(1) as u64 > max_samples {
        return Err("JPEG-LS stream is larger than the frame".into());
    }
    // A CharLS decoder reads the header once: decode with a fresh one.
    let out = charls::CharLS::default()
        .decode(data)
        .map_err(|e| format!("JPEG-LS decoding failed: {e:?}"))?;
    let (w, h, nc) = (
        fi.width as usize,
        fi.height as usize,
        fi.component_count as usize,
    );
    let bits = fi.bits_per_sample;
    if !(2..=16).contains(&bits) || nc == 0 || nc > 4 {
        return Err("unsupported JPEG-LS frame parameters".into());
    }
    let n = w * h * nc;
    let mut buf = if bits <= 8 {
        if out.len() < n {
            return Err("JPEG-LS output too short".into());
        }
        Buf::U8(out[..n].to_vec())
    } else {
        if out.len() < 2 * n {
            return Err("JPEG-LS output too short".into());
        }
        Buf::U16(
            out.chunks_exact(2)
                .take(n)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .collect(),
        )
    };
    if nc > 1 && ls_interleave(data) == Some(0) {
        buf = planar_to_interleaved(buf, nc);
    }
    Ok(Pixels {
        width: w as u32,
        height: h as u32,
        components: nc as u8,
        precision: bits as u8,
        signed: false,
        buf,
    })
}

/// The ILV parameter of the first JPEG-LS scan (0 = by plane, 1 = by line, 2 = by sample).
fn ls_interleave(data: &[u8]) -> Option<u8> {
    let mut i = 2;
    while i + 4 <= data.len() {
        if data[i] != 0xFF {
            return None;
        }
        let m = data[i + 1];
        let len = u16::from_be_bytes([data[i + 2], data[i + 3]]) as usize;
        if m == 0xDA {
            let ns = *data.get(i + 4)? as usize;
            return data.get(i + 4 + 1 + 2 * ns + 1).copied();
        }
        i += 2 + len;
    }
    None
}

/// Reorders planar samples (`RRR…GGG…BBB…`) into interleaved ones.
pub(crate) fn planar_to_interleaved(buf: Buf, nc: usize) -> Buf {
    fn go<T: Copy>(v: Vec<T>, nc: usize) -> Vec<T> {
        let n = v.len() / nc;
        let mut out = Vec::with_capacity(v.len());
        for p in 0..n {
            for c in 0..nc {
                out.push(v[c * n + p]);
            }
        }
        out
    }
    match buf {
        Buf::U8(v) => Buf::U8(go(v, nc)),
        Buf::I8(v) => Buf::I8(go(v, nc)),
        Buf::U16(v) => Buf::U16(go(v, nc)),
        Buf::I16(v) => Buf::I16(go(v, nc)),
        Buf::U32(v) => Buf::U32(go(v, nc)),
        Buf::I32(v) => Buf::I32(go(v, nc)),
    }
}
