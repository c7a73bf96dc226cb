//! Reversible 5/3 discrete wavelet transform (T.800 Annex F), integer lifting with symmetric
//! extension, for any start parity and any length including 1; and the irreversible 9/7
//! synthesis (floating point) for lossy streams.

/// A rectangular plane of `i32` samples, row-major.
#[derive(Clone, Debug, Default)]
pub(crate) struct Plane {
    pub w: usize,
    pub h: usize,
    pub data: Vec<i32>,
}

impl Plane {
    pub fn new(w: usize, h: usize) -> Plane {
        Plane {
            w,
            h,
            data: crate::pool::zeroed(w * h),
        }
    }
}

/// Number of low-pass samples of a signal covering `[x0, x0 + n)`.
#[inline]
pub(crate) fn low_count(x0: u64, n: usize) -> usize {
    ((x0 + n as u64).div_ceil(2) - x0.div_ceil(2)) as usize
}

/// Predict step on the high-pass samples: `h[k] -= (l[k + a - 1] + l[k + a]) >> 1`, with the
/// low-pass index clamped to `0..l.len()` (symmetric extension at both ends).
#[inline]
fn predict<const SUB: bool>(h: &mut [i32], l: &[i32], a: usize) {
    let nl = l.len();
    if nl == 0 {
        return;
    }
    let at = |i: isize| l[i.clamp(0, nl as isize - 1) as usize];
    let nh = h.len();
    // Interior: indices where both neighbours are in range.
    let start = (1 - a as isize).max(0) as usize; // k + a - 1 >= 0
    let end = nh.min((nl as isize - a as isize).max(0) as usize); // k + a <= nl - 1
    for k in (0..start.min(nh)).chain(end.max(start)..nh) {
        let v = at(k as isize + a as isize - 1).wrapping_add(at(k as isize + a as isize)) >> 1;
        h[k] = if SUB {
            h[k].wrapping_sub(v)
        } else {
            h[k].wrapping_add(v)
        };
    }
    if end > start {
        let l0 = &l[start + a - 1..end + a - 1];
        let l1 = &l[start + a..end + a];
        for ((hv, &x0), &x1) in h[start..end].iter_mut().zip(l0).zip(l1) {
            let v = x0.wrapping_add(x1) >> 1;
            *hv = if SUB {
                hv.wrapping_sub(v)
            } else {
                hv.wrapping_add(v)
            };
        }
    }
}

/// Update step on the low-pass samples: `l[k] += (h[k + a - 1] + h[k + a] + 2) >> 2`, with the
/// high-pass index clamped (symmetric extension).
#[inline]
fn update<const SUB: bool>(l: &mut [i32], h: &[i32], a: usize) {
    let nh = h.len();
    if nh == 0 {
        return;
    }
    let at = |i: isize| h[i.clamp(0, nh as isize - 1) as usize];
    let nl = l.len();
    let start = (1 - a as isize).max(0) as usize;
    let end = nl.min((nh as isize - a as isize).max(0) as usize);
    for k in (0..start.min(nl)).chain(end.max(start)..nl) {
        let v = at(k as isize + a as isize - 1)
            .wrapping_add(at(k as isize + a as isize))
            .wrapping_add(2)
            >> 2;
        l[k] = if SUB {
            l[k].wrapping_sub(v)
        } else {
            l[k].wrapping_add(v)
        };
    }
    if end > start {
        let h0 = &h[start + a - 1..end + a - 1];
        let h1 = &h[start + a..end + a];
        for ((lv, &x0), &x1) in l[start..end].iter_mut().zip(h0).zip(h1) {
            let v = x0.wrapping_add(x1).wrapping_add(2) >> 2;
            *lv = if SUB {
                lv.wrapping_sub(v)
            } else {
                lv.wrapping_add(v)
            };
        }
    }
}

