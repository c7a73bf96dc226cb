//! HT (High-Throughput, T.814 clause 7) block coder: cleanup-pass encoder and cleanup/SigProp/MagRef decoder.
//!
//! The encoder codes every magnitude bit of a code-block in a single HT cleanup pass (as
//! OpenJPH does for lossless coding), so the packet header signals `P = M_b - 1` missing MSBs
//! and one coding pass. The decoder accepts a cleanup pass optionally followed by one
//! SigProp and one MagRef pass.

use crate::vlc_tables::{VLC_TABLE0, VLC_TABLE1};
use std::sync::OnceLock;

/// MEL exponents per state (T.814 Table 2).
const MEL_EXP: [u32; 13] = [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 4, 5];

/// Encoder lookup: index `c_q << 8 | rho << 4 | emb` gives `cwd << 8 | len << 4 | e_k`.
struct EncTables {
    t: [[u16; 2048]; 2],
}

/// Decoder lookup: index `c_q << 7 | 7 peeked bits` gives
/// `len | rho << 4 | u_off << 8 | e_k << 12 | e_1 << 16`, or 0 when no codeword matches.
struct DecTables {
    t: [[u32; 1024]; 2],
}

fn unpack(e: u32) -> (usize, u32, u32, u32, u32, u32, u32) {
    (
        (e >> 24) as usize,
        (e >> 20) & 0xF,
        (e >> 19) & 1,
        (e >> 15) & 0xF,
        (e >> 11) & 0xF,
        (e >> 4) & 0x7F,
        e & 0xF,
    )
}

fn enc_tables() -> &'static EncTables {
    static T: OnceLock<EncTables> = OnceLock::new();
    T.get_or_init(|| {
        let mut out = EncTables { t: [[0; 2048]; 2] };
        for (ti, src) in [&VLC_TABLE0[..], &VLC_TABLE1[..]].iter().enumerate() {
            for i in 0..2048usize {
                let (c_q, rho, emb) = (i >> 8, ((i >> 4) & 0xF) as u32, (i & 0xF) as u32);
                if (emb & rho) != emb || (rho == 0 && c_q == 0) {
                    continue;
                }
                let mut best: Option<u32> = None;
                let mut best_ones = -1i32;
                for &e in src.iter() {
                    let (c, r, u_off, e_k, e_1, _, _) = unpack(e);
                    if c != c_q || r != rho {
                        continue;
                    }
                    if emb != 0 {
                        // Among u_off = 1 codewords consistent with the exponent pattern,
                        // prefer the one that makes the most MSBs implicit.
                        if u_off == 1 && (emb & e_k) == e_1 {
                            let ones = e_k.count_ones() as i32;
                            if ones >= best_ones {
                                best = Some(e);
                                best_ones = ones;
                            }
                        }
                    } else if u_off == 0 {
                        best = Some(e);
                        break;
                    }
                }
                if let Some(e) = best {
                    let (_, _, _, e_k, _, cwd, len) = unpack(e);
                    out.t[ti][i] = ((cwd << 8) | (len << 4) | e_k) as u16;
                }
            }
        }
        out
    })
}

fn dec_tables() -> &'static DecTables {
    static T: OnceLock<DecTables> = OnceLock::new();
    T.get_or_init(|| {
        let mut out = DecTables { t: [[0; 1024]; 2] };
        for (ti, src) in [&VLC_TABLE0[..], &VLC_TABLE1[..]].iter().enumerate() {
            for &e in src.iter() {
                let (c, rho, u_off, e_k, e_1, cwd, len) = unpack(e);
                let step = 1u32 << len;
                let mut bits = cwd;
                while bits < 128 {
                    out.t[ti][(c << 7) | bits as usize] =
                        len | (rho << 4) | (u_off << 8) | (e_k << 12) | (e_1 << 16);
                    bits += step;
                }
            }
        }
        out
    })
}

// ---------------------------------------------------------------------------------------------
// Encoder
// ---------------------------------------------------------------------------------------------

struct MelEnc {
    buf: Vec<u8>,
    remaining: u32,
    tmp: u32,
    run: u32,
    k: usize,
    threshold: u32,
}

impl MelEnc {
    fn new() -> Self {
        MelEnc {
            buf: Vec::with_capacity(192),
            remaining: 8,
            tmp: 0,
            run: 0,
            k: 0,
            threshold: 1,
        }
    }
    fn emit(&mut self, bit: u32) {
        self.tmp = (self.tmp << 1) | bit;
        self.remaining -= 1;
        if self.remaining == 0 {
            self.buf.push(self.tmp as u8);
            self.remaining = if self.tmp == 0xFF { 7 } else { 8 };
            self.tmp = 0;
        }
    }
    fn encode(&mut self, bit: bool) {
        if !bit {
            self.run += 1;
            if self.run >= self.threshold {
                self.emit(1);
                self.run = 0;
                self.k = (self.k + 1).min(12);
                self.threshold = 1 << MEL_EXP[self.k];
            }
        } else {
            self.emit(0);
            let mut t = MEL_EXP[self.k];
            while t > 0 {
                t -= 1;
                self.emit((self.run >> t) & 1);
            }
            self.run = 0;
            self.k = self.k.saturating_sub(1);
            self.threshold = 1 << MEL_EXP[self.k];
        }
    }
}

