//! HTJ2K decoder: marker parsing, tile-parts, packet headers, HT code-blocks, inverse DWT/RCT.

use crate::dwt::{self, Plane};
use crate::geom::{self, CompCoding, CompGeom};
use crate::t2::{BitReader, TagTree};
use crate::{CodecError, DecodeOptions, DecodedImage, DecodedSamples, Progression, ht, par};

fn corrupt(m: impl Into<String>) -> CodecError {
    CodecError::Corrupt(m.into())
}
fn unsupported(m: impl Into<String>) -> CodecError {
    CodecError::Unsupported(m.into())
}

const MAX_CODEBLOCKS: u64 = 1 << 22;

#[derive(Clone, Debug)]
struct CompSiz {
    precision: u8,
    signed: bool,
    dx: u8,
    dy: u8,
}

#[derive(Clone, Debug)]
struct Siz {
    xsiz: u32,
    ysiz: u32,
    xosiz: u32,
    yosiz: u32,
    xtsiz: u32,
    ytsiz: u32,
    xtosiz: u32,
    ytosiz: u32,
    comps: Vec<CompSiz>,
}

#[derive(Clone, Debug)]
struct Qcd {
    guard: u8,
    /// Exponent per band (QCD order); one entry for derived quantization.
    eps: Vec<u8>,
    /// Irreversible quantization: 11-bit mantissa per band (same order as `eps`);
    /// empty for reversible streams.
    mant: Vec<u16>,
    /// Scalar derived quantization (one exponent/mantissa, scaled per level).
    derived: bool,
}

/// Coding parameters in force for a tile (main header, then tile header overrides).
#[derive(Clone, Debug)]
struct Params {
    sop: bool,
    eph: bool,
    prog: u8,
    layers: u16,
    mct: u8,
    comp: Vec<CompCoding>,
    qcd: Vec<Qcd>,
    /// Whether COC / QCC set the component explicitly (then COD / QCD do not override it).
    coc_set: Vec<bool>,
    qcc_set: Vec<bool>,
    /// Progression order changes (POC), in order.
    poc: Vec<Poc>,
}

/// One POC progression volume: resolutions `rs..re`, components `cs..ce`, layers `0..lye`.
#[derive(Clone, Copy, Debug)]
struct Poc {
    rs: u8,
    cs: u16,
    lye: u16,
    re: u8,
    ce: u16,
    prog: u8,
}

fn parse_poc(body: &[u8], nc: usize) -> Result<Vec<Poc>, CodecError> {
    let wide = nc >= 257;
    let size = if wide { 9 } else { 7 };
    if body.is_empty() || !body.len().is_multiple_of(size) {
        return Err(corrupt("bad POC length"));
    }
    let mut out = Vec::new();
    let mut r = Rd { d: body, p: 0 };
    while r.left() > 0 {
        let rs = r.u8()?;
        let cs = if wide { r.u16()? } else { r.u8()? as u16 };
        let lye = r.u16()?;
        let re = r.u8()?;
        let ce = if wide { r.u16()? } else { r.u8()? as u16 };
        let ce = if ce == 0 && !wide { 256 } else { ce };
        let prog = r.u8()?;
        if prog > 4 {
            return Err(corrupt("bad POC progression order"));
        }
        out.push(Poc {
            rs,
            cs,
            lye,
            re,
            ce,
            prog,
        });
    }
    Ok(out)
}

struct Rd<'a> {
    d: &'a [u8],
    p: usize,
}

impl<'a> Rd<'a> {
    fn u8(&mut self) -> Result<u8, CodecError> {
        let v = *self
            .d
            .get(self.p)
            .ok_or_else(|| corrupt("marker segment too short"))?;
        self.p += 1;
        Ok(v)
    }
    fn u16(&mut self) -> Result<u16, CodecError> {
        Ok(((self.u8()? as u16) << 8) | self.u8()? as u16)
    }
    fn u32(&mut self) -> Result<u32, CodecError> {
        Ok(((self.u16()? as u32) << 16) | self.u16()? as u32)
    }
    fn left(&self) -> usize {
        self.d.len().saturating_sub(self.p)
    }
}

fn parse_siz(b: &[u8]) -> Result<Siz, CodecError> {
    let mut r = Rd { d: b, p: 0 };
    let _rsiz = r.u16()?;
    let s = Siz {
        xsiz: r.u32()?,
        ysiz: r.u32()?,
        xosiz: r.u32()?,
        yosiz: r.u32()?,
        xtsiz: r.u32()?,
        ytsiz: r.u32()?,
        xtosiz: r.u32()?,
        ytosiz: r.u32()?,
        comps: Vec::new(),
    };
    let nc = r.u16()? as usize;
    if nc == 0 || r.left() < 3 * nc {
        return Err(corrupt("bad SIZ component count"));
    }
    let mut s = s;
    for _ in 0..nc {
        let ssiz = r.u8()?;
        let dx = r.u8()?;
        let dy = r.u8()?;
        let precision = (ssiz & 0x7F) + 1;
        if precision > 38 || dx == 0 || dy == 0 {
            return Err(corrupt("bad SIZ component"));
        }
        s.comps.push(CompSiz {
            precision,
            signed: ssiz & 0x80 != 0,
            dx,
            dy,
        });
    }
    if s.xsiz <= s.xosiz || s.ysiz <= s.yosiz {
        return Err(corrupt("empty image area"));
    }
    if s.xtsiz == 0 || s.ytsiz == 0 || s.xtosiz > s.xosiz || s.ytosiz > s.yosiz {
        return Err(corrupt("bad tile grid"));
    }
    if (s.xtosiz as u64 + s.xtsiz as u64) <= s.xosiz as u64
        || (s.ytosiz as u64 + s.ytsiz as u64) <= s.yosiz as u64
    {
        return Err(corrupt("first tile outside image"));
    }
    Ok(s)
}

/// Parses SPcod/SPcoc (after the Scod/Scoc byte) into `cc`.
fn parse_spcod(r: &mut Rd, precincts_flag: bool) -> Result<CompCoding, CodecError> {
    let levels = r.u8()?;
    let xcb = r.u8()? as u32 + 2;
    let ycb = r.u8()? as u32 + 2;
    let style = r.u8()?;
    let transform = r.u8()?;
    if levels > 32 {
        return Err(corrupt("more than 32 decomposition levels"));
    }
    if xcb > 10 || ycb > 10 || xcb + ycb > 12 {
        return Err(corrupt("bad code-block size"));
    }
    let mut precincts = Vec::with_capacity(levels as usize + 1);
    for i in 0..=levels as usize {
        if precincts_flag {
            let v = r.u8()?;
            let (px, py) = (v & 0xF, v >> 4);
            if i > 0 && (px == 0 || py == 0) {
                return Err(corrupt("precinct size 1 above the base resolution"));
            }
            precincts.push((px, py));
        } else {
            precincts.push((15, 15));
        }
    }
    Ok(CompCoding {
        levels,
        xcb: xcb as u8,
        ycb: ycb as u8,
        style,
        transform,
        precincts,
    })
}

fn parse_qcd_body(r: &mut Rd) -> Result<Qcd, CodecError> {
    let s = r.u8()?;
    let guard = s >> 5;
    match s & 0x1F {
        0 => {
            let mut eps = Vec::new();
            while r.left() > 0 {
                eps.push(r.u8()? >> 3);
            }
            if eps.is_empty() {
                return Err(corrupt("QCD without exponents"));
            }
            Ok(Qcd {
                guard,
                eps,
                mant: Vec::new(),
                derived: false,
            })
        }
        style @ (1 | 2) => {
            let (mut eps, mut mant) = (Vec::new(), Vec::new());
            while r.left() >= 2 {
                let v = r.u16()?;
                eps.push((v >> 11) as u8);
                mant.push(v & 0x7FF);
                if style == 1 {
                    break;
                }
            }
            if eps.is_empty() {
                return Err(corrupt("QCD without step sizes"));
            }
            Ok(Qcd {
                guard,
                eps,
                mant,
                derived: style == 1,
            })
        }
        _ => Err(corrupt("bad quantization style")),
    }
}

