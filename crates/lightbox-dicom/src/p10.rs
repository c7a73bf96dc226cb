//! The P10 envelope: preamble and `DICM` prefix, the file meta group (group 0002, always
//! Explicit VR Little Endian), transfer syntax detection for files without a meta group, and
//! bounded inflation of the Deflated transfer syntax.

use std::io::Read;

use dicom_core::{Tag, VR};

use crate::scan::{Encoding, ScanError, ScanLimits, scan_dataset, short_length_vr};

pub const IMPLICIT_VR_LE: &str = "1.2.840.10008.1.2";
pub const EXPLICIT_VR_LE: &str = "1.2.840.10008.1.2.1";
pub const EXPLICIT_VR_BE: &str = "1.2.840.10008.1.2.2";
pub const DEFLATED_EXPLICIT_VR_LE: &str = "1.2.840.10008.1.2.1.99";

/// Where the parts of a P10 file are.
#[derive(Debug, Clone)]
pub struct Envelope {
    /// Byte range of the file meta group elements (empty when the file has none).
    pub meta: std::ops::Range<usize>,
    /// Transfer syntax UID found in the meta group (trimmed), if any.
    pub meta_transfer_syntax: Option<String>,
    /// Offset of the data set.
    pub dataset_offset: usize,
}

/// The transfer syntax decides how the data set is encoded. Every syntax that is not one of the
/// three native ones (or Deflated) encapsulates pixel data in an Explicit VR Little Endian data set.
pub fn encoding_of(ts: &str) -> Encoding {
    match ts {
        IMPLICIT_VR_LE => Encoding::ImplicitLittle,
        EXPLICIT_VR_BE => Encoding::ExplicitBig,
        _ => Encoding::ExplicitLittle,
    }
}

/// The transfer syntax UID for a detected encoding of a meta-less file.
pub fn ts_of(enc: Encoding) -> &'static str {
    match enc {
        Encoding::ImplicitLittle => IMPLICIT_VR_LE,
        Encoding::ExplicitLittle => EXPLICIT_VR_LE,
        Encoding::ExplicitBig => EXPLICIT_VR_BE,
    }
}

/// Errors of the envelope stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvelopeError {
    Truncated,
    BadMeta(&'static str),
}

/// Finds the preamble/prefix and walks the meta group, checking every length.
pub fn locate(bytes: &[u8]) -> Result<Envelope, EnvelopeError> {
    let start = if bytes.len() >= 132 && &bytes[128..132] == b"DICM" {
        132
    } else if bytes.starts_with(b"DICM") {
        4
    } else if bytes.len() >= 8 && u16::from_le_bytes([bytes[0], bytes[1]]) == 0x0002 {
        // A meta group without preamble: the group number says so (group 2 is never big endian
        // and never appears in a data set).
        0
    } else {
        return Ok(Envelope {
            meta: 0..0,
            meta_transfer_syntax: None,
            dataset_offset: 0,
        });
    };

    let mut pos = start;
    let mut ts = None;
    loop {
        if bytes.len() - pos < 4 {
            break;
        }
        let group = u16::from_le_bytes([bytes[pos], bytes[pos + 1]]);
        if group != 0x0002 {
            break;
        }
        let element = u16::from_le_bytes([bytes[pos + 2], bytes[pos + 3]]);
        let header = bytes
            .get(pos + 4..pos + 8)
            .ok_or(EnvelopeError::Truncated)?;
        let vr = VR::from_binary([header[0], header[1]]).unwrap_or(VR::UN);
        if vr == VR::SQ {
            return Err(EnvelopeError::BadMeta("a sequence in the file meta group"));
        }
        let (len, value_at) = if short_length_vr(vr) {
            (
                u32::from(u16::from_le_bytes([header[2], header[3]])),
                pos + 8,
            )
        } else {
            let l = bytes
                .get(pos + 8..pos + 12)
                .ok_or(EnvelopeError::Truncated)?;
            (u32::from_le_bytes([l[0], l[1], l[2], l[3]]), pos + 12)
        };
        if len == u32::MAX {
            return Err(EnvelopeError::BadMeta(
                "an undefined length in the file meta group",
            ));
        }
        let end = value_at
            .checked_add(len as usize)
            .filter(|e| *e <= bytes.len())
            .ok_or(EnvelopeError::Truncated)?;
        if Tag(group, element) == Tag(0x0002, 0x0010) {
            ts = Some(trim_uid(&bytes[value_at..end]));
        }
        pos = end;
    }
    Ok(Envelope {
        meta: start..pos,
        meta_transfer_syntax: ts.filter(|s| !s.is_empty()),
        dataset_offset: pos,
    })
}

