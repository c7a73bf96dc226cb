//! Splitting encapsulated Pixel Data fragments into frames (our own rules; dicom-rs 0.10.1
//! ignores the Extended Offset Table and gives frame 0 every fragment when the BOT is empty).

/// Which start-of-frame marker a codec's frames begin with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameMarker {
    /// JPEG family (baseline, extended, lossless, JPEG-LS): `FF D8` (SOI).
    Jpeg,
    /// JPEG 2000 / HTJ2K codestream `FF 4F FF 51` (SOC + SIZ), or a JP2 signature box.
    J2k,
    /// RLE: always one fragment per frame.
    Rle,
    /// No known marker (video, JPEG XL, unknown): only the offset tables and counts split.
    None,
}

/// How the frames were found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SplitMethod {
    ExtendedOffsetTable,
    BasicOffsetTable,
    OneFragmentPerFrame,
    SingleFrame,
    StartMarkers,
}

/// Result of [`split_frames`]: for every frame, the fragments it is made of (in order).
#[derive(Debug)]
pub struct Split<'a> {
    pub frames: Vec<Vec<&'a [u8]>>,
    pub method: SplitMethod,
    /// An offset table was present but unusable (warning 45330 InvalidOffsetTable).
    pub invalid_offset_table: bool,
}

/// Byte position of every fragment's item tag, relative to the first fragment's item tag
/// (the origin of both offset tables), plus the end position.
fn positions(fragments: &[&[u8]]) -> Vec<u64> {
    let mut pos = Vec::with_capacity(fragments.len() + 1);
    let mut p = 0u64;
    for f in fragments {
        pos.push(p);
        p += 8 + f.len() as u64;
    }
    pos.push(p);
    pos
}

/// Maps frame start offsets to fragment ranges; `None` if an offset is not a fragment
/// start, offsets are not strictly increasing, or the first is not 0.
fn by_offsets<'a>(fragments: &[&'a [u8]], offsets: &[u64]) -> Option<Vec<Vec<&'a [u8]>>> {
    if offsets.first() != Some(&0) || offsets.windows(2).any(|w| w[0] >= w[1]) {
        return None;
    }
    let pos = positions(fragments);
    let mut starts = Vec::with_capacity(offsets.len());
    for &o in offsets {
        starts.push(pos[..fragments.len()].binary_search(&o).ok()?);
    }
    let mut frames = Vec::with_capacity(starts.len());
    for (k, &s) in starts.iter().enumerate() {
        let e = starts.get(k + 1).copied().unwrap_or(fragments.len());
        frames.push(fragments[s..e].to_vec());
    }
    Some(frames)
}

fn starts_frame(fragment: &[u8], marker: FrameMarker) -> bool {
    match marker {
        FrameMarker::Jpeg => fragment.starts_with(&[0xFF, 0xD8, 0xFF]),
        FrameMarker::J2k => {
            fragment.starts_with(&[0xFF, 0x4F, 0xFF, 0x51])
                || fragment.starts_with(&[0, 0, 0, 12, b'j', b'P', b' ', b' '])
        }
        FrameMarker::Rle | FrameMarker::None => false,
    }
}