/// VLC bytes, written in the order they will later appear reversed at the end of the segment.
struct VlcEnc {
    buf: Vec<u8>,
    used: u32,
    tmp: u32,
    last_gt_8f: bool,
}

impl VlcEnc {
    fn new() -> Self {
        let mut buf = Vec::with_capacity(1024);
        buf.push(0xFF);
        VlcEnc {
            buf,
            used: 4,
            tmp: 0xF,
            last_gt_8f: true,
        }
    }
    fn encode(&mut self, mut cwd: u32, mut len: u32) {
        while len > 0 {
            let mut avail = 8 - self.last_gt_8f as u32 - self.used;
            let t = avail.min(len);
            self.tmp |= (cwd & ((1 << t) - 1)) << self.used;
            self.used += t;
            avail -= t;
            len -= t;
            cwd >>= t;
            if avail == 0 {
                if self.last_gt_8f && self.tmp != 0x7F {
                    self.last_gt_8f = false;
                    continue;
                }
                self.buf.push(self.tmp as u8);
                self.last_gt_8f = self.tmp > 0x8F;
                self.tmp = 0;
                self.used = 0;
            }
        }
    }
}

struct MsEnc {
    buf: Vec<u8>,
    /// Pending bits, LSB first; fewer than 8 between calls.
    tmp: u64,
    used: u32,
    /// The last byte written was 0xFF, so the next one carries only 7 bits.
    last_ff: bool,
}

impl MsEnc {
    fn new(cap: usize) -> Self {
        MsEnc {
            buf: Vec::with_capacity(cap),
            tmp: 0,
            used: 0,
            last_ff: false,
        }
    }
    /// Appends the low `len` (<= 32) bits of `cwd`.
    #[inline(always)]
    fn encode(&mut self, cwd: u64, len: u32) {
        self.tmp |= (cwd & ((1u64 << len) - 1)) << self.used;
        self.used += len;
        while self.used >= 8 {
            let b = if self.last_ff {
                let b = (self.tmp & 0x7F) as u8;
                self.tmp >>= 7;
                self.used -= 7;
                b
            } else {
                let b = self.tmp as u8;
                self.tmp >>= 8;
                self.used -= 8;
                b
            };
            self.buf.push(b);
            self.last_ff = b == 0xFF;
        }
        if self.used == 7 && self.last_ff {
            // A 7-bit byte after 0xFF is complete.
            let b = (self.tmp & 0x7F) as u8;
            self.tmp = 0;
            self.used = 0;
            self.buf.push(b);
            self.last_ff = false;
        }
    }
    fn terminate(&mut self) {
        if self.used > 0 {
            let max = if self.last_ff { 7 } else { 8 };
            let t = max - self.used;
            let b = (self.tmp | (((1u64 << t) - 1) << self.used)) as u8;
            if b != 0xFF {
                self.buf.push(b);
            }
        } else if self.last_ff {
            self.buf.pop();
        }
    }
}

fn terminate_mel_vlc(mel: &mut MelEnc, vlc: &mut VlcEnc) {
    if mel.run > 0 {
        mel.emit(1);
    }
    mel.tmp <<= mel.remaining;
    let mel_mask = (0xFFu32 << mel.remaining) & 0xFF;
    let vlc_mask = 0xFFu32 >> (8 - vlc.used);
    if (mel_mask | vlc_mask) == 0 {
        return;
    }
    let fuse = mel.tmp | vlc.tmp;
    if (((fuse ^ mel.tmp) & mel_mask) | ((fuse ^ vlc.tmp) & vlc_mask)) == 0
        && fuse != 0xFF
        && vlc.buf.len() > 1
    {
        mel.buf.push(fuse as u8);
    } else {
        mel.buf.push(mel.tmp as u8);
        vlc.buf.push(vlc.tmp as u8);
    }
}

/// U-VLC prefix/suffix for `u` in 0..=36 (prefix bits, prefix length, suffix, suffix length).
#[inline]
fn uvlc_code(u: u32) -> (u32, u32, u32, u32) {
    match u {
        0 => (0, 0, 0, 0),
        1 => (1, 1, 0, 0),
        2 => (2, 2, 0, 0),
        3 | 4 => (4, 3, u - 3, 1),
        _ => (0, 3, u - 5, 5),
    }
}

/// Per-quad data gathered before coding.
#[derive(Default, Clone, Copy)]
struct Quad {
    rho: u32,
    e: [u32; 4],
    emax: u32,
    v: [u32; 4],
}

#[inline(always)]
fn add_sample(q: &mut Quad, n: usize, c: i32) {
    if c != 0 {
        let mu = c.unsigned_abs();
        q.rho |= 1 << n;
        let e = 32 - (2 * mu - 1).leading_zeros();
        q.e[n] = e;
        q.emax = q.emax.max(e);
        q.v[n] = 2 * (mu - 1) + (c < 0) as u32;
    }
}

