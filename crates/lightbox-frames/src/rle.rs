//! DICOM RLE Lossless (1.2.840.10008.1.2.5) frame decoder, PS3.5 Annex G: one PackBits
//! segment per byte plane (most significant byte first) per sample; any BitsAllocated that
//! is a multiple of 8 (8, 16, 32 — dicom-rs 0.10.1 rejects 32).

/// Decodes one RLE frame into native little-endian samples, interleaved by component
/// (`rows * cols * samples * bytes_per_sample` bytes).
pub(crate) fn decode_frame(
    data: &[u8],
    rows: usize,
    cols: usize,
    samples: usize,
    bytes_per_sample: usize,
) -> Result<Vec<u8>, String> {
    if data.len() < 64 {
        return Err("RLE frame shorter than its 64-byte header".into());
    }
    let word = |i: usize| {
        u32::from_le_bytes([
            data[4 * i],
            data[4 * i + 1],
            data[4 * i + 2],
            data[4 * i + 3],
        ]) as usize
    };
    let nseg = word(0);
    let expected = samples * bytes_per_sample;
    if nseg != expected || nseg > 15 {
        return Err(format!(
            "RLE header has {nseg} segments, expected {expected}"
        ));
    }
    let pixels = rows * cols;
    let mut out = vec![0u8; pixels * expected];
    for seg in 0..nseg {
        let start = word(1 + seg);
        let end = if seg + 1 < nseg {
            word(2 + seg)
        } else {
            data.len()
        };
        if start < 64 || start > end || end > data.len() {
            return Err(format!("RLE segment {seg} has invalid offsets"));
        }
        let plane = unpack_bits(&data[start..end], pixels);
        // Segment order: sample 0 MSB..LSB, sample 1 MSB..LSB, …
        let sample = seg / bytes_per_sample;
        let byte_in_sample = bytes_per_sample - 1 - seg % bytes_per_sample; // LE position
        for (p, &b) in plane.iter().enumerate() {
            out[(p * samples + sample) * bytes_per_sample + byte_in_sample] = b;
        }
    }
    Ok(out)
}

/// PackBits decoding of one segment, producing exactly `n` bytes (a short segment is padded
/// with zeros, extra output is dropped — as other DICOM decoders do).
fn unpack_bits(src: &[u8], n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n);
    let mut i = 0;
    while out.len() < n && i < src.len() {
        let h = src[i] as i8;
        i += 1;
        if h >= 0 {
            let k = h as usize + 1;
            let end = (i + k).min(src.len());
            out.extend_from_slice(&src[i..end]);
            i = end;
        } else if h != -128 {
            let k = (1 - h as isize) as usize;
            if i < src.len() {
                let b = src[i];
                i += 1;
                out.extend(std::iter::repeat_n(b, k));
            }
        }
    }
    out.resize(n, 0);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packbits_literal_and_run() {
        assert_eq!(
            unpack_bits(&[2, 1, 2, 3, 0xFE, 9], 6),
            vec![1, 2, 3, 9, 9, 9]
        );
        assert_eq!(unpack_bits(&[0x80, 0, 7], 1), vec![7]);
    }

    #[test]
    fn sixteen_bit_frame() {
        // 1x2 frame, one sample, 16 bits: values 0x0102, 0x0304.
        let mut d = vec![0u8; 64];
        d[0] = 2;
        d[4] = 64;
        d[8] = 67;
        d.extend_from_slice(&[1, 1, 3]); // MSB plane: literal [1,3]
        d.extend_from_slice(&[1, 2, 4]); // LSB plane
        assert_eq!(decode_frame(&d, 1, 2, 1, 2).unwrap(), vec![2, 1, 4, 3]);
    }
}