/// Splits encapsulated Pixel Data into `n_frames` frames, trying in order: the Extended
/// Offset Table (`eot` offsets and optional lengths), the Basic Offset Table, one fragment per
/// frame, a single frame made of every fragment, codec start markers (not for RLE, which is
/// always one fragment per frame). `Err` when none of them yields `n_frames` frames.
pub fn split_frames<'a>(
    fragments: &[&'a [u8]],
    bot: &[u32],
    eot: Option<(&[u64], Option<&[u64]>)>,
    n_frames: usize,
    marker: FrameMarker,
) -> Result<Split<'a>, String> {
    let mut invalid = false;
    let done = |frames, method, invalid| {
        Ok(Split {
            frames,
            method,
            invalid_offset_table: invalid,
        })
    };
    if n_frames == 0 {
        return Err("NumberOfFrames is 0".into());
    }
    if let Some((offsets, lengths)) = eot
        && !offsets.is_empty()
    {
        let ok_lengths = |frames: &Vec<Vec<&[u8]>>| match lengths {
            None => true,
            Some(l) => {
                l.len() == frames.len()
                    && frames
                        .iter()
                        .zip(l)
                        .all(|(f, &len)| f.iter().map(|x| x.len() as u64).sum::<u64>() >= len)
            }
        };
        match by_offsets(fragments, offsets) {
            Some(frames) if frames.len() == n_frames && ok_lengths(&frames) => {
                return done(frames, SplitMethod::ExtendedOffsetTable, false);
            }
            _ => invalid = true,
        }
    }
    if !bot.is_empty() {
        let offsets: Vec<u64> = bot.iter().map(|&o| o as u64).collect();
        match by_offsets(fragments, &offsets) {
            Some(frames) if frames.len() == n_frames => {
                return done(frames, SplitMethod::BasicOffsetTable, invalid);
            }
            _ => invalid = true,
        }
    }
    if fragments.len() == n_frames {
        let frames = fragments.iter().map(|f| vec![*f]).collect();
        return done(frames, SplitMethod::OneFragmentPerFrame, invalid);
    }
    if n_frames == 1 && !fragments.is_empty() {
        return done(vec![fragments.to_vec()], SplitMethod::SingleFrame, invalid);
    }
    if marker != FrameMarker::Rle && marker != FrameMarker::None && !fragments.is_empty() {
        let mut frames: Vec<Vec<&[u8]>> = Vec::new();
        for f in fragments {
            if frames.is_empty() || starts_frame(f, marker) {
                frames.push(vec![*f]);
            } else if let Some(last) = frames.last_mut() {
                last.push(*f);
            }
        }
        if frames.len() == n_frames && starts_frame(fragments[0], marker) {
            return done(frames, SplitMethod::StartMarkers, invalid);
        }
    }
    Err(format!(
        "cannot split {} pixel data fragments into {} frames",
        fragments.len(),
        n_frames
    ))
}

/// Concatenates a frame's fragments (borrowing when there is only one).
pub fn join<'a>(frame: &[&'a [u8]]) -> std::borrow::Cow<'a, [u8]> {
    if let [one] = frame {
        return std::borrow::Cow::Borrowed(one);
    }
    std::borrow::Cow::Owned(frame.concat())
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &[u8] = &[0xFF, 0xD8, 0xFF, 1];
    const B: &[u8] = &[2, 3];
    const C: &[u8] = &[0xFF, 0xD8, 0xFF, 4, 5, 6];

    #[test]
    fn basic_offset_table() {
        let s = split_frames(&[A, B, C], &[0, 22], None, 2, FrameMarker::None).unwrap();
        assert_eq!(s.method, SplitMethod::BasicOffsetTable);
        assert_eq!(s.frames, vec![vec![A, B], vec![C]]);
        assert!(!s.invalid_offset_table);
    }

    #[test]
    fn invalid_bot_falls_back_to_markers_with_warning() {
        let s = split_frames(&[A, B, C], &[0, 21], None, 2, FrameMarker::Jpeg).unwrap();
        assert_eq!(s.method, SplitMethod::StartMarkers);
        assert_eq!(s.frames, vec![vec![A, B], vec![C]]);
        assert!(s.invalid_offset_table);
    }

    #[test]
    fn extended_offset_table_first() {
        let offs = [0u64, 22];
        let lens = [6u64, 6];
        let s = split_frames(
            &[A, B, C],
            &[],
            Some((&offs, Some(&lens))),
            2,
            FrameMarker::None,
        )
        .unwrap();
        assert_eq!(s.method, SplitMethod::ExtendedOffsetTable);
        assert_eq!(s.frames.len(), 2);
    }

    #[test]
    fn counts_single_and_errors() {
        let s = split_frames(&[A, C], &[], None, 2, FrameMarker::Rle).unwrap();
        assert_eq!(s.method, SplitMethod::OneFragmentPerFrame);
        let s = split_frames(&[A, B, C], &[], None, 1, FrameMarker::Rle).unwrap();
        assert_eq!(s.method, SplitMethod::SingleFrame);
        assert!(split_frames(&[A, B, C], &[], None, 2, FrameMarker::Rle).is_err());
        assert!(split_frames(&[A, B, C], &[], None, 3 + 1, FrameMarker::Jpeg).is_err());
    }
}