/// Loads the quad whose top-left sample is column `x` of rows `r0` / `r1` (None past the end).
#[inline(always)]
fn load_quad(r0: &[i32], r1: Option<&[i32]>, x: usize) -> Quad {
    let mut q = Quad::default();
    let w = r0.len();
    add_sample(&mut q, 0, r0[x]);
    if let Some(r1) = r1 {
        add_sample(&mut q, 1, r1[x]);
    }
    if x + 1 < w {
        add_sample(&mut q, 2, r0[x + 1]);
        if let Some(r1) = r1 {
            add_sample(&mut q, 3, r1[x + 1]);
        }
    }
    q
}

/// Encodes one code-block of integer coefficients (row-major, `stride` apart) with a single HT
/// cleanup pass. Returns `None` when every coefficient is zero (the block is then not included).
/// Magnitudes must stay below 2^30.
pub(crate) fn encode_block(coeffs: &[i32], w: usize, h: usize, stride: usize) -> Option<Vec<u8>> {
    if w == 0 || h == 0 {
        return None;
    }
    let mut any = false;
    for y in 0..h {
        if coeffs[y * stride..y * stride + w].iter().any(|&c| c != 0) {
            any = true;
            break;
        }
    }
    if !any {
        return None;
    }
    let tabs = enc_tables();
    let mut mel = MelEnc::new();
    let mut vlc = VlcEnc::new();
    let mut ms = MsEnc::new(w * h * 2 + 16);

    // E and sigma of the bottom row of the previous quad row, indexed by column + 1.
    let mut e_above = vec![0u32; w + 4];
    let mut e_cur = vec![0u32; w + 4];

    let nqx = w.div_ceil(2);
    let mut y = 0;
    while y < h {
        let first = y == 0;
        let tab = &tabs.t[if first { 0 } else { 1 }];
        let row0 = &coeffs[y * stride..y * stride + w];
        let row1 = (y + 1 < h).then(|| &coeffs[(y + 1) * stride..(y + 1) * stride + w]);
        let mut prev_rho = 0u32; // rho of the quad to the left in this quad row
        let mut qx = 0;
        while qx < nqx {
            let mut quads = [Quad::default(); 2];
            let mut u = [0u32; 2];
            for (k, slot) in quads.iter_mut().enumerate() {
                let q_idx = qx + k;
                if q_idx >= nqx {
                    break;
                }
                let x = q_idx * 2;
                let q = load_quad(row0, row1, x);
                let (c_q, kappa) = if first {
                    let c = (prev_rho & 1) | ((prev_rho >> 1) & 1) | ((prev_rho >> 1) & 6);
                    (c, 1)
                } else {
                    let sa = |col: usize| (e_above[col] != 0) as u32; // col is index+1
                    let c = (sa(x) | sa(x + 1))
                        | ((((prev_rho >> 2) & 1) | ((prev_rho >> 3) & 1)) << 1)
                        | ((sa(x + 2) | sa(x + 3)) << 2);
                    let max_e = e_above[x]
                        .max(e_above[x + 1])
                        .max(e_above[x + 2])
                        .max(e_above[x + 3]) as i32
                        - 1;
                    let kappa = if q.rho & (q.rho.wrapping_sub(1)) != 0 {
                        max_e.max(1) as u32
                    } else {
                        1
                    };
                    (c, kappa)
                };
                let big_u = q.emax.max(kappa);
                let uq = big_u - kappa;
                let mut eps = 0u32;
                if uq > 0 {
                    for n in 0..4 {
                        if q.e[n] == q.emax {
                            eps |= 1 << n;
                        }
                    }
                }
                e_cur[x + 1] = q.e[1];
                e_cur[x + 2] = q.e[3];
                let tuple =
                    tab[((c_q as usize) << 8) | ((q.rho as usize) << 4) | eps as usize] as u32;
                vlc.encode(tuple >> 8, (tuple >> 4) & 7);
                if c_q == 0 {
                    mel.encode(q.rho != 0);
                }
                for n in 0..4 {
                    if q.rho & (1 << n) != 0 {
                        let m = big_u - ((tuple >> n) & 1);
                        ms.encode(q.v[n] as u64, m);
                    }
                }
                u[k] = uq;
                prev_rho = q.rho;
                *slot = q;
            }
            let (u0, u1) = (u[0], u[1]);
            if first {
                if u0 > 0 && u1 > 0 {
                    mel.encode(u0.min(u1) > 2);
                }
                if u0 > 2 && u1 > 2 {
                    let a = uvlc_code(u0 - 2);
                    let b = uvlc_code(u1 - 2);
                    vlc.encode(a.0, a.1);
                    vlc.encode(b.0, b.1);
                    vlc.encode(a.2, a.3);
                    vlc.encode(b.2, b.3);
                } else if u0 > 2 && u1 > 0 {
                    let a = uvlc_code(u0);
                    vlc.encode(a.0, a.1);
                    vlc.encode(u1 - 1, 1);
                    vlc.encode(a.2, a.3);
                } else {
                    let a = uvlc_code(u0);
                    let b = uvlc_code(u1);
                    vlc.encode(a.0, a.1);
                    vlc.encode(b.0, b.1);
                    vlc.encode(a.2, a.3);
                    vlc.encode(b.2, b.3);
                }
            } else {
                let a = uvlc_code(u0);
                let b = uvlc_code(u1);
                vlc.encode(a.0, a.1);
                vlc.encode(b.0, b.1);
                vlc.encode(a.2, a.3);
                vlc.encode(b.2, b.3);
            }
            qx += 2;
        }
        std::mem::swap(&mut e_above, &mut e_cur);
        e_cur.iter_mut().for_each(|v| *v = 0);
        y += 2;
    }

    terminate_mel_vlc(&mut mel, &mut vlc);
    ms.terminate();
    let mut out = Vec::with_capacity(ms.buf.len() + mel.buf.len() + vlc.buf.len());
    out.extend_from_slice(&ms.buf);
    out.extend_from_slice(&mel.buf);
    out.extend(vlc.buf.iter().rev());
    let scup = mel.buf.len() + vlc.buf.len();
    debug_assert!((2..=4079).contains(&scup));
    let n = out.len();
    out[n - 1] = (scup >> 4) as u8;
    out[n - 2] = (out[n - 2] & 0xF0) | (scup & 0xF) as u8;
    Some(out)
}

