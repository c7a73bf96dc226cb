//! Reversible 5/3 discrete wavelet transform (T.800 Annex F), integer lifting with symmetric
//! extension, for any start parity and any length including 1.

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
            data: vec![0; w * h],
        }
    }
}

/// Number of low-pass samples of a signal covering `[x0, x0 + n)`.
#[inline]
pub(crate) fn low_count(x0: u64, n: usize) -> usize {
    ((x0 + n as u64).div_ceil(2) - x0.div_ceil(2)) as usize
}

/// Forward 1D lifting in place; on return `x` holds low-pass then high-pass samples.
fn fwd_1d(x: &mut [i32], odd: bool, tmp: &mut Vec<i32>) {
    let n = x.len();
    if n == 0 {
        return;
    }
    if n == 1 {
        if odd {
            x[0] *= 2;
        }
        return;
    }
    let o = odd as usize;
    // Predict: positions with odd absolute index.
    let ext = |x: &[i32], i: isize| -> i32 {
        let m = n as isize - 1;
        let j = if i < 0 {
            -i
        } else if i > m {
            2 * m - i
        } else {
            i
        };
        x[j as usize]
    };
    let mut i = 1 - o; // first index whose absolute position is odd
    while i < n {
        let ii = i as isize;
        let v = (ext(x, ii - 1) + ext(x, ii + 1)) >> 1;
        x[i] -= v;
        i += 2;
    }
    let mut i = o; // first even absolute position
    while i < n {
        let ii = i as isize;
        let v = (ext(x, ii - 1) + ext(x, ii + 1) + 2) >> 2;
        x[i] += v;
        i += 2;
    }
    tmp.clear();
    tmp.extend(x.iter().skip(o).step_by(2));
    tmp.extend(x.iter().skip(1 - o).step_by(2));
    x.copy_from_slice(tmp);
}

/// Inverse of [`fwd_1d`]: `x` holds low then high samples; on return it holds the signal.
fn inv_1d(x: &mut [i32], odd: bool, tmp: &mut Vec<i32>) {
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
    tmp.clear();
    tmp.resize(n, 0);
    for (k, &v) in x[..nl].iter().enumerate() {
        tmp[o + 2 * k] = v;
    }
    for (k, &v) in x[nl..].iter().enumerate() {
        tmp[1 - o + 2 * k] = v;
    }
    let ext = |x: &[i32], i: isize| -> i32 {
        let m = n as isize - 1;
        let j = if i < 0 {
            -i
        } else if i > m {
            2 * m - i
        } else {
            i
        };
        x[j as usize]
    };
    let mut i = o;
    while i < n {
        let ii = i as isize;
        let v = ext(tmp, ii - 1)
            .wrapping_add(ext(tmp, ii + 1))
            .wrapping_add(2)
            >> 2;
        tmp[i] = tmp[i].wrapping_sub(v);
        i += 2;
    }
    let mut i = 1 - o;
    while i < n {
        let ii = i as isize;
        let v = ext(tmp, ii - 1).wrapping_add(ext(tmp, ii + 1)) >> 1;
        tmp[i] = tmp[i].wrapping_add(v);
        i += 2;
    }
    x.copy_from_slice(tmp);
}

/// Vertical forward lifting on whole rows (cache friendly), then row de-interleave.
fn fwd_vertical(p: &mut Plane, y0: u64) {
    let (w, h) = (p.w, p.h);
    if h == 0 || w == 0 {
        return;
    }
    let o = (y0 & 1) as usize;
    if h == 1 {
        if o == 1 {
            p.data.iter_mut().for_each(|v| *v *= 2);
        }
        return;
    }
    let refl = |i: isize| -> usize {
        let m = h as isize - 1;
        (if i < 0 {
            -i
        } else if i > m {
            2 * m - i
        } else {
            i
        }) as usize
    };
    let mut i = 1 - o;
    while i < h {
        let (a, b) = (refl(i as isize - 1), refl(i as isize + 1));
        for x in 0..w {
            let v = (p.data[a * w + x] + p.data[b * w + x]) >> 1;
            p.data[i * w + x] -= v;
        }
        i += 2;
    }
    let mut i = o;
    while i < h {
        let (a, b) = (refl(i as isize - 1), refl(i as isize + 1));
        for x in 0..w {
            let v = (p.data[a * w + x] + p.data[b * w + x] + 2) >> 2;
            p.data[i * w + x] += v;
        }
        i += 2;
    }
    let mut out = Vec::with_capacity(w * h);
    let mut r = o;
    while r < h {
        out.extend_from_slice(&p.data[r * w..(r + 1) * w]);
        r += 2;
    }
    let mut r = 1 - o;
    while r < h {
        out.extend_from_slice(&p.data[r * w..(r + 1) * w]);
        r += 2;
    }
    p.data = out;
}