/// Trailing NUL and spaces off, as text (lossy: UIDs are ASCII).
pub fn trim_uid(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(b);
    s.trim_end_matches(['\0', ' ']).trim_start().to_string()
}

/// Guesses the encoding of a data set that has no meta group: candidates are ordered by what
/// the first element looks like, and the first one the whole data set scans cleanly with wins.
pub fn detect_encoding(dataset: &[u8], limits: ScanLimits) -> Option<Encoding> {
    if dataset.len() < 8 {
        return None;
    }
    let group_le = u16::from_le_bytes([dataset[0], dataset[1]]);
    let group_be = u16::from_be_bytes([dataset[0], dataset[1]]);
    let explicit_vr = VR::from_binary([dataset[4], dataset[5]]).is_some();
    let plausible = |g: u16| (0x0002..=0x0FFF).contains(&g);
    let mut candidates = Vec::with_capacity(3);
    if explicit_vr {
        if plausible(group_le) {
            candidates.push(Encoding::ExplicitLittle);
        }
        if plausible(group_be) {
            candidates.push(Encoding::ExplicitBig);
        }
    }
    if plausible(group_le) {
        candidates.push(Encoding::ImplicitLittle);
    }
    candidates.into_iter().find(|enc| {
        scan_dataset(dataset, *enc, limits).is_ok_and(|s| s.elements > 0)
            && first_tags_sane(dataset, *enc)
    })
}

/// The first few top-level tags of a data set are in ascending order.
fn first_tags_sane(dataset: &[u8], enc: Encoding) -> bool {
    let big = enc == Encoding::ExplicitBig;
    let rd16 = |b: &[u8]| {
        if big {
            u16::from_be_bytes([b[0], b[1]])
        } else {
            u16::from_le_bytes([b[0], b[1]])
        }
    };
    let rd32 = |b: &[u8]| {
        if big {
            u32::from_be_bytes([b[0], b[1], b[2], b[3]])
        } else {
            u32::from_le_bytes([b[0], b[1], b[2], b[3]])
        }
    };
    let mut pos = 0usize;
    let mut last = 0u32;
    for _ in 0..4 {
        let Some(h) = dataset.get(pos..pos + 8) else {
            return true;
        };
        let tag = (u32::from(rd16(&h[0..2])) << 16) | u32::from(rd16(&h[2..4]));
        if tag < last {
            return false;
        }
        last = tag;
        let (len, header) = match enc {
            Encoding::ImplicitLittle => (rd32(&h[4..8]), 8),
            _ => {
                let vr = VR::from_binary([h[4], h[5]]).unwrap_or(VR::UN);
                if short_length_vr(vr) {
                    (u32::from(rd16(&h[6..8])), 8)
                } else {
                    match dataset.get(pos + 8..pos + 12) {
                        Some(l) => (rd32(l), 12),
                        None => return true,
                    }
                }
            }
        };
        if len == u32::MAX {
            return true;
        }
        pos += header + len as usize;
    }
    true
}

/// Inflates a raw deflate stream, failing past `cap` bytes.
pub fn inflate(bytes: &[u8], cap: u64) -> Result<Vec<u8>, InflateError> {
    let mut out = Vec::new();
    let mut decoder = flate2::read::DeflateDecoder::new(bytes).take(cap.saturating_add(1));
    decoder
        .read_to_end(&mut out)
        .map_err(|_| InflateError::Corrupt)?;
    if out.len() as u64 > cap {
        return Err(InflateError::TooLarge);
    }
    Ok(out)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InflateError {
    Corrupt,
    TooLarge,
}

impl From<ScanError> for EnvelopeError {
    fn from(_: ScanError) -> Self {
        EnvelopeError::Truncated
    }
}
