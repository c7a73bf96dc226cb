//! Tile-component geometry (T.800 B.5–B.7): resolutions, subbands, precincts and code-block grids.

/// Per-component coding parameters (from COD, possibly overridden by COC).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct CompCoding {
    pub levels: u8,
    /// log2 of the nominal code-block width and height.
    pub xcb: u8,
    pub ycb: u8,
    pub style: u8,
    pub transform: u8,
    /// (PPx, PPy) per resolution, coarsest first; always `levels + 1` entries.
    pub precincts: Vec<(u8, u8)>,
}

/// A subband of one resolution.
#[derive(Clone, Debug)]
pub(crate) struct BandGeom {
    /// 0 = LL, 1 = HL, 2 = LH, 3 = HH.
    pub kind: u8,
    /// Index in QCD order (0 = LL, then HL/LH/HH from the coarsest level).
    pub qcd_index: usize,
    pub x0: u64,
    pub y0: u64,
    pub x1: u64,
    pub y1: u64,
    /// log2 of the code-block size used in this band.
    pub cbw: u32,
    pub cbh: u32,
    /// Code-block grid index of the first column/row and the counts.
    pub cbx0: u64,
    pub cby0: u64,
    pub ncbx: usize,
    pub ncby: usize,
}

impl BandGeom {
    pub fn width(&self) -> usize {
        (self.x1 - self.x0) as usize
    }
}

#[derive(Clone, Debug)]
pub(crate) struct ResGeom {
    pub x0: u64,
    pub y0: u64,
    pub x1: u64,
    pub y1: u64,
    pub ppx: u32,
    pub ppy: u32,
    /// floor(x0 / 2^ppx), floor(y0 / 2^ppy).
    pub px0: u64,
    pub py0: u64,
    pub npx: usize,
    pub npy: usize,
    pub bands: Vec<BandGeom>,
}

impl ResGeom {
    /// Code-block index range `[x0, x1) x [y0, y1)` (relative to the band's grid) of precinct
    /// `(i, j)` in band `b`.
    pub fn precinct_cbs(
        &self,
        r: usize,
        b: usize,
        i: usize,
        j: usize,
    ) -> (usize, usize, usize, usize) {
        let band = &self.bands[b];
        let (sx, sy) = if r == 0 {
            (self.ppx, self.ppy)
        } else {
            (self.ppx - 1, self.ppy - 1)
        };
        let bx0 = ((self.px0 + i as u64) << sx).max(band.x0);
        let bx1 = ((self.px0 + i as u64 + 1) << sx).min(band.x1);
        let by0 = ((self.py0 + j as u64) << sy).max(band.y0);
        let by1 = ((self.py0 + j as u64 + 1) << sy).min(band.y1);
        if bx0 >= bx1 || by0 >= by1 {
            return (0, 0, 0, 0);
        }
        let cx0 = (bx0 >> band.cbw) - band.cbx0;
        let cx1 = bx1.div_ceil(1 << band.cbw) - band.cbx0;
        let cy0 = (by0 >> band.cbh) - band.cby0;
        let cy1 = by1.div_ceil(1 << band.cbh) - band.cby0;
        (cx0 as usize, cx1 as usize, cy0 as usize, cy1 as usize)
    }

    /// Position (in reference-grid coordinates) at which the position-driven progressions
    /// (RPCL, PCRL, CPRL; T.800 B.12.1.3) visit precinct `(i, j)`: a precinct that is cut by
    /// the tile origin `(tx0, ty0)` is visited at that origin, any other at its own top-left
    /// corner scaled by the component's subsampling factors `(dx, dy)`.
    #[allow(clippy::too_many_arguments)]
    pub fn precinct_pos(
        &self,
        levels: u8,
        r: usize,
        i: usize,
        j: usize,
        tx0: u64,
        ty0: u64,
        dx: u64,
        dy: u64,
    ) -> (u64, u64) {
        let shift = (levels as usize - r) as u32;
        let visit = |start: u64, p0: u64, pp: u32, k: usize, origin: u64, d: u64| -> u64 {
            if k == 0 && !start.is_multiple_of(1u64 << pp) {
                origin
            } else {
                ((p0 + k as u64) << pp)
                    .checked_shl(shift)
                    .and_then(|v| v.checked_mul(d))
                    .unwrap_or(u64::MAX)
            }
        };
        (
            visit(self.x0, self.px0, self.ppx, i, tx0, dx),
            visit(self.y0, self.py0, self.ppy, j, ty0, dy),
        )
    }
}