/// Offsets `(a_predict, a_update)` for a signal starting at an even (`odd = false`) or odd
/// absolute coordinate.
#[inline]
fn offsets(odd: bool) -> (usize, usize) {
    if odd { (0, 1) } else { (1, 0) }
}

/// Forward 1D lifting in place; on return `x` holds low-pass then high-pass samples.
#[cfg(test)]
fn fwd_1d(x: &mut [i32], odd: bool, tmp: &mut Vec<i32>) {
    let n = x.len();
    if n == 0 {
        return;
    }
    if n == 1 {
        if odd {
            x[0] = x[0].wrapping_mul(2);
        }
        return;
    }
    let o = odd as usize;
    let nl = low_count(o as u64, n);
    tmp.clear();
    tmp.resize(n, 0);
    {
        let (l, h) = tmp.split_at_mut(nl);
        let (first, second) = if o == 0 { (l, h) } else { (h, l) };
        for (pair, (a, b)) in x
            .chunks_exact(2)
            .zip(first.iter_mut().zip(second.iter_mut()))
        {
            *a = pair[0];
            *b = pair[1];
        }
        if n % 2 == 1 {
            first[first.len() - 1] = x[n - 1];
        }
    }
    let (l, h) = tmp.split_at_mut(nl);
    let (ap, au) = offsets(odd);
    predict::<true>(h, l, ap);
    update::<false>(l, h, au);
    x.copy_from_slice(tmp);
}

/// Inverse of [`fwd_1d`]: `x` holds low then high samples; on return it holds the signal.
#[cfg(test)]
fn inv_1d(x: &mut [i32], odd: bool) {
    let n = x.len();
    if n == 0 {
        return;
    }
    if n == 1 {
        if odd {
            x[0] >>= 1;
        }
        return;
    }
    let o = odd as usize;
    let nl = low_count(o as u64, n);
    let (ap, au) = offsets(odd);
    {
        let (l, h) = x.split_at_mut(nl);
        update::<true>(l, h, au);
        predict::<false>(h, l, ap);
    }
}

/// Interleaves `l` (even parity) and `h` into `out`.
#[inline]
fn interleave(out: &mut [i32], l: &[i32], h: &[i32], odd: bool) {
    let (first, second) = if odd { (h, l) } else { (l, h) };
    for (pair, (&a, &b)) in out.chunks_exact_mut(2).zip(first.iter().zip(second.iter())) {
        pair[0] = a;
        pair[1] = b;
    }
    if out.len() % 2 == 1 {
        let last = out.len() - 1;
        out[last] = first[first.len() - 1];
    }
}

/// Vertical lifting in place on an interleaved plane (rows in natural order). `odd` tells
/// whether row 0 sits at an odd absolute coordinate.
fn lift_rows(data: &mut [i32], w: usize, odd: bool, inverse: bool) {
    let h = data.len() / w;
    if h < 2 {
        return;
    }
    let o = odd as usize;
    // Rows with odd absolute index are high-pass; even are low-pass.
    let pass = |data: &mut [i32], first: usize, high: bool, sub: bool| {
        let mut i = first;
        while i < h {
            let prev = if i > 0 { i - 1 } else { i + 1 };
            let next = if i + 1 < h { i + 1 } else { i - 1 };
            let (before, rest) = data.split_at_mut(i * w);
            let (row, after) = rest.split_at_mut(w);
            let pick = |r: usize| -> &[i32] {
                if r < i {
                    &before[r * w..(r + 1) * w]
                } else {
                    &after[(r - i - 1) * w..(r - i) * w]
                }
            };
            let (a, b) = (pick(prev), pick(next));
            match (high, sub) {
                (true, true) => {
                    for ((v, &x0), &x1) in row.iter_mut().zip(a).zip(b) {
                        *v = v.wrapping_sub(x0.wrapping_add(x1) >> 1);
                    }
                }
                (true, false) => {
                    for ((v, &x0), &x1) in row.iter_mut().zip(a).zip(b) {
                        *v = v.wrapping_add(x0.wrapping_add(x1) >> 1);
                    }
                }
                (false, true) => {
                    for ((v, &x0), &x1) in row.iter_mut().zip(a).zip(b) {
                        *v = v.wrapping_sub(x0.wrapping_add(x1).wrapping_add(2) >> 2);
                    }
                }
                (false, false) => {
                    for ((v, &x0), &x1) in row.iter_mut().zip(a).zip(b) {
                        *v = v.wrapping_add(x0.wrapping_add(x1).wrapping_add(2) >> 2);
                    }
                }
            }
            i += 2;
        }
    };
    let (low_first, high_first) = (o, 1 - o);
    if inverse {
        pass(data, low_first, false, true);
        pass(data, high_first, true, false);
    } else {
        pass(data, high_first, true, true);
        pass(data, low_first, false, false);
    }
}