/// Encodes a block as an HT cleanup pass at bit-plane 1 followed by SigProp and MagRef passes
/// for bit-plane 0 (three coding passes). Used to exercise decoders' refinement-pass support;
/// returns `(cleanup, refinement)` or `None` when the block cannot be coded losslessly this way
/// (a magnitude-1 sample that SigProp would not visit, or nothing significant at bit-plane 1).
pub(crate) fn encode_block_refined(
    coeffs: &[i32],
    w: usize,
    h: usize,
    stride: usize,
) -> Option<(Vec<u8>, Vec<u8>)> {
    let mut c1 = vec![0i32; w * h];
    for y in 0..h {
        for x in 0..w {
            let c = coeffs[y * stride + x];
            let m = (c.unsigned_abs() >> 1) as i32;
            c1[y * w + x] = if c < 0 { -m } else { m };
        }
    }
    let cleanup = encode_block(&c1, w, h, w)?;
    let sig_c: Vec<bool> = c1.iter().map(|&c| c != 0).collect();
    let mut sig_f = sig_c.clone();
    let mut sp = MsEnc::new(w * h / 4 + 8);
    let mut newly: Vec<usize> = Vec::with_capacity(16);
    let mut y0 = 0;
    while y0 < h {
        let y1 = (y0 + 4).min(h);
        let mut x0 = 0;
        while x0 < w {
            let x1 = (x0 + 4).min(w);
            newly.clear();
            for x in x0..x1 {
                for y in y0..y1 {
                    let i = y * w + x;
                    if sig_c[i] {
                        continue;
                    }
                    let mu = coeffs[y * stride + x].unsigned_abs();
                    let mut nb = false;
                    for ny in y.saturating_sub(1)..(y + 2).min(h) {
                        for nx in x.saturating_sub(1)..(x + 2).min(w) {
                            nb |= (nx != x || ny != y) && sig_f[ny * w + nx];
                        }
                    }
                    if !nb {
                        if mu != 0 {
                            return None;
                        }
                        continue;
                    }
                    sp.encode(mu as u64, 1);
                    if mu == 1 {
                        sig_f[i] = true;
                        newly.push(y * stride + x);
                    }
                }
            }
            for &idx in &newly {
                sp.encode((coeffs[idx] < 0) as u64, 1);
            }
            x0 = x1;
        }
        y0 = y1;
    }
    if sp.used > 0 {
        sp.buf.push(sp.tmp as u8);
    }
    let mut mr = VlcEnc {
        buf: Vec::new(),
        used: 0,
        tmp: 0,
        last_gt_8f: true,
    };
    let mut y0 = 0;
    while y0 < h {
        let y1 = (y0 + 4).min(h);
        for x in 0..w {
            for y in y0..y1 {
                if sig_c[y * w + x] {
                    mr.encode(coeffs[y * stride + x].unsigned_abs() & 1, 1);
                }
            }
        }
        y0 = y1;
    }
    if mr.used > 0 {
        mr.buf.push(mr.tmp as u8);
    }
    let mut refine = sp.buf;
    refine.extend(mr.buf.iter().rev());
    Some((cleanup, refine))
}

// ---------------------------------------------------------------------------------------------
// Decoder
// ---------------------------------------------------------------------------------------------

/// Error from the block decoder; mapped to a codestream error by the caller.
#[derive(Debug)]
pub(crate) struct BlockError(pub &'static str);

struct MelDec<'a> {
    data: &'a [u8],
    pos: usize,
    acc: u32,
    bits: u32,
    last_ff: bool,
    k: usize,
    zeros: u32,
    one_pending: bool,
}

