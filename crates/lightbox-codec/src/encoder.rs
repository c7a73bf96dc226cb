//! Lossless HTJ2K encoder: sample conversion, RCT, 5/3 DWT, HT code-blocks, packets, markers.

use crate::dwt::{self, Plane};
use crate::geom::{self, CompCoding};
use crate::t2::{BitWriter, TagTree};
use crate::{
    CodecError, EncodeOptions, ImageDesc, Progression, ResolutionChecksum, Samples, ht, par,
};

/// Coded data of one code-block (None = all zero, not included): bytes, length of the
/// cleanup segment, number of coding passes (1, or 3 with SigProp/MagRef).
type CbData = Option<(Vec<u8>, usize, u32)>;

fn invalid(m: impl Into<String>) -> CodecError {
    CodecError::InvalidInput(m.into())
}

/// Default number of decomposition levels for a `w x h` image.
pub(crate) fn default_levels(w: u32, h: u32, requested: Option<u8>) -> u8 {
    let mut need = 0u8;
    while (w as u64).div_ceil(1 << need) > 64 || (h as u64).div_ceil(1 << need) > 64 {
        need += 1;
    }
    let allowed = 31 - w.min(h).max(1).leading_zeros(); // floor(log2(min))
    let want = requested
        .map(|r| r as u32)
        .unwrap_or_else(|| allowed.min(5));
    (want.max(need as u32)).min(32) as u8
}

fn convert<T: Copy + Into<i64>>(
    src: &[T],
    nc: usize,
    n: usize,
    planar: bool,
    lo: i64,
    hi: i64,
    shift: i32,
) -> Result<Vec<Plane>, CodecError> {
    // Validate the range first (skipped when the sample type cannot exceed it).
    let (tmin, tmax) = (
        src.iter().map(|&s| s.into()).min().unwrap_or(0),
        src.iter().map(|&s| s.into()).max().unwrap_or(0),
    );
    if tmin < lo || tmax > hi {
        let idx = src
            .iter()
            .position(|&s| {
                let v: i64 = s.into();
                v < lo || v > hi
            })
            .unwrap_or(0);
        let v: i64 = src[idx].into();
        return Err(invalid(format!("sample {v} at index {idx} out of range")));
    }
    let conv = |s: T| -> i32 {
        let v: i64 = s.into();
        v as i32 - shift
    };
    let mut planes: Vec<Vec<i32>> = (0..nc)
        .map(|_| {
            let mut v = crate::pool::with_capacity(n);
            v.resize(n, 0);
            v
        })
        .collect();
    if planar || nc == 1 {
        for (c, p) in planes.iter_mut().enumerate() {
            for (d, &s) in p.iter_mut().zip(&src[c * n..(c + 1) * n]) {
                *d = conv(s);
            }
        }
    } else if nc == 3 {
        let (p0, rest) = planes.split_at_mut(1);
        let (p1, p2) = rest.split_at_mut(1);
        for (((px, a), b), c) in src
            .chunks_exact(3)
            .zip(p0[0].iter_mut())
            .zip(p1[0].iter_mut())
            .zip(p2[0].iter_mut())
        {
            *a = conv(px[0]);
            *b = conv(px[1]);
            *c = conv(px[2]);
        }
    } else {
        for (i, px) in src.chunks_exact(nc).enumerate() {
            for (p, &s) in planes.iter_mut().zip(px) {
                p[i] = conv(s);
            }
        }
    }
    Ok(planes
        .into_iter()
        .map(|data| Plane { w: 0, h: 0, data })
        .collect())
}

fn to_planes(
    desc: &ImageDesc,
    samples: Samples<'_>,
    planar: bool,
) -> Result<Vec<Plane>, CodecError> {
    let (w, h, nc) = (
        desc.width as usize,
        desc.height as usize,
        desc.components as usize,
    );
    let n = w * h;
    let total = n * nc;
    let b = desc.bits_stored as u32;
    let (lo, hi) = if desc.signed {
        (-(1i64 << (b - 1)), (1i64 << (b - 1)) - 1)
    } else {
        (0, (1i64 << b) - 1)
    };
    let shift = if desc.signed { 0 } else { 1i32 << (b - 1) };
    let mut planes = match samples {
        Samples::U8(s) if !desc.signed && s.len() == total => {
            convert(s, nc, n, planar, lo, hi, shift)?
        }
        Samples::U16(s) if !desc.signed && s.len() == total => {
            convert(s, nc, n, planar, lo, hi, shift)?
        }
        Samples::I8(s) if desc.signed && s.len() == total => {
            convert(s, nc, n, planar, lo, hi, shift)?
        }
        Samples::I16(s) if desc.signed && s.len() == total => {
            convert(s, nc, n, planar, lo, hi, shift)?
        }
        _ => {
            return Err(invalid(format!(
                "expected {total} {} samples",
                if desc.signed { "signed" } else { "unsigned" }
            )));
        }
    };
    for p in planes.iter_mut() {
        p.w = w;
        p.h = h;
    }
    Ok(planes)
}