/// Vertical forward transform in place (rows stay interleaved).
fn fwd_vertical(p: &mut Plane, y0: u64) {
    let (w, h) = (p.w, p.h);
    if h == 0 || w == 0 {
        return;
    }
    if h == 1 {
        if y0 & 1 == 1 {
            p.data.iter_mut().for_each(|v| *v = v.wrapping_mul(2));
        }
        return;
    }
    lift_rows(&mut p.data, w, y0 & 1 == 1, false);
}

/// The four subbands produced by one analysis level.
pub(crate) struct Level {
    pub ll: Plane,
    pub hl: Plane,
    pub lh: Plane,
    pub hh: Plane,
}

/// One forward level on plane `p` whose top-left sample sits at `(x0, y0)`.
/// The vertical transform runs first, then the horizontal one (T.800 F.4.2).
pub(crate) fn forward_level(mut p: Plane, x0: u64, y0: u64) -> Level {
    fwd_vertical(&mut p, y0);
    let odd = x0 & 1 == 1;
    let nlx = low_count(x0, p.w);
    let nly = low_count(y0, p.h);
    let (nhx, nhy) = (p.w - nlx, p.h - nly);
    let mut lv = Level {
        ll: Plane {
            w: nlx,
            h: nly,
            data: crate::pool::with_capacity(nlx * nly),
        },
        hl: Plane {
            w: nhx,
            h: nly,
            data: crate::pool::with_capacity(nhx * nly),
        },
        lh: Plane {
            w: nlx,
            h: nhy,
            data: crate::pool::with_capacity(nlx * nhy),
        },
        hh: Plane {
            w: nhx,
            h: nhy,
            data: crate::pool::with_capacity(nhx * nhy),
        },
    };
    let yo = (y0 & 1) as usize;
    let (ap, au) = offsets(odd);
    let w = p.w;
    for r in 0..p.h {
        let row = &p.data[r * w..(r + 1) * w];
        let (lo, hi) = if (r + yo).is_multiple_of(2) {
            (&mut lv.ll, &mut lv.hl)
        } else {
            (&mut lv.lh, &mut lv.hh)
        };
        if w == 1 {
            // A lone sample: low-pass as is, or high-pass doubled at an odd position.
            if odd {
                hi.data.push(row[0].wrapping_mul(2));
            } else {
                lo.data.push(row[0]);
            }
            continue;
        }
        // De-interleave straight into the subband rows, then lift there.
        let (ls, hs) = (lo.data.len(), hi.data.len());
        let (first, second) = if odd {
            (&mut hi.data, &mut lo.data)
        } else {
            (&mut lo.data, &mut hi.data)
        };
        first.extend(row.iter().step_by(2));
        second.extend(row.iter().skip(1).step_by(2));
        let l = &mut lo.data[ls..];
        let h = &mut hi.data[hs..];
        predict::<true>(h, l, ap);
        update::<false>(l, h, au);
    }
    crate::pool::recycle(p.data);
    lv
}

