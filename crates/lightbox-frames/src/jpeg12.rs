//! Sequential-DCT Huffman JPEG decoder (ISO 10918-1 baseline and extended processes, SOF0/SOF1)
//! for 8- and 12-bit samples — `jpeg-decoder` 0.3 has no 12-bit support, which DICOM
//! 1.2.840.10008.1.2.4.51 needs. Interleaved and non-interleaved scans, restart intervals,
//! any sampling factors (chroma upsampled by replication), float IDCT with rounding.
//! Lossy, so within a few LSB of libjpeg's integer IDCT, not bit-identical.
//! Colour: three-component YCbCr frames are converted to RGB on request (DICOM YBR_*), as
//! libjpeg and jpeg-decoder do for 8-bit data; otherwise samples are returned as coded.

use crate::pixels::{Buf, Pixels};

const ZIGZAG: [usize; 64] = [
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20,
    13, 6, 7, 14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59,
    52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63,
];

/// Canonical Huffman table (T.81 F.2.2.3 decoding procedure).
#[derive(Clone, Default)]
struct Huffman {
    maxcode: [i32; 17],
    valptr: [i32; 17],
    mincode: [i32; 17],
    values: Vec<u8>,
}

impl Huffman {
    fn new(bits: &[u8; 16], values: Vec<u8>) -> Result<Huffman, String> {
        let mut h = Huffman {
            maxcode: [-1; 17],
            values,
            ..Default::default()
        };
        let mut code = 0i32;
        let mut k = 0i32;
        for l in 1..=16 {
            let n = bits[l - 1] as i32;
            if n > 0 {
                h.valptr[l] = k;
                h.mincode[l] = code;
                code += n;
                k += n;
                h.maxcode[l] = code - 1;
            }
            code <<= 1;
        }
        if k as usize > h.values.len() {
            return Err("JPEG Huffman table is truncated".into());
        }
        Ok(h)
    }
}

struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
    acc: u32,
    n: u32,
}

impl<'a> Bits<'a> {
    fn new(data: &'a [u8], pos: usize) -> Self {
        Bits {
            data,
            pos,
            acc: 0,
            n: 0,
        }
    }

    fn bit(&mut self) -> u32 {
        if self.n == 0 {
            let mut b = 0u8;
            if self.pos < self.data.len() {
                b = self.data[self.pos];
                if b == 0xFF {
                    let next = self.data.get(self.pos + 1).copied().unwrap_or(0);
                    if next == 0 {
                        self.pos += 2;
                    } else {
                        b = 0; // a marker: feed zeros, do not consume
                    }
                } else {
                    self.pos += 1;
                }
            }
            self.acc = b as u32;
            self.n = 8;
        }
        self.n -= 1;
        (self.acc >> self.n) & 1
    }

    fn receive(&mut self, s: u32) -> i32 {
        let mut v = 0i32;
        for _ in 0..s {
            v = (v << 1) | self.bit() as i32;
        }
        v
    }

    fn decode(&mut self, h: &Huffman) -> Result<u8, String> {
        let mut code = 0i32;
        for l in 1..=16 {
            code = (code << 1) | self.bit() as i32;
            if code <= h.maxcode[l] {
                let i = (h.valptr[l] + code - h.mincode[l]) as usize;
                return h
                    .values
                    .get(i)
                    .copied()
                    .ok_or_else(|| "bad Huffman code".to_string());
            }
        }
        Err("invalid Huffman code in JPEG data".into())
    }

    /// Skips to the next RSTn marker (after byte alignment) and consumes it.
    fn restart(&mut self) {
        self.n = 0;
        while self.pos + 1 < self.data.len() {
            if self.data[self.pos] == 0xFF && (0xD0..=0xD7).contains(&self.data[self.pos + 1]) {
                self.pos += 2;
                return;
            }
            if self.data[self.pos] == 0xFF
                && self.data[self.pos + 1] != 0
                && self.data[self.pos + 1] != 0xFF
            {
                return; // another marker: leave it
            }
            self.pos += 1;
        }
    }
}

fn extend(v: i32, s: u32) -> i32 {
    if s == 0 {
        0
    } else if v < (1 << (s - 1)) {
        v - (1 << s) + 1
    } else {
        v
    }
}