/// Applies a COD/COC/QCD/QCC marker segment to `p`.
fn apply_marker(p: &mut Params, m: u16, body: &[u8], nc: usize) -> Result<(), CodecError> {
    let mut r = Rd { d: body, p: 0 };
    let comp_index = |r: &mut Rd| -> Result<usize, CodecError> {
        let c = if nc < 257 {
            r.u8()? as usize
        } else {
            r.u16()? as usize
        };
        if c >= nc {
            return Err(corrupt("component index out of range"));
        }
        Ok(c)
    };
    match m {
        0xFF52 => {
            let scod = r.u8()?;
            p.sop = scod & 2 != 0;
            p.eph = scod & 4 != 0;
            p.prog = r.u8()?;
            p.layers = r.u16()?;
            p.mct = r.u8()?;
            if p.prog > 4 {
                return Err(corrupt("bad progression order"));
            }
            if p.layers == 0 {
                return Err(corrupt("zero layers"));
            }
            let cc = parse_spcod(&mut r, scod & 1 != 0)?;
            for c in 0..nc {
                if !p.coc_set[c] {
                    p.comp[c] = cc.clone();
                }
            }
        }
        0xFF53 => {
            let c = comp_index(&mut r)?;
            let scoc = r.u8()?;
            p.comp[c] = parse_spcod(&mut r, scoc & 1 != 0)?;
            p.coc_set[c] = true;
        }
        0xFF5C => {
            let q = parse_qcd_body(&mut r)?;
            for c in 0..nc {
                if !p.qcc_set[c] {
                    p.qcd[c] = q.clone();
                }
            }
        }
        0xFF5D => {
            let c = comp_index(&mut r)?;
            p.qcd[c] = parse_qcd_body(&mut r)?;
            p.qcc_set[c] = true;
        }
        _ => {}
    }
    Ok(())
}

/// Summary of a codestream's main header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CodestreamInfo {
    pub width: u32,
    pub height: u32,
    pub components: u8,
    pub bits_stored: u8,
    pub signed: bool,
    /// Decomposition levels + 1 (from the main COD).
    pub resolution_levels: u8,
    pub progression: Progression,
    pub layers: u16,
    pub tiles: u32,
    pub code_block_size: (u32, u32),
    /// HT code-blocks (COD style bit 6).
    pub ht: bool,
    pub reversible: bool,
    pub color_transform: bool,
    /// CAP marker present with the Part 15 bit set.
    pub cap_part15: bool,
    pub has_tlm: bool,
}

struct Header {
    siz: Siz,
    params: Params,
    /// Concatenated PPM data (Nppm/Ippm pairs for every tile-part, in codestream order).
    ppm: Vec<u8>,
    cap15: bool,
    tlm: bool,
    /// Offset of the first SOT marker.
    end: usize,
}

/// Returns the codestream inside a JP2-family file (`.jph`/`.jp2`: signature box, ..., `jp2c`
/// box), or the input itself when it is already a raw codestream.
pub(crate) fn unwrap_boxes(data: &[u8]) -> Result<&[u8], CodecError> {
    const SIG: [u8; 12] = [0, 0, 0, 12, 0x6A, 0x50, 0x20, 0x20, 0x0D, 0x0A, 0x87, 0x0A];
    if !data.starts_with(&SIG) {
        return Ok(data);
    }
    let mut pos = 0usize;
    while pos + 8 <= data.len() {
        let lbox = u32::from_be_bytes(data[pos..pos + 4].try_into().expect("4 bytes")) as u64;
        let tbox = &data[pos + 4..pos + 8];
        let (header, len) = match lbox {
            0 => (8u64, (data.len() - pos) as u64),
            1 => {
                if pos + 16 > data.len() {
                    break;
                }
                (
                    16,
                    u64::from_be_bytes(data[pos + 8..pos + 16].try_into().expect("8 bytes")),
                )
            }
            n => (8, n),
        };
        if len < header || len > (data.len() - pos) as u64 {
            return Err(corrupt("bad JP2 box length"));
        }
        if tbox == b"jp2c" {
            return Ok(&data[pos + header as usize..pos + len as usize]);
        }
        pos += len as usize;
    }
    Err(corrupt(
        "JP2 file without a contiguous codestream (jp2c) box",
    ))
}

fn parse_main(data: &[u8]) -> Result<Header, CodecError> {
    if data.len() < 4 || data[0] != 0xFF || data[1] != 0x4F {
        return Err(corrupt("missing SOC marker"));
    }
    let mut pos = 2;
    let mut siz: Option<Siz> = None;
    let mut params: Option<Params> = None;
    let mut cap15 = false;
    let mut tlm = false;
    let mut have_cod = false;
    let mut have_qcd = false;
    let mut ppm = Vec::new();
    loop {
        if pos + 4 > data.len() {
            return Err(corrupt("truncated main header"));
        }
        let m = u16::from_be_bytes([data[pos], data[pos + 1]]);
        if m == 0xFF90 {
            break;
        }
        if m >> 8 != 0xFF {
            return Err(corrupt("expected a marker in the main header"));
        }
        let len = u16::from_be_bytes([data[pos + 2], data[pos + 3]]) as usize;
        if len < 2 || pos + 2 + len > data.len() {
            return Err(corrupt("bad marker segment length"));
        }
        let body = &data[pos + 4..pos + 2 + len];
        match m {
            0xFF51 => {
                if siz.is_some() {
                    return Err(corrupt("duplicate SIZ"));
                }
                let s = parse_siz(body)?;
                let nc = s.comps.len();
                let dflt = CompCoding {
                    levels: 0,
                    xcb: 6,
                    ycb: 6,
                    style: 0,
                    transform: 1,
                    precincts: vec![(15, 15)],
                };
                params = Some(Params {
                    sop: false,
                    eph: false,
                    prog: 0,
                    layers: 1,
                    mct: 0,
                    comp: vec![dflt; nc],
                    qcd: vec![
                        Qcd {
                            guard: 0,
                            eps: Vec::new(),
                            mant: Vec::new(),
                            derived: false,
                        };
                        nc
                    ],
                    coc_set: vec![false; nc],
                    qcc_set: vec![false; nc],
                    poc: Vec::new(),
                });
                siz = Some(s);
            }
            0xFF50 if body.len() >= 4 => {
                let pcap = u32::from_be_bytes([body[0], body[1], body[2], body[3]]);
                cap15 = pcap & 0x0002_0000 != 0;
            }
            0xFF52 | 0xFF53 | 0xFF5C | 0xFF5D => {
                let p = params
                    .as_mut()
                    .ok_or_else(|| corrupt("marker before SIZ"))?;
                let nc = p.comp.len();
                apply_marker(p, m, body, nc)?;
                have_cod |= m == 0xFF52;
                have_qcd |= m == 0xFF5C;
            }
            0xFF55 => tlm = true,
            0xFF5E => return Err(unsupported("region of interest (RGN)")),
            0xFF5F => {
                let p = params
                    .as_mut()
                    .ok_or_else(|| corrupt("marker before SIZ"))?;
                let nc = p.comp.len();
                p.poc.extend(parse_poc(body, nc)?);
            }
            0xFF60 => ppm.extend_from_slice(body.get(1..).unwrap_or(&[])),
            _ => {}
        }
        pos += 2 + len;
    }
    let siz = siz.ok_or_else(|| corrupt("missing SIZ"))?;
    if !have_cod || !have_qcd {
        return Err(corrupt("missing COD or QCD"));
    }
    Ok(Header {
        siz,
        params: params.expect("params set with SIZ"),
        ppm,
        cap15,
        tlm,
        end: pos,
    })
}

fn prog_of(p: u8) -> Progression {
    match p {
        0 => Progression::Lrcp,
        1 => Progression::Rlcp,
        2 => Progression::Rpcl,
        3 => Progression::Pcrl,
        _ => Progression::Cprl,
    }
}

fn num_tiles(s: &Siz) -> (u32, u32) {
    let nx = ((s.xsiz - s.xtosiz) as u64).div_ceil(s.xtsiz as u64) as u32;
    let ny = ((s.ysiz - s.ytosiz) as u64).div_ceil(s.ytsiz as u64) as u32;
    (nx, ny)
}

/// Reads the main header and summarises it.
pub fn info(codestream: &[u8]) -> Result<CodestreamInfo, CodecError> {
    let h = parse_main(unwrap_boxes(codestream)?)?;
    let s = &h.siz;
    let c0 = &h.params.comp[0];
    let (nx, ny) = num_tiles(s);
    Ok(CodestreamInfo {
        width: s.xsiz - s.xosiz,
        height: s.ysiz - s.yosiz,
        components: s.comps.len().min(255) as u8,
        bits_stored: s.comps[0].precision,
        signed: s.comps[0].signed,
        resolution_levels: h.params.comp.iter().map(|c| c.levels).min().unwrap_or(0) + 1,
        progression: prog_of(h.params.prog),
        layers: h.params.layers,
        tiles: nx.saturating_mul(ny),
        code_block_size: (1 << c0.xcb, 1 << c0.ycb),
        ht: c0.style & 0x40 != 0,
        reversible: c0.transform == 1,
        color_transform: h.params.mct != 0,
        cap_part15: h.cap15,
        has_tlm: h.tlm,
    })
}