impl<'a> MelDec<'a> {
    fn bit(&mut self) -> u32 {
        if self.bits == 0 {
            let b = if self.pos < self.data.len() {
                self.data[self.pos]
            } else {
                0xFF
            };
            self.pos += 1;
            if self.last_ff {
                self.acc = (b & 0x7F) as u32;
                self.bits = 7;
            } else {
                self.acc = b as u32;
                self.bits = 8;
            }
            self.last_ff = b == 0xFF;
        }
        self.bits -= 1;
        (self.acc >> self.bits) & 1
    }
    /// Next MEL symbol (true = significant event). The common case, a pending zero of a run,
    /// is inlined; the rest is out of line.
    #[inline(always)]
    fn next(&mut self) -> bool {
        if self.zeros > 0 {
            self.zeros -= 1;
            return false;
        }
        self.next_slow()
    }
    #[inline(never)]
    fn next_slow(&mut self) -> bool {
        loop {
            if self.zeros > 0 {
                self.zeros -= 1;
                return false;
            }
            if self.one_pending {
                self.one_pending = false;
                return true;
            }
            let e = MEL_EXP[self.k];
            if self.bit() == 1 {
                self.zeros = 1 << e;
                self.k = (self.k + 1).min(12);
            } else {
                let mut r = 0;
                for _ in 0..e {
                    r = (r << 1) | self.bit();
                }
                self.zeros = r;
                self.one_pending = true;
                self.k = self.k.saturating_sub(1);
            }
        }
    }
}

/// Backward VLC bit reader (LSB first, with the reverse unstuffing rule).
struct VlcDec<'a> {
    data: &'a [u8],
    start: usize,
    pos: isize,
    acc: u64,
    bits: u32,
    last_gt_8f: bool,
}

impl<'a> VlcDec<'a> {
    fn new(data: &'a [u8], start: usize) -> Self {
        let l = data.len();
        let d = (data[l - 2] | 0x0F) as u64;
        let (acc, bits) = if (d & 0x7F) == 0x7F {
            ((d >> 4) & 0x7, 3)
        } else {
            (d >> 4, 4)
        };
        VlcDec {
            data,
            start,
            pos: l as isize - 3,
            acc,
            bits,
            last_gt_8f: d > 0x8F,
        }
    }
    #[inline(always)]
    fn fill(&mut self) {
        if self.bits > 56 {
            return;
        }
        // Fast path: the next bytes (read backwards) contain no byte whose low 7 bits are all
        // ones, so none of them can carry a stuffed bit.
        if self.pos >= self.start as isize + 7 {
            let p = self.pos as usize;
            let k = ((64 - self.bits) / 8) as usize;
            let word = u64::from_be_bytes(self.data[p - 7..=p].try_into().expect("8 bytes"));
            let m = if k >= 8 {
                word
            } else {
                word & ((1u64 << (8 * k)) - 1)
            };
            let low7 = (m & 0x7F7F_7F7F_7F7F_7F7F) ^ 0x7F7F_7F7F_7F7F_7F7F;
            let lanes = if k >= 8 {
                u64::MAX
            } else {
                (1u64 << (8 * k)) - 1
            };
            // Bytes of `low7` equal to zero mark candidates (restricted to the k lanes used).
            let zero =
                low7.wrapping_sub(0x0101_0101_0101_0101) & !low7 & 0x8080_8080_8080_8080 & lanes;
            if zero == 0 {
                self.acc |= m << self.bits;
                self.bits += 8 * k as u32;
                self.pos -= k as isize;
                self.last_gt_8f = (m >> (8 * (k - 1))) & 0xFF > 0x8F;
                return;
            }
        }
        self.fill_slow();
    }
    #[cold]
    fn fill_slow(&mut self) {
        while self.bits <= 56 {
            let b = if self.pos >= self.start as isize {
                self.data[self.pos as usize]
            } else {
                0
            };
            self.pos -= 1;
            if self.last_gt_8f && (b & 0x7F) == 0x7F {
                self.acc |= ((b & 0x7F) as u64) << self.bits;
                self.bits += 7;
            } else {
                self.acc |= (b as u64) << self.bits;
                self.bits += 8;
            }
            self.last_gt_8f = b > 0x8F;
        }
    }
    /// The next 32 bits (zeros past the start of the segment). Refills only when fewer than
    /// 32 bits are buffered, which reads the same bytes as refilling on every call.
    #[inline(always)]
    fn peek(&mut self) -> u32 {
        if self.bits < 32 {
            self.fill();
        }
        self.acc as u32
    }
    #[inline(always)]
    fn consume(&mut self, n: u32) {
        self.acc >>= n;
        self.bits -= n;
    }
    #[inline]
    fn bits(&mut self, n: u32) -> u32 {
        let v = self.peek() & ((1u32 << n) - 1);
        self.consume(n);
        v
    }
}

/// U-VLC prefix: returns the class (1, 2, 3 or 5).
#[inline(always)]
fn uvlc_prefix(v: &mut VlcDec) -> u32 {
    let b = v.peek();
    let (class, len) = if b & 1 != 0 {
        (1, 1)
    } else if b & 2 != 0 {
        (2, 2)
    } else if b & 4 != 0 {
        (3, 3)
    } else {
        (5, 3)
    };
    v.consume(len);
    class
}

#[inline(always)]
fn uvlc_suffix(v: &mut VlcDec, class: u32) -> u32 {
    match class {
        3 => 3 + v.bits(1),
        5 => 5 + v.bits(5),
        _ => class,
    }
}

#[inline(always)]
fn uvlc_ext(v: &mut VlcDec, u: u32, class: u32) -> u32 {
    if class == 5 && u >= 33 {
        u + 4 * v.bits(4)
    } else {
        u
    }
}

