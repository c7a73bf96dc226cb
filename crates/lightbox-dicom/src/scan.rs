//! A light, allocation-free walk over an encoded DICOM data set that checks every declared
//! length before dicom-rs sees the bytes.
//!
//! dicom-rs reserves and zero-fills a value's declared length before reading it, so a few
//! bytes claiming a 4 GiB element make it commit 4 GiB. This walker follows the same state
//! machine as `dicom_parser::dataset::DataSetReader` (element headers, sequences and items of
//! defined or undefined length, undefined-length non-SQ elements read as sequences,
//! encapsulated pixel data items, graceful end of data at an element boundary) and rejects the
//! data set when a declared length runs past the end of the bytes, a sequence nests deeper than
//! allowed, or one value is larger than allowed. It never reads values and never allocates
//! beyond its nesting stack (bounded by the depth limit).

use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry};
use dicom_core::{Tag, VR};
use dicom_dictionary_std::StandardDataDictionary;

/// How the data set is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    ImplicitLittle,
    ExplicitLittle,
    ExplicitBig,
}

/// Why a data set was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanError {
    /// A header or value runs past the end of the bytes.
    Truncated,
    /// Sequences nest deeper than the limit.
    TooDeep,
    /// One value is larger than the per-element limit.
    ElementTooLarge,
    /// The structure is not a valid DICOM data set (bad item tag, bad delimiter, ...).
    Malformed(&'static str),
    /// A binary value whose length is not a multiple of its VR's value size (dicom-rs would
    /// lose its place in the stream).
    BadLength(Tag),
}

/// What the walk found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScanSummary {
    /// Number of element headers seen (all levels).
    pub elements: u64,
    /// Deepest sequence nesting seen.
    pub max_depth: usize,
}

const UNDEFINED: u32 = 0xFFFF_FFFF;
const ITEM: Tag = Tag(0xFFFE, 0xE000);
const ITEM_DELIMITER: Tag = Tag(0xFFFE, 0xE00D);
const SEQUENCE_DELIMITER: Tag = Tag(0xFFFE, 0xE0DD);
const PIXEL_DATA: Tag = Tag(0x7FE0, 0x0010);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Sequence,
    Item,
}

#[derive(Debug, Clone, Copy)]
struct Open {
    kind: Kind,
    /// Absolute end offset for defined lengths.
    end: Option<u64>,
    pixel: bool,
}

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
    big: bool,
}

impl Cursor<'_> {
    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    fn u16(&mut self) -> Result<u16, ScanError> {
        let b = self
            .bytes
            .get(self.pos..self.pos + 2)
            .ok_or(ScanError::Truncated)?;
        self.pos += 2;
        Ok(if self.big {
            u16::from_be_bytes([b[0], b[1]])
        } else {
            u16::from_le_bytes([b[0], b[1]])
        })
    }

    fn u32(&mut self) -> Result<u32, ScanError> {
        let b = self
            .bytes
            .get(self.pos..self.pos + 4)
            .ok_or(ScanError::Truncated)?;
        self.pos += 4;
        Ok(if self.big {
            u32::from_be_bytes([b[0], b[1], b[2], b[3]])
        } else {
            u32::from_le_bytes([b[0], b[1], b[2], b[3]])
        })
    }

    fn tag(&mut self) -> Result<Tag, ScanError> {
        let g = self.u16()?;
        let e = self.u16()?;
        Ok(Tag(g, e))
    }

    fn vr_bytes(&mut self) -> Result<[u8; 2], ScanError> {
        let b = self
            .bytes
            .get(self.pos..self.pos + 2)
            .ok_or(ScanError::Truncated)?;
        self.pos += 2;
        Ok([b[0], b[1]])
    }

    fn skip(&mut self, len: u32) -> Result<(), ScanError> {
        if len as usize > self.remaining() {
            return Err(ScanError::Truncated);
        }
        self.pos += len as usize;
        Ok(())
    }
}

/// Does explicit VR encoding use a 2-byte length for this VR (PS3.5 Table 7.1-2)? Mirrors
/// dicom-encoding's explicit decoders; unknown VR codes are read as UN (long form).
pub(crate) fn short_length_vr(vr: VR) -> bool {
    matches!(
        vr,
        VR::AE
            | VR::AS
            | VR::AT
            | VR::CS
            | VR::DA
            | VR::DS
            | VR::DT
            | VR::FL
            | VR::FD
            | VR::IS
            | VR::LO
            | VR::LT
            | VR::PN
            | VR::SH
            | VR::SL
            | VR::SS
            | VR::ST
            | VR::TM
            | VR::UI
            | VR::UL
            | VR::US
    )
}