#[derive(Default, Clone)]
struct CbState<'a> {
    included: bool,
    zbp: u32,
    lblock: u32,
    /// Passes so far (after removing placeholder passes).
    passes: u32,
    /// Pieces (one per contributing packet) of the cleanup and refinement segments.
    seg: [Vec<&'a [u8]>; 2],
}

struct PrecState {
    incl: Vec<TagTree>,
    zbp: Vec<TagTree>,
}

struct TileComp<'a> {
    geom: CompGeom,
    cc: CompCoding,
    qcd: Qcd,
    /// Code-block states per [resolution][band].
    cbs: Vec<Vec<Vec<CbState<'a>>>>,
    /// Precinct states per resolution, lazily created.
    precs: Vec<Vec<Option<PrecState>>>,
}

fn ceil_div(a: u64, b: u64) -> u64 {
    a.div_ceil(b)
}

struct Packet {
    r: u8,
    c: u16,
    p: u32,
    /// Visiting position of the precinct (full-resolution component coordinates).
    px: u64,
    py: u64,
    /// Index into the per-packet next-layer table.
    id: u32,
}

impl Packet {
    fn key(&self, prog: u8) -> [u64; 4] {
        let (c, r, p) = (self.c as u64, self.r as u64, self.p as u64);
        match prog {
            0 | 1 => [r, c, p, 0],
            2 => [r, self.py, self.px, c],
            3 => [self.py, self.px, c, r],
            _ => [c, self.py, self.px, r],
        }
    }
}

/// Reads one packet starting at `pos`; returns the new position.
#[allow(clippy::too_many_arguments)]
/// With packed packet headers (PPM/PPT), `packed` holds the header bytes and the read
/// position in them; the bodies still come from `data`.
fn read_packet<'a>(
    data: &'a [u8],
    mut pos: usize,
    packed: Option<(&[u8], &mut usize)>,
    tc: &mut TileComp<'a>,
    r: usize,
    pi: usize,
    layer: u32,
    sop: bool,
    eph: bool,
    budget: &mut u64,
) -> Result<usize, CodecError> {
    let eof = |_| corrupt("truncated packet header");
    if sop && pos + 1 < data.len() && data[pos] == 0xFF && data[pos + 1] == 0x91 {
        pos += 6;
        if pos > data.len() {
            return Err(corrupt("truncated SOP"));
        }
    }
    let rg = &tc.geom.res[r];
    let (i, j) = (pi % rg.npx, pi / rg.npx);
    let nb = rg.bands.len();
    if tc.precs[r][pi].is_none() {
        let mut incl = Vec::new();
        let mut zbp = Vec::new();
        for b in 0..nb {
            let (x0, x1, y0, y1) = rg.precinct_cbs(r, b, i, j);
            incl.push(TagTree::new(x1 - x0, y1 - y0, u32::MAX));
            zbp.push(TagTree::new(x1 - x0, y1 - y0, u32::MAX));
        }
        tc.precs[r][pi] = Some(PrecState { incl, zbp });
    }
    let ps = tc.precs[r][pi].as_mut().expect("precinct state");
    let (hdr_data, hdr_start) = match &packed {
        Some((h, hp)) => (*h, **hp),
        None => (data, pos),
    };
    let mut br = BitReader::new(hdr_data, hdr_start);
    let nonempty = br.bit().map_err(eof)?;
    // (band, cb index, new passes, lengths per segment)
    let mut contrib: Vec<(usize, usize, [u32; 2])> = Vec::new();
    if nonempty == 1 {
        for b in 0..nb {
            let (x0, x1, y0, y1) = rg.precinct_cbs(r, b, i, j);
            // Non-included code-blocks may cost no header bits: bound the work per input byte.
            let cost = ((x1 - x0) * (y1 - y0)) as u64;
            if cost > *budget {
                return Err(CodecError::LimitExceeded("packet header work".into()));
            }
            *budget -= cost;
            let ncbx = rg.bands[b].ncbx;
            for y in y0..y1 {
                for x in x0..x1 {
                    let idx = y * ncbx + x;
                    let cb = &mut tc.cbs[r][b][idx];
                    let first = !cb.included;
                    let inc = if first {
                        ps.incl[b]
                            .decode(x - x0, y - y0, layer + 1, &mut br)
                            .map_err(eof)?
                            .is_some()
                    } else {
                        br.bit().map_err(eof)? == 1
                    };
                    if !inc {
                        continue;
                    }
                    if first {
                        let z = ps.zbp[b]
                            .decode(x - x0, y - y0, 80, &mut br)
                            .map_err(eof)?
                            .ok_or_else(|| corrupt("zero bit-plane count too large"))?;
                        cb.zbp = z;
                        cb.lblock = 3;
                        cb.included = true;
                    }
                    // Number of coding passes (T.800 Table B.4).
                    let np = if br.bit().map_err(eof)? == 0 {
                        1
                    } else if br.bit().map_err(eof)? == 0 {
                        2
                    } else {
                        let v = br.bits(2).map_err(eof)?;
                        if v < 3 {
                            3 + v
                        } else {
                            let v = br.bits(5).map_err(eof)?;
                            if v < 31 {
                                6 + v
                            } else {
                                37 + br.bits(7).map_err(eof)?
                            }
                        }
                    };
                    while br.bit().map_err(eof)? == 1 {
                        cb.lblock += 1;
                        if cb.lblock > 32 {
                            return Err(corrupt("Lblock too large"));
                        }
                    }
                    // HT segments: placeholder passes plus the cleanup pass form segment 0,
                    // SigProp/MagRef form segment 1.
                    let mut np_eff = np;
                    let mut seg_passes = [0u32; 2];
                    if first {
                        let skip = (np - 1) / 3;
                        cb.zbp += skip;
                        np_eff = np - 3 * skip;
                        seg_passes[0] = 1 + 3 * skip;
                        seg_passes[1] = np_eff - 1;
                    } else {
                        let start = cb.passes;
                        for k in start..start + np {
                            if k == 0 {
                                seg_passes[0] += 1;
                            } else if k < 3 {
                                seg_passes[1] += 1;
                            } else {
                                return Err(unsupported("more than one HT set per code-block"));
                            }
                        }
                    }
                    cb.passes += np_eff;
                    if cb.passes > 3 {
                        return Err(unsupported("more than one HT set per code-block"));
                    }
                    let mut lens = [0u32; 2];
                    for s in 0..2 {
                        if seg_passes[s] > 0 {
                            let nbits = cb.lblock + (31 - seg_passes[s].leading_zeros());
                            if nbits > 32 {
                                return Err(corrupt("codeword length too large"));
                            }
                            lens[s] = br.bits(nbits).map_err(eof)?;
                        }
                    }
                    contrib.push((b, idx, lens));
                }
            }
        }
    }
    let mut hpos = br.align().map_err(eof)?;
    if eph {
        if hpos + 1 < hdr_data.len() && hdr_data[hpos] == 0xFF && hdr_data[hpos + 1] == 0x92 {
            hpos += 2;
        } else {
            return Err(corrupt("missing EPH marker"));
        }
    }
    match packed {
        Some((_, hp)) => *hp = hpos,
        None => pos = hpos,
    }
    for (b, idx, lens) in contrib {
        let cb = &mut tc.cbs[r][b][idx];
        for (seg, &len) in cb.seg.iter_mut().zip(lens.iter()) {
            let n = len as usize;
            if n > data.len() - pos {
                return Err(corrupt("truncated code-block data"));
            }
            if n > 0 {
                seg.push(&data[pos..pos + n]);
            }
            pos += n;
        }
    }
    Ok(pos)
}

