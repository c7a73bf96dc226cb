//! Tier-2 helpers: packet-header bit I/O with JPEG 2000 bit stuffing, and tag trees (T.800 B.10).

/// MSB-first bit writer; after an 0xFF byte the next byte carries only 7 bits.
pub(crate) struct BitWriter {
    pub buf: Vec<u8>,
    acc: u32,
    nbits: u32,
    cap: u32,
}

impl BitWriter {
    pub fn new() -> Self {
        BitWriter {
            buf: Vec::new(),
            acc: 0,
            nbits: 0,
            cap: 8,
        }
    }
    pub fn bit(&mut self, b: u32) {
        self.acc = (self.acc << 1) | (b & 1);
        self.nbits += 1;
        if self.nbits == self.cap {
            self.buf.push(self.acc as u8);
            self.cap = if self.acc == 0xFF { 7 } else { 8 };
            self.acc = 0;
            self.nbits = 0;
        }
    }
    pub fn bits(&mut self, v: u32, n: u32) {
        for i in (0..n).rev() {
            self.bit((v >> i) & 1);
        }
    }
    /// Pads to a byte boundary; a trailing 0xFF gets a following zero byte.
    pub fn finish(mut self) -> Vec<u8> {
        if self.nbits > 0 {
            let pad = self.cap - self.nbits;
            self.acc <<= pad;
            self.buf.push(self.acc as u8);
            self.cap = if self.acc == 0xFF { 7 } else { 8 };
        }
        if self.buf.last() == Some(&0xFF) {
            self.buf.push(0);
        }
        self.buf
    }
}

/// MSB-first bit reader matching [`BitWriter`].
pub(crate) struct BitReader<'a> {
    data: &'a [u8],
    pub pos: usize,
    acc: u32,
    nbits: u32,
    last_ff: bool,
}

#[derive(Debug)]
pub(crate) struct Eof;

impl<'a> BitReader<'a> {
    pub fn new(data: &'a [u8], pos: usize) -> Self {
        BitReader {
            data,
            pos,
            acc: 0,
            nbits: 0,
            last_ff: false,
        }
    }
    pub fn bit(&mut self) -> Result<u32, Eof> {
        if self.nbits == 0 {
            let b = *self.data.get(self.pos).ok_or(Eof)?;
            self.pos += 1;
            if self.last_ff {
                self.acc = (b & 0x7F) as u32;
                self.nbits = 7;
            } else {
                self.acc = b as u32;
                self.nbits = 8;
            }
            self.last_ff = b == 0xFF;
        }
        self.nbits -= 1;
        Ok((self.acc >> self.nbits) & 1)
    }
    pub fn bits(&mut self, n: u32) -> Result<u32, Eof> {
        let mut v = 0u32;
        for _ in 0..n {
            v = (v << 1) | self.bit()?;
        }
        Ok(v)
    }
    /// Skips the rest of the current byte (and a stuffed byte after 0xFF); returns the position.
    pub fn align(&mut self) -> Result<usize, Eof> {
        self.nbits = 0;
        if self.last_ff {
            if self.pos >= self.data.len() {
                return Err(Eof);
            }
            self.pos += 1;
            self.last_ff = false;
        }
        Ok(self.pos)
    }
}

#[derive(Clone, Copy)]
struct Node {
    value: u32,
    low: u32,
    known: bool,
}

/// A tag tree over a `w x h` grid of leaves.
pub(crate) struct TagTree {
    levels: Vec<(usize, usize, Vec<Node>)>,
}

impl TagTree {
    /// Leaves start at `init` (use `u32::MAX` for a decoder tree).
    pub fn new(w: usize, h: usize, init: u32) -> Self {
        let mut levels = Vec::new();
        let (mut lw, mut lh) = (w.max(1), h.max(1));
        loop {
            levels.push((
                lw,
                lh,
                vec![
                    Node {
                        value: init,
                        low: 0,
                        known: false
                    };
                    lw * lh
                ],
            ));
            if lw == 1 && lh == 1 {
                break;
            }
            lw = lw.div_ceil(2);
            lh = lh.div_ceil(2);
        }
        TagTree { levels }
    }

    /// Sets leaf values (encoder) and propagates minima to the parents.
    pub fn set_leaves(&mut self, vals: &[u32]) {
        let n = self.levels[0].2.len();
        for (node, &v) in self.levels[0].2.iter_mut().zip(vals.iter().take(n)) {
            node.value = v;
        }
        for l in 1..self.levels.len() {
            let (cw, ch) = (self.levels[l - 1].0, self.levels[l - 1].1);
            let (pw, _) = (self.levels[l].0, self.levels[l].1);
            for n in self.levels[l].2.iter_mut() {
                n.value = u32::MAX;
            }
            for y in 0..ch {
                for x in 0..cw {
                    let v = self.levels[l - 1].2[y * cw + x].value;
                    let p = &mut self.levels[l].2[(y / 2) * pw + x / 2];
                    p.value = p.value.min(v);
                }
            }
        }
    }

    fn path(&self, x: usize, y: usize) -> Vec<(usize, usize)> {
        (0..self.levels.len())
            .rev()
            .map(|l| {
                let w = self.levels[l].0;
                (l, (y >> l) * w + (x >> l))
            })
            .collect()
    }

    pub fn encode(&mut self, x: usize, y: usize, threshold: u32, bw: &mut BitWriter) {
        let mut low = 0;
        for (l, i) in self.path(x, y) {
            let node = &mut self.levels[l].2[i];
            if low > node.low {
                node.low = low;
            } else {
                low = node.low;
            }
            while low < threshold {
                if low >= node.value {
                    if !node.known {
                        bw.bit(1);
                        node.known = true;
                    }
                    break;
                }
                bw.bit(0);
                low += 1;
            }
            node.low = low;
        }
    }

    /// Decodes up to `threshold`; returns the leaf value if it is below the threshold.
    pub fn decode(
        &mut self,
        x: usize,
        y: usize,
        threshold: u32,
        br: &mut BitReader,
    ) -> Result<Option<u32>, Eof> {
        let mut low = 0;
        let mut leaf = u32::MAX;
        for (l, i) in self.path(x, y) {
            let node = &mut self.levels[l].2[i];
            if low > node.low {
                node.low = low;
            } else {
                low = node.low;
            }
            while low < threshold && low < node.value {
                if br.bit()? == 1 {
                    node.value = low;
                } else {
                    low += 1;
                }
            }
            node.low = low;
            leaf = node.value;
        }
        Ok(if leaf < threshold { Some(leaf) } else { None })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tagtree_roundtrip() {
        let (w, h) = (5, 3);
        let vals: Vec<u32> = (0..15).map(|i| (i * 7 % 5) as u32).collect();
        let mut enc = TagTree::new(w, h, 0);
        enc.set_leaves(&vals);
        let mut bw = BitWriter::new();
        for y in 0..h {
            for x in 0..w {
                enc.encode(x, y, vals[y * w + x] + 1, &mut bw);
            }
        }
        let bytes = bw.finish();
        let mut dec = TagTree::new(w, h, u32::MAX);
        let mut br = BitReader::new(&bytes, 0);
        for y in 0..h {
            for x in 0..w {
                let v = dec.decode(x, y, 100, &mut br).unwrap();
                assert_eq!(v, Some(vals[y * w + x]));
            }
        }
    }
}