/// Forward MagSgn / refinement bit reader (LSB first, 7 bits after 0xFF).
struct FwdBits<'a> {
    data: &'a [u8],
    pos: usize,
    acc: u64,
    bits: u32,
    last_ff: bool,
    fill_byte: u8,
}

impl<'a> FwdBits<'a> {
    fn new(data: &'a [u8], fill_byte: u8) -> Self {
        FwdBits {
            data,
            pos: 0,
            acc: 0,
            bits: 0,
            last_ff: false,
            fill_byte,
        }
    }
    #[inline(always)]
    fn fill(&mut self) {
        if self.bits > 56 {
            return;
        }
        // Fast path: whole bytes without 0xFF (no unstuffing needed).
        if !self.last_ff && self.pos + 8 <= self.data.len() {
            let k = ((64 - self.bits) / 8) as usize;
            let word = u64::from_le_bytes(
                self.data[self.pos..self.pos + 8]
                    .try_into()
                    .expect("8 bytes"),
            );
            let m = if k >= 8 {
                word
            } else {
                word & ((1u64 << (8 * k)) - 1)
            };
            let inv = !m;
            let has_ff = inv.wrapping_sub(0x0101_0101_0101_0101) & m & 0x8080_8080_8080_8080 != 0;
            if !has_ff {
                self.acc |= m << self.bits;
                self.bits += 8 * k as u32;
                self.pos += k;
                return;
            }
        }
        self.fill_slow();
    }
    #[cold]
    fn fill_slow(&mut self) {
        while self.bits <= 56 {
            let b = if self.pos < self.data.len() {
                self.data[self.pos]
            } else {
                self.fill_byte
            };
            self.pos += 1;
            let nb = if self.last_ff { 7 } else { 8 };
            self.acc |= ((b as u64) & ((1u64 << nb) - 1)) << self.bits;
            self.bits += nb;
            self.last_ff = b == 0xFF;
        }
    }
    /// Reads `n <= 32` bits. Refills only when fewer than `n` bits are buffered; the bytes read
    /// do not depend on when refills happen.
    #[inline(always)]
    fn read(&mut self, n: u32) -> u64 {
        if self.bits < n {
            self.fill();
        }
        let v = self.acc & ((1u64 << n) - 1);
        self.acc >>= n;
        self.bits -= n;
        v
    }
}