/// Exponent and mantissa of band `b` of resolution `r` (mantissa 0 for reversible streams).
fn band_quant(tc: &TileComp, r: usize, b: usize) -> Result<(u32, u16), CodecError> {
    let bg = &tc.geom.res[r].bands[b];
    let q = &tc.qcd;
    if q.derived {
        // T.800 E.1.1.2: eps_b = eps_0 - N_L + n_b, mu_b = mu_0.
        let e = (q.eps[0] as u32)
            .checked_sub((r as u32).saturating_sub(1))
            .ok_or_else(|| corrupt("derived quantization exponent below zero"))?;
        return Ok((e, q.mant[0]));
    }
    let i = if q.eps.len() == 1 { 0 } else { bg.qcd_index };
    let e = *q
        .eps
        .get(i)
        .ok_or_else(|| corrupt("QCD has too few exponents"))? as u32;
    Ok((e, q.mant.get(i).copied().unwrap_or(0)))
}

/// Band rows `[y0, y1)` covered by code-block row `j`.
fn block_rows(bg: &crate::geom::BandGeom, j: usize) -> (usize, usize) {
    let y0 = (((bg.cby0 + j as u64) << bg.cbh).max(bg.y0) - bg.y0) as usize;
    let y1 = (((bg.cby0 + j as u64 + 1) << bg.cbh).min(bg.y1) - bg.y0) as usize;
    (y0, y1)
}

/// Decodes the code-blocks of band `b` of resolution `r` in code-block rows `jr` into `out`,
/// whose row 0 is band row `ysub`.
fn decode_band_blocks(
    tc: &TileComp,
    r: usize,
    b: usize,
    out: &mut Plane,
    threads: usize,
    jr: std::ops::Range<usize>,
    ysub: usize,
) -> Result<(), CodecError> {
    let bg = &tc.geom.res[r].bands[b];
    let (eps, _) = band_quant(tc, r, b)?;
    let mb = (tc.qcd.guard as u32 + eps).saturating_sub(1);
    // Irreversible blocks are decoded at twice their scale, so that every significant
    // coefficient carries the half-step reconstruction offset (value = 2|q| + 1).
    let extra = tc.cc.transform != 1;
    let causal = tc.cc.style & 0x08 != 0;
    // (block rectangle in band coordinates, state)
    let mut jobs = Vec::new();
    for j in jr.start..jr.end.min(bg.ncby) {
        for i in 0..bg.ncbx {
            let cb = &tc.cbs[r][b][j * bg.ncbx + i];
            if !cb.included || cb.passes == 0 || cb.seg[0].is_empty() {
                continue;
            }
            if cb.zbp + 1 > mb {
                return Err(corrupt("more missing bit-planes than magnitude bit-planes"));
            }
            let x0 = (((bg.cbx0 + i as u64) << bg.cbw).max(bg.x0) - bg.x0) as usize;
            let x1 = (((bg.cbx0 + i as u64 + 1) << bg.cbw).min(bg.x1) - bg.x0) as usize;
            let (y0, y1) = block_rows(bg, j);
            let (y0, y1) = (y0 - ysub, y1 - ysub);
            jobs.push((x0, y0, x1 - x0, y1 - y0, cb));
        }
    }
    fn joined<'a>(cb: &CbState<'a>) -> [std::borrow::Cow<'a, [u8]>; 2] {
        [0, 1].map(|s| match cb.seg[s].as_slice() {
            [] => std::borrow::Cow::Borrowed(&[][..]),
            [one] => std::borrow::Cow::Borrowed(*one),
            many => std::borrow::Cow::Owned(many.concat()),
        })
    }
    let w = out.w;
    let bytes: usize = jobs
        .iter()
        .map(|j| j.4.seg.iter().flatten().map(|p| p.len()).sum::<usize>())
        .sum();
    // Spawning threads for a stripe of little data costs more than it gains.
    const MIN_PARALLEL_BYTES: usize = 16 << 10;
    if threads <= 1 || jobs.len() < 4 || bytes < MIN_PARALLEL_BYTES {
        for &(x0, y0, bw, bh, cb) in &jobs {
            let seg = joined(cb);
            let p = mb - 1 - cb.zbp + extra as u32;
            ht::decode_block(
                &seg[0],
                &seg[1],
                cb.passes,
                p,
                causal,
                bw,
                bh,
                &mut out.data[y0 * w + x0..],
                w,
            )
            .map_err(|e| corrupt(e.0))?;
        }
        return Ok(());
    }
    let decoded = par::map(&jobs, threads, |&(_, _, bw, bh, cb)| {
        let seg = joined(cb);
        let p = mb - 1 - cb.zbp + extra as u32;
        let mut buf = vec![0i32; bw * bh];
        ht::decode_block(&seg[0], &seg[1], cb.passes, p, causal, bw, bh, &mut buf, bw).map(|_| buf)
    });
    for (&(x0, y0, bw, _, _), res) in jobs.iter().zip(decoded) {
        let buf = res.map_err(|e| corrupt(e.0))?;
        for (k, row) in buf.chunks_exact(bw).enumerate() {
            let o = (y0 + k) * w + x0;
            out.data[o..o + bw].copy_from_slice(row);
        }
    }
    Ok(())
}

/// The top of a tile-component's reconstruction: the resolution-0 plane when no wavelet level
/// is kept, or the last level to synthesise, whose subbands are decoded lazily.
enum Top<'a, 't> {
    Plane(Plane),
    Lazy(Box<LazyLevel<'a, 't>>, dwt::RowSynth),
}

/// One subband of the last level, held one code-block row (stripe) at a time.
struct Stripe {
    b: usize,
    plane: Plane,
    row0: usize,
    next_j: usize,
}

/// One synthesis level of a tile-component: LL is a plane, and the other subbands are decoded
/// one code-block row at a time as the row-by-row synthesis reaches them, so they never exist
/// as whole planes and are synthesised while still in cache.
struct LazyLevel<'a, 't> {
    tc: &'a TileComp<'t>,
    r: usize,
    threads: usize,
    ll: LlSource<'a, 't>,
    bands: [Stripe; 3],
}

/// The LL subband of a synthesis level: the decoded resolution-0 band, or the rows of the
/// level below, synthesised on demand (so no intermediate resolution exists as a plane).
enum LlSource<'a, 't> {
    Plane(Plane),
    Rows {
        lower: Box<LazyLevel<'a, 't>>,
        synth: dwt::RowSynth,
        /// Rows `row0..` synthesised but not yet used.
        buf: Vec<i32>,
        row0: usize,
    },
}

impl LlSource<'_, '_> {
    /// Row `rr` (`n` samples); rows are asked for once each, in increasing order.
    fn row(&mut self, rr: usize, n: usize) -> Result<&mut [i32], CodecError> {
        if n == 0 {
            return Ok(&mut []);
        }
        match self {
            LlSource::Plane(p) => p
                .data
                .get_mut(rr * n..(rr + 1) * n)
                .ok_or_else(|| corrupt("LL band too small")),
            LlSource::Rows {
                lower,
                synth,
                buf,
                row0,
            } => {
                if rr < *row0 {
                    return Err(corrupt("LL row asked for twice"));
                }
                let drop = (rr - *row0).min(buf.len() / n);
                buf.drain(..drop * n);
                *row0 += drop;
                while *row0 + buf.len() / n <= rr {
                    let more = synth.step(&mut **lower, &mut |_, row| {
                        buf.extend_from_slice(row);
                    })?;
                    if buf.len() % n != 0 {
                        return Err(corrupt("subband size mismatch"));
                    }
                    if !more && *row0 + buf.len() / n <= rr {
                        return Err(corrupt("LL band too small"));
                    }
                }
                let o = (rr - *row0) * n;
                Ok(&mut buf[o..o + n])
            }
        }
    }
}

impl LazyLevel<'_, '_> {
    fn band_row<'s>(
        tc: &TileComp,
        r: usize,
        threads: usize,
        st: &'s mut Stripe,
        rr: usize,
        n: usize,
    ) -> Result<&'s mut [i32], CodecError> {
        if n == 0 {
            return Ok(&mut []);
        }
        let bg = &tc.geom.res[r].bands[st.b];
        if bg.width() != n {
            return Err(corrupt("subband size mismatch"));
        }
        while rr >= st.row0 + st.plane.h {
            let j = st.next_j;
            if j >= bg.ncby {
                return Err(corrupt("subband row outside the code-blocks"));
            }
            let (y0, y1) = block_rows(bg, j);
            st.plane.w = n;
            st.plane.h = y1 - y0;
            st.plane.data.clear();
            st.plane.data.resize(n * (y1 - y0), 0);
            st.row0 = y0;
            st.next_j += 1;
            decode_band_blocks(tc, r, st.b, &mut st.plane, threads, j..j + 1, y0)?;
        }
        let o = (rr - st.row0) * n;
        Ok(&mut st.plane.data[o..o + n])
    }
}