/// One synthesis level: rebuilds the `w x h` plane at `(x0, y0)` from its four subbands.
/// Horizontal synthesis runs first, then vertical (T.800 F.3.2).
pub(crate) fn inverse_level(
    lv: &mut dyn BandRows,
    x0: u64,
    y0: u64,
    w: usize,
    h: usize,
) -> Result<Plane, crate::CodecError> {
    let mut data = crate::pool::with_capacity(w * h);
    let mut s = RowSynth::new(x0, y0, w, h);
    while s.step(lv, &mut |_, row| data.extend_from_slice(row))? {}
    Ok(Plane { w, h, data })
}

/// Where [`RowSynth`] takes its subband rows from: row `rr` of LL and HL (`high = false`) or
/// of LH and HH (`high = true`), each row asked for once and in increasing order.
pub(crate) trait BandRows {
    fn pair(
        &mut self,
        high: bool,
        rr: usize,
        nl: usize,
        nh: usize,
    ) -> Result<(&mut [i32], &mut [i32]), crate::CodecError>;
}

impl BandRows for Level {
    fn pair(
        &mut self,
        high: bool,
        rr: usize,
        nl: usize,
        nh: usize,
    ) -> Result<(&mut [i32], &mut [i32]), crate::CodecError> {
        let (lo, hi) = if high {
            (&mut self.lh, &mut self.hh)
        } else {
            (&mut self.ll, &mut self.hl)
        };
        Ok((
            &mut lo.data[rr * nl..(rr + 1) * nl],
            &mut hi.data[rr * nh..(rr + 1) * nh],
        ))
    }
}

/// Row-by-row synthesis of one level, holding only four synthesised rows. Each row is
/// synthesised horizontally, then the vertical update and predict steps run as soon as their
/// neighbours are available, so the vertical lifting works on rows that are still in cache
/// instead of sweeping a whole plane twice. The results are identical to lifting the whole
/// plane. Several components of the same geometry can be stepped in lockstep: each step emits
/// the same rows for all of them.
pub(crate) struct RowSynth {
    w: usize,
    h: usize,
    nlx: usize,
    nhx: usize,
    odd: bool,
    yo: usize,
    ring: Vec<i32>,
    r: usize,
    upd: usize,
    pre: usize,
}

const RING: usize = 4;

impl RowSynth {
    pub fn new(x0: u64, y0: u64, w: usize, h: usize) -> RowSynth {
        let nlx = low_count(x0, w);
        RowSynth {
            w,
            h,
            nlx,
            nhx: w - nlx,
            odd: x0 & 1 == 1,
            yo: (y0 & 1) as usize,
            ring: vec![0i32; RING * w],
            r: 0,
            upd: 0,
            pre: 0,
        }
    }