/// The VR dicom-rs assigns to an element in Implicit VR (dictionary, relaxed; OW for pixel and
/// overlay data; UN when unknown).
pub(crate) fn implicit_vr(tag: Tag) -> VR {
    if tag == PIXEL_DATA || (tag.0 >> 8 == 0x60 && tag.1 == 0x3000) {
        return VR::OW;
    }
    StandardDataDictionary
        .by_tag(tag)
        .map(|e| e.vr().relaxed())
        .unwrap_or(VR::UN)
}

/// Element header as dicom-rs decodes it.
fn element_header(c: &mut Cursor<'_>, enc: Encoding) -> Result<(Tag, VR, u32), ScanError> {
    let tag = c.tag()?;
    match enc {
        Encoding::ImplicitLittle => {
            let len = c.u32()?;
            Ok((tag, implicit_vr(tag), len))
        }
        Encoding::ExplicitLittle | Encoding::ExplicitBig => {
            if tag.0 == 0xFFFE {
                let len = c.u32()?;
                return Ok((tag, VR::UN, len));
            }
            let vr = VR::from_binary(c.vr_bytes()?).unwrap_or(VR::UN);
            let len = if short_length_vr(vr) {
                u32::from(c.u16()?)
            } else {
                c.u16()?; // reserved
                c.u32()?
            };
            Ok((tag, vr, len))
        }
    }
}

/// Limits applied by [`scan_dataset`].
#[derive(Debug, Clone, Copy)]
pub struct ScanLimits {
    pub max_depth: usize,
    pub max_element_bytes: u64,
}

/// Walks a whole data set (no preamble, no file meta group).
pub fn scan_dataset(
    bytes: &[u8],
    enc: Encoding,
    limits: ScanLimits,
) -> Result<ScanSummary, ScanError> {
    let mut c = Cursor {
        bytes,
        pos: 0,
        big: enc == Encoding::ExplicitBig,
    };
    let mut stack: Vec<Open> = Vec::new();
    let mut in_sequence = false;
    let mut summary = ScanSummary::default();
    let seq_depth = |stack: &Vec<Open>| stack.iter().filter(|o| o.kind == Kind::Sequence).count();

    loop {
        // Close sequences and items whose defined length is used up.
        while let Some(top) = stack.last() {
            match top.end {
                Some(end) if end == c.pos as u64 => {
                    in_sequence = top.kind == Kind::Item;
                    stack.pop();
                }
                Some(end) if end < c.pos as u64 => {
                    return Err(ScanError::Malformed(
                        "a sequence or item is longer than its declared length",
                    ));
                }
                _ => break,
            }
        }

        if in_sequence {
            if c.remaining() == 0 {
                // End of data inside a sequence: dicom-rs decides (it accepts a missing
                // sequence delimiter after pixel data fragments).
                return Ok(summary);
            }
            let tag = c.tag()?;
            let len = c.u32()?;
            let top = *stack
                .last()
                .ok_or(ScanError::Malformed("item outside of a sequence"))?;
            match tag {
                ITEM if top.pixel => {
                    if len == UNDEFINED {
                        return Err(ScanError::Malformed(
                            "encapsulated pixel data fragment of undefined length",
                        ));
                    }
                    check_len(len, limits)?;
                    c.skip(len)?;
                }
                ITEM => {
                    let end = if len == UNDEFINED {
                        None
                    } else {
                        if len as usize > c.remaining() {
                            return Err(ScanError::Truncated);
                        }
                        Some(c.pos as u64 + u64::from(len))
                    };
                    stack.push(Open {
                        kind: Kind::Item,
                        end,
                        pixel: false,
                    });
                    in_sequence = false;
                }
                ITEM_DELIMITER => {
                    if len != 0 {
                        return Err(ScanError::Malformed("item delimiter with a length"));
                    }
                    stack.pop();
                    in_sequence = true;
                }
                SEQUENCE_DELIMITER => {
                    stack.pop();
                    in_sequence = false;
                }
                _ => return Err(ScanError::Malformed("unexpected tag in a sequence")),
            }
            continue;
        }

        if c.remaining() < 4 {
            // dicom-rs treats end of data where a tag is expected as the end of the data set.
            return Ok(summary);
        }
        let (tag, vr, len) = element_header(&mut c, enc)?;
        summary.elements += 1;

        if vr == VR::SQ || (len == UNDEFINED && tag != ITEM_DELIMITER) {
            let pixel = tag == PIXEL_DATA && len == UNDEFINED && vr != VR::SQ;
            let end = if len == UNDEFINED {
                None
            } else {
                if len as usize > c.remaining() {
                    return Err(ScanError::Truncated);
                }
                Some(c.pos as u64 + u64::from(len))
            };
            stack.push(Open {
                kind: Kind::Sequence,
                end,
                pixel,
            });
            let depth = seq_depth(&stack);
            if depth > limits.max_depth {
                return Err(ScanError::TooDeep);
            }
            summary.max_depth = summary.max_depth.max(depth);
            in_sequence = true;
        } else if tag == ITEM_DELIMITER {
            if !stack.is_empty() {
                stack.pop();
                in_sequence = true;
            }
        } else {
            check_len(len, limits)?;
            if len % unit_size(tag, vr) != 0 {
                return Err(ScanError::BadLength(tag));
            }
            c.skip(len)?;
        }
    }
}