impl dwt::BandRows for LazyLevel<'_, '_> {
    fn pair(
        &mut self,
        high: bool,
        rr: usize,
        nl: usize,
        nh: usize,
    ) -> Result<(&mut [i32], &mut [i32]), CodecError> {
        let [hl, lh, hh] = &mut self.bands;
        let (tc, r, t) = (self.tc, self.r, self.threads);
        if high {
            let l = Self::band_row(tc, r, t, lh, rr, nl)?;
            let h = Self::band_row(tc, r, t, hh, rr, nh)?;
            Ok((l, h))
        } else {
            let l = self.ll.row(rr, nl)?;
            let h = Self::band_row(tc, r, t, hl, rr, nh)?;
            Ok((l, h))
        }
    }
}

/// Decodes one tile-component up to resolution `keep` (inclusive), except for the last
/// synthesis level, which is left to the caller.
fn reconstruct_top<'a, 't>(
    tc: &'a TileComp<'t>,
    keep: usize,
    threads: usize,
) -> Result<Top<'a, 't>, CodecError> {
    let g = &tc.geom;
    let r0 = &g.res[0];
    let mut cur = Plane::new((r0.x1 - r0.x0) as usize, (r0.y1 - r0.y0) as usize);
    decode_band_blocks(tc, 0, 0, &mut cur, threads, 0..usize::MAX, 0)?;
    if keep == 0 {
        return Ok(Top::Plane(cur));
    }
    let mut ll = LlSource::Plane(cur);
    for r in 1..=keep {
        let rg = &g.res[r];
        let (w, h) = ((rg.x1 - rg.x0) as usize, (rg.y1 - rg.y0) as usize);
        let stripe = |b| Stripe {
            b,
            plane: Plane::default(),
            row0: 0,
            next_j: 0,
        };
        let lazy = Box::new(LazyLevel {
            tc,
            r,
            threads,
            ll,
            bands: [stripe(0), stripe(1), stripe(2)],
        });
        let synth = dwt::RowSynth::new(rg.x0, rg.y0, w, h);
        if r == keep {
            return Ok(Top::Lazy(lazy, synth));
        }
        ll = LlSource::Rows {
            lower: lazy,
            synth,
            buf: Vec::new(),
            row0: 0,
        };
    }
    Err(corrupt("no resolution to reconstruct"))
}

impl Top<'_, '_> {
    /// Emits the next final row(s); false once done. `row` counts rows already emitted from
    /// a plane.
    fn step(
        &mut self,
        row: &mut usize,
        emit: &mut dyn FnMut(usize, &[i32]),
    ) -> Result<bool, CodecError> {
        match self {
            Top::Plane(p) => {
                if *row >= p.h || p.w == 0 {
                    return Ok(false);
                }
                emit(*row, &p.data[*row * p.w..(*row + 1) * p.w]);
                *row += 1;
                Ok(*row < p.h)
            }
            Top::Lazy(lv, s) => s.step(&mut **lv, emit),
        }
    }

    fn recycle(self) {
        match self {
            Top::Plane(p) => crate::pool::recycle(p.data),
            Top::Lazy(..) => {}
        }
    }
}

/// Decodes one tile-component up to resolution `keep` (inclusive) and returns the plane.
fn reconstruct(tc: &TileComp, keep: usize, threads: usize) -> Result<Plane, CodecError> {
    let rg = &tc.geom.res[keep];
    let (w, h) = ((rg.x1 - rg.x0) as usize, (rg.y1 - rg.y0) as usize);
    match reconstruct_top(tc, keep, threads)? {
        Top::Plane(p) => Ok(p),
        Top::Lazy(mut lv, _) => dwt::inverse_level(&mut *lv, rg.x0, rg.y0, w, h),
    }
}

/// Decodes one irreversible (9/7) tile-component up to resolution `keep` (inclusive) and
/// returns the reconstructed samples (before the level shift) as floats, row-major.
fn reconstruct_irrev(
    tc: &TileComp,
    keep: usize,
    threads: usize,
    precision: u8,
) -> Result<Vec<f32>, CodecError> {
    let g = &tc.geom;
    // Decodes band `b` of resolution `r` and dequantizes it.
    let band = |r: usize, b: usize| -> Result<Vec<f32>, CodecError> {
        let bg = &g.res[r].bands[b];
        let (w, h) = (bg.width(), (bg.y1 - bg.y0) as usize);
        let mut pl = Plane::new(w, h);
        decode_band_blocks(tc, r, b, &mut pl, threads, 0..usize::MAX, 0)?;
        let (eps, mant) = band_quant(tc, r, b)?;
        let gain = match bg.kind {
            0 => 0,
            3 => 2,
            _ => 1,
        };
        // T.800 E.1.1.1: step = 2^(R_b - eps_b) (1 + mu_b / 2^11), R_b = B + gain_b; the
        // decoded values are twice the quantization index plus the reconstruction offset.
        let delta =
            (2f64).powi(precision as i32 + gain - eps as i32) * (1.0 + mant as f64 / 2048.0) * 0.5;
        let d = delta as f32;
        let out = pl.data.iter().map(|&v| v as f32 * d).collect();
        crate::pool::recycle(pl.data);
        Ok(out)
    };
    let mut cur = band(0, 0)?;
    for r in 1..=keep {
        let rg = &g.res[r];
        let (w, h) = ((rg.x1 - rg.x0) as usize, (rg.y1 - rg.y0) as usize);
        let mut bs = Vec::with_capacity(3);
        for b in 0..3 {
            bs.push(band(r, b)?);
        }
        let [hl, lh, hh] = [&bs[0], &bs[1], &bs[2]];
        if rg.bands.len() != 3 {
            return Err(corrupt("resolution without three subbands"));
        }
        cur = dwt::inverse_level_97([&cur, hl, lh, hh], rg.x0, rg.y0, w, h);
    }
    Ok(cur)
}

/// Reconstructs the components of a tile with at least one irreversible component: 9/7
/// synthesis in floating point, the inverse ICT when `mct` is set, then rounding to integers
/// (before the level shift).
fn reconstruct_irrev_tile(
    tcs: &[TileComp],
    reduce: u32,
    threads: usize,
    precision: u8,
    mct: u8,
) -> Result<Vec<Plane>, CodecError> {
    let nc = tcs.len();
    let mut fl = Vec::with_capacity(nc);
    for tc in tcs {
        let keep = tc.cc.levels as usize - reduce as usize;
        let rg = &tc.geom.res[keep];
        let (w, h) = ((rg.x1 - rg.x0) as usize, (rg.y1 - rg.y0) as usize);
        let data = if tc.cc.transform == 0 {
            reconstruct_irrev(tc, keep, threads, precision)?
        } else {
            let p = reconstruct(tc, keep, threads)?;
            p.data.iter().map(|&v| v as f32).collect()
        };
        if data.len() != w * h {
            return Err(corrupt("reconstructed tile-component has the wrong size"));
        }
        fl.push((w, h, data));
    }
    if mct != 0 && nc >= 3 {
        if tcs[..3].iter().any(|tc| tc.cc.transform != 0) {
            return Err(unsupported(
                "colour transform over reversible and irreversible components",
            ));
        }
        if fl[0].2.len() == fl[1].2.len() && fl[1].2.len() == fl[2].2.len() {
            let (a, rest) = fl.split_at_mut(1);
            let (b, c) = rest.split_at_mut(1);
            // Inverse ICT (T.800 G.3.2).
            for ((y, cb), cr) in a[0]
                .2
                .iter_mut()
                .zip(b[0].2.iter_mut())
                .zip(c[0].2.iter_mut())
            {
                let (yy, u, v) = (*y, *cb, *cr);
                *y = yy + 1.402 * v;
                *cb = yy - 0.344_136 * u - 0.714_136 * v;
                *cr = yy + 1.772 * u;
            }
        }
    }
    Ok(fl
        .into_iter()
        .map(|(w, h, d)| Plane {
            w,
            h,
            data: d
                .iter()
                .map(|&v| v.round_ties_even().clamp(-2.0e9, 2.0e9) as i32)
                .collect(),
        })
        .collect())
}