fn rct_forward(planes: &mut [Plane]) {
    let (a, rest) = planes.split_at_mut(1);
    let (b, c) = rest.split_at_mut(1);
    for ((r, g), bb) in a[0]
        .data
        .iter_mut()
        .zip(b[0].data.iter_mut())
        .zip(c[0].data.iter_mut())
    {
        let (rv, gv, bv) = (*r, *g, *bb);
        *r = (rv + 2 * gv + bv) >> 2;
        *g = bv - gv;
        *bb = rv - gv;
    }
}

/// Subband planes of one component, indexed [resolution][band].
type Bands = Vec<Vec<Plane>>;

/// Wavelet decomposition; when `keep_ll` is set, copies of the LL band after each level are
/// pushed to `lls` (index k-1 holds the image after k decompositions).
fn decompose(p: Plane, levels: u8, keep_ll: bool, lls: &mut Vec<Plane>) -> Bands {
    let mut per_level: Vec<[Plane; 3]> = Vec::new();
    let mut cur = p;
    for _ in 0..levels {
        let lv = dwt::forward_level(cur, 0, 0);
        per_level.push([lv.hl, lv.lh, lv.hh]);
        cur = lv.ll;
        if keep_ll {
            lls.push(cur.clone());
        }
    }
    let mut out: Bands = vec![vec![cur]];
    for lv in per_level.into_iter().rev() {
        out.push(lv.into_iter().collect());
    }
    out
}

struct BandCode {
    blocks: Vec<CbData>,
    max_mag_bits: u32,
}

fn encode_band(plane: &Plane, bg: &geom::BandGeom, threads: usize, refined: bool) -> BandCode {
    let jobs: Vec<(usize, usize)> = (0..bg.ncby)
        .flat_map(|j| (0..bg.ncbx).map(move |i| (i, j)))
        .collect();
    let code = |&(i, j): &(usize, usize)| -> CbData {
        let x0 = (((bg.cbx0 + i as u64) << bg.cbw).max(bg.x0) - bg.x0) as usize;
        let x1 = (((bg.cbx0 + i as u64 + 1) << bg.cbw).min(bg.x1) - bg.x0) as usize;
        let y0 = (((bg.cby0 + j as u64) << bg.cbh).max(bg.y0) - bg.y0) as usize;
        let y1 = (((bg.cby0 + j as u64 + 1) << bg.cbh).min(bg.y1) - bg.y0) as usize;
        let off = y0 * plane.w + x0;
        let r = refined
            .then(|| ht::encode_block_refined(&plane.data[off..], x1 - x0, y1 - y0, plane.w))
            .flatten();
        if let Some((mut c, r)) = r {
            let cl = c.len();
            c.extend_from_slice(&r);
            return Some((c, cl, 3));
        }
        ht::encode_block(&plane.data[off..], x1 - x0, y1 - y0, plane.w).map(|c| {
            let n = c.len();
            (c, n, 1)
        })
    };
    // Small bands are not worth a thread hand-off.
    let t = if plane.data.len() < 64 * 64 * 4 {
        1
    } else {
        threads
    };
    let blocks = par::map(&jobs, t, code);
    let maxv = plane
        .data
        .iter()
        .map(|v| v.unsigned_abs())
        .max()
        .unwrap_or(0);
    BandCode {
        blocks,
        max_mag_bits: 32 - maxv.leading_zeros(),
    }
}

fn prog_code(p: Progression) -> u8 {
    match p {
        Progression::Lrcp => 0,
        Progression::Rlcp => 1,
        Progression::Rpcl => 2,
        Progression::Pcrl => 3,
        Progression::Cprl => 4,
    }
}

fn band_gain(kind: u8) -> u32 {
    match kind {
        0 => 0,
        3 => 2,
        _ => 1,
    }
}

fn put16(v: &mut Vec<u8>, x: u16) {
    v.extend_from_slice(&x.to_be_bytes());
}
fn put32(v: &mut Vec<u8>, x: u32) {
    v.extend_from_slice(&x.to_be_bytes());
}