    /// Synthesises the next row and emits every row that became final. Returns false once
    /// all rows have been emitted (or there are none).
    pub fn step(
        &mut self,
        lv: &mut dyn BandRows,
        emit: &mut dyn FnMut(usize, &[i32]),
    ) -> Result<bool, crate::CodecError> {
        let (w, h, yo) = (self.w, self.h, self.yo);
        if w == 0 || self.r >= h {
            return Ok(false);
        }
        let (nlx, nhx, odd) = (self.nlx, self.nhx, self.odd);
        let (ap, au) = offsets(odd);
        // Rows with odd absolute index are high-pass.
        let is_high = |r: usize| (r + yo) % 2 == 1;
        let r = self.r;
        self.r += 1;
        // Which subband pair feeds this row, and the row's index within it.
        let rr = if !is_high(r) {
            (r + yo) / 2 - yo
        } else {
            (r + yo - 1) / 2
        };
        let (l, hh) = lv.pair(is_high(r), rr, nlx, nhx)?;
        let ring = &mut self.ring;
        let slot = &mut ring[(r % RING) * w..(r % RING + 1) * w];
        if w == 1 {
            slot[0] = if nlx == 1 { l[0] } else { hh[0] >> 1 };
        } else {
            // Horizontal synthesis in place on the subband rows, then interleave.
            update::<true>(l, hh, au);
            predict::<false>(hh, l, ap);
            interleave(slot, l, hh, odd);
        }
        if h == 1 {
            if yo == 1 {
                slot.iter_mut().for_each(|v| *v >>= 1);
            }
            emit(0, slot);
            return Ok(false);
        }
        let avail = r + 1;
        // Neighbour rows with symmetric extension (h >= 2).
        let nb = |i: usize| {
            (
                if i > 0 { i - 1 } else { i + 1 },
                if i + 1 < h { i + 1 } else { i - 1 },
            )
        };
        // Update step on low rows whose neighbours have been synthesised.
        while self.upd < h && (is_high(self.upd) || avail > (self.upd + 1).min(h - 1)) {
            let u = self.upd;
            if !is_high(u) {
                let (a, b) = nb(u);
                lift_ring_row::<false>(ring, w, u % RING, a % RING, b % RING);
            }
            self.upd += 1;
        }
        // Predict step on high rows whose neighbours have been updated, then emit.
        while self.pre < self.upd && (!is_high(self.pre) || self.upd > (self.pre + 1).min(h - 1)) {
            let p = self.pre;
            if is_high(p) {
                let (a, b) = nb(p);
                lift_ring_row::<true>(ring, w, p % RING, a % RING, b % RING);
            }
            emit(p, &ring[(p % RING) * w..(p % RING + 1) * w]);
            self.pre += 1;
        }
        debug_assert!(self.r < h || self.pre == h);
        Ok(self.r < h)
    }
}

/// One vertical inverse lifting step on ring row `t` from ring rows `a` and `b`:
/// high rows `+= (a + b) >> 1`, low rows `-= (a + b + 2) >> 2`.
#[inline]
fn lift_ring_row<const HIGH: bool>(ring: &mut [i32], w: usize, t: usize, a: usize, b: usize) {
    // Split so the target row is mutable while the neighbours are shared.
    let (ra, rb) = (a * w, b * w);
    let row_t = t * w;
    // Neighbours never coincide with the target row.
    debug_assert!(a != t && b != t);
    let (before, rest) = ring.split_at_mut(row_t);
    let (target, after) = rest.split_at_mut(w);
    let pick = |r: usize| -> &[i32] {
        if r < row_t {
            &before[r..r + w]
        } else {
            &after[r - row_t - w..r - row_t]
        }
    };
    let (xa, xb) = (pick(ra), pick(rb));
    if HIGH {
        for ((v, &p), &q) in target.iter_mut().zip(xa).zip(xb) {
            *v = v.wrapping_add(p.wrapping_add(q) >> 1);
        }
    } else {
        for ((v, &p), &q) in target.iter_mut().zip(xa).zip(xb) {
            *v = v.wrapping_sub(p.wrapping_add(q).wrapping_add(2) >> 2);
        }
    }
}

const K97: f32 = 1.230_174_1;
/// Lifting coefficients of the 9/7 synthesis, in order (delta, gamma, beta, alpha), and
/// whether each updates the low-pass (even) samples.
const STEPS97: [(f32, bool); 4] = [
    (0.443_506_87, true),
    (0.882_911_1, false),
    (-0.052_980_117, true),
    (-1.586_134_3, false),
];

/// `x[i] -= c * (x[i - 1] + x[i + 1])` for `i = first, first + 2, ...`, with symmetric
/// extension (`x[-1] = x[1]`, `x[n] = x[n - 2]`); `x.len() >= 2`.
#[inline]
fn lift97(x: &mut [f32], first: usize, c: f32) {
    let n = x.len();
    let mut i = first;
    if i == 0 {
        x[0] -= c * (x[1] + x[1]);
        i = 2;
    }
    while i + 1 < n {
        x[i] -= c * (x[i - 1] + x[i + 1]);
        i += 2;
    }
    if i == n - 1 {
        x[i] -= c * (x[i - 1] + x[i - 1]);
    }
}