/// Output samples built row by row: level shift, clamp and interleave.
fn put_rows<T: Copy + Default>(out: &mut Vec<T>, rows: &[&[i32]], w: usize, f: impl Fn(i32) -> T) {
    if let [a] = rows {
        out.extend(a[..w].iter().map(|&v| f(v)));
        return;
    }
    let nc = rows.len();
    let start = out.len();
    out.resize(start + w * nc, T::default());
    let dst = &mut out[start..];
    match rows {
        [a, b, c] => {
            for (((px, &x), &y), &z) in dst
                .chunks_exact_mut(3)
                .zip(&a[..w])
                .zip(&b[..w])
                .zip(&c[..w])
            {
                px[0] = f(x);
                px[1] = f(y);
                px[2] = f(z);
            }
        }
        _ => {
            for (c, r) in rows.iter().enumerate() {
                for (px, &v) in dst.chunks_exact_mut(nc).zip(&r[..w]) {
                    px[c] = f(v);
                }
            }
        }
    }
}

/// Inverse RCT on one row of each of the first three components.
fn inverse_rct(a: &mut [i32], b: &mut [i32], c: &mut [i32]) {
    for ((y, cb), cr) in a.iter_mut().zip(b.iter_mut()).zip(c.iter_mut()) {
        let g = y.wrapping_sub((cb.wrapping_add(*cr)) >> 2);
        let r = cr.wrapping_add(g);
        let bl = cb.wrapping_add(g);
        *y = r;
        *cb = g;
        *cr = bl;
    }
}

