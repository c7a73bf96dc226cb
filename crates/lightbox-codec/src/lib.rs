//! Pure-Rust HTJ2K (High-Throughput JPEG 2000, ITU-T T.814 / ISO/IEC 15444-15) codec: lossless
//! encoder, lossless and lossy decoder.
//!
//! # Encoding
//!
//! [`encode_lossless`] writes a JPEG 2000 Part 1 codestream with HT code-blocks (a `.j2c` /
//! `.jhc` raw codestream, no JP2 box wrapper) that satisfies DICOM transfer syntax
//! 1.2.840.10008.1.2.4.202 (HTJ2K Lossless RPCL, PS3.5 §10.18):
//!
//! * reversible 5/3 wavelet, reversible colour transform (RCT) for 3 components,
//! * RPCL progression, one tile, one quality layer, 64×64 code-blocks by default,
//! * enough decomposition levels that the lowest resolution is at most 64×64
//!   (and at least `min(5, floor(log2(min(width, height))))` for compression),
//! * `SIZ`, `CAP` (Pcap15 set), `COD`, `QCD`, `TLM`, then one tile-part per resolution
//!   (`SOT`/`SOD`), `EOC`. The TLM entries let a client fetch only the first N resolutions.
//!
//! Input samples are 1–16 bits, signed or unsigned, 1 to 4 components, interleaved
//! (`RGBRGB…`) or planar (`RRR…GGG…BBB…`), any size from 1×1 upwards (16384×16384 verified
//! against OpenJPH; memory use is about 10 bytes per sample while encoding).
//! Quantization exponents use the nominal subband gains, and the guard bits are raised when
//! the actual coefficients need more magnitude bit-planes, so every codestream is decodable by
//! 32-bit HT decoders. [`EncodeOptions::threads`] codes code-blocks on several threads; the
//! output is byte-identical for any thread count.
//!
//! # Decoding
//!
//! [`decode`] reads reversible (lossless, 5/3) and irreversible (lossy, 9/7) HTJ2K codestreams,
//! raw or inside a JPH/JP2 file's `jp2c` box — e.g. DICOM transfer syntaxes
//! 1.2.840.10008.1.2.4.201–203.
//! It handles any progression order and POC progression changes, several tiles and
//! tile-parts, image and tile offsets, any precinct and code-block size, several quality
//! layers, SOP/EPH markers, packed packet headers (PPM/PPT) and COC/QCC overrides. Code-blocks may carry HT cleanup plus
//! SigProp/MagRef refinement passes (one HT set per code-block, vertically causal mode
//! included); images have 1–4 components of up to 16 bits. It is tested against OpenJPH 0.9
//! and 0.26 output and, through this crate's test writers, against OpenJPEG and OpenJPH
//! decoding the same streams. Classic (non-HT) JPEG 2000 code-blocks, several HT sets per
//! code-block, more than 4 components, more than 16 bits, components
//! of different precision or signedness, and RGN are rejected with [`CodecError::Unsupported`].
//!
//! Component subsampling (SIZ XRsiz/YRsiz ≠ 1, e.g. 4:2:2 or 4:2:0 as `ojph_compress -downsamp`
//! writes it) is supported, reversible and irreversible, at full and reduced resolution: each
//! component has its own size (T.800 B.2) and tile-component geometry. When the components'
//! sizes differ, [`DecodedImage`] returns them planar (`planar` = true, planes one after
//! another, sizes in `component_sizes`) instead of interleaved; a colour transform over
//! components subsampled differently is rejected as unsupported.
//!
//! Irreversible streams (as `ojph_compress -reversible false` writes them) use the 9/7 wavelet,
//! scalar expounded or scalar derived quantization from QCD/QCC (mid-point reconstruction of
//! the quantization indices) and, for 3 or more components with the colour transform, the
//! irreversible colour transform (ICT, YCbCr → RGB); samples are rounded (ties to even),
//! level-shifted and clamped. This path runs in `f32` on whole tile-component planes (not
//! line-based; reversible streams never touch floating point). It supports everything listed
//! above for reversible streams (tiles, offsets, progressions, reduced resolutions). The
//! samples are within ±1 of OpenJPH's `ojph_expand` (about 0.02% differ, the rest are
//! identical) and within ±1 of OpenJPEG's `opj_decompress` up to 12 bits (more above 12 bits,
//! where OpenJPEG's float pipeline differs). Lossy decoding is therefore not bit-exact across
//! decoders: its [`resolution_checksums`] are this decoder's, not a cross-decoder invariant.
//! A colour transform over a mix of reversible and irreversible components is rejected.
//! The decoder is line-based: each wavelet level is synthesised row by row, pulling its LL rows
//! from the level below and decoding its other subbands one code-block row at a time, so apart
//! from the codestream and the output samples it holds only the base band and a stripe of each
//! subband.
//! [`DecodeOptions::max_resolution_levels`] decodes only the first N resolution levels
//! (a thumbnail at 1/2^k scale); a codestream cut after the tile-parts of the first N
//! resolutions (using the TLM lengths) decodes the same way.
//!
//! Corrupt, truncated or hostile input returns [`CodecError`]; it never panics and never
//! allocates more than [`DecodeOptions::max_samples`] output samples (plus bounded bookkeeping).
//!
//! # Checksums
//!
//! [`resolution_checksums`] returns, for every resolution level from the base (smallest) to the
//! full image, the CRC-32 (IEEE, as zlib's `crc32`) of the decoded samples at that level —
//! AWS HealthImaging's `PixelDataChecksumFromBaseToFullResolution`. The byte layout hashed is
//! the one [`DecodedImage::to_le_bytes`] returns: samples interleaved by component, row-major,
//! one byte per sample when the precision is ≤ 8 bits, otherwise two bytes little-endian
//! (two's complement for signed data) — the layout of OpenJPH's decoded buffer. For images
//! whose components differ in size (subsampling) the samples are hashed planar: component 0's
//! plane, then component 1's, …, each row-major (the layout of `ojph_expand`'s `.yuv` output).
//! [`encode_lossless_with_checksums`] returns the same list while encoding, computed from the
//! wavelet transform's LL bands, so an importer need not decode what it has just encoded.
//! The list has one entry per resolution level, so its length depends on the number of
//! decomposition levels; the reduced-resolution values of RGB images also depend on whether
//! the RCT was used (the inverse RCT is applied to the LL bands).
//!
//! ```
//! use lightbox_codec::*;
//! let desc = ImageDesc { width: 3, height: 2, components: 1, bits_stored: 12, signed: false };
//! let px: Vec<u16> = vec![0, 1, 4095, 7, 8, 9];
//! let j2c = encode_lossless(&desc, Samples::U16(&px), &EncodeOptions::default()).unwrap();
//! let img = decode(&j2c, &DecodeOptions::default()).unwrap();
//! assert_eq!(img.samples, DecodedSamples::U16(px));
//! ```