/// Decodes an HT code-block.
///
/// `cleanup` is the HT cleanup segment, `refine` the SigProp/MagRef segment (may be empty),
/// `passes` the number of coding passes (1..=3), `p` the bit-plane of the cleanup pass.
/// Writes signed coefficients into `out` (row-major, `stride` apart).
#[allow(clippy::too_many_arguments)]
pub(crate) fn decode_block(
    cleanup: &[u8],
    refine: &[u8],
    passes: u32,
    p: u32,
    causal: bool,
    w: usize,
    h: usize,
    out: &mut [i32],
    stride: usize,
) -> Result<(), BlockError> {
    let l = cleanup.len();
    if l < 2 {
        return Err(BlockError("HT cleanup segment shorter than 2 bytes"));
    }
    let scup = ((cleanup[l - 1] as usize) << 4) | (cleanup[l - 2] & 0xF) as usize;
    if scup < 2 || scup > l || scup > 4079 {
        return Err(BlockError("invalid HT Scup"));
    }
    if p >= 31 {
        return Err(BlockError("too many missing bit-planes"));
    }
    let tabs = dec_tables();
    let mut ms = FwdBits::new(&cleanup[..l - scup], 0xFF);
    let mut mel = MelDec {
        data: &cleanup[l - scup..],
        pos: 0,
        acc: 0,
        bits: 0,
        last_ff: false,
        k: 0,
        zeros: 0,
        one_pending: false,
    };
    let mut vlc = VlcDec::new(cleanup, l - scup);

    if !(1..=3).contains(&passes) {
        return Err(BlockError("more than one HT set per code-block"));
    }
    if passes > 1 && p == 0 {
        return Err(BlockError("refinement pass below bit-plane 0"));
    }
    // Mid-point reconstruction for truncated (lossy) blocks coded above bit-plane 0; with
    // refinement passes the bin centre is added after them.
    let half = if p > 0 && passes == 1 {
        1u64 << (p - 1)
    } else {
        0
    };
    let mut e_above = vec![0u32; w + 4];
    let mut e_cur = vec![0u32; w + 4];
    let nqx = w.div_ceil(2);
    let mut y = 0;
    while y < h {
        let first = y == 0;
        let tab = &tabs.t[if first { 0 } else { 1 }];
        let mut prev_rho = 0u32;
        let mut qx = 0;
        while qx < nqx {
            let mut rho = [0u32; 2];
            let mut uoff = [0u32; 2];
            let mut ek = [0u32; 2];
            let mut e1 = [0u32; 2];
            let mut kappa = [1u32; 2];
            let nq = if qx + 1 < nqx { 2 } else { 1 };
            for k in 0..nq {
                let x = (qx + k) * 2;
                let c_q = if first {
                    (prev_rho & 1) | ((prev_rho >> 1) & 1) | ((prev_rho >> 1) & 6)
                } else {
                    let sa = |col: usize| (e_above[col] != 0) as u32;
                    (sa(x) | sa(x + 1))
                        | ((((prev_rho >> 2) & 1) | ((prev_rho >> 3) & 1)) << 1)
                        | ((sa(x + 2) | sa(x + 3)) << 2)
                };
                let coded = c_q != 0 || mel.next();
                if coded {
                    let bits = vlc.peek() & 0x7F;
                    let ent = tab[((c_q as usize) << 7) | bits as usize];
                    if ent == 0 {
                        return Err(BlockError("invalid VLC codeword"));
                    }
                    vlc.consume(ent & 0xF);
                    rho[k] = (ent >> 4) & 0xF;
                    uoff[k] = (ent >> 8) & 1;
                    ek[k] = (ent >> 12) & 0xF;
                    e1[k] = (ent >> 16) & 0xF;
                }
                // Samples outside the block must not be significant.
                let mut valid = 0xFu32;
                if x + 1 >= w {
                    valid &= 0x3;
                }
                if y + 1 >= h {
                    valid &= 0x5;
                }
                if rho[k] & !valid != 0 {
                    return Err(BlockError("significance outside code-block"));
                }
                if !first {
                    let max_e = e_above[x]
                        .max(e_above[x + 1])
                        .max(e_above[x + 2])
                        .max(e_above[x + 3]) as i32
                        - 1;
                    if rho[k] & rho[k].wrapping_sub(1) != 0 {
                        kappa[k] = max_e.max(1) as u32;
                    }
                }
                prev_rho = rho[k];
            }
            // U-VLC
            let mut u = [0u32; 2];
            if first && uoff[0] == 1 && uoff[1] == 1 {
                if mel.next() {
                    let c0 = uvlc_prefix(&mut vlc);
                    let c1 = uvlc_prefix(&mut vlc);
                    let a = uvlc_suffix(&mut vlc, c0);
                    let b = uvlc_suffix(&mut vlc, c1);
                    let a = uvlc_ext(&mut vlc, a, c0);
                    let b = uvlc_ext(&mut vlc, b, c1);
                    u = [a + 2, b + 2];
                } else {
                    let c0 = uvlc_prefix(&mut vlc);
                    if c0 > 2 {
                        let b = vlc.bits(1) + 1;
                        let a = uvlc_suffix(&mut vlc, c0);
                        let a = uvlc_ext(&mut vlc, a, c0);
                        u = [a, b];
                    } else {
                        let c1 = uvlc_prefix(&mut vlc);
                        let a = uvlc_suffix(&mut vlc, c0);
                        let b = uvlc_suffix(&mut vlc, c1);
                        let a = uvlc_ext(&mut vlc, a, c0);
                        let b = uvlc_ext(&mut vlc, b, c1);
                        u = [a, b];
                    }
                }
            } else {
                let c0 = if uoff[0] == 1 {
                    uvlc_prefix(&mut vlc)
                } else {
                    0
                };
                let c1 = if uoff[1] == 1 {
                    uvlc_prefix(&mut vlc)
                } else {
                    0
                };
                let a = if c0 > 0 { uvlc_suffix(&mut vlc, c0) } else { 0 };
                let b = if c1 > 0 { uvlc_suffix(&mut vlc, c1) } else { 0 };
                u[0] = if c0 > 0 { uvlc_ext(&mut vlc, a, c0) } else { 0 };
                u[1] = if c1 > 0 { uvlc_ext(&mut vlc, b, c1) } else { 0 };
            }
            // MagSgn
            for k in 0..nq {
                let x = (qx + k) * 2;
                let big_u = kappa[k] + u[k];
                if rho[k] != 0 && big_u > 32 {
                    return Err(BlockError("HT exponent too large"));
                }
                let (ekk, e1k) = (ek[k], e1[k]);
                let limit = (1u64 << 31) >> p;
                let base = y * stride + x;
                let mut r = rho[k];
                while r != 0 {
                    let n = r.trailing_zeros();
                    r &= r - 1;
                    let (dx, dy) = ((n >> 1) as usize, (n & 1) as usize);
                    // kappa >= 1, so big_u >= 1 >= the implied-MSB bit.
                    let m = big_u - ((ekk >> n) & 1);
                    let v = ms.read(m) | ((((e1k >> n) & 1) as u64) << m);
                    let mu = (v >> 1) + 1;
                    if mu >= limit {
                        return Err(BlockError("HT magnitude overflow"));
                    }
                    let mag = ((mu << p) | half) as i32;
                    let neg = -((v & 1) as i32);
                    out[base + dy * stride + dx] = (mag ^ neg) - neg;
                    // Only bottom-row exponents are kept; a top sample (visited before the
                    // bottom one of its column) writes 0, which the bottom one overwrites.
                    let e = 64 - (2 * mu - 1).leading_zeros();
                    e_cur[x + dx + 1] = e & (dy as u32).wrapping_neg();
                }
            }
            qx += 2;
        }
        std::mem::swap(&mut e_above, &mut e_cur);
        e_cur.iter_mut().for_each(|v| *v = 0);
        y += 2;
    }

    if passes > 1 {
        refine_passes(refine, passes, p, causal, w, h, out, stride);
    }
    Ok(())
}