pub(crate) fn decode(data: &[u8], opts: &DecodeOptions) -> Result<DecodedImage, CodecError> {
    let data = unwrap_boxes(data)?;
    let hdr = parse_main(data)?;
    let _reuse = crate::pool::Reuse::new(opts.reuse_buffers);
    let threads = par::threads(opts.threads);
    let siz = &hdr.siz;
    let nc = siz.comps.len();
    if nc > 4 {
        return Err(unsupported("more than 4 components"));
    }
    for c in &siz.comps {
        if c.precision > 16 {
            return Err(unsupported("more than 16 bits per sample"));
        }
        if c.precision != siz.comps[0].precision || c.signed != siz.comps[0].signed {
            return Err(unsupported(
                "components with different precision or signedness",
            ));
        }
    }
    let main_levels = hdr.params.comp.iter().map(|c| c.levels).min().unwrap_or(0);
    let reduce = match opts.max_resolution_levels {
        Some(0) => {
            return Err(CodecError::InvalidInput(
                "max_resolution_levels must be >= 1".into(),
            ));
        }
        Some(n) => (main_levels + 1).saturating_sub(n),
        None => 0,
    } as u32;
    let rx = |v: u32| -> u64 { ceil_div(v as u64, 1u64 << reduce) };
    let (ow, oh) = (rx(siz.xsiz) - rx(siz.xosiz), rx(siz.ysiz) - rx(siz.yosiz));
    // Each component's area (T.800 B.2) at the decoded resolution: (x0, y0, width, height).
    let comp_area = |c: &CompSiz, reduce: u32| -> (u64, u64, u64, u64) {
        let (dx, dy) = (c.dx as u64, c.dy as u64);
        let f = |v: u32, d: u64| ceil_div(ceil_div(v as u64, d), 1u64 << reduce);
        let (x0, y0) = (f(siz.xosiz, dx), f(siz.yosiz, dy));
        (x0, y0, f(siz.xsiz, dx) - x0, f(siz.ysiz, dy) - y0)
    };
    let areas: Vec<(u64, u64, u64, u64)> = siz.comps.iter().map(|c| comp_area(c, reduce)).collect();
    // Components of different sizes (at full resolution, or, in odd corner cases of image
    // offsets, only at the decoded one) are returned planar.
    let planar = siz.comps.iter().any(|c| {
        [0, reduce].iter().any(|&r| {
            let (a, b) = (comp_area(c, r), comp_area(&siz.comps[0], r));
            (a.2, a.3) != (b.2, b.3)
        })
    });
    let total = areas.iter().fold(0u64, |a, &(_, _, w, h)| {
        a.saturating_add(w.saturating_mul(h))
    });
    if total > opts.max_samples {
        return Err(CodecError::LimitExceeded(format!(
            "{total} samples exceed the limit of {}",
            opts.max_samples
        )));
    }
    // Without subsampling of comp 0 this is the reference-grid area, as before.
    let (ow, oh) = if planar {
        (ow, oh)
    } else {
        (areas[0].2, areas[0].3)
    };
    let (ntx, nty) = num_tiles(siz);
    let ntiles = ntx as u64 * nty as u64;
    if ntiles > 65535 {
        return Err(corrupt("more than 65535 tiles"));
    }

    // Collect tile-parts.
    let mut tile_data: Vec<Vec<&[u8]>> = vec![Vec::new(); ntiles as usize];
    let mut tile_params: Vec<Option<Params>> = vec![None; ntiles as usize];
    let mut tile_poc_seen = vec![false; ntiles as usize];
    // Packed packet headers (PPM, PPT) per tile.
    let mut tile_hdrs: Vec<Vec<u8>> = vec![Vec::new(); ntiles as usize];
    let mut ppm_pos = 0usize;
    let mut pos = hdr.end;
    while pos + 2 <= data.len() {
        let m = u16::from_be_bytes([data[pos], data[pos + 1]]);
        if m == 0xFFD9 {
            break;
        }
        if m != 0xFF90 {
            return Err(corrupt("expected SOT"));
        }
        if pos + 12 > data.len() {
            break; // truncated tile-part header: decode what we have
        }
        let mut r = Rd {
            d: data,
            p: pos + 2,
        };
        let lsot = r.u16()?;
        let isot = r.u16()? as usize;
        let psot = r.u32()? as usize;
        let _tpsot = r.u8()?;
        let _tnsot = r.u8()?;
        if lsot != 10 || isot >= ntiles as usize {
            return Err(corrupt("bad SOT"));
        }
        let end = if psot == 0 {
            if data.ends_with(&[0xFF, 0xD9]) {
                data.len() - 2
            } else {
                data.len()
            }
        } else {
            if psot < 14 {
                return Err(corrupt("bad Psot"));
            }
            (pos + psot).min(data.len())
        };
        let mut q = pos + 12;
        let first_part = tile_params[isot].is_none();
        if first_part {
            tile_params[isot] = Some(hdr.params.clone());
        }
        loop {
            if q + 2 > end {
                return Err(corrupt("tile-part header runs past its end"));
            }
            let m = u16::from_be_bytes([data[q], data[q + 1]]);
            if m == 0xFF93 {
                q += 2;
                break;
            }
            if q + 4 > end {
                return Err(corrupt("truncated tile-part header"));
            }
            let len = u16::from_be_bytes([data[q + 2], data[q + 3]]) as usize;
            if len < 2 || q + 2 + len > end {
                return Err(corrupt("bad marker length in tile-part header"));
            }
            let body = &data[q + 4..q + 2 + len];
            match m {
                0xFF52 | 0xFF53 | 0xFF5C | 0xFF5D => {
                    let p = tile_params[isot].as_mut().expect("tile params");
                    if m == 0xFF52 {
                        p.coc_set.iter_mut().for_each(|v| *v = false);
                    }
                    if m == 0xFF5C {
                        p.qcc_set.iter_mut().for_each(|v| *v = false);
                    }
                    apply_marker(p, m, body, nc)?;
                }
                0xFF5E => return Err(unsupported("region of interest (RGN)")),
                0xFF5F if first_part => {
                    let p = tile_params[isot].as_mut().expect("tile params");
                    if !p.poc.is_empty() && !tile_poc_seen[isot] {
                        p.poc.clear(); // a tile's POC replaces the main header's
                    }
                    tile_poc_seen[isot] = true;
                    p.poc.extend(parse_poc(body, nc)?);
                }
                0xFF5F => return Err(unsupported("POC in a non-first tile-part header")),
                0xFF61 => tile_hdrs[isot].extend_from_slice(body.get(1..).unwrap_or(&[])),
                _ => {}
            }
            q += 2 + len;
        }
        tile_data[isot].push(&data[q..end]);
        if !hdr.ppm.is_empty() {
            // The next Nppm/Ippm pair holds this tile-part's packet headers.
            if ppm_pos + 4 > hdr.ppm.len() {
                return Err(corrupt("PPM data exhausted"));
            }
            let n = u32::from_be_bytes(hdr.ppm[ppm_pos..ppm_pos + 4].try_into().expect("4 bytes"))
                as usize;
            ppm_pos += 4;
            if n > hdr.ppm.len() - ppm_pos {
                return Err(corrupt("bad Nppm"));
            }
            tile_hdrs[isot].extend_from_slice(&hdr.ppm[ppm_pos..ppm_pos + n]);
            ppm_pos += n;
        }
        if end <= pos {
            break;
        }
        pos = end;
    }

    let n_out = (ow * oh) as usize;
    let n_outs: Vec<usize> = areas.iter().map(|a| (a.2 * a.3) as usize).collect();
    let cs = &siz.comps[0];
    let prec = cs.precision as u32;
    let (lo, hi, shift) = if cs.signed {
        (-(1i32 << (prec - 1)), (1i32 << (prec - 1)) - 1, 0)
    } else {
        (0, ((1i64 << prec) - 1) as i32, 1i32 << (prec - 1))
    };
    let conv = move |v: i32| v.wrapping_add(shift).max(lo).min(hi);
    // Samples written straight from the last synthesis level (one tile covering the image).
    let mut direct: Option<DecodedSamples> = None;
    let mut planes: Vec<Vec<i32>> = vec![Vec::new(); nc];
    let mut cb_count = 0u64;
    for t in 0..ntiles as usize {
        let Some(params) = &tile_params[t] else {
            continue;
        };
        let (p, q) = ((t as u32 % ntx) as u64, (t as u32 / ntx) as u64);
        let tx0 = (siz.xtosiz as u64 + p * siz.xtsiz as u64).max(siz.xosiz as u64);
        let tx1 = (siz.xtosiz as u64 + (p + 1) * siz.xtsiz as u64).min(siz.xsiz as u64);
        let ty0 = (siz.ytosiz as u64 + q * siz.ytsiz as u64).max(siz.yosiz as u64);
        let ty1 = (siz.ytosiz as u64 + (q + 1) * siz.ytsiz as u64).min(siz.ysiz as u64);
        if params.mct != 0
            && nc >= 3
            && siz.comps[..3]
                .iter()
                .any(|c| (c.dx, c.dy) != (siz.comps[0].dx, siz.comps[0].dy))
        {
            return Err(unsupported("colour transform over subsampled components"));
        }
        let mut tcs = Vec::with_capacity(nc);
        for c in 0..nc {
            let cc = params.comp[c].clone();
            let (dx, dy) = (siz.comps[c].dx as u64, siz.comps[c].dy as u64);
            if cc.style & 0x40 == 0 {
                return Err(unsupported("classic (non-HT) JPEG 2000 code-blocks"));
            }
            if cc.style & 0x80 != 0 {
                return Err(unsupported("mixed HT / classic code-blocks"));
            }
            match (cc.transform, params.qcd[c].mant.is_empty()) {
                (1, true) | (0, false) => {}
                (0 | 1, _) => {
                    return Err(unsupported(
                        "quantization style that does not match the wavelet",
                    ));
                }
                _ => return Err(corrupt("bad wavelet transform")),
            }
            if (cc.levels as u32) < reduce {
                return Err(unsupported(
                    "tile with fewer levels than the requested reduction",
                ));
            }
            let g = geom::build(
                ceil_div(tx0, dx),
                ceil_div(ty0, dy),
                ceil_div(tx1, dx),
                ceil_div(ty1, dy),
                &cc,
            );
            let mut cbs = Vec::new();
            let mut precs = Vec::new();
            for rg in &g.res {
                let np = (rg.npx as u64).saturating_mul(rg.npy as u64);
                let n: u64 = rg
                    .bands
                    .iter()
                    .map(|b| (b.ncbx as u64).saturating_mul(b.ncby as u64))
                    .fold(0u64, |a, b| a.saturating_add(b));
                cb_count = cb_count.saturating_add(n).saturating_add(np);
                if cb_count > MAX_CODEBLOCKS.min(opts.max_samples / 4 + (1 << 16)) {
                    return Err(CodecError::LimitExceeded(
                        "too many code-blocks or precincts".into(),
                    ));
                }
                cbs.push(
                    rg.bands
                        .iter()
                        .map(|b| vec![CbState::default(); b.ncbx * b.ncby])
                        .collect(),
                );
                precs.push((0..np).map(|_| None).collect());
            }
            tcs.push(TileComp {
                geom: g,
                cc,
                qcd: params.qcd[c].clone(),
                cbs,
                precs,
            });
        }
        // Packet order: the (resolution, component, precinct) triples are sorted per progression
        // volume (the COD order, or each POC entry then the COD order for anything left); layers
        // are expanded while reading, so hostile layer counts cost nothing until data backs them.
        let layers = params.layers as u32;
        let mut all: Vec<Packet> = Vec::new();
        for (c, tc) in tcs.iter().enumerate() {
            for (r, rg) in tc.geom.res.iter().enumerate() {
                for pi in 0..rg.npx * rg.npy {
                    let (i, j) = (pi % rg.npx, pi / rg.npx);
                    let (dx, dy) = (siz.comps[c].dx as u64, siz.comps[c].dy as u64);
                    let (px, py) = rg.precinct_pos(tc.cc.levels, r, i, j, tx0, ty0, dx, dy);
                    let id = all.len() as u32;
                    all.push(Packet {
                        r: r as u8,
                        c: c as u16,
                        p: pi as u32,
                        px,
                        py,
                        id,
                    });
                }
            }
        }
        let mut next_layer = vec![0u32; all.len()];
        let mut volumes: Vec<Poc> = params.poc.clone();
        volumes.push(Poc {
            rs: 0,
            cs: 0,
            lye: params.layers,
            re: 33,
            ce: u16::MAX,
            prog: params.prog,
        });
        let parts = &tile_data[t];
        let mut part = 0usize;
        let mut pos = 0usize;
        let packed = !hdr.ppm.is_empty() || !tile_hdrs[t].is_empty();
        let hdrs = &tile_hdrs[t];
        let mut hpos = 0usize;
        let tile_bytes: u64 = parts.iter().map(|p| p.len() as u64).sum::<u64>() + hdrs.len() as u64;
        let mut budget = 1_000 * tile_bytes + (1 << 22);
        // Reads a packet if it is the next one of its precinct; Ok(false) once the tile's data
        // is exhausted.
        let mut visit = |pk: &Packet, l: u32| -> Result<bool, CodecError> {
            if next_layer[pk.id as usize] != l {
                return Ok(true); // already read in an earlier volume (or out of order)
            }
            // Packets never straddle tile-parts.
            while part < parts.len() && pos >= parts[part].len() {
                part += 1;
                pos = 0;
            }
            let body: &[u8] = parts.get(part).copied().unwrap_or(&[]);
            if packed {
                if hpos >= hdrs.len() {
                    return Ok(false); // no more packet headers
                }
            } else if part >= parts.len() {
                return Ok(false); // remaining packets absent (truncated stream)
            }
            pos = read_packet(
                body,
                pos,
                packed.then_some((hdrs.as_slice(), &mut hpos)),
                &mut tcs[pk.c as usize],
                pk.r as usize,
                pk.p as usize,
                l,
                params.sop,
                params.eph,
                &mut budget,
            )?;
            next_layer[pk.id as usize] += 1;
            Ok(true)
        };
        'volumes: for vol in &volumes {
            let mut base: Vec<&Packet> = all
                .iter()
                .filter(|p| (vol.rs..vol.re).contains(&p.r) && (vol.cs..vol.ce).contains(&p.c))
                .collect();
            base.sort_by_key(|p| p.key(vol.prog));
            let lye = (vol.lye as u32).min(layers);
            match vol.prog {
                0 => {
                    for l in 0..lye {
                        for pk in &base {
                            if !visit(pk, l)? {
                                break 'volumes;
                            }
                        }
                    }
                }
                1 => {
                    let mut start = 0;
                    while start < base.len() {
                        let r = base[start].r;
                        let end = start + base[start..].iter().take_while(|p| p.r == r).count();
                        for l in 0..lye {
                            for pk in &base[start..end] {
                                if !visit(pk, l)? {
                                    break 'volumes;
                                }
                            }
                        }
                        start = end;
                    }
                }
                _ => {
                    for pk in &base {
                        for l in 0..lye {
                            if !visit(pk, l)? {
                                break 'volumes;
                            }
                        }
                    }
                }
            }
        }
        // Reconstruct.
        let covers = |(tc, a): (&TileComp, &(u64, u64, u64, u64))| {
            let rg = &tc.geom.res[tc.cc.levels as usize - reduce as usize];
            rg.x0 == a.0 && rg.y0 == a.1 && rg.x1 - rg.x0 == a.2 && rg.y1 - rg.y0 == a.3
        };
        let irrev = tcs.iter().any(|tc| tc.cc.transform == 0);
        if ntiles == 1 && !irrev && !planar && tcs.iter().zip(&areas).all(covers) {
            // Synthesise the last level row by row for all components in lockstep, and
            // convert each finished row straight into the output samples.
            let mut tops = Vec::with_capacity(nc);
            for tc in &tcs {
                let keep = tc.cc.levels as usize - reduce as usize;
                tops.push(reconstruct_top(tc, keep, threads)?);
            }
            let w = ow as usize;
            let mct = params.mct != 0 && nc >= 3;
            let cap = n_out * nc;
            let mut out = match (cs.signed, prec <= 8) {
                (false, true) => DecodedSamples::U8(Vec::with_capacity(cap)),
                (false, false) => DecodedSamples::U16(Vec::with_capacity(cap)),
                (true, true) => DecodedSamples::I8(Vec::with_capacity(cap)),
                (true, false) => DecodedSamples::I16(Vec::with_capacity(cap)),
            };
            let mut stage: Vec<Vec<i32>> = vec![Vec::new(); nc];
            let mut rows_from_plane = vec![0usize; nc];
            let mut more = w > 0;
            if nc == 1 {
                // One component: convert each finished row directly, without staging it.
                while more {
                    more = tops[0].step(&mut rows_from_plane[0], &mut |_, row| {
                        let rows = [row];
                        match &mut out {
                            DecodedSamples::U8(v) => put_rows(v, &rows, w, |x| conv(x) as u8),
                            DecodedSamples::U16(v) => put_rows(v, &rows, w, |x| conv(x) as u16),
                            DecodedSamples::I8(v) => put_rows(v, &rows, w, |x| conv(x) as i8),
                            DecodedSamples::I16(v) => put_rows(v, &rows, w, |x| conv(x) as i16),
                        }
                    })?;
                }
            }
            while more {
                more = false;
                for (c, top) in tops.iter_mut().enumerate() {
                    let st = &mut stage[c];
                    more |= top.step(&mut rows_from_plane[c], &mut |_, row| {
                        st.extend_from_slice(&row[..w])
                    })?;
                }
                // Components may emit rows at different steps (different level counts).
                let k = stage.iter().map(|s| s.len() / w).min().unwrap_or(0);
                for i in 0..k {
                    let mut rows: Vec<&mut [i32]> = stage
                        .iter_mut()
                        .map(|s| &mut s[i * w..(i + 1) * w])
                        .collect();
                    if mct {
                        let (a, rest) = rows.split_at_mut(1);
                        let (b, c) = rest.split_at_mut(1);
                        inverse_rct(a[0], b[0], c[0]);
                    }
                    let rows: Vec<&[i32]> = rows.into_iter().map(|r| &*r).collect();
                    match &mut out {
                        DecodedSamples::U8(v) => put_rows(v, &rows, w, |x| conv(x) as u8),
                        DecodedSamples::U16(v) => put_rows(v, &rows, w, |x| conv(x) as u16),
                        DecodedSamples::I8(v) => put_rows(v, &rows, w, |x| conv(x) as i8),
                        DecodedSamples::I16(v) => put_rows(v, &rows, w, |x| conv(x) as i16),
                    }
                }
                for st in stage.iter_mut() {
                    st.drain(..k * w);
                }
            }
            for top in tops {
                top.recycle();
            }
            let len = match &out {
                DecodedSamples::U8(v) => v.len(),
                DecodedSamples::U16(v) => v.len(),
                DecodedSamples::I8(v) => v.len(),
                DecodedSamples::I16(v) => v.len(),
            };
            if len != cap {
                return Err(corrupt("reconstructed image has the wrong size"));
            }
            direct = Some(out);
            continue;
        }
        let mut comp_planes = Vec::with_capacity(nc);
        if irrev {
            comp_planes = reconstruct_irrev_tile(&tcs, reduce, threads, cs.precision, params.mct)?;
        } else {
            for tc in &tcs {
                let keep = tc.cc.levels as usize - reduce as usize;
                comp_planes.push(reconstruct(tc, keep, threads)?);
            }
        }
        if params.mct != 0 && nc >= 3 && !irrev {
            let (a, rest) = comp_planes.split_at_mut(1);
            let (b, c) = rest.split_at_mut(1);
            if a[0].data.len() == b[0].data.len() && b[0].data.len() == c[0].data.len() {
                for ((y, cb), cr) in a[0]
                    .data
                    .iter_mut()
                    .zip(b[0].data.iter_mut())
                    .zip(c[0].data.iter_mut())
                {
                    let g = y.wrapping_sub((cb.wrapping_add(*cr)) >> 2);
                    let r = cr.wrapping_add(g);
                    let bl = cb.wrapping_add(g);
                    *y = r;
                    *cb = g;
                    *cr = bl;
                }
            }
        }
        // Place into the output.
        for (c, pl) in comp_planes.into_iter().enumerate() {
            let rg = &tcs[c].geom.res[tcs[c].cc.levels as usize - reduce as usize];
            let (ox0, oy0, ow, _) = areas[c];
            let n_out = n_outs[c];
            let (x0, y0) = (rg.x0 - ox0, rg.y0 - oy0);
            if pl.w as u64 == ow && pl.h as u64 == areas[c].3 && pl.data.len() == n_out {
                planes[c] = pl.data;
                continue;
            }
            if planes[c].len() != n_out {
                planes[c] = vec![0; n_out];
            }
            for y in 0..pl.h {
                let dst = ((y0 + y as u64) * ow + x0) as usize;
                planes[c][dst..dst + pl.w].copy_from_slice(&pl.data[y * pl.w..(y + 1) * pl.w]);
            }
        }
    }

    if direct.is_none() {
        for (p, &n) in planes.iter_mut().zip(&n_outs) {
            p.resize(n, 0);
        }
    }
    // Level shift, clamp, interleave.
    let n = (ow * oh) as usize;
    fn gather<T: Copy + Default>(planes: &[Vec<i32>], n: usize, f: impl Fn(i32) -> T) -> Vec<T> {
        let nc = planes.len();
        if nc == 1 {
            return planes[0].iter().map(|&x| f(x)).collect();
        }
        let mut v = vec![T::default(); n * nc];
        if nc == 3 {
            for (((px, &a), &b), &c) in v
                .chunks_exact_mut(3)
                .zip(&planes[0])
                .zip(&planes[1])
                .zip(&planes[2])
            {
                px[0] = f(a);
                px[1] = f(b);
                px[2] = f(c);
            }
        } else {
            for (i, px) in v.chunks_exact_mut(nc).enumerate() {
                for (d, p) in px.iter_mut().zip(planes) {
                    *d = f(p[i]);
                }
            }
        }
        v
    }
    fn concat<T>(planes: &[Vec<i32>], f: impl Fn(i32) -> T) -> Vec<T> {
        planes
            .iter()
            .flat_map(|p| p.iter().map(|&x| f(x)))
            .collect()
    }
    let samples = match direct {
        Some(d) => d,
        None if planar => match (cs.signed, prec <= 8) {
            (false, true) => DecodedSamples::U8(concat(&planes, |x| conv(x) as u8)),
            (false, false) => DecodedSamples::U16(concat(&planes, |x| conv(x) as u16)),
            (true, true) => DecodedSamples::I8(concat(&planes, |x| conv(x) as i8)),
            (true, false) => DecodedSamples::I16(concat(&planes, |x| conv(x) as i16)),
        },
        None => match (cs.signed, prec <= 8) {
            (false, true) => DecodedSamples::U8(gather(&planes, n, |x| conv(x) as u8)),
            (false, false) => DecodedSamples::U16(gather(&planes, n, |x| conv(x) as u16)),
            (true, true) => DecodedSamples::I8(gather(&planes, n, |x| conv(x) as i8)),
            (true, false) => DecodedSamples::I16(gather(&planes, n, |x| conv(x) as i16)),
        },
    };
    for p in planes {
        crate::pool::recycle(p);
    }
    Ok(DecodedImage {
        width: ow as u32,
        height: oh as u32,
        components: nc as u8,
        bits_stored: cs.precision,
        signed: cs.signed,
        resolution_levels: main_levels + 1,
        component_sizes: areas.iter().map(|a| (a.2 as u32, a.3 as u32)).collect(),
        planar,
        samples,
    })
}