fn inv_vertical(p: &mut Plane, y0: u64) {
    let (w, h) = (p.w, p.h);
    if h == 0 || w == 0 {
        return;
    }
    let o = (y0 & 1) as usize;
    if h == 1 {
        if o == 1 {
            p.data.iter_mut().for_each(|v| *v >>= 1);
        }
        return;
    }
    let nl = low_count(o as u64, h);
    let mut t = vec![0i32; w * h];
    for k in 0..nl {
        let r = o + 2 * k;
        t[r * w..(r + 1) * w].copy_from_slice(&p.data[k * w..(k + 1) * w]);
    }
    for k in 0..h - nl {
        let r = 1 - o + 2 * k;
        t[r * w..(r + 1) * w].copy_from_slice(&p.data[(nl + k) * w..(nl + k + 1) * w]);
    }
    let refl = |i: isize| -> usize {
        let m = h as isize - 1;
        (if i < 0 {
            -i
        } else if i > m {
            2 * m - i
        } else {
            i
        }) as usize
    };
    let mut i = o;
    while i < h {
        let (a, b) = (refl(i as isize - 1), refl(i as isize + 1));
        for x in 0..w {
            let v = t[a * w + x].wrapping_add(t[b * w + x]).wrapping_add(2) >> 2;
            t[i * w + x] = t[i * w + x].wrapping_sub(v);
        }
        i += 2;
    }
    let mut i = 1 - o;
    while i < h {
        let (a, b) = (refl(i as isize - 1), refl(i as isize + 1));
        for x in 0..w {
            let v = t[a * w + x].wrapping_add(t[b * w + x]) >> 1;
            t[i * w + x] = t[i * w + x].wrapping_add(v);
        }
        i += 2;
    }
    p.data = t;
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
    let mut tmp = Vec::new();
    for r in 0..p.h {
        fwd_1d(&mut p.data[r * p.w..(r + 1) * p.w], x0 & 1 == 1, &mut tmp);
    }
    let nlx = low_count(x0, p.w);
    let nly = low_count(y0, p.h);
    let (nhx, nhy) = (p.w - nlx, p.h - nly);
    let mut lv = Level {
        ll: Plane::new(nlx, nly),
        hl: Plane::new(nhx, nly),
        lh: Plane::new(nlx, nhy),
        hh: Plane::new(nhx, nhy),
    };
    for r in 0..p.h {
        let row = &p.data[r * p.w..(r + 1) * p.w];
        let (lo, hi) = if r < nly {
            (&mut lv.ll, &mut lv.hl)
        } else {
            (&mut lv.lh, &mut lv.hh)
        };
        let rr = if r < nly { r } else { r - nly };
        lo.data[rr * nlx..(rr + 1) * nlx].copy_from_slice(&row[..nlx]);
        hi.data[rr * nhx..(rr + 1) * nhx].copy_from_slice(&row[nlx..]);
    }
    lv
}

/// One synthesis level: rebuilds the `w x h` plane at `(x0, y0)` from its four subbands.
/// Horizontal synthesis runs first, then vertical (T.800 F.3.2).
pub(crate) fn inverse_level(lv: &Level, x0: u64, y0: u64, w: usize, h: usize) -> Plane {
    let nlx = low_count(x0, w);
    let nly = low_count(y0, h);
    let mut p = Plane::new(w, h);
    let mut tmp = Vec::new();
    for r in 0..h {
        let (lo, hi, rr) = if r < nly {
            (&lv.ll, &lv.hl, r)
        } else {
            (&lv.lh, &lv.hh, r - nly)
        };
        let row = &mut p.data[r * w..(r + 1) * w];
        if nlx > 0 {
            row[..nlx].copy_from_slice(&lo.data[rr * nlx..(rr + 1) * nlx]);
        }
        let nhx = w - nlx;
        if nhx > 0 {
            row[nlx..].copy_from_slice(&hi.data[rr * nhx..(rr + 1) * nhx]);
        }
        inv_1d(row, x0 & 1 == 1, &mut tmp);
    }
    inv_vertical(&mut p, y0);
    p
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
                inv_1d(&mut x, odd, &mut tmp);
                assert_eq!(x, orig);
            }
        }
    }

    #[test]
    fn two_d_roundtrip() {
        for (w, h) in [(1, 1), (1, 7), (7, 1), (5, 6), (16, 9)] {
            for (x0, y0) in [(0, 0), (1, 0), (0, 1), (3, 5)] {
                let mut p = Plane::new(w, h);
                for (i, v) in p.data.iter_mut().enumerate() {
                    *v = ((i * 7919) % 255) as i32 - 128;
                }
                let orig = p.data.clone();
                let lv = forward_level(p, x0, y0);
                let back = inverse_level(&lv, x0, y0, w, h);
                assert_eq!(back.data, orig, "{w}x{h} at {x0},{y0}");
            }
        }
    }
}
