//! Decoded frame samples (interleaved by component) and their checksum byte layout.

/// Sample storage. `Wide` holds 32-bit samples (BitsAllocated 32) as little-endian bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Buf {
    U8(Vec<u8>),
    I8(Vec<i8>),
    U16(Vec<u16>),
    I16(Vec<i16>),
    U32(Vec<u32>),
    I32(Vec<i32>),
}

impl Buf {
    pub(crate) fn len(&self) -> usize {
        match self {
            Buf::U8(v) => v.len(),
            Buf::I8(v) => v.len(),
            Buf::U16(v) => v.len(),
            Buf::I16(v) => v.len(),
            Buf::U32(v) => v.len(),
            Buf::I32(v) => v.len(),
        }
    }

    /// Sample `i` as i32 (u32 samples above i32::MAX wrap; only used for ≤ 16-bit data).
    pub(crate) fn get_i32(&self, i: usize) -> i32 {
        match self {
            Buf::U8(v) => v[i] as i32,
            Buf::I8(v) => v[i] as i32,
            Buf::U16(v) => v[i] as i32,
            Buf::I16(v) => v[i] as i32,
            Buf::U32(v) => v[i] as i32,
            Buf::I32(v) => v[i],
        }
    }

    /// (min, max) of all samples, `None` when empty.
    pub(crate) fn min_max(&self) -> Option<(i64, i64)> {
        fn mm<T: Copy + Into<i64>>(v: &[T]) -> Option<(i64, i64)> {
            let mut it = v.iter().map(|&x| x.into());
            let first = it.next()?;
            Some(it.fold((first, first), |(lo, hi), x| (lo.min(x), hi.max(x))))
        }
        match self {
            Buf::U8(v) => mm(v),
            Buf::I8(v) => mm(v),
            Buf::U16(v) => mm(v),
            Buf::I16(v) => mm(v),
            Buf::U32(v) => mm(v),
            Buf::I32(v) => mm(v),
        }
    }

    /// Little-endian bytes in the container width (1, 2 or 4 bytes per sample).
    pub(crate) fn to_le_bytes(&self) -> Vec<u8> {
        match self {
            Buf::U8(v) => v.clone(),
            Buf::I8(v) => v.iter().map(|&x| x as u8).collect(),
            Buf::U16(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Buf::I16(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Buf::U32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Buf::I32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        }
    }
}

/// One decoded frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Pixels {
    pub width: u32,
    pub height: u32,
    pub components: u8,
    /// Bits per sample that carry data (the precision handed to / read from a codec).
    pub precision: u8,
    pub signed: bool,
    /// Interleaved samples, `width * height * components` of them.
    pub buf: Buf,
}

impl Pixels {
    /// The checksum layout (notes §6.3; lightbox-codec's `to_le_bytes`): samples interleaved,
    /// one byte per sample when the precision is ≤ 8 bits, otherwise two bytes little-endian
    /// (four for 32-bit data), two's complement for signed data.
    pub(crate) fn checksum_bytes(&self) -> Vec<u8> {
        if self.precision <= 8 {
            match &self.buf {
                Buf::U16(v) => return v.iter().map(|&x| x as u8).collect(),
                Buf::I16(v) => return v.iter().map(|&x| x as u8).collect(),
                _ => {}
            }
        }
        self.buf.to_le_bytes()
    }

    pub(crate) fn crc32(&self) -> u32 {
        crc32fast::hash(&self.checksum_bytes())
    }

    /// Narrows 16-bit containers to 8-bit ones when the precision allows (what a J2K
    /// decoder returns for such data), so comparisons are container-independent.
    pub(crate) fn normalized(mut self) -> Pixels {
        if self.precision <= 8 {
            self.buf = match self.buf {
                Buf::U16(v) => Buf::U8(v.into_iter().map(|x| x as u8).collect()),
                Buf::I16(v) => Buf::I8(v.into_iter().map(|x| x as i8).collect()),
                b => b,
            };
        } else {
            self.buf = match self.buf {
                Buf::U8(v) => Buf::U16(v.into_iter().map(u16::from).collect()),
                Buf::I8(v) => Buf::I16(v.into_iter().map(i16::from).collect()),
                b => b,
            };
        }
        self
    }
}