pub(crate) fn encode(
    desc: &ImageDesc,
    samples: Samples<'_>,
    opts: &EncodeOptions,
) -> Result<Vec<u8>, CodecError> {
    encode_inner(desc, samples, opts, false).map(|(j2c, _)| j2c)
}

/// Encodes and also returns the CRC-32 of every resolution level, base first, computed from
/// the transform's own LL bands (what a decoder reconstructs) without decoding.
pub(crate) fn encode_with_checksums(
    desc: &ImageDesc,
    samples: Samples<'_>,
    opts: &EncodeOptions,
) -> Result<(Vec<u8>, Vec<ResolutionChecksum>), CodecError> {
    encode_inner(desc, samples, opts, true)
}

/// CRC-32 of component planes in the checksum layout (interleaved; 1 byte per sample for
/// <= 8 bits, else 2 bytes little-endian), after the inverse RCT and level shift.
fn planes_crc(planes: &[&[i32]], prec: u32, signed: bool, rct: bool) -> u32 {
    let (lo, hi, shift) = if signed {
        (-(1i32 << (prec - 1)), (1i32 << (prec - 1)) - 1, 0)
    } else {
        (0, ((1i64 << prec) - 1) as i32, 1i32 << (prec - 1))
    };
    let n = planes[0].len();
    let nc = planes.len();
    let mut hasher = crc32fast::Hasher::new();
    let mut buf: Vec<u8> = Vec::with_capacity(1 << 16);
    let mut px = vec![0i32; nc];
    for i in 0..n {
        for (c, p) in planes.iter().enumerate() {
            px[c] = p[i];
        }
        if rct && nc >= 3 {
            let (y, cb, cr) = (px[0], px[1], px[2]);
            let g = y.wrapping_sub(cb.wrapping_add(cr) >> 2);
            px[0] = cr.wrapping_add(g);
            px[1] = g;
            px[2] = cb.wrapping_add(g);
        }
        for &v in &px {
            let v = v.wrapping_add(shift).max(lo).min(hi);
            if prec <= 8 {
                buf.push(v as u8);
            } else {
                buf.extend_from_slice(&(v as u16).to_le_bytes());
            }
        }
        if buf.len() >= (1 << 16) - 8 {
            hasher.update(&buf);
            buf.clear();
        }
    }
    hasher.update(&buf);
    hasher.finalize()
}

/// CRC-32 of the caller's samples in the checksum layout.
fn samples_crc(samples: Samples<'_>, nc: usize, n: usize, planar: bool) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    let idx = |i: usize| if planar { (i % nc) * n + i / nc } else { i };
    match samples {
        Samples::U8(s) if !planar => hasher.update(s),
        Samples::U8(s) => hasher.update(&(0..s.len()).map(|i| s[idx(i)]).collect::<Vec<u8>>()),
        Samples::I8(s) => {
            hasher.update(&(0..s.len()).map(|i| s[idx(i)] as u8).collect::<Vec<u8>>())
        }
        Samples::U16(s) => hasher.update(
            &(0..s.len())
                .flat_map(|i| s[idx(i)].to_le_bytes())
                .collect::<Vec<u8>>(),
        ),
        Samples::I16(s) => hasher.update(
            &(0..s.len())
                .flat_map(|i| s[idx(i)].to_le_bytes())
                .collect::<Vec<u8>>(),
        ),
    }
    hasher.finalize()
}