/// Irreversible 9/7 synthesis (T.800 F.3.8.2) in place on an interleaved signal whose first
/// sample sits at an odd (`odd = true`) or even absolute coordinate; symmetric extension.
pub(crate) fn inv97_1d(x: &mut [f32], odd: bool) {
    let n = x.len();
    if n == 0 {
        return;
    }
    if n == 1 {
        if odd {
            x[0] *= 0.5;
        }
        return;
    }
    // Local index of the first low-pass (even absolute) sample.
    let lo0 = odd as usize;
    let hi0 = 1 - lo0;
    for v in x.iter_mut().skip(lo0).step_by(2) {
        *v *= K97;
    }
    for v in x.iter_mut().skip(hi0).step_by(2) {
        *v *= 1.0 / K97;
    }
    for (c, low) in STEPS97 {
        lift97(x, if low { lo0 } else { hi0 }, c);
    }
}

/// Vertical 9/7 synthesis on a `w`-wide plane of interleaved rows: the same arithmetic as
/// [`inv97_1d`] on every column, done row by row.
fn inv97_vertical(data: &mut [f32], w: usize, odd: bool) {
    let h = data.len() / w.max(1);
    if w == 0 || h == 0 {
        return;
    }
    if h == 1 {
        if odd {
            data.iter_mut().for_each(|v| *v *= 0.5);
        }
        return;
    }
    let lo0 = odd as usize;
    for (y, row) in data.chunks_exact_mut(w).enumerate() {
        let k = if (y + lo0).is_multiple_of(2) {
            K97
        } else {
            1.0 / K97
        };
        row.iter_mut().for_each(|v| *v *= k);
    }
    for (c, low) in STEPS97 {
        let mut y = if low { lo0 } else { 1 - lo0 };
        while y < h {
            let a = if y > 0 { y - 1 } else { y + 1 };
            let b = if y + 1 < h { y + 1 } else { y - 1 };
            // Rows a and b lie on the same side of y only at the ends, where a == b.
            let (before, rest) = data.split_at_mut(y * w);
            let (row, after) = rest.split_at_mut(w);
            let pick = |r: usize| -> &[f32] {
                if r < y {
                    &before[r * w..(r + 1) * w]
                } else {
                    &after[(r - y - 1) * w..(r - y) * w]
                }
            };
            let (ra, rb) = (pick(a), pick(b));
            for ((v, &p), &q) in row.iter_mut().zip(ra).zip(rb) {
                *v -= c * (p + q);
            }
            y += 2;
        }
    }
}