struct Component {
    id: u8,
    h: usize,
    v: usize,
    tq: usize,
    /// Blocks per line / column in the padded component plane (MCU-aligned).
    bw: usize,
    bh: usize,
    /// Dequantized, inverse-transformed samples (bw*8 × bh*8).
    plane: Vec<i32>,
    pred: i32,
}

fn idct_table() -> [[f32; 8]; 8] {
    let mut t = [[0f32; 8]; 8];
    for (x, row) in t.iter_mut().enumerate() {
        for (u, v) in row.iter_mut().enumerate() {
            let cu = if u == 0 {
                std::f32::consts::FRAC_1_SQRT_2
            } else {
                1.0
            };
            *v = cu * (((2 * x + 1) as f32 * u as f32 * std::f32::consts::PI) / 16.0).cos() / 2.0;
        }
    }
    t
}

/// Decodes a sequential Huffman JPEG of 8 or 12 bits per sample.
pub(crate) fn decode(data: &[u8], max_samples: u64, ycc_to_rgb: bool) -> Result<Pixels, String> {
    if !data.starts_with(&[0xFF, 0xD8]) {
        return Err("JPEG frame does not start with SOI".into());
    }
    let mut qt = [[0i32; 64]; 4];
    let mut dc: [Huffman; 4] = Default::default();
    let mut ac: [Huffman; 4] = Default::default();
    let mut restart = 0usize;
    let mut comps: Vec<Component> = Vec::new();
    let (mut width, mut height, mut precision) = (0usize, 0usize, 8u8);
    let (mut hmax, mut vmax) = (1usize, 1usize);
    let (mut mcux, mut mcuy) = (0usize, 0usize);
    let table = idct_table();
    let mut pos = 2;
    let seg = |pos: usize| -> Result<(u8, &[u8]), String> {
        if pos + 4 > data.len() || data[pos] != 0xFF {
            return Err("JPEG marker expected".into());
        }
        let len = u16::from_be_bytes([data[pos + 2], data[pos + 3]]) as usize;
        if len < 2 || pos + 2 + len > data.len() {
            return Err("JPEG segment is truncated".into());
        }
        Ok((data[pos + 1], &data[pos + 4..pos + 2 + len]))
    };
    loop {
        while pos < data.len() && data[pos] == 0xFF && data.get(pos + 1) == Some(&0xFF) {
            pos += 1; // fill bytes
        }
        if pos + 1 < data.len() && data[pos] == 0xFF && data[pos + 1] == 0xD9 {
            break;
        }
        if pos + 1 >= data.len() {
            break; // no EOI: accept what was decoded
        }
        let (m, body) = seg(pos)?;
        let next = pos + 4 + body.len();
        match m {
            0xDB => {
                let mut i = 0;
                while i < body.len() {
                    let pq = body[i] >> 4;
                    let tq = (body[i] & 15) as usize;
                    if tq > 3 {
                        return Err("bad DQT".into());
                    }
                    i += 1;
                    for k in 0..64 {
                        let v = if pq == 0 {
                            *body.get(i + k).ok_or("bad DQT")? as i32
                        } else {
                            let b = body.get(i + 2 * k..i + 2 * k + 2).ok_or("bad DQT")?;
                            u16::from_be_bytes([b[0], b[1]]) as i32
                        };
                        qt[tq][ZIGZAG[k]] = v;
                    }
                    i += if pq == 0 { 64 } else { 128 };
                }
            }
            0xC4 => {
                let mut i = 0;
                while i + 17 <= body.len() {
                    let tc = body[i] >> 4;
                    let th = (body[i] & 15) as usize;
                    let mut bits = [0u8; 16];
                    bits.copy_from_slice(&body[i + 1..i + 17]);
                    let n: usize = bits.iter().map(|&b| b as usize).sum();
                    let vals = body.get(i + 17..i + 17 + n).ok_or("bad DHT")?.to_vec();
                    if th > 3 {
                        return Err("bad DHT".into());
                    }
                    let h = Huffman::new(&bits, vals)?;
                    if tc == 0 {
                        dc[th] = h;
                    } else {
                        ac[th] = h;
                    }
                    i += 17 + n;
                }
            }
            0xDD => {
                if body.len() < 2 {
                    return Err("bad DRI".into());
                }
                restart = u16::from_be_bytes([body[0], body[1]]) as usize;
            }
            0xC0 | 0xC1 => {
                if body.len() < 6 {
                    return Err("bad SOF".into());
                }
                precision = body[0];
                height = u16::from_be_bytes([body[1], body[2]]) as usize;
                width = u16::from_be_bytes([body[3], body[4]]) as usize;
                let nf = body[5] as usize;
                if !(precision == 8 || precision == 12)
                    || width == 0
                    || height == 0
                    || !(1..=4).contains(&nf)
                {
                    return Err("unsupported JPEG frame parameters".into());
                }
                if body.len() < 6 + 3 * nf {
                    return Err("bad SOF".into());
                }
                for c in 0..nf {
                    let b = &body[6 + 3 * c..9 + 3 * c];
                    let (h, v) = ((b[1] >> 4) as usize, (b[1] & 15) as usize);
                    if !(1..=4).contains(&h) || !(1..=4).contains(&v) || b[2] > 3 {
                        return Err("bad JPEG sampling factors".into());
                    }
                    comps.push(Component {
                        id: b[0],
                        h,
                        v,
                        tq: b[2] as usize,
                        bw: 0,
                        bh: 0,
                        plane: Vec::new(),
                        pred: 0,
                    });
                }
                if width as u64 * height as u64 * nf as u64 > max_samples {
                    return Err("JPEG stream is larger than the frame".into());
                }
                hmax = comps.iter().map(|c| c.h).max().unwrap_or(1);
                vmax = comps.iter().map(|c| c.v).max().unwrap_or(1);
                mcux = width.div_ceil(8 * hmax);
                mcuy = height.div_ceil(8 * vmax);
                if (mcux * mcuy * hmax * vmax * 64) as u64 > 1 << 28 {
                    return Err("JPEG frame too large".into());
                }
                for c in comps.iter_mut() {
                    c.bw = mcux * c.h;
                    c.bh = mcuy * c.v;
                    c.plane = vec![0; c.bw * c.bh * 64];
                }
            }
            0xC2 | 0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF => {
                return Err(
                    "only sequential Huffman JPEG is supported by the 12-bit decoder".into(),
                );
            }
            0xDA => {
                if comps.is_empty() {
                    return Err("SOS before SOF".into());
                }
                let ns = *body.first().ok_or("bad SOS")? as usize;
                if body.len() < 1 + 2 * ns + 3 || ns == 0 {
                    return Err("bad SOS".into());
                }
                let mut scan: Vec<(usize, usize, usize)> = Vec::new();
                for k in 0..ns {
                    let id = body[1 + 2 * k];
                    let t = body[2 + 2 * k];
                    let ci = comps
                        .iter()
                        .position(|c| c.id == id)
                        .ok_or("SOS names an unknown component")?;
                    scan.push((ci, (t >> 4) as usize & 3, (t & 15) as usize & 3));
                }
                let mut bits = Bits::new(data, next);
                for c in comps.iter_mut() {
                    c.pred = 0;
                }
                // MCU geometry: one block for a single-component scan.
                let (units_x, units_y) = if ns == 1 {
                    let c = &comps[scan[0].0];
                    let cw = (width * c.h).div_ceil(hmax);
                    let ch = (height * c.v).div_ceil(vmax);
                    (cw.div_ceil(8), ch.div_ceil(8))
                } else {
                    (mcux, mcuy)
                };
                let mut coef = [0i32; 64];
                let mut count = 0usize;
                for my in 0..units_y {
                    for mx in 0..units_x {
                        if restart > 0 && count > 0 && count.is_multiple_of(restart) {
                            bits.restart();
                            for c in comps.iter_mut() {
                                c.pred = 0;
                            }
                        }
                        count += 1;
                        for &(ci, td, ta) in &scan {
                            let (bh_, bv_) = if ns == 1 {
                                (1, 1)
                            } else {
                                (comps[ci].h, comps[ci].v)
                            };
                            for by in 0..bv_ {
                                for bx in 0..bh_ {
                                    coef.fill(0);
                                    let t = bits.decode(&dc[td])? as u32;
                                    if t > 16 {
                                        return Err("bad DC category".into());
                                    }
                                    let diff = extend(bits.receive(t), t);
                                    let c = &mut comps[ci];
                                    c.pred += diff;
                                    coef[0] = c.pred * qt[c.tq][0];
                                    let mut k = 1;
                                    while k < 64 {
                                        let rs = bits.decode(&ac[ta])?;
                                        let (r, s) = ((rs >> 4) as usize, (rs & 15) as u32);
                                        if s == 0 {
                                            if r == 15 {
                                                k += 16;
                                                continue;
                                            }
                                            break;
                                        }
                                        k += r;
                                        if k > 63 {
                                            return Err("AC coefficient index out of range".into());
                                        }
                                        let z = ZIGZAG[k];
                                        coef[z] = extend(bits.receive(s), s) * qt[c.tq][z];
                                        k += 1;
                                    }
                                    let (px, py) = if ns == 1 {
                                        (mx, my)
                                    } else {
                                        (mx * c.h + bx, my * c.v + by)
                                    };
                                    if px < c.bw && py < c.bh {
                                        idct_block(
                                            &coef,
                                            &table,
                                            &mut c.plane,
                                            c.bw * 8,
                                            px * 8,
                                            py * 8,
                                        );
                                    }
                                }
                            }
                        }
                    }
                }
                // Continue after the entropy-coded segment: find the next non-RST marker.
                let mut p = bits.pos;
                while p + 1 < data.len() {
                    if data[p] == 0xFF
                        && data[p + 1] != 0
                        && !(0xD0..=0xD7).contains(&data[p + 1])
                        && data[p + 1] != 0xFF
                    {
                        break;
                    }
                    p += 1;
                }
                pos = p;
                continue;
            }
            _ => {}
        }
        pos = next;
    }
    if comps.is_empty() {
        return Err("JPEG frame has no SOF".into());
    }
    // Level shift, clamp, upsample by replication, interleave.
    let shift = 1i32 << (precision - 1);
    let maxv = (1i32 << precision) - 1;
    let nc = comps.len();
    let mut out = vec![0u16; width * height * nc];
    for (ci, c) in comps.iter().enumerate() {
        let stride = c.bw * 8;
        for y in 0..height {
            let sy = y * c.v / vmax;
            for x in 0..width {
                let sx = x * c.h / hmax;
                let v = (c.plane[sy * stride + sx] + shift).clamp(0, maxv);
                out[(y * width + x) * nc + ci] = v as u16;
            }
        }
    }
    if ycc_to_rgb && nc == 3 {
        // JFIF / T.871 YCbCr → RGB at this precision (what libjpeg does for YBR data).
        let c = shift as f32;
        for p in out.chunks_exact_mut(3) {
            let (y, cb, cr) = (p[0] as f32, p[1] as f32 - c, p[2] as f32 - c);
            let r = y + 1.402 * cr;
            let g = y - 0.344_136 * cb - 0.714_136 * cr;
            let b = y + 1.772 * cb;
            for (d, v) in p.iter_mut().zip([r, g, b]) {
                *d = v.round().clamp(0.0, maxv as f32) as u16;
            }
        }
    }
    let buf = if precision <= 8 {
        Buf::U8(out.into_iter().map(|v| v as u8).collect())
    } else {
        Buf::U16(out)
    };
    Ok(Pixels {
        width: width as u32,
        height: height as u32,
        components: nc as u8,
        precision,
        signed: false,
        buf,
    })
}

/// Separable float inverse DCT of one dequantized block, written (rounded, not yet level
/// shifted) at (x0, y0) of a plane with `stride` samples per row.
fn idct_block(
    coef: &[i32; 64],
    t: &[[f32; 8]; 8],
    plane: &mut [i32],
    stride: usize,
    x0: usize,
    y0: usize,
) {
    let mut tmp = [0f32; 64];
    for v in 0..8 {
        for x in 0..8 {
            let mut s = 0f32;
            for u in 0..8 {
                s += t[x][u] * coef[v * 8 + u] as f32;
            }
            tmp[v * 8 + x] = s;
        }
    }
    for y in 0..8 {
        for x in 0..8 {
            let mut s = 0f32;
            for v in 0..8 {
                s += t[y][v] * tmp[v * 8 + x];
            }
            plane[(y0 + y) * stride + x0 + x] = s.round() as i32;
        }
    }
}