mod decoder;
mod dwt;
mod encoder;
mod geom;
mod ht;
mod par;
mod pool;
mod t2;
mod vlc_tables;

use std::fmt;

pub use decoder::{CodestreamInfo, info};

/// Description of the image handed to the encoder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageDesc {
    pub width: u32,
    pub height: u32,
    /// Number of components: 1 (grey) to 4; with 3 or more, the first three are RGB.
    pub components: u8,
    /// Bits per sample actually used, 1..=16.
    pub bits_stored: u8,
    /// Two's complement samples (e.g. CT with PixelRepresentation = 1).
    pub signed: bool,
}

/// Input samples. Unsigned images take `U8`/`U16`, signed images `I8`/`I16`; values must fit
/// `bits_stored` (unsigned: `0..2^B`, signed: `-2^(B-1)..2^(B-1)`).
#[derive(Clone, Copy, Debug)]
pub enum Samples<'a> {
    U8(&'a [u8]),
    U16(&'a [u16]),
    I8(&'a [i8]),
    I16(&'a [i16]),
}

/// Progression orders (T.800 Table A.16).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Progression {
    Lrcp,
    Rlcp,
    #[default]
    Rpcl,
    Pcrl,
    Cprl,
}

/// Encoder options. The defaults produce a DICOM 1.2.840.10008.1.2.4.202 codestream.
#[derive(Clone, Debug)]
pub struct EncodeOptions {
    /// Samples are planar (`RRR…GGG…`) rather than interleaved (`RGBRGB…`).
    pub planar: bool,
    /// Number of wavelet decomposition levels; `None` picks the default described in the
    /// crate docs. Values that leave the base resolution above 64 are raised.
    pub levels: Option<u8>,
    /// log2 of code-block width and height (2..=10 each, sum ≤ 12). Default (6, 6) = 64×64.
    pub block_size_log2: (u8, u8),
    /// Apply the reversible colour transform to the first three components (default true).
    pub color_transform: bool,
    /// Progression order (default RPCL).
    pub progression: Progression,
    /// Precinct sizes as (log2 width, log2 height) per resolution, coarsest first; the last
    /// entry repeats. Empty = maximal precincts (one per resolution).
    pub precincts: Vec<(u8, u8)>,
    /// Write a TLM marker segment (default true).
    pub tlm: bool,
    /// With RPCL, write one tile-part per resolution level (default true).
    pub tile_part_per_resolution: bool,
    /// Code blocks are encoded on up to this many threads (0 = available parallelism).
    pub threads: usize,
    /// Keep large working buffers on the calling thread between calls (up to 256 MiB), which
    /// saves the kernel's page-fault cost when many images are coded on one thread.
    pub reuse_buffers: bool,
    /// Testing aid: code blocks where possible as a cleanup pass at bit-plane 1 plus SigProp
    /// and MagRef passes (still lossless), to exercise decoders' refinement-pass support.
    #[doc(hidden)]
    pub refinement_passes_for_testing: bool,
    /// Testing aid: write this many quality layers (code-blocks at odd grid positions are
    /// included in layer 1, later layers are empty).
    #[doc(hidden)]
    pub layers_for_testing: u16,
    /// Testing aid: write SOP and EPH markers, QCC for components 1.., repeat COD/QCD/QCC in
    /// the first tile-part header and give the last tile-part Psot = 0.
    #[doc(hidden)]
    pub marker_variants_for_testing: bool,
    /// Testing aid: components 1.. get their own coding parameters through COC (one level
    /// fewer, 32x16 code-blocks) and their own quantization through QCC.
    #[doc(hidden)]
    pub component_coding_for_testing: bool,
    /// Testing aid: write a POC marker with three progression volumes.
    #[doc(hidden)]
    pub poc_for_testing: bool,
    /// Testing aid: packed packet headers, 1 = PPT (per tile-part), 2 = PPM (main header).
    #[doc(hidden)]
    pub packed_headers_for_testing: u8,
}

impl Default for EncodeOptions {
    fn default() -> Self {
        EncodeOptions {
            planar: false,
            levels: None,
            block_size_log2: (6, 6),
            color_transform: true,
            progression: Progression::Rpcl,
            precincts: Vec::new(),
            tlm: true,
            tile_part_per_resolution: true,
            threads: 1,
            reuse_buffers: false,
            refinement_passes_for_testing: false,
            layers_for_testing: 1,
            marker_variants_for_testing: false,
            component_coding_for_testing: false,
            poc_for_testing: false,
            packed_headers_for_testing: 0,
        }
    }
}

/// Decoder options.
#[derive(Clone, Debug)]
pub struct DecodeOptions {
    /// Decode only the first N resolution levels (1 = base resolution only). `None` = all.
    pub max_resolution_levels: Option<u8>,
    /// Refuse images with more output samples (width × height × components) than this.
    pub max_samples: u64,
    /// Code blocks are decoded on up to this many threads (0 = available parallelism).
    pub threads: usize,
    /// Keep large working buffers on the calling thread between calls (see
    /// [`EncodeOptions::reuse_buffers`]).
    pub reuse_buffers: bool,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        DecodeOptions {
            max_resolution_levels: None,
            max_samples: 1 << 28,
            threads: 1,
            reuse_buffers: false,
        }
    }
}

/// Decoded samples, interleaved by component.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DecodedSamples {
    U8(Vec<u8>),
    U16(Vec<u16>),
    I8(Vec<i8>),
    I16(Vec<i16>),
}