fn encode_inner(
    desc: &ImageDesc,
    samples: Samples<'_>,
    opts: &EncodeOptions,
    want_checksums: bool,
) -> Result<(Vec<u8>, Vec<ResolutionChecksum>), CodecError> {
    if desc.width == 0 || desc.height == 0 || desc.width > 65535 * 4 || desc.height > 65535 * 4 {
        return Err(invalid("width and height must be 1..=262140"));
    }
    if !(1..=4).contains(&desc.components) {
        return Err(invalid("components must be 1..=4"));
    }
    if !(1..=16).contains(&desc.bits_stored) {
        return Err(invalid("bits_stored must be 1..=16"));
    }
    let (xcb, ycb) = opts.block_size_log2;
    if !(2..=10).contains(&xcb) || !(2..=10).contains(&ycb) || xcb + ycb > 12 {
        return Err(invalid(
            "code-block size exponents must be 2..=10 with sum <= 12",
        ));
    }
    let nc = desc.components as usize;
    let _reuse = crate::pool::Reuse::new(opts.reuse_buffers);
    let (w, h) = (desc.width, desc.height);
    let levels = default_levels(w, h, opts.levels);
    let mut precincts = Vec::with_capacity(levels as usize + 1);
    for r in 0..=levels as usize {
        let pp = if opts.precincts.is_empty() {
            (15, 15)
        } else {
            opts.precincts[r.min(opts.precincts.len() - 1)]
        };
        if pp.0 > 15 || pp.1 > 15 || (r > 0 && (pp.0 == 0 || pp.1 == 0)) {
            return Err(invalid(
                "precinct exponents must be 0..=15 (>= 1 above the base)",
            ));
        }
        precincts.push(pp);
    }
    let cc = CompCoding {
        levels,
        xcb,
        ycb,
        style: 0x40,
        transform: 1,
        precincts,
    };
    // Per-component coding: with `component_coding_for_testing`, components 1.. use one level
    // fewer, 32x16 code-blocks and a prefix of the precinct list, signalled with COC.
    let coc = opts.component_coding_for_testing && nc > 1;
    let ccs: Vec<CompCoding> = (0..nc)
        .map(|c| {
            if coc && c > 0 {
                let l1 = levels.saturating_sub(1);
                CompCoding {
                    levels: l1,
                    xcb: 5,
                    ycb: 4,
                    style: 0x40,
                    transform: 1,
                    precincts: cc.precincts[..=l1 as usize].to_vec(),
                }
            } else {
                cc.clone()
            }
        })
        .collect();
    let mut planes = to_planes(desc, samples, opts.planar)?;
    let rct = opts.color_transform && nc >= 3;
    if rct {
        rct_forward(&mut planes[..3]);
    }
    let gs: Vec<geom::CompGeom> = ccs
        .iter()
        .map(|cc| geom::build(0, 0, w as u64, h as u64, cc))
        .collect();

    // Transform and code every component.
    let threads = par::threads(opts.threads);
    let code_comp = |c: usize, p: Plane| -> (Vec<Vec<BandCode>>, Vec<Plane>) {
        let mut lls = Vec::new();
        let bands = decompose(p, ccs[c].levels, want_checksums, &mut lls);
        let coded = bands
            .iter()
            .zip(gs[c].res.iter())
            .map(|(bs, rg)| {
                bs.iter()
                    .zip(rg.bands.iter())
                    .map(|(p, bg)| encode_band(p, bg, threads, opts.refinement_passes_for_testing))
                    .collect()
            })
            .collect();
        for p in bands.into_iter().flatten() {
            crate::pool::recycle(p.data);
        }
        (coded, lls)
    };
    let (coded, lls): (Vec<Vec<Vec<BandCode>>>, Vec<Vec<Plane>>) = planes
        .into_iter()
        .enumerate()
        .map(|(c, p)| code_comp(c, p))
        .unzip();
    let mut checksums = Vec::new();
    if want_checksums {
        // Resolution n (1 = base) discards R = min_levels + 1 - n levels from every component.
        let min_levels = ccs.iter().map(|c| c.levels).min().unwrap_or(0) as usize;
        let prec = desc.bits_stored as u32;
        for reduce in (0..=min_levels).rev() {
            let (cw, ch) = (
                (w as u64).div_ceil(1 << reduce),
                (h as u64).div_ceil(1 << reduce),
            );
            let crc = if reduce == 0 {
                samples_crc(samples, nc, (w as usize) * (h as usize), opts.planar)
            } else {
                let planes: Vec<&[i32]> =
                    lls.iter().map(|l| l[reduce - 1].data.as_slice()).collect();
                planes_crc(&planes, prec, desc.signed, rct)
            };
            checksums.push(ResolutionChecksum {
                width: cw as u32,
                height: ch as u32,
                crc32: crc,
            });
        }
    }

    // Quantization exponents and guard bits (chosen so that no magnitude exceeds M_b).
    let markers = opts.marker_variants_for_testing;
    // Quantization groups: normally one (QCD) for all components; with
    // `marker_variants_for_testing` component 0 keeps QCD and the others get a QCC each, with
    // exponents sized for their own dynamic range (RCT chroma needs one more bit).
    let split_q = (markers || coc) && nc > 1;
    let group = |c: usize| usize::from(split_q && c > 0);
    let mut eps: Vec<Vec<u32>> = (0..2)
        .map(|gi| vec![0u32; 1 + 3 * ccs[gi.min(nc - 1)].levels as usize])
        .collect();
    let mut guard = [if opts.refinement_passes_for_testing {
        2u32
    } else {
        1u32
    }; 2];
    for (gi, ep) in eps.iter_mut().enumerate() {
        let base_b = desc.bits_stored as u32 + u32::from(rct && (!split_q || gi == 1));
        for rg in &gs[gi.min(nc - 1)].res {
            for bg in &rg.bands {
                ep[bg.qcd_index] = base_b + band_gain(bg.kind);
            }
        }
    }
    for (c, comp) in coded.iter().enumerate() {
        let gi = group(c);
        for (rg, bands) in gs[c].res.iter().zip(comp.iter()) {
            for (bg, bc) in rg.bands.iter().zip(bands.iter()) {
                let e = eps[gi][bg.qcd_index];
                if bc.max_mag_bits + 1 > guard[gi] + e {
                    guard[gi] = bc.max_mag_bits + 1 - e;
                }
            }
        }
    }
    if guard.iter().any(|&g| g > 7) || eps.iter().flatten().any(|&e| e > 31) {
        return Err(invalid("dynamic range too large"));
    }
    let mb = |c: usize, qi: usize| guard[group(c)] + eps[group(c)][qi] - 1;

    // Packets. With `layers_for_testing` > 1, blocks at odd grid positions are included in
    // layer 1 instead of layer 0 and later layers are empty, exercising decoders' multi-layer
    // paths; normal output has one layer.
    let layers = opts.layers_for_testing.max(1) as usize;
    // Contribution of block (band b, grid index idx) to layer l: (passes, byte range).
    let contribution =
        |bc: &BandCode, ncbx: usize, idx: usize, l: usize| -> Option<(u32, usize, usize)> {
            let (data, cl, passes) = bc.blocks[idx].as_ref()?;
            let f = if layers > 1 {
                (idx % ncbx + idx / ncbx) % 2
            } else {
                0
            };
            if *passes == 3 && f + 1 < layers {
                if l == f {
                    return Some((1, 0, *cl));
                }
                if l == f + 1 {
                    return Some((2, *cl, data.len()));
                }
                return None;
            }
            (l == f).then_some((*passes, 0, data.len()))
        };
    let first_layer = |bc: &BandCode, ncbx: usize, idx: usize| -> u32 {
        if bc.blocks[idx].is_none() {
            u32::MAX
        } else if layers > 1 {
            ((idx % ncbx + idx / ncbx) % 2) as u32
        } else {
            0
        }
    };
    struct PrecEnc {
        incl: Vec<TagTree>,
        zbp: Vec<TagTree>,
        lblock: Vec<Vec<u32>>,
        included: Vec<Vec<bool>>,
    }
    let mut prec_state: std::collections::HashMap<(usize, usize, usize), PrecEnc> =
        std::collections::HashMap::new();
    let mut packet = |c: usize, r: usize, pi: usize, l: usize| -> (Vec<u8>, Vec<u8>) {
        let rg = &gs[c].res[r];
        let (i, j) = (pi % rg.npx.max(1), pi / rg.npx.max(1));
        let ranges: Vec<(usize, usize, usize, usize)> = (0..rg.bands.len())
            .map(|b| rg.precinct_cbs(r, b, i, j))
            .collect();
        let st = prec_state.entry((c, r, pi)).or_insert_with(|| {
            let mut incl = Vec::new();
            let mut zbp = Vec::new();
            let mut lblock = Vec::new();
            let mut included = Vec::new();
            for (b, bg) in rg.bands.iter().enumerate() {
                let (cx0, cx1, cy0, cy1) = ranges[b];
                let (tw, th) = (cx1 - cx0, cy1 - cy0);
                let bc = &coded[c][r][b];
                let p = mb(c, bg.qcd_index) - 1;
                let mut iv = vec![u32::MAX; tw * th];
                let mut zv = vec![u32::MAX; tw * th];
                for y in 0..th {
                    for x in 0..tw {
                        let idx = (cy0 + y) * bg.ncbx + cx0 + x;
                        iv[y * tw + x] = first_layer(bc, bg.ncbx, idx);
                        if let Some((_, _, passes)) = &bc.blocks[idx] {
                            // The cleanup pass sits at bit-plane 0, or 1 when refinement follows.
                            zv[y * tw + x] = if *passes == 1 { p } else { p - 1 };
                        }
                    }
                }
                let mut t = TagTree::new(tw, th, 0);
                t.set_leaves(&iv);
                incl.push(t);
                let mut t = TagTree::new(tw, th, 0);
                t.set_leaves(&zv);
                zbp.push(t);
                lblock.push(vec![3u32; tw * th]);
                included.push(vec![false; tw * th]);
            }
            PrecEnc {
                incl,
                zbp,
                lblock,
                included,
            }
        });
        let mut bw = BitWriter::new();
        let mut body = Vec::new();
        let any = rg.bands.iter().enumerate().any(|(b, bg)| {
            let (cx0, cx1, cy0, cy1) = ranges[b];
            (cy0..cy1).any(|y| {
                (cx0..cx1)
                    .any(|x| contribution(&coded[c][r][b], bg.ncbx, y * bg.ncbx + x, l).is_some())
            })
        });
        if !any {
            bw.bit(0);
            let mut out = bw.finish();
            if markers {
                out.extend_from_slice(&[0xFF, 0x92]); // EPH
            }
            return (out, Vec::new());
        }
        bw.bit(1);
        for (b, bg) in rg.bands.iter().enumerate() {
            let (cx0, cx1, cy0, cy1) = ranges[b];
            let (tw, th) = (cx1 - cx0, cy1 - cy0);
            if tw == 0 || th == 0 {
                continue;
            }
            let bc = &coded[c][r][b];
            for y in 0..th {
                for x in 0..tw {
                    let idx = (cy0 + y) * bg.ncbx + cx0 + x;
                    let k = y * tw + x;
                    let contrib = contribution(bc, bg.ncbx, idx, l);
                    if st.included[b][k] {
                        bw.bit(contrib.is_some() as u32);
                    } else {
                        st.incl[b].encode(x, y, l as u32 + 1, &mut bw);
                    }
                    let Some((np, s, e)) = contrib else { continue };
                    let (data, cl, total) = bc.blocks[idx].as_ref().expect("contributing block");
                    if !st.included[b][k] {
                        let z = if *total == 3 {
                            mb(c, bg.qcd_index) - 2
                        } else {
                            mb(c, bg.qcd_index) - 1
                        };
                        st.zbp[b].encode(x, y, z + 1, &mut bw);
                        st.included[b][k] = true;
                    }
                    // Pass count codewords (T.800 Table B.4) and segment lengths.
                    let lens: Vec<(u32, u32)> = match np {
                        1 => {
                            bw.bit(0);
                            vec![((e - s) as u32, 0)]
                        }
                        2 => {
                            bw.bits(0b10, 2);
                            vec![((e - s) as u32, 1)]
                        }
                        _ => {
                            bw.bits(0b1100, 4);
                            vec![(*cl as u32, 0), ((e - cl) as u32, 1)]
                        }
                    };
                    let lb = st.lblock[b][k];
                    let need = lens
                        .iter()
                        .map(|&(len, extra)| (32 - len.leading_zeros()).saturating_sub(lb + extra))
                        .max()
                        .unwrap_or(0);
                    for _ in 0..need {
                        bw.bit(1);
                    }
                    bw.bit(0);
                    st.lblock[b][k] = lb + need;
                    for &(len, extra) in &lens {
                        bw.bits(len, lb + need + extra);
                    }
                    body.extend_from_slice(&data[s..e]);
                }
            }
        }
        let mut out = bw.finish();
        if markers {
            out.extend_from_slice(&[0xFF, 0x92]); // EPH
        }
        (out, body)
    };

    // Packet order.
    struct Pk {
        key: (u64, u64, u64, u64, u64),
        c: usize,
        r: usize,
        p: usize,
        l: usize,
    }
    // Progression volumes: the COD order, or with `poc_for_testing` three POC entries
    // (RPCL for the two coarsest resolutions, then CPRL for component 0 and LRCP for the other
    // components over the rest) followed by the COD order for anything left.
    let max_res = ccs.iter().map(|c| c.levels).max().unwrap_or(0) + 1;
    let poc: Vec<(u8, u16, u16, u8, u16, Progression)> = if opts.poc_for_testing {
        vec![
            (
                0,
                0,
                layers as u16,
                2.min(max_res),
                nc as u16,
                Progression::Rpcl,
            ),
            (
                2.min(max_res),
                0,
                layers as u16,
                max_res,
                1,
                Progression::Cprl,
            ),
            (
                2.min(max_res),
                1,
                layers as u16,
                max_res,
                nc as u16,
                Progression::Lrcp,
            ),
        ]
    } else {
        Vec::new()
    };
    let mut volumes = poc.clone();
    volumes.push((0, 0, layers as u16, 33, u16::MAX, opts.progression));
    let mut emitted = std::collections::HashSet::new();
    let mut pks = Vec::new();
    for &(rs, cs, lye, re, ce, prog) in &volumes {
        let mut vol = Vec::new();
        for c in (cs as usize)..nc.min(ce as usize) {
            for (r, rg) in gs[c].res.iter().enumerate() {
                if r < rs as usize || r >= re as usize {
                    continue;
                }
                for pi in 0..rg.npx * rg.npy {
                    let (i, j) = (pi % rg.npx, pi / rg.npx);
                    let (px, py) = rg.precinct_pos(ccs[c].levels, r, i, j, 0, 0, 1, 1);
                    for l in 0..(lye as usize).min(layers) {
                        let (c64, r64, p64, l64) = (c as u64, r as u64, pi as u64, l as u64);
                        let key = match prog {
                            Progression::Lrcp => (l64, r64, c64, p64, 0),
                            Progression::Rlcp => (r64, l64, c64, p64, 0),
                            Progression::Rpcl => (r64, py, px, c64, l64),
                            Progression::Pcrl => (py, px, c64, r64, l64),
                            Progression::Cprl => (c64, py, px, r64, l64),
                        };
                        vol.push(Pk {
                            key,
                            c,
                            r,
                            p: pi,
                            l,
                        });
                    }
                }
            }
        }
        vol.sort_by_key(|p| p.key);
        for pk in vol {
            if emitted.insert((pk.c, pk.r, pk.p, pk.l)) {
                pks.push(pk);
            }
        }
    }

    // Tile-parts: one per resolution for RPCL (if asked), else one.
    let split =
        opts.tile_part_per_resolution && opts.progression == Progression::Rpcl && poc.is_empty();
    // With `packed_headers_for_testing` (1 = PPT, 2 = PPM) packet headers go to `hdrs`.
    let packed = opts.packed_headers_for_testing;
    let mut parts: Vec<Vec<u8>> = Vec::new();
    let mut hdrs: Vec<Vec<u8>> = Vec::new();
    let mut cur_r = usize::MAX;
    for (seq, pk) in pks.iter().enumerate() {
        if parts.is_empty() || (split && pk.r != cur_r) {
            parts.push(Vec::new());
            hdrs.push(Vec::new());
            cur_r = pk.r;
        }
        let (header, body) = packet(pk.c, pk.r, pk.p, pk.l);
        let part = parts.last_mut().expect("part");
        if markers {
            // SOP with the packet sequence number.
            part.extend_from_slice(&[0xFF, 0x91, 0, 4]);
            part.extend_from_slice(&(seq as u16).to_be_bytes());
        }
        if packed > 0 {
            hdrs.last_mut().expect("part").extend_from_slice(&header);
        } else {
            part.extend_from_slice(&header);
        }
        part.extend_from_slice(&body);
    }
    if parts.is_empty() {
        parts.push(Vec::new());
        hdrs.push(Vec::new());
    }
    // PPT marker segments per tile-part (at most 65532 header bytes each); Zppt numbers the
    // segments across all tile-parts of the tile.
    let mut zppt = 0usize;
    let ppts: Vec<Vec<u8>> = hdrs
        .iter()
        .map(|h| {
            let mut v = Vec::new();
            if packed == 1 {
                for chunk in h.chunks(65532) {
                    put16(&mut v, 0xFF61);
                    put16(&mut v, (3 + chunk.len()) as u16);
                    v.push(zppt as u8);
                    zppt += 1;
                    v.extend_from_slice(chunk);
                }
            }
            v
        })
        .collect();
    if zppt > 256 {
        return Err(invalid("too many PPT segments"));
    }
    if parts.len() > 255 {
        return Err(invalid("too many tile-parts"));
    }

    // Main header.
    let mut out = Vec::new();
    put16(&mut out, 0xFF4F);
    // SIZ
    put16(&mut out, 0xFF51);
    put16(&mut out, (38 + 3 * nc) as u16);
    put16(&mut out, 0x4000); // Rsiz: CAP present (Part 15)
    put32(&mut out, w);
    put32(&mut out, h);
    put32(&mut out, 0);
    put32(&mut out, 0);
    put32(&mut out, w);
    put32(&mut out, h);
    put32(&mut out, 0);
    put32(&mut out, 0);
    put16(&mut out, nc as u16);
    for _ in 0..nc {
        out.push(((desc.signed as u8) << 7) | (desc.bits_stored - 1));
        out.push(1);
        out.push(1);
    }
    // CAP
    let max_mb = (0..nc)
        .flat_map(|c| (0..eps[group(c)].len()).map(move |q| (c, q)))
        .map(|(c, q)| mb(c, q))
        .max()
        .unwrap_or(1);
    let magb = if max_mb <= 8 {
        0
    } else if max_mb < 28 {
        max_mb - 8
    } else if max_mb < 48 {
        13 + (max_mb >> 2)
    } else {
        31
    };
    put16(&mut out, 0xFF50);
    put16(&mut out, 8);
    put32(&mut out, 0x0002_0000);
    put16(&mut out, magb as u16);
    // COD
    let custom = !opts.precincts.is_empty();
    put16(&mut out, 0xFF52);
    let cod_start = out.len();
    put16(&mut out, 12 + if custom { levels as u16 + 1 } else { 0 });
    out.push(custom as u8 | if markers { 0x06 } else { 0 });
    out.push(prog_code(opts.progression));
    put16(&mut out, layers as u16);
    out.push(rct as u8);
    out.push(levels);
    out.push(xcb - 2);
    out.push(ycb - 2);
    out.push(0x40);
    out.push(1);
    if custom {
        for &(px, py) in &cc.precincts {
            out.push(px | (py << 4));
        }
    }
    // POC
    if !poc.is_empty() {
        put16(&mut out, 0xFF5F);
        put16(&mut out, (2 + 7 * poc.len()) as u16);
        for &(rs, cs, lye, re, ce, prog) in &poc {
            out.push(rs);
            out.push(cs as u8);
            put16(&mut out, lye);
            out.push(re);
            out.push(ce as u8);
            out.push(prog_code(prog));
        }
    }
    // COC for components with their own coding parameters.
    if coc {
        for (c, ccc) in ccs.iter().enumerate().skip(1) {
            put16(&mut out, 0xFF53);
            put16(&mut out, 9 + if custom { ccc.levels as u16 + 1 } else { 0 });
            out.push(c as u8);
            out.push(custom as u8);
            out.push(ccc.levels);
            out.push(ccc.xcb - 2);
            out.push(ccc.ycb - 2);
            out.push(0x40);
            out.push(1);
            if custom {
                for &(px, py) in &ccc.precincts {
                    out.push(px | (py << 4));
                }
            }
        }
    }
    // QCD
    put16(&mut out, 0xFF5C);
    put16(&mut out, 3 + eps[0].len() as u16);
    out.push((guard[0] << 5) as u8);
    for &e in &eps[0] {
        out.push((e << 3) as u8);
    }
    if split_q {
        for c in 1..nc {
            put16(&mut out, 0xFF5D);
            put16(&mut out, 4 + eps[1].len() as u16);
            out.push(c as u8);
            out.push((guard[1] << 5) as u8);
            for &e in &eps[1] {
                out.push((e << 3) as u8);
            }
        }
    }
    // With `marker_variants_for_testing`, COD and QCD are repeated in the first tile-part
    // header and the last tile-part has Psot = 0.
    let cod_qcd = if markers {
        out[cod_start - 2..].to_vec()
    } else {
        Vec::new()
    };
    let part_len = |i: usize, part: &Vec<u8>| -> u32 {
        (14 + part.len() + ppts[i].len() + if i == 0 { cod_qcd.len() } else { 0 }) as u32
    };
    // PPM: Nppm/Ippm for every tile-part, split over marker segments.
    if packed == 2 {
        let mut ppm = Vec::new();
        for h in &hdrs {
            put32(&mut ppm, h.len() as u32);
            ppm.extend_from_slice(h);
        }
        for (z, chunk) in ppm.chunks(65532).enumerate() {
            put16(&mut out, 0xFF60);
            put16(&mut out, (3 + chunk.len()) as u16);
            out.push(z as u8);
            out.extend_from_slice(chunk);
        }
    }
    // TLM
    if opts.tlm {
        put16(&mut out, 0xFF55);
        put16(&mut out, (4 + 6 * parts.len()) as u16);
        out.push(0);
        out.push(0x60); // 16-bit Ttlm, 32-bit Ptlm
        for (i, part) in parts.iter().enumerate() {
            put16(&mut out, 0);
            put32(&mut out, part_len(i, part));
        }
    }
    let tn = parts.len();
    for (i, part) in parts.iter().enumerate() {
        put16(&mut out, 0xFF90);
        put16(&mut out, 10);
        put16(&mut out, 0);
        let psot = if markers && i + 1 == tn {
            0
        } else {
            part_len(i, part)
        };
        put32(&mut out, psot);
        out.push(i as u8);
        out.push(tn as u8);
        if i == 0 {
            out.extend_from_slice(&cod_qcd);
        }
        out.extend_from_slice(&ppts[i]);
        put16(&mut out, 0xFF93);
        out.extend_from_slice(part);
    }
    put16(&mut out, 0xFFD9);
    Ok((out, checksums))
}