/// Bytes per value of a binary VR (1 for text and bytes). dicom-rs reads `len / size` values
/// but advances its position by `len`, so other lengths desynchronise it. Tags whose dictionary
/// VR is "US or SS" may be re-typed to SS by dicom-rs (signed pixel data), so they need even
/// lengths whatever the explicit VR says.
fn unit_size(tag: Tag, vr: VR) -> u32 {
    let size = match vr {
        VR::US | VR::SS | VR::OW => 2,
        VR::UL | VR::SL | VR::FL | VR::OL | VR::OF | VR::AT => 4,
        VR::FD | VR::OD | VR::SV | VR::UV | VR::OV => 8,
        _ => 1,
    };
    if size == 1
        && StandardDataDictionary
            .by_tag(tag)
            .is_some_and(|e| matches!(e.vr(), dicom_core::dictionary::VirtualVr::Xs))
    {
        return 2;
    }
    size
}

fn check_len(len: u32, limits: ScanLimits) -> Result<(), ScanError> {
    if u64::from(len) > limits.max_element_bytes {
        return Err(ScanError::ElementTooLarge);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: ScanLimits = ScanLimits {
        max_depth: 4,
        max_element_bytes: 1 << 20,
    };

    const UNLIMITED: ScanLimits = ScanLimits {
        max_depth: 4,
        max_element_bytes: u64::MAX,
    };

    fn ele(tag: (u16, u16), vr: &[u8; 2], value: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&tag.0.to_le_bytes());
        v.extend_from_slice(&tag.1.to_le_bytes());
        v.extend_from_slice(vr);
        if short_length_vr(VR::from_binary(*vr).unwrap()) {
            v.extend_from_slice(&(value.len() as u16).to_le_bytes());
        } else {
            v.extend_from_slice(&[0, 0]);
            v.extend_from_slice(&(value.len() as u32).to_le_bytes());
        }
        v.extend_from_slice(value);
        v
    }

    #[test]
    fn accepts_simple_and_rejects_huge_lengths() {
        let mut d = ele((0x0008, 0x0060), b"CS", b"CT");
        d.extend(ele((0x0010, 0x0010), b"PN", b"A^B "));
        assert_eq!(
            scan_dataset(&d, Encoding::ExplicitLittle, LIMITS)
                .unwrap()
                .elements,
            2
        );
        let mut bad = ele((0x7FE0, 0x0010), b"OB", b"");
        let n = bad.len();
        bad[n - 4..].copy_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
        assert_eq!(
            scan_dataset(&bad, Encoding::ExplicitLittle, LIMITS),
            Err(ScanError::ElementTooLarge)
        );
        assert_eq!(
            scan_dataset(&bad, Encoding::ExplicitLittle, UNLIMITED),
            Err(ScanError::Truncated)
        );
    }

    #[test]
    fn rejects_deep_nesting() {
        let mut d = Vec::new();
        for _ in 0..6 {
            d.extend_from_slice(&[0x08, 0x00, 0x15, 0x11, b'S', b'Q', 0, 0]);
            d.extend_from_slice(&UNDEFINED.to_le_bytes());
            d.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0]);
            d.extend_from_slice(&UNDEFINED.to_le_bytes());
        }
        assert_eq!(
            scan_dataset(&d, Encoding::ExplicitLittle, LIMITS),
            Err(ScanError::TooDeep)
        );
    }

    #[test]
    fn encapsulated_fragments_are_checked() {
        let mut d = Vec::new();
        d.extend_from_slice(&[0xE0, 0x7F, 0x10, 0x00, b'O', b'B', 0, 0]);
        d.extend_from_slice(&UNDEFINED.to_le_bytes());
        d.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 0, 0, 0, 0]);
        d.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 4, 0, 0, 0, 1, 2, 3, 4]);
        d.extend_from_slice(&[0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
        assert!(scan_dataset(&d, Encoding::ExplicitLittle, LIMITS).is_ok());
        let mut t = d.clone();
        t[26] = 0xFF;
        t[27] = 0xFF;
        assert_eq!(
            scan_dataset(&t, Encoding::ExplicitLittle, UNLIMITED),
            Err(ScanError::Truncated)
        );
    }
}