/// One irreversible synthesis level: the `w x h` plane at `(x0, y0)` from its four subbands
/// (`ll`, `hl`, `lh`, `hh`, row-major at their own widths).
pub(crate) fn inverse_level_97(
    bands: [&[f32]; 4],
    x0: u64,
    y0: u64,
    w: usize,
    h: usize,
) -> Vec<f32> {
    let mut out = vec![0f32; w * h];
    if w == 0 || h == 0 {
        return out;
    }
    let nlx = low_count(x0, w);
    let nhx = w - nlx;
    let odd = x0 & 1 == 1;
    for (y, row) in out.chunks_exact_mut(w).enumerate() {
        let v = y0 + y as u64;
        // Row index within the subbands of this row's vertical parity.
        let (lo, hi, ry) = if v & 1 == 1 {
            (bands[2], bands[3], (v / 2 - y0 / 2) as usize)
        } else {
            (bands[0], bands[1], (v / 2 - y0.div_ceil(2)) as usize)
        };
        let l = lo.get(ry * nlx..(ry + 1) * nlx).unwrap_or(&[]);
        let hh = hi.get(ry * nhx..(ry + 1) * nhx).unwrap_or(&[]);
        let (first, second) = if odd { (hh, l) } else { (l, hh) };
        for (i, o) in row.iter_mut().enumerate() {
            let src = if i % 2 == 0 { first } else { second };
            *o = src.get(i / 2).copied().unwrap_or(0.0);
        }
        inv97_1d(row, odd);
    }
    inv97_vertical(&mut out, w, y0 & 1 == 1);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_d_roundtrip() {
        let mut tmp = Vec::new();
        for n in 1..12 {
            for odd in [false, true] {
                let orig: Vec<i32> = (0..n).map(|i: i32| (i * 37 + 11) % 23 - 9).collect();
                let mut x = orig.clone();
                fwd_1d(&mut x, odd, &mut tmp);
                inv_1d(&mut x, odd);
                if n > 1 {
                    let nl = low_count(odd as u64, n as usize);
                    let mut out = vec![0; n as usize];
                    interleave(&mut out, &x[..nl], &x[nl..], odd);
                    x = out;
                }
                assert_eq!(x, orig);
            }
        }
    }

    /// Forward 9/7 analysis (T.800 F.4.8.2) on an interleaved signal, the inverse of
    /// [`inv97_1d`].
    fn fwd97_1d(x: &mut [f32], odd: bool) {
        const K: f32 = 1.230_174_1;
        let n = x.len();
        if n == 1 {
            if odd {
                x[0] *= 2.0;
            }
            return;
        }
        let lo0 = odd as usize;
        let hi0 = 1 - lo0;
        let refl = |i: isize| -> usize {
            let m = n as isize - 1;
            let i = i.abs();
            (if i > m { 2 * m - i } else { i }) as usize
        };
        let step = |x: &mut [f32], first: usize, c: f32| {
            let mut i = first;
            while i < n {
                let s = x[refl(i as isize - 1)] + x[refl(i as isize + 1)];
                x[i] += c * s;
                i += 2;
            }
        };
        step(x, hi0, -1.586_134_3);
        step(x, lo0, -0.052_980_117);
        step(x, hi0, 0.882_911_1);
        step(x, lo0, 0.443_506_87);
        for (i, v) in x.iter_mut().enumerate() {
            *v *= if (i + lo0).is_multiple_of(2) {
                1.0 / K
            } else {
                K
            };
        }
    }

    #[test]
    fn nine_seven_roundtrip() {
        for n in 1..20 {
            for odd in [false, true] {
                let orig: Vec<f32> = (0..n).map(|i| ((i * 37 + 11) % 23) as f32 - 9.0).collect();
                let mut x = orig.clone();
                fwd97_1d(&mut x, odd);
                if n > 2 {
                    assert_ne!(x, orig);
                }
                inv97_1d(&mut x, odd);
                for (a, b) in x.iter().zip(&orig) {
                    assert!((a - b).abs() < 1e-3, "n {n} odd {odd}: {x:?} vs {orig:?}");
                }
            }
        }
        // A constant signal lands in the low band with gain 1 and leaves zero high-pass.
        let mut x = vec![5.0f32; 9];
        fwd97_1d(&mut x, false);
        for (i, v) in x.iter().enumerate() {
            let want = if i % 2 == 0 { 5.0 } else { 0.0 };
            assert!((v - want).abs() < 1e-4, "{x:?}");
        }
    }

    #[test]
    fn two_d_roundtrip() {
        for (w, h) in [
            (1, 1),
            (1, 2),
            (2, 1),
            (1, 7),
            (7, 1),
            (3, 2),
            (2, 3),
            (4, 4),
            (5, 6),
            (16, 9),
            (9, 16),
            (6, 13),
        ] {
            for (x0, y0) in [(0, 0), (1, 0), (0, 1), (3, 5)] {
                let mut p = Plane::new(w, h);
                for (i, v) in p.data.iter_mut().enumerate() {
                    *v = ((i * 7919) % 255) as i32 - 128;
                }
                let orig = p.data.clone();
                let mut lv = forward_level(p, x0, y0);
                let back = inverse_level(&mut lv, x0, y0, w, h).unwrap_or_default();
                assert_eq!(back.data, orig, "{w}x{h} at {x0},{y0}");
            }
        }
    }
}
