//! Thin safe wrapper over OpenJPEG (`openjpeg-sys`, vendored OpenJPEG 2.5.3 built with `cc`):
//! in-memory decoding of J2K/JP2/HTJ2K codestreams and reversible (lossless) J2K encoding.

use std::ffi::c_void;
use std::ptr;

use openjpeg_sys as opj;

use crate::pixels::{Buf, Pixels};

/// Errors from OpenJPEG; the message never contains sample data.
#[derive(Debug)]
pub(crate) struct OpjError(pub String);

struct ReadCursor<'a> {
    data: &'a [u8],
    pos: usize,
}

unsafe extern "C" fn read_fn(buf: *mut c_void, n: usize, user: *mut c_void) -> usize {
    // SAFETY: `user` is the `ReadCursor` registered in `decode`, alive for the whole call.
    let cur = unsafe { &mut *(user as *mut ReadCursor<'_>) };
    let left = cur.data.len() - cur.pos;
    if left == 0 {
        return usize::MAX; // (OPJ_SIZE_T)-1 = end of stream
    }
    let k = n.min(left);
    // SAFETY: OpenJPEG hands a buffer of at least `n` bytes.
    unsafe { ptr::copy_nonoverlapping(cur.data.as_ptr().add(cur.pos), buf as *mut u8, k) };
    cur.pos += k;
    k
}

unsafe extern "C" fn read_skip_fn(n: i64, user: *mut c_void) -> i64 {
    // SAFETY: see `read_fn`.
    let cur = unsafe { &mut *(user as *mut ReadCursor<'_>) };
    let target = (cur.pos as i64 + n).clamp(0, cur.data.len() as i64);
    let moved = target - cur.pos as i64;
    cur.pos = target as usize;
    moved
}

unsafe extern "C" fn read_seek_fn(n: i64, user: *mut c_void) -> i32 {
    // SAFETY: see `read_fn`.
    let cur = unsafe { &mut *(user as *mut ReadCursor<'_>) };
    if n < 0 || n as usize > cur.data.len() {
        return 0;
    }
    cur.pos = n as usize;
    1
}

struct WriteCursor {
    data: Vec<u8>,
    pos: usize,
}

unsafe extern "C" fn write_fn(buf: *mut c_void, n: usize, user: *mut c_void) -> usize {
    // SAFETY: `user` is the `WriteCursor` registered in `encode_lossless`.
    let cur = unsafe { &mut *(user as *mut WriteCursor) };
    // SAFETY: OpenJPEG passes `n` readable bytes.
    let src = unsafe { std::slice::from_raw_parts(buf as *const u8, n) };
    let end = cur.pos + n;
    if end > cur.data.len() {
        cur.data.resize(end, 0);
    }
    cur.data[cur.pos..end].copy_from_slice(src);
    cur.pos = end;
    n
}

unsafe extern "C" fn write_skip_fn(n: i64, user: *mut c_void) -> i64 {
    // SAFETY: see `write_fn`.
    let cur = unsafe { &mut *(user as *mut WriteCursor) };
    let target = cur.pos as i64 + n;
    if target < 0 {
        return -1;
    }
    if target as usize > cur.data.len() {
        cur.data.resize(target as usize, 0);
    }
    cur.pos = target as usize;
    n
}

unsafe extern "C" fn write_seek_fn(n: i64, user: *mut c_void) -> i32 {
    // SAFETY: see `write_fn`.
    let cur = unsafe { &mut *(user as *mut WriteCursor) };
    if n < 0 {
        return 0;
    }
    if n as usize > cur.data.len() {
        cur.data.resize(n as usize, 0);
    }
    cur.pos = n as usize;
    1
}

unsafe extern "C" fn quiet(_msg: *const std::os::raw::c_char, _user: *mut c_void) {}

unsafe extern "C" fn record_error(msg: *const std::os::raw::c_char, user: *mut c_void) {
    if msg.is_null() || user.is_null() {
        return;
    }
    // SAFETY: `user` is the `String` registered in `decode`/`encode_lossless`; `msg` is a C string.
    let out = unsafe { &mut *(user as *mut String) };
    if out.is_empty() {
        let s = unsafe { std::ffi::CStr::from_ptr(msg) }.to_string_lossy();
        out.push_str(s.trim());
    }
}

/// Owns an OpenJPEG codec, stream and image; frees them on drop.
struct Handles {
    codec: *mut opj::opj_codec_t,
    stream: *mut opj::opj_stream_t,
    image: *mut opj::opj_image_t,
}

impl Drop for Handles {
    fn drop(&mut self) {
        // SAFETY: each pointer is either null or owned by this struct.
        unsafe {
            if !self.image.is_null() {
                opj::opj_image_destroy(self.image);
            }
            if !self.stream.is_null() {
                opj::opj_stream_destroy(self.stream);
            }
            if !self.codec.is_null() {
                opj::opj_destroy_codec(self.codec);
            }
        }
    }
}

/// True when `data` starts with a JP2 signature box (rather than a raw codestream).
fn is_jp2(data: &[u8]) -> bool {
    data.len() >= 12 && data[..12] == [0, 0, 0, 12, b'j', b'P', b' ', b' ', 13, 10, 0x87, 10]
}

/// Decodes a J2K/HTJ2K codestream (or JP2 file) at full resolution, or reduced by `reduce`
/// levels. Components must all have the same size; samples come back interleaved. Streams
/// whose header announces more than `max_samples` samples are refused before decoding.
pub(crate) fn decode(data: &[u8], reduce: u32, max_samples: u64) -> Result<Pixels, OpjError> {
    let mut cursor = ReadCursor { data, pos: 0 };
    let mut err = String::new();
    let format = if is_jp2(data) {
        opj::CODEC_FORMAT::OPJ_CODEC_JP2
    } else {
        opj::CODEC_FORMAT::OPJ_CODEC_J2K
    };
    // SAFETY: plain FFI calls; every created handle is owned by `h` and freed on all paths;
    // the callbacks' user data (`cursor`, `err`) outlive the handles.
    unsafe {
        let mut h = Handles {
            codec: opj::opj_create_decompress(format),
            stream: ptr::null_mut(),
            image: ptr::null_mut(),
        };
        if h.codec.is_null() {
            return Err(OpjError("OpenJPEG: cannot create decoder".into()));
        }
        opj::opj_set_info_handler(h.codec, Some(quiet), ptr::null_mut());
        opj::opj_set_warning_handler(h.codec, Some(quiet), ptr::null_mut());
        opj::opj_set_error_handler(
            h.codec,
            Some(record_error),
            &mut err as *mut String as *mut c_void,
        );
        let mut params: opj::opj_dparameters_t = std::mem::zeroed();
        opj::opj_set_default_decoder_parameters(&mut params);
        params.cp_reduce = reduce;
        if opj::opj_setup_decoder(h.codec, &mut params) == 0 {
            return Err(OpjError(format!("OpenJPEG: decoder setup failed: {err}")));
        }
        h.stream = opj::opj_stream_create(1 << 16, 1);
        if h.stream.is_null() {
            return Err(OpjError("OpenJPEG: cannot create stream".into()));
        }
        opj::opj_stream_set_read_function(h.stream, Some(read_fn));
        opj::opj_stream_set_skip_function(h.stream, Some(read_skip_fn));
        opj::opj_stream_set_seek_function(h.stream, Some(read_seek_fn));
        opj::opj_stream_set_user_data(
            h.stream,
            &mut cursor as *mut ReadCursor<'_> as *mut c_void,
            None,
        );
        opj::opj_stream_set_user_data_length(h.stream, data.len() as u64);
        if opj::opj_read_header(h.stream, h.codec, &mut h.image) == 0 || h.image.is_null() {
            return Err(OpjError(format!("OpenJPEG: cannot read header: {err}")));
        }
        {
            let img = &*h.image;
            let area =
                (img.x1.saturating_sub(img.x0) as u64) * (img.y1.saturating_sub(img.y0) as u64);
            if area * img.numcomps as u64 > max_samples {
                return Err(OpjError(
                    "OpenJPEG: codestream is larger than the frame".into(),
                ));
            }
        }
        if opj::opj_decode(h.codec, h.stream, h.image) == 0 {
            return Err(OpjError(format!("OpenJPEG: decoding failed: {err}")));
        }
        opj::opj_end_decompress(h.codec, h.stream);
        let img = &*h.image;
        let nc = img.numcomps as usize;
        if nc == 0 || img.comps.is_null() {
            return Err(OpjError("OpenJPEG: image has no components".into()));
        }
        let comps = std::slice::from_raw_parts(img.comps, nc);
        let (w, ht) = (comps[0].w, comps[0].h);
        let prec = comps[0].prec;
        let sgnd = comps[0].sgnd != 0;
        for c in comps {
            if c.w != w || c.h != ht || c.data.is_null() {
                return Err(OpjError(
                    "OpenJPEG: subsampled components are not supported".into(),
                ));
            }
            if c.prec != prec || (c.sgnd != 0) != sgnd {
                return Err(OpjError("OpenJPEG: components differ in precision".into()));
            }
        }
        if prec == 0 || prec > 16 {
            return Err(OpjError(format!("OpenJPEG: unsupported precision {prec}")));
        }
        let n = w as usize * ht as usize;
        let planes: Vec<&[i32]> = comps
            .iter()
            .map(|c| std::slice::from_raw_parts(c.data, n))
            .collect();
        let get = |i: usize| planes[i % nc][i / nc];
        let total = n * nc;
        let buf = match (prec <= 8, sgnd) {
            (true, false) => Buf::U8((0..total).map(|i| get(i).clamp(0, 255) as u8).collect()),
            (true, true) => Buf::I8((0..total).map(|i| get(i).clamp(-128, 127) as i8).collect()),
            (false, false) => Buf::U16((0..total).map(|i| get(i).clamp(0, 65535) as u16).collect()),
            (false, true) => Buf::I16(
                (0..total)
                    .map(|i| get(i).clamp(-32768, 32767) as i16)
                    .collect(),
            ),
        };
        Ok(Pixels {
            width: w,
            height: ht,
            components: nc as u8,
            precision: prec as u8,
            signed: sgnd,
            buf,
        })
    }
}

/// Number of resolution levels (decompositions + 1) of a J2K codestream's default COD, read
/// from the main header; `None` if not found.
pub(crate) fn resolution_levels(data: &[u8]) -> Option<u8> {
    let start = if is_jp2(data) {
        data.windows(2).position(|w| w == [0xFF, 0x4F])?
    } else {
        0
    };
    let mut i = start + 2;
    while i + 4 <= data.len() {
        if data[i] != 0xFF {
            return None;
        }
        let marker = data[i + 1];
        let len = u16::from_be_bytes([data[i + 2], data[i + 3]]) as usize;
        if marker == 0x52 {
            // COD: Lcod(2) Scod(1) SGcod(4) SPcod: levels first.
            return data.get(i + 4 + 5).map(|&d| d + 1);
        }
        if marker == 0x90 {
            return None; // SOT: end of main header
        }
        i += 2 + len;
    }
    None
}

/// Encodes `px` as a lossless JPEG 2000 Part 1 codestream (raw J2K, reversible 5/3, RCT for
/// three components, RPCL, one layer, 64×64 code-blocks, base resolution ≤ 64 like .202).
pub(crate) fn encode_lossless(px: &Pixels) -> Result<Vec<u8>, OpjError> {
    let nc = px.components as usize;
    let (w, ht) = (px.width, px.height);
    let mut levels = 0u32;
    while (w >> levels) > 64 || (ht >> levels) > 64 {
        levels += 1;
    }
    // OpenJPEG refuses more decompositions than the smaller side allows.
    let levels = levels
        .max(5.min(w.min(ht).max(1).ilog2()))
        .min(w.min(ht).max(1).ilog2());
    let mut err = String::new();
    let mut out = WriteCursor {
        data: Vec::new(),
        pos: 0,
    };
    // SAFETY: as in `decode`; the image buffers are allocated by OpenJPEG and filled within
    // their `w*h` bounds.
    unsafe {
        let mut cparms: Vec<opj::opj_image_cmptparm_t> = (0..nc)
            .map(|_| opj::opj_image_cmptparm_t {
                dx: 1,
                dy: 1,
                w,
                h: ht,
                x0: 0,
                y0: 0,
                prec: px.precision as u32,
                bpp: px.precision as u32,
                sgnd: px.signed as u32,
            })
            .collect();
        let space = if nc >= 3 {
            opj::COLOR_SPACE::OPJ_CLRSPC_SRGB
        } else {
            opj::COLOR_SPACE::OPJ_CLRSPC_GRAY
        };
        let mut h = Handles {
            codec: ptr::null_mut(),
            stream: ptr::null_mut(),
            image: opj::opj_image_create(nc as u32, cparms.as_mut_ptr(), space),
        };
        if h.image.is_null() {
            return Err(OpjError("OpenJPEG: cannot create image".into()));
        }
        {
            let img = &mut *h.image;
            img.x0 = 0;
            img.y0 = 0;
            img.x1 = w;
            img.y1 = ht;
            let comps = std::slice::from_raw_parts_mut(img.comps, nc);
            let n = w as usize * ht as usize;
            for (c, comp) in comps.iter_mut().enumerate() {
                let plane = std::slice::from_raw_parts_mut(comp.data, n);
                for (i, v) in plane.iter_mut().enumerate() {
                    *v = px.buf.get_i32(i * nc + c);
                }
            }
        }
        h.codec = opj::opj_create_compress(opj::CODEC_FORMAT::OPJ_CODEC_J2K);
        if h.codec.is_null() {
            return Err(OpjError("OpenJPEG: cannot create encoder".into()));
        }
        opj::opj_set_info_handler(h.codec, Some(quiet), ptr::null_mut());
        opj::opj_set_warning_handler(h.codec, Some(quiet), ptr::null_mut());
        opj::opj_set_error_handler(
            h.codec,
            Some(record_error),
            &mut err as *mut String as *mut c_void,
        );
        let mut params: Box<opj::opj_cparameters_t> = Box::new(std::mem::zeroed());
        opj::opj_set_default_encoder_parameters(&mut *params);
        params.tcp_numlayers = 1;
        params.tcp_rates[0] = 0.0; // lossless
        params.cp_disto_alloc = 1;
        params.irreversible = 0;
        params.numresolution = levels as i32 + 1;
        params.prog_order = opj::PROG_ORDER::OPJ_RPCL;
        params.tcp_mct = if nc >= 3 { 1 } else { 0 };
        if opj::opj_setup_encoder(h.codec, &mut *params, h.image) == 0 {
            return Err(OpjError(format!("OpenJPEG: encoder setup failed: {err}")));
        }
        h.stream = opj::opj_stream_create(1 << 16, 0);
        if h.stream.is_null() {
            return Err(OpjError("OpenJPEG: cannot create stream".into()));
        }
        opj::opj_stream_set_write_function(h.stream, Some(write_fn));
        opj::opj_stream_set_skip_function(h.stream, Some(write_skip_fn));
        opj::opj_stream_set_seek_function(h.stream, Some(write_seek_fn));
        opj::opj_stream_set_user_data(h.stream, &mut out as *mut WriteCursor as *mut c_void, None);
        if opj::opj_start_compress(h.codec, h.image, h.stream) == 0
            || opj::opj_encode(h.codec, h.stream) == 0
            || opj::opj_end_compress(h.codec, h.stream) == 0
        {
            return Err(OpjError(format!("OpenJPEG: encoding failed: {err}")));
        }
        drop(h); // flushes the stream into `out`
    }
    Ok(out.data)
}