/// A decoded image (or a reduced-resolution version of it).
///
/// When all components have the same size, `samples` is interleaved by component and
/// `width`×`height` is that size. When they differ (component subsampling, e.g. 4:2:0, at
/// full resolution or at the decoded one),
/// `planar` is true, `samples` holds the component planes one after another (component 0's
/// rows, then component 1's, …), `width`×`height` is the image area on the reference grid
/// and [`DecodedImage::component_sizes`] gives each plane's size; [`DecodedImage::component`]
/// returns one component in either case.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodedImage {
    pub width: u32,
    pub height: u32,
    pub components: u8,
    /// Precision of the samples in bits (from SIZ).
    pub bits_stored: u8,
    pub signed: bool,
    /// Number of resolution levels in the codestream (decomposition levels + 1).
    pub resolution_levels: u8,
    /// (width, height) of every component at the decoded resolution.
    pub component_sizes: Vec<(u32, u32)>,
    /// `samples` holds whole component planes one after another (components differ in size).
    pub planar: bool,
    pub samples: DecodedSamples,
}

/// One component of a [`DecodedImage`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ComponentPlane {
    pub width: u32,
    pub height: u32,
    /// Row-major samples of this component only.
    pub samples: DecodedSamples,
}

impl DecodedImage {
    /// Component `c` as its own plane (copied out of `samples`); `None` if out of range.
    pub fn component(&self, c: usize) -> Option<ComponentPlane> {
        let &(w, h) = self.component_sizes.get(c)?;
        let nc = self.component_sizes.len();
        let start: usize = if self.planar {
            self.component_sizes[..c]
                .iter()
                .map(|&(w, h)| w as usize * h as usize)
                .sum()
        } else {
            c
        };
        let n = w as usize * h as usize;
        fn pick<T: Copy>(v: &[T], planar: bool, start: usize, n: usize, nc: usize) -> Vec<T> {
            if planar {
                v.get(start..start + n).unwrap_or(&[]).to_vec()
            } else {
                v.iter().skip(start).step_by(nc).take(n).copied().collect()
            }
        }
        let p = self.planar;
        let samples = match &self.samples {
            DecodedSamples::U8(v) => DecodedSamples::U8(pick(v, p, start, n, nc)),
            DecodedSamples::U16(v) => DecodedSamples::U16(pick(v, p, start, n, nc)),
            DecodedSamples::I8(v) => DecodedSamples::I8(pick(v, p, start, n, nc)),
            DecodedSamples::I16(v) => DecodedSamples::I16(pick(v, p, start, n, nc)),
        };
        Some(ComponentPlane {
            width: w,
            height: h,
            samples,
        })
    }