#[derive(Clone, Debug)]
pub(crate) struct CompGeom {
    pub res: Vec<ResGeom>,
}

#[inline]
fn cdiv(a: u64, s: u32) -> u64 {
    if s >= 64 {
        return (a > 0) as u64;
    }
    a.div_ceil(1u64 << s)
}

/// Builds the geometry of a tile-component whose rectangle (in component coordinates) is
/// `[x0, x1) x [y0, y1)`.
pub(crate) fn build(x0: u64, y0: u64, x1: u64, y1: u64, cc: &CompCoding) -> CompGeom {
    let d = cc.levels as u32;
    let mut res = Vec::with_capacity(d as usize + 1);
    for r in 0..=d {
        let s = d - r;
        let (rx0, ry0, rx1, ry1) = (cdiv(x0, s), cdiv(y0, s), cdiv(x1, s), cdiv(y1, s));
        let (ppx, ppy) = cc.precincts[r as usize];
        let (ppx, ppy) = (ppx as u32, ppy as u32);
        let px0 = rx0 >> ppx;
        let py0 = ry0 >> ppy;
        let npx = if rx1 > rx0 {
            (cdiv(rx1, ppx) - px0) as usize
        } else {
            0
        };
        let npy = if ry1 > ry0 {
            (cdiv(ry1, ppy) - py0) as usize
        } else {
            0
        };
        let mut bands = Vec::new();
        let kinds: &[u8] = if r == 0 { &[0] } else { &[1, 2, 3] };
        for &kind in kinds {
            let n = if r == 0 { d } else { d - r + 1 };
            let (xo, yo) = match kind {
                0 => (0, 0),
                1 => (1, 0),
                2 => (0, 1),
                _ => (1, 1),
            };
            let band_c = |v: u64, o: u64| -> u64 {
                if n == 0 {
                    v
                } else {
                    // ceil((v - 2^(n-1) * o) / 2^n), computed without going negative.
                    let off = o << (n - 1);
                    (v + (1u64 << n) - 1 - off) >> n
                }
            };
            let (bx0, by0, bx1, by1) = (
                band_c(x0, xo),
                band_c(y0, yo),
                band_c(x1, xo),
                band_c(y1, yo),
            );
            let (cbw, cbh) = if r == 0 {
                ((cc.xcb as u32).min(ppx), (cc.ycb as u32).min(ppy))
            } else {
                ((cc.xcb as u32).min(ppx - 1), (cc.ycb as u32).min(ppy - 1))
            };
            let cbx0 = bx0 >> cbw;
            let cby0 = by0 >> cbh;
            let ncbx = if bx1 > bx0 {
                (cdiv(bx1, cbw) - cbx0) as usize
            } else {
                0
            };
            let ncby = if by1 > by0 {
                (cdiv(by1, cbh) - cby0) as usize
            } else {
                0
            };
            let qcd_index = if r == 0 {
                0
            } else {
                1 + 3 * (r as usize - 1) + (kind as usize - 1)
            };
            bands.push(BandGeom {
                kind,
                qcd_index,
                x0: bx0,
                y0: by0,
                x1: bx1,
                y1: by1,
                cbw,
                cbh,
                cbx0,
                cby0,
                ncbx,
                ncby,
            });
        }
        res.push(ResGeom {
            x0: rx0,
            y0: ry0,
            x1: rx1,
            y1: ry1,
            ppx,
            ppy,
            px0,
            py0,
            npx,
            npy,
            bands,
        });
    }
    CompGeom { res }
}