/// Backward MagRef bit reader: LSB first from the last byte of the refinement segment;
/// a byte following (in reading order) one above 0x8F contributes 7 bits when its low 7 bits
/// are all ones. Zeros are fed past the start.
struct MrDec<'a> {
    data: &'a [u8],
    pos: usize,
    acc: u64,
    bits: u32,
    unstuff: bool,
}

impl<'a> MrDec<'a> {
    fn bit(&mut self) -> u32 {
        if self.bits == 0 {
            let d = if self.pos > 0 {
                self.pos -= 1;
                self.data[self.pos]
            } else {
                0
            };
            let n = if self.unstuff && (d & 0x7F) == 0x7F {
                7
            } else {
                8
            };
            self.acc = (d as u64) & ((1 << n) - 1);
            self.bits = n;
            self.unstuff = d > 0x8F;
        }
        let v = (self.acc & 1) as u32;
        self.acc >>= 1;
        self.bits -= 1;
        v
    }
}

/// SigProp and MagRef passes (T.814 7.4, 7.5) refining bit-plane `p - 1` of a block whose
/// cleanup magnitudes (without bin centre) are already in `out`.
#[allow(clippy::too_many_arguments)]
fn refine_passes(
    data: &[u8],
    passes: u32,
    p: u32,
    causal: bool,
    w: usize,
    h: usize,
    out: &mut [i32],
    stride: usize,
) {
    let pr = p - 1;
    let half: i64 = if pr > 0 { 1 << (pr - 1) } else { 0 };
    let sig_c: Vec<bool> = (0..w * h)
        .map(|i| out[(i / w) * stride + i % w] != 0)
        .collect();
    let mut sig_f = sig_c.clone();
    let mut sp = FwdBits::new(data, 0);
    let mut newly: Vec<(usize, usize)> = Vec::with_capacity(16);
    let set = |out: &mut [i32], idx: usize, neg: bool, mag: i64| {
        let m = mag.min(i32::MAX as i64) as i32;
        out[idx] = if neg { -m } else { m };
    };
    let mut y0 = 0;
    while y0 < h {
        let y1 = (y0 + 4).min(h);
        let mut x0 = 0;
        while x0 < w {
            let x1 = (x0 + 4).min(w);
            newly.clear();
            for x in x0..x1 {
                for y in y0..y1 {
                    if sig_c[y * w + x] {
                        continue;
                    }
                    let mut nb = false;
                    'scan: for ny in y.saturating_sub(1)..(y + 2).min(h) {
                        if causal && ny >= y1 {
                            continue;
                        }
                        for nx in x.saturating_sub(1)..(x + 2).min(w) {
                            if (nx != x || ny != y) && sig_f[ny * w + nx] {
                                nb = true;
                                break 'scan;
                            }
                        }
                    }
                    if nb && sp.read(1) == 1 {
                        sig_f[y * w + x] = true;
                        newly.push((x, y));
                    }
                }
            }
            for &(x, y) in &newly {
                let neg = sp.read(1) == 1;
                set(out, y * stride + x, neg, (1i64 << pr) | half);
            }
            x0 = x1;
        }
        y0 = y1;
    }
    let mut mr = MrDec {
        data,
        pos: data.len(),
        acc: 0,
        bits: 0,
        unstuff: true,
    };
    let mut y0 = 0;
    while y0 < h {
        let y1 = (y0 + 4).min(h);
        for x in 0..w {
            for y in y0..y1 {
                if !sig_c[y * w + x] {
                    continue;
                }
                let idx = y * stride + x;
                let v = out[idx];
                let refine = if passes > 2 {
                    ((mr.bit() as i64) << pr) | half
                } else {
                    1i64 << pr
                };
                set(out, idx, v < 0, v.unsigned_abs() as i64 | refine);
            }
        }
        y0 = y1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(w: usize, h: usize, f: impl Fn(usize, usize) -> i32) {
        let data: Vec<i32> = (0..w * h).map(|i| f(i % w, i / w)).collect();
        let enc = encode_block(&data, w, h, w);
        let mut out = vec![0i32; w * h];
        if let Some(bytes) = enc {
            decode_block(&bytes, &[], 1, 0, false, w, h, &mut out, w).unwrap();
        }
        assert_eq!(out, data, "{w}x{h}");
    }

    #[test]
    fn block_roundtrips() {
        let mut seed = 12345u32;
        let mut rnd = move || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed
        };
        for &(w, h) in &[
            (1, 1),
            (1, 5),
            (5, 1),
            (2, 2),
            (3, 3),
            (7, 9),
            (64, 64),
            (33, 17),
            (4, 64),
        ] {
            roundtrip(w, h, |_, _| 0);
            roundtrip(w, h, |x, y| (x as i32 - y as i32) * 3);
            let vals: Vec<i32> = (0..w * h)
                .map(|_| rnd() as i32 >> (rnd() % 31 + 1))
                .collect();
            roundtrip(w, h, |x, y| vals[y * w + x]);
            let sparse: Vec<i32> = (0..w * h)
                .map(|_| {
                    if rnd() % 7 == 0 {
                        (rnd() % 5) as i32 - 2
                    } else {
                        0
                    }
                })
                .collect();
            roundtrip(w, h, |x, y| sparse[y * w + x]);
            roundtrip(w, h, |_, _| -(1 << 29));
        }
    }
}