    /// The checksum byte layout: 1 byte per sample for ≤ 8 bits, else 2 bytes little-endian.
    pub fn to_le_bytes(&self) -> Vec<u8> {
        match &self.samples {
            DecodedSamples::U8(v) => v.clone(),
            DecodedSamples::I8(v) => v.iter().map(|&x| x as u8).collect(),
            DecodedSamples::U16(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            DecodedSamples::I16(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        }
    }

    /// CRC-32 (IEEE) of [`DecodedImage::to_le_bytes`].
    pub fn crc32(&self) -> u32 {
        let mut h = crc32fast::Hasher::new();
        match &self.samples {
            DecodedSamples::U8(v) => h.update(v),
            _ => h.update(&self.to_le_bytes()),
        }
        h.finalize()
    }
}

/// CRC of one resolution level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResolutionChecksum {
    pub width: u32,
    pub height: u32,
    pub crc32: u32,
}

/// Errors of the codec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CodecError {
    /// The caller's image description or samples are invalid.
    InvalidInput(String),
    /// The codestream is malformed or truncated.
    Corrupt(String),
    /// The codestream uses a feature this codec does not implement.
    Unsupported(String),
    /// The codestream exceeds a configured limit.
    LimitExceeded(String),
}

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CodecError::InvalidInput(m) => write!(f, "invalid input: {m}"),
            CodecError::Corrupt(m) => write!(f, "corrupt codestream: {m}"),
            CodecError::Unsupported(m) => write!(f, "unsupported codestream feature: {m}"),
            CodecError::LimitExceeded(m) => write!(f, "limit exceeded: {m}"),
        }
    }
}

impl std::error::Error for CodecError {}

/// Encodes an image losslessly as an HTJ2K codestream (see the crate docs).
pub fn encode_lossless(
    desc: &ImageDesc,
    samples: Samples<'_>,
    opts: &EncodeOptions,
) -> Result<Vec<u8>, CodecError> {
    encoder::encode(desc, samples, opts)
}

/// Like [`encode_lossless`], and also returns the CRC-32 of every resolution level, base
/// first, exactly as [`resolution_checksums`] would report for the returned codestream, but
/// computed from the encoder's own transform bands instead of decoding.
pub fn encode_lossless_with_checksums(
    desc: &ImageDesc,
    samples: Samples<'_>,
    opts: &EncodeOptions,
) -> Result<(Vec<u8>, Vec<ResolutionChecksum>), CodecError> {
    encoder::encode_with_checksums(desc, samples, opts)
}

/// Decodes an HTJ2K codestream (see the crate docs).
pub fn decode(codestream: &[u8], opts: &DecodeOptions) -> Result<DecodedImage, CodecError> {
    decoder::decode(codestream, opts)
}

/// CRC-32 of the decoded samples at every resolution level, base (smallest) first.
pub fn resolution_checksums(
    codestream: &[u8],
    opts: &DecodeOptions,
) -> Result<Vec<ResolutionChecksum>, CodecError> {
    let inf = info(codestream)?;
    let mut out = Vec::with_capacity(inf.resolution_levels as usize);
    for n in 1..=inf.resolution_levels {
        let o = DecodeOptions {
            max_resolution_levels: Some(n),
            ..opts.clone()
        };
        let img = decode(codestream, &o)?;
        out.push(ResolutionChecksum {
            width: img.width,
            height: img.height,
            crc32: img.crc32(),
        });
    }
    Ok(out)
}
