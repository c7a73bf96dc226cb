//! PS3.18 §8.7 content negotiation: parsing `Accept` / `Content-Type` media types and choosing
//! what a WADO-RS frames or instance retrieve sends.
//!
//! The rules, from PS3.18 Tables 8.7.3-2/-5 and HealthImaging's DICOMweb documentation (notes
//! §11.2):
//! - Entries are tried in q order (highest first), then in list order; q=0 entries are never
//!   chosen and also veto what a less specific entry would allow (RFC 9110 §12.5.1).
//! - `transfer-syntax=*` means "as stored"; no `transfer-syntax` on `application/octet-stream`,
//!   `application/dicom`, `*/*` or a missing header means Explicit VR Little Endian
//!   (1.2.840.10008.1.2.1), obtained by transcoding — and, as HealthImaging does, the stored
//!   bytes when transcoding is impossible. An explicit `transfer-syntax=1.2.840.10008.1.2.1` is
//!   not relaxed that way: it is transcoded or the entry is skipped.
//! - A type without `transfer-syntax` (e.g. `type=image/jphc`) accepts the stored transfer
//!   syntax if it is one of that media type's.
//! - For frames, a stored codestream also answers a request for a transfer syntax it conforms to
//!   (HTJ2K RPCL .202 is a valid .201 and .203 stream; .90 a valid .91; .80 a .81; .70 a .57).
//! - Nothing acceptable: `None`, which the caller answers with 406.

use std::fmt;

/// Explicit VR Little Endian: the default and the only transcoding target.
pub const EXPLICIT_VR_LITTLE_ENDIAN: &str = "1.2.840.10008.1.2.1";
const OCTET_STREAM: &str = "application/octet-stream";
const DICOM: &str = "application/dicom";

/// One entry of an `Accept` header.
#[derive(Debug, Clone, PartialEq)]
pub struct MediaRange {
    /// Lowercased `type/subtype` (`*/*` and `type/*` included).
    pub media_type: String,
    /// The `type=` parameter, lowercased (meaningful on `multipart/related`).
    pub related_type: Option<String>,
    /// The `transfer-syntax=` parameter: a UID or `*`.
    pub transfer_syntax: Option<String>,
    /// The `q=` weight, 1.0 when absent.
    pub q: f32,
}

/// A malformed `Accept` or `Content-Type` header.
#[derive(Debug, Clone, PartialEq)]
pub enum AcceptError {
    /// Not `type/subtype` (the text found).
    InvalidMediaType(String),
    /// A parameter without `=value`, or with an invalid name (the text found).
    InvalidParameter(String),
    /// A quoted string without its closing quote.
    UnterminatedQuote,
    /// Something other than `;`, `,` or the end after a value (the text found).
    UnexpectedText(String),
    /// The same parameter twice in one media range.
    DuplicateParameter(String),
    /// A q-value that is not a number from 0 to 1.
    InvalidQValue(String),
    /// A `transfer-syntax` that is neither `*` nor a UID.
    InvalidTransferSyntax(String),
}

impl fmt::Display for AcceptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidMediaType(s) => {
                write!(f, "invalid media type {s:?}: expected type/subtype")
            }
            Self::InvalidParameter(s) => {
                write!(f, "invalid media type parameter {s:?}: expected name=value")
            }
            Self::UnterminatedQuote => write!(f, "unterminated quoted string in media type"),
            Self::UnexpectedText(s) => write!(f, "unexpected text {s:?} in media type"),
            Self::DuplicateParameter(s) => write!(f, "duplicate media type parameter {s:?}"),
            Self::InvalidQValue(s) => write!(f, "invalid q-value {s:?}: expected 0 to 1"),
            Self::InvalidTransferSyntax(s) => {
                write!(f, "invalid transfer-syntax {s:?}: expected a UID or *")
            }
        }
    }
}

impl std::error::Error for AcceptError {}

/// A single media type with its parameters, as in a `Content-Type` header.
#[derive(Debug, Clone, PartialEq)]
pub struct MediaType {
    /// Lowercased `type/subtype`.
    pub essence: String,
    /// Parameters in order: lowercased names, values unquoted and otherwise as sent (a
    /// `boundary` is case-sensitive).
    pub params: Vec<(String, String)>,
}

impl MediaType {
    /// The value of parameter `name` (lowercase).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses one media type with parameters (`Content-Type`).
pub fn parse_media_type(header: &str) -> Result<MediaType, AcceptError> {
    let mut cursor = Cursor::new(header);
    cursor.skip_ows();
    let media = cursor.media_type(false)?;
    cursor.skip_ows();
    if !cursor.at_end() {
        return Err(AcceptError::UnexpectedText(cursor.rest().to_string()));
    }
    Ok(media)
}

/// Parses an `Accept` header: a comma-separated list of media ranges with quoted or bare
/// parameters and q-values. Empty elements are skipped; an empty header gives an empty list.
pub fn parse_accept(header: &str) -> Result<Vec<MediaRange>, AcceptError> {
    let mut cursor = Cursor::new(header);
    let mut ranges = Vec::new();
    loop {
        cursor.skip_ows();
        if cursor.at_end() {
            break;
        }
        if cursor.eat(b',') {
            continue;
        }
        let media = cursor.media_type(true)?;
        ranges.push(media_range(media)?);
        cursor.skip_ows();
        if !cursor.at_end() && !cursor.eat(b',') {
            return Err(AcceptError::UnexpectedText(cursor.rest().to_string()));
        }
    }
    Ok(ranges)
}

fn media_range(media: MediaType) -> Result<MediaRange, AcceptError> {
    let mut related_type = None;
    let mut transfer_syntax = None;
    let mut q = 1.0;
    for (name, value) in media.params {
        match name.as_str() {
            "type" => related_type = Some(value.to_ascii_lowercase()),
            "transfer-syntax" => {
                if value != "*" && !is_uid(&value) {
                    return Err(AcceptError::InvalidTransferSyntax(value));
                }
                transfer_syntax = Some(value);
            }
            "q" => q = parse_q(&value)?,
            _ => {}
        }
    }
    Ok(MediaRange {
        media_type: media.essence,
        related_type,
        transfer_syntax,
        q,
    })
}

fn parse_q(value: &str) -> Result<f32, AcceptError> {
    let bad = || AcceptError::InvalidQValue(value.to_string());
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err(bad());
    }
    let q: f32 = value.parse().map_err(|_| bad())?;
    if (0.0..=1.0).contains(&q) {
        Ok(q)
    } else {
        Err(bad())
    }
}

/// A DICOM UID: dot-separated decimal components, at most 64 characters.
fn is_uid(s: &str) -> bool {
    s.len() <= 64
        && s.split('.')
            .all(|c| !c.is_empty() && c.bytes().all(|b| b.is_ascii_digit()))
}

/// RFC 9110 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

struct Cursor<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(s: &'a str) -> Self {
        Self { s, pos: 0 }
    }

    fn bytes(&self) -> &'a [u8] {
        self.s.as_bytes()
    }

    fn at_end(&self) -> bool {
        self.pos >= self.s.len()
    }

    fn peek(&self) -> Option<u8> {
        self.bytes().get(self.pos).copied()
    }

    fn rest(&self) -> &'a str {
        &self.s[self.pos..]
    }

    fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn skip_ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }

    fn token(&mut self) -> &'a str {
        let start = self.pos;
        while self.peek().is_some_and(is_tchar) {
            self.pos += 1;
        }
        &self.s[start..self.pos]
    }

    /// The text up to the next delimiter, for error messages.
    fn snippet(&self, start: usize) -> String {
        let end = self.s[start..]
            .find([',', ';'])
            .map_or(self.s.len(), |i| start + i);
        self.s[start..end].trim().to_string()
    }

    /// `type "/" subtype *( OWS ";" OWS parameter )`; in a list, stops before a `,`.
    fn media_type(&mut self, in_list: bool) -> Result<MediaType, AcceptError> {
        let start = self.pos;
        let ty = self.token();
        let subtype = if self.eat(b'/') { self.token() } else { "" };
        if ty.is_empty() || subtype.is_empty() || (ty == "*" && subtype != "*") {
            return Err(AcceptError::InvalidMediaType(self.snippet(start)));
        }
        let essence = format!("{ty}/{subtype}").to_ascii_lowercase();
        let mut params: Vec<(String, String)> = Vec::new();
        loop {
            self.skip_ows();
            if self.at_end() || (in_list && self.peek() == Some(b',')) {
                break;
            }
            if !self.eat(b';') {
                return Err(AcceptError::UnexpectedText(self.snippet(self.pos)));
            }
            self.skip_ows();
            if self.at_end() || (in_list && self.peek() == Some(b',')) {
                // A trailing ";" is tolerated.
                break;
            }
            let param_start = self.pos;
            let name = self.token().to_ascii_lowercase();
            self.skip_ows();
            if name.is_empty() || !self.eat(b'=') {
                return Err(AcceptError::InvalidParameter(self.snippet(param_start)));
            }
            self.skip_ows();
            let value = self.value(in_list)?;
            if value.is_empty() {
                return Err(AcceptError::InvalidParameter(self.snippet(param_start)));
            }
            if params.iter().any(|(n, _)| *n == name) {
                return Err(AcceptError::DuplicateParameter(name));
            }
            params.push((name, value));
        }
        Ok(MediaType { essence, params })
    }

    /// A quoted string, or a bare value: real clients send `type=image/jphc` unquoted although
    /// `/` is not a token character, so a bare value runs to whitespace, `;` or `,`.
    fn value(&mut self, in_list: bool) -> Result<String, AcceptError> {
        if self.eat(b'"') {
            let mut out = Vec::new();
            loop {
                match self.peek() {
                    None => return Err(AcceptError::UnterminatedQuote),
                    Some(b'"') => {
                        self.pos += 1;
                        break;
                    }
                    Some(b'\\') => {
                        self.pos += 1;
                        match self.peek() {
                            None => return Err(AcceptError::UnterminatedQuote),
                            Some(b) => out.push(b),
                        }
                        self.pos += 1;
                    }
                    Some(b) => {
                        out.push(b);
                        self.pos += 1;
                    }
                }
            }
            // The input is a &str and escapes only remove ASCII backslashes.
            return Ok(String::from_utf8_lossy(&out).into_owned());
        }
        let start = self.pos;
        while let Some(b) = self.peek() {
            let stop = b == b';' || b == b' ' || b == b'\t' || (in_list && b == b',');
            if stop {
                break;
            }
            if b == b'"' || b.is_ascii_control() {
                return Err(AcceptError::UnexpectedText(self.snippet(start)));
            }
            self.pos += 1;
        }
        Ok(self.s[start..self.pos].to_string())
    }
}

/// What a WADO-RS frames / instance request will send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rendition {
    /// The stored bytes, unchanged.
    StoredBytes,
    /// Decoded and re-encoded in `transfer_syntax` (always Explicit VR Little Endian).
    Transcode { transfer_syntax: &'static str },
}

/// The outcome of negotiation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// The part's (or single-part response's) media type, e.g. `image/jphc`,
    /// `application/octet-stream`, `application/dicom`.
    pub media_type: String,
    /// The transfer syntax of what is sent.
    pub transfer_syntax: String,
    pub rendition: Rendition,
    /// Whether the chosen range was `multipart/related` (always so for frames); an instance
    /// requested as `application/dicom` or `*/*` is sent as a single part.
    pub multipart: bool,
}

impl Negotiated {
    /// `media_type; transfer-syntax=uid`: the part's `Content-Type` header.
    pub fn part_content_type(&self) -> String {
        format!(
            "{}; transfer-syntax={}",
            self.media_type, self.transfer_syntax
        )
    }
}

/// Transfer syntax → the media types PS3.18 Table 8.7.3-5 pairs it with (canonical first).
pub fn pixel_media_types(transfer_syntax: &str) -> Option<&'static [&'static str]> {
    const OCTET: &[&str] = &[OCTET_STREAM];
    const JPEG: &[&str] = &["image/jpeg"];
    const JLS: &[&str] = &["image/jls"];
    const J2K: &[&str] = &["image/jp2", "image/j2c"];
    const JPX: &[&str] = &["image/jpx"];
    const HTJ2K_LOSSLESS: &[&str] = &["image/jphc", "image/jph"];
    const HTJ2K: &[&str] = &["image/jphc"];
    const JXL: &[&str] = &["image/jxl"];
    const MPEG2: &[&str] = &["video/mpeg"];
    const MP4: &[&str] = &["video/mp4"];
    const HEVC: &[&str] = &["video/mp4", "video/h265"];
    let types = match transfer_syntax.strip_prefix("1.2.840.10008.1.2")? {
        "" | ".1" | ".1.98" | ".2" => OCTET,
        ".5" => &["image/dicom-rle"],
        ".8.1" => &["application/x-deflate"],
        ".4.50" | ".4.51" | ".4.57" | ".4.70" => JPEG,
        ".4.80" | ".4.81" => JLS,
        ".4.90" | ".4.91" => J2K,
        ".4.92" | ".4.93" => JPX,
        ".4.100" | ".4.100.1" | ".4.101" | ".4.101.1" => MPEG2,
        ".4.102" | ".4.102.1" | ".4.103" | ".4.103.1" | ".4.104" | ".4.104.1" | ".4.105"
        | ".4.105.1" | ".4.106" | ".4.106.1" => MP4,
        ".4.107" | ".4.108" => HEVC,
        ".4.110" | ".4.111" | ".4.112" => JXL,
        ".4.201" | ".4.202" => HTJ2K_LOSSLESS,
        ".4.203" => HTJ2K,
        _ => return None,
    };
    Some(types)
}

/// Whether frames stored in `stored` may be sent unchanged as `requested`.
fn frames_conform(stored: &str, requested: &str) -> bool {
    const P: &str = "1.2.840.10008.1.2";
    if stored == requested {
        return true;
    }
    let (Some(s), Some(r)) = (stored.strip_prefix(P), requested.strip_prefix(P)) else {
        return false;
    };
    matches!(
        (s, r),
        // Native little endian frames are the same bytes whatever the data set encoding.
        ("" | ".1", "" | ".1")
            | (".4.202", ".4.201" | ".4.203")
            | (".4.201", ".4.203")
            | (".4.90", ".4.91")
            | (".4.80", ".4.81")
            | (".4.70", ".4.57")
    )
}

fn canonical_media_type(transfer_syntax: &str) -> &'static str {
    pixel_media_types(transfer_syntax).map_or(OCTET_STREAM, |t| t[0])
}

/// Entries worth trying: q > 0, highest q first, list order among equals.
fn ordered(accept: &[MediaRange]) -> Vec<&MediaRange> {
    let mut entries: Vec<&MediaRange> = accept.iter().filter(|r| r.q > 0.0).collect();
    entries.sort_by(|a, b| b.q.total_cmp(&a.q));
    entries
}

/// The q-value the most specific entry matching `candidate` gives it (RFC 9110 §12.5.1);
/// `None` if no entry matches.
fn effective_q(accept: &[MediaRange], candidate: &Negotiated) -> Option<f32> {
    let mut best: Option<(u8, f32)> = None;
    for range in accept {
        let Some(rank) = specificity(range, candidate) else {
            continue;
        };
        if best.is_none_or(|(r, _)| rank > r) {
            best = Some((rank, range.q));
        }
    }
    best.map(|(_, q)| q)
}

fn specificity(range: &MediaRange, c: &Negotiated) -> Option<u8> {
    let outer = if c.multipart {
        "multipart/related"
    } else {
        c.media_type.as_str()
    };
    let mut rank = match range.media_type.as_str() {
        "*/*" => 0,
        t if t == outer => 2,
        t if t
            .strip_suffix("/*")
            .is_some_and(|p| outer.starts_with(&format!("{p}/"))) =>
        {
            1
        }
        _ => return None,
    };
    if c.multipart && rank == 2 {
        match range.related_type.as_deref() {
            None | Some("*/*") => {}
            Some(t) if t == c.media_type => rank += 1,
            Some(_) => return None,
        }
    }
    match range.transfer_syntax.as_deref() {
        None | Some("*") => {}
        Some(ts) if ts == c.transfer_syntax => rank += 2,
        Some(_) => return None,
    }
    Some(rank)
}

fn negotiate(
    accept: &[MediaRange],
    default: impl Fn() -> Negotiated,
    candidate: impl Fn(&MediaRange) -> Option<Negotiated>,
) -> Option<Negotiated> {
    if accept.is_empty() {
        return Some(default());
    }
    ordered(accept)
        .into_iter()
        .filter_map(candidate)
        .find(|c| effective_q(accept, c).is_none_or(|q| q > 0.0))
}

/// Frames (multipart/related): the first acceptable entry in q order, then list order, given
/// the stored transfer syntax and whether decoding to Explicit VR Little Endian is possible.
pub fn negotiate_frames(
    accept: &[MediaRange],
    stored_ts: &str,
    can_transcode: bool,
) -> Option<Negotiated> {
    let default = || default_frames(stored_ts, can_transcode);
    negotiate(accept, default, |range| {
        frames_candidate(range, stored_ts, can_transcode)
    })
}

fn frames(media_type: &str, transfer_syntax: &str, rendition: Rendition) -> Negotiated {
    Negotiated {
        media_type: media_type.to_string(),
        transfer_syntax: transfer_syntax.to_string(),
        rendition,
        multipart: true,
    }
}

/// Explicit VR Little Endian, or (HealthImaging) the stored bytes if that is impossible.
fn default_frames(stored: &str, can_transcode: bool) -> Negotiated {
    if frames_conform(stored, EXPLICIT_VR_LITTLE_ENDIAN) {
        frames(
            OCTET_STREAM,
            EXPLICIT_VR_LITTLE_ENDIAN,
            Rendition::StoredBytes,
        )
    } else if can_transcode {
        frames(
            OCTET_STREAM,
            EXPLICIT_VR_LITTLE_ENDIAN,
            Rendition::Transcode {
                transfer_syntax: EXPLICIT_VR_LITTLE_ENDIAN,
            },
        )
    } else {
        frames(canonical_media_type(stored), stored, Rendition::StoredBytes)
    }
}

fn frames_candidate(range: &MediaRange, stored: &str, can_transcode: bool) -> Option<Negotiated> {
    let related = match range.media_type.as_str() {
        "*/*" | "multipart/*" => None,
        "multipart/related" => range.related_type.as_deref().filter(|t| *t != "*/*"),
        _ => return None,
    };
    match range.transfer_syntax.as_deref() {
        None => match related {
            None | Some(OCTET_STREAM) => Some(default_frames(stored, can_transcode)),
            Some(t) => {
                let types = pixel_media_types(stored)?;
                types
                    .contains(&t)
                    .then(|| frames(t, stored, Rendition::StoredBytes))
            }
        },
        Some("*") => {
            let media = match related {
                Some(t) if pixel_media_types(stored).is_some_and(|ts| ts.contains(&t)) => t,
                _ => canonical_media_type(stored),
            };
            Some(frames(media, stored, Rendition::StoredBytes))
        }
        Some(requested) => {
            let types = pixel_media_types(requested)?;
            let media = match related {
                None => types[0],
                Some(t) if types.contains(&t) => t,
                Some(_) => return None,
            };
            if frames_conform(stored, requested) {
                Some(frames(media, requested, Rendition::StoredBytes))
            } else if requested == EXPLICIT_VR_LITTLE_ENDIAN && can_transcode {
                Some(frames(
                    media,
                    requested,
                    Rendition::Transcode {
                        transfer_syntax: EXPLICIT_VR_LITTLE_ENDIAN,
                    },
                ))
            } else {
                None
            }
        }
    }
}

/// Instances (`application/dicom`, possibly in multipart/related): as [`negotiate_frames`],
/// but the data set's transfer syntax must be the stored one or Explicit VR Little Endian.
pub fn negotiate_instance(
    accept: &[MediaRange],
    stored_ts: &str,
    can_transcode: bool,
) -> Option<Negotiated> {
    let default = || default_instance(stored_ts, can_transcode, false);
    negotiate(accept, default, |range| {
        instance_candidate(range, stored_ts, can_transcode)
    })
}

fn instance(transfer_syntax: &str, rendition: Rendition, multipart: bool) -> Negotiated {
    Negotiated {
        media_type: DICOM.to_string(),
        transfer_syntax: transfer_syntax.to_string(),
        rendition,
        multipart,
    }
}

fn default_instance(stored: &str, can_transcode: bool, multipart: bool) -> Negotiated {
    if stored == EXPLICIT_VR_LITTLE_ENDIAN {
        instance(stored, Rendition::StoredBytes, multipart)
    } else if can_transcode {
        let rendition = Rendition::Transcode {
            transfer_syntax: EXPLICIT_VR_LITTLE_ENDIAN,
        };
        instance(EXPLICIT_VR_LITTLE_ENDIAN, rendition, multipart)
    } else {
        instance(stored, Rendition::StoredBytes, multipart)
    }
}

fn instance_candidate(range: &MediaRange, stored: &str, can_transcode: bool) -> Option<Negotiated> {
    let multipart = match range.media_type.as_str() {
        "*/*" | "application/*" | DICOM => false,
        "multipart/*" => true,
        "multipart/related" => match range.related_type.as_deref() {
            None | Some("*/*" | DICOM) => true,
            Some(_) => return None,
        },
        _ => return None,
    };
    match range.transfer_syntax.as_deref() {
        None => Some(default_instance(stored, can_transcode, multipart)),
        Some("*") => Some(instance(stored, Rendition::StoredBytes, multipart)),
        Some(requested) if requested == stored => {
            Some(instance(stored, Rendition::StoredBytes, multipart))
        }
        Some(EXPLICIT_VR_LITTLE_ENDIAN) if can_transcode => Some(instance(
            EXPLICIT_VR_LITTLE_ENDIAN,
            Rendition::Transcode {
                transfer_syntax: EXPLICIT_VR_LITTLE_ENDIAN,
            },
            multipart,
        )),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ELE: &str = EXPLICIT_VR_LITTLE_ENDIAN;
    const IMPLICIT_VR_LITTLE_ENDIAN: &str = "1.2.840.10008.1.2";
    const HTJ2K_RPCL: &str = "1.2.840.10008.1.2.4.202";
    const HTJ2K_LOSSLESS: &str = "1.2.840.10008.1.2.4.201";
    const HTJ2K: &str = "1.2.840.10008.1.2.4.203";
    const J2K_LOSSLESS: &str = "1.2.840.10008.1.2.4.90";
    const J2K: &str = "1.2.840.10008.1.2.4.91";
    const JPEG_BASELINE: &str = "1.2.840.10008.1.2.4.50";

    /// OHIF's header against HealthImaging (notes §11.2), verbatim.
    const OHIF: &str = "multipart/related; type=image/jphc; transfer-syntax=1.2.840.10008.1.2.4.202, multipart/related; type=image/jp2; transfer-syntax=1.2.840.10008.1.2.4.90, multipart/related; type=image/jpeg; transfer-syntax=1.2.840.10008.1.2.4.50, multipart/related; type=application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1";

    const TRANSCODE: Rendition = Rendition::Transcode {
        transfer_syntax: ELE,
    };

    fn accept(h: &str) -> Vec<MediaRange> {
        parse_accept(h).unwrap()
    }

    fn frames_for(
        h: &str,
        stored: &str,
        can_transcode: bool,
    ) -> Option<(String, String, Rendition)> {
        negotiate_frames(&accept(h), stored, can_transcode)
            .map(|n| (n.media_type, n.transfer_syntax, n.rendition))
    }

    fn triple(m: &str, ts: &str, r: Rendition) -> Option<(String, String, Rendition)> {
        Some((m.to_string(), ts.to_string(), r))
    }

    #[test]
    fn parses_ohif_header() {
        let ranges = accept(OHIF);
        assert_eq!(ranges.len(), 4);
        assert_eq!(
            ranges[0],
            MediaRange {
                media_type: "multipart/related".into(),
                related_type: Some("image/jphc".into()),
                transfer_syntax: Some(HTJ2K_RPCL.into()),
                q: 1.0,
            }
        );
        assert_eq!(ranges[3].related_type.as_deref(), Some(OCTET_STREAM));
        assert_eq!(ranges[3].transfer_syntax.as_deref(), Some(ELE));
    }

    #[test]
    fn parses_quotes_case_whitespace_and_q() {
        let ranges = accept(
            " Multipart/Related ;TYPE=\"Application/DICOM\" ; Transfer-Syntax=\"*\";q=0.5 ,,\t*/* ;q=0 ,",
        );
        assert_eq!(ranges.len(), 2);
        assert_eq!(ranges[0].media_type, "multipart/related");
        assert_eq!(ranges[0].related_type.as_deref(), Some("application/dicom"));
        assert_eq!(ranges[0].transfer_syntax.as_deref(), Some("*"));
        assert_eq!(ranges[0].q, 0.5);
        assert_eq!(ranges[1].media_type, "*/*");
        assert_eq!(ranges[1].q, 0.0);
        assert_eq!(parse_accept("").unwrap(), vec![]);
        assert_eq!(parse_accept(" , ").unwrap(), vec![]);
        // A comma inside quotes does not split the list; unknown parameters are ignored.
        let ranges = accept("application/dicom; foo=\"a, b\\\"c\"; q=1, image/jpeg;");
        assert_eq!(ranges.len(), 2);
        assert_eq!(ranges[1].media_type, "image/jpeg");
    }

    #[test]
    fn rejects_malformed_headers_naming_the_problem() {
        let err = |h: &str| parse_accept(h).unwrap_err();
        assert_eq!(
            err("multipart"),
            AcceptError::InvalidMediaType("multipart".into())
        );
        assert_eq!(err("/json"), AcceptError::InvalidMediaType("/json".into()));
        assert_eq!(
            err("*/json"),
            AcceptError::InvalidMediaType("*/json".into())
        );
        assert_eq!(
            err("application/dicom; transfer-syntax"),
            AcceptError::InvalidParameter("transfer-syntax".into())
        );
        assert_eq!(
            err("application/dicom; =x"),
            AcceptError::InvalidParameter("=x".into())
        );
        assert_eq!(
            err("application/dicom; type=\"a"),
            AcceptError::UnterminatedQuote
        );
        assert_eq!(
            err("application/dicom; q=2"),
            AcceptError::InvalidQValue("2".into())
        );
        assert_eq!(
            err("application/dicom; q=-1"),
            AcceptError::InvalidQValue("-1".into())
        );
        assert_eq!(
            err("application/dicom; q=high"),
            AcceptError::InvalidQValue("high".into())
        );
        assert_eq!(
            err("application/dicom; transfer-syntax=jpeg"),
            AcceptError::InvalidTransferSyntax("jpeg".into())
        );
        assert_eq!(
            err("application/dicom; transfer-syntax=1..2"),
            AcceptError::InvalidTransferSyntax("1..2".into())
        );
        assert_eq!(
            err("application/dicom; q=1; Q=0.5"),
            AcceptError::DuplicateParameter("q".into())
        );
        assert_eq!(
            err("application/dicom image/jpeg"),
            AcceptError::UnexpectedText("image/jpeg".into())
        );
        assert!(
            err("application/dicom; type=\"x\"y")
                .to_string()
                .contains("unexpected")
        );
        assert!(
            err("application/dicom; q=2")
                .to_string()
                .contains("q-value")
        );
    }

    #[test]
    fn parses_content_type() {
        let m = parse_media_type("Multipart/Related; type=\"application/dicom\"; boundary=AbC")
            .unwrap();
        assert_eq!(m.essence, "multipart/related");
        assert_eq!(m.param("type"), Some("application/dicom"));
        assert_eq!(m.param("boundary"), Some("AbC"));
        assert_eq!(m.param("start"), None);
        assert!(parse_media_type("a/b, c/d").is_err());
        assert!(parse_media_type("").is_err());
    }

    #[test]
    fn ohif_gets_htj2k_as_stored() {
        assert_eq!(
            frames_for(OHIF, HTJ2K_RPCL, true),
            triple("image/jphc", HTJ2K_RPCL, Rendition::StoredBytes)
        );
    }

    #[test]
    fn ohif_follows_list_order() {
        // .90 is listed before ELE: sent as stored.
        assert_eq!(
            frames_for(OHIF, J2K_LOSSLESS, true),
            triple("image/jp2", J2K_LOSSLESS, Rendition::StoredBytes)
        );
        assert_eq!(
            frames_for(OHIF, JPEG_BASELINE, true),
            triple("image/jpeg", JPEG_BASELINE, Rendition::StoredBytes)
        );
        // HTJ2K without RPCL, or lossy J2K: nothing but the last entry fits, by transcoding.
        for stored in [HTJ2K_LOSSLESS, HTJ2K, J2K] {
            assert_eq!(
                frames_for(OHIF, stored, true),
                triple(OCTET_STREAM, ELE, TRANSCODE),
                "{stored}"
            );
            assert_eq!(frames_for(OHIF, stored, false), None, "{stored}");
        }
        // ELE listed first: ELE even for a .90 store.
        let ele_first = "multipart/related; type=application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1, multipart/related; type=image/jp2; transfer-syntax=1.2.840.10008.1.2.4.90";
        assert_eq!(
            frames_for(ele_first, J2K_LOSSLESS, true),
            triple(OCTET_STREAM, ELE, TRANSCODE)
        );
        // ... unless it cannot be transcoded.
        assert_eq!(
            frames_for(ele_first, J2K_LOSSLESS, false),
            triple("image/jp2", J2K_LOSSLESS, Rendition::StoredBytes)
        );
        // Native frames need no transcoding.
        assert_eq!(
            frames_for(OHIF, ELE, false),
            triple(OCTET_STREAM, ELE, Rendition::StoredBytes)
        );
        assert_eq!(
            frames_for(OHIF, IMPLICIT_VR_LITTLE_ENDIAN, false),
            triple(OCTET_STREAM, ELE, Rendition::StoredBytes)
        );
    }

    #[test]
    fn q_order_beats_list_order() {
        let h = "multipart/related; type=application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1; q=0.5, multipart/related; type=image/jphc; transfer-syntax=1.2.840.10008.1.2.4.202";
        assert_eq!(
            frames_for(h, HTJ2K_RPCL, true),
            triple("image/jphc", HTJ2K_RPCL, Rendition::StoredBytes)
        );
        // Equal q: list order.
        let h = "multipart/related; type=application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1; q=0.5, multipart/related; type=image/jphc; transfer-syntax=1.2.840.10008.1.2.4.202; q=0.5";
        assert_eq!(
            frames_for(h, HTJ2K_RPCL, true),
            triple(OCTET_STREAM, ELE, TRANSCODE)
        );
    }

    #[test]
    fn q_zero_is_never_chosen_and_vetoes() {
        let h = "multipart/related; type=image/jphc; transfer-syntax=1.2.840.10008.1.2.4.202; q=0";
        assert_eq!(frames_for(h, HTJ2K_RPCL, true), None);
        // */* would allow the stored syntax, but the more specific q=0 forbids it.
        let h = "multipart/related; type=image/jphc; transfer-syntax=1.2.840.10008.1.2.4.202; q=0, multipart/related; transfer-syntax=*";
        assert_eq!(frames_for(h, HTJ2K_RPCL, true), None);
        // ... while ELE stays possible.
        let h = "multipart/related; type=image/jphc; q=0, */*";
        assert_eq!(
            frames_for(h, HTJ2K_RPCL, true),
            triple(OCTET_STREAM, ELE, TRANSCODE)
        );
        // A specific entry beats a general q=0.
        let h =
            "*/*; q=0, multipart/related; type=image/jphc; transfer-syntax=1.2.840.10008.1.2.4.202";
        assert_eq!(
            frames_for(h, HTJ2K_RPCL, true),
            triple("image/jphc", HTJ2K_RPCL, Rendition::StoredBytes)
        );
        assert_eq!(frames_for("*/*; q=0", HTJ2K_RPCL, true), None);
    }

    #[test]
    fn transfer_syntax_star_means_stored() {
        // HealthImaging's documented form.
        let h = "multipart/related; type=application/octet-stream; transfer-syntax=*";
        assert_eq!(
            frames_for(h, HTJ2K_RPCL, true),
            triple("image/jphc", HTJ2K_RPCL, Rendition::StoredBytes)
        );
        let h = "multipart/related; type=\"image/jph\"; transfer-syntax=*";
        assert_eq!(
            frames_for(h, HTJ2K_RPCL, true),
            triple("image/jph", HTJ2K_RPCL, Rendition::StoredBytes)
        );
        assert_eq!(
            frames_for("multipart/related; transfer-syntax=*", J2K, false),
            triple("image/jp2", J2K, Rendition::StoredBytes)
        );
        let n = negotiate_instance(
            &accept("application/dicom; transfer-syntax=*"),
            HTJ2K_RPCL,
            true,
        )
        .unwrap();
        assert_eq!(n.transfer_syntax, HTJ2K_RPCL);
        assert_eq!(n.rendition, Rendition::StoredBytes);
        assert!(!n.multipart);
    }

    #[test]
    fn defaults_to_explicit_vr_little_endian() {
        for h in [
            "",
            "*/*",
            "multipart/related",
            "multipart/*",
            "multipart/related; type=application/octet-stream",
            "multipart/related; type=\"*/*\"",
        ] {
            assert_eq!(
                frames_for(h, HTJ2K_RPCL, true),
                triple(OCTET_STREAM, ELE, TRANSCODE),
                "{h:?}"
            );
            // HealthImaging: untranscodable pixels are returned as stored.
            assert_eq!(
                frames_for(h, HTJ2K_RPCL, false),
                triple("image/jphc", HTJ2K_RPCL, Rendition::StoredBytes),
                "{h:?}"
            );
        }
        // ... but an explicit ELE request is not relaxed.
        let h =
            "multipart/related; type=application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1";
        assert_eq!(frames_for(h, HTJ2K_RPCL, false), None);
        for h in [
            "",
            "*/*",
            "application/dicom",
            "multipart/related; type=\"application/dicom\"",
        ] {
            let n = negotiate_instance(&accept(h), HTJ2K_RPCL, true).unwrap();
            assert_eq!(
                (
                    n.media_type.as_str(),
                    n.transfer_syntax.as_str(),
                    n.rendition
                ),
                (DICOM, ELE, TRANSCODE),
                "{h:?}"
            );
            assert_eq!(n.multipart, h.starts_with("multipart"));
            let n = negotiate_instance(&accept(h), HTJ2K_RPCL, false).unwrap();
            assert_eq!(
                (n.transfer_syntax.as_str(), n.rendition),
                (HTJ2K_RPCL, Rendition::StoredBytes)
            );
        }
    }

    #[test]
    fn type_without_transfer_syntax_accepts_the_stored_one_of_that_type() {
        assert_eq!(
            frames_for("multipart/related; type=image/jphc", HTJ2K_RPCL, true),
            triple("image/jphc", HTJ2K_RPCL, Rendition::StoredBytes)
        );
        assert_eq!(
            frames_for("multipart/related; type=image/jp2", HTJ2K_RPCL, true),
            None
        );
    }

    #[test]
    fn conforming_codestreams_are_sent_as_stored() {
        let h = "multipart/related; type=image/jphc; transfer-syntax=1.2.840.10008.1.2.4.201";
        assert_eq!(
            frames_for(h, HTJ2K_RPCL, true),
            triple("image/jphc", HTJ2K_LOSSLESS, Rendition::StoredBytes)
        );
        let h = "multipart/related; type=image/jphc; transfer-syntax=1.2.840.10008.1.2.4.202";
        assert_eq!(frames_for(h, HTJ2K_LOSSLESS, false), None);
        let h = "multipart/related; type=image/jp2; transfer-syntax=1.2.840.10008.1.2.4.91";
        assert_eq!(
            frames_for(h, J2K_LOSSLESS, false),
            triple("image/jp2", J2K, Rendition::StoredBytes)
        );
        // Instances carry their transfer syntax in the file meta: no relabelling.
        let h = "application/dicom; transfer-syntax=1.2.840.10008.1.2.4.201";
        assert_eq!(negotiate_instance(&accept(h), HTJ2K_RPCL, true), None);
    }

    #[test]
    fn mismatched_or_unknown_types_are_not_acceptable() {
        // A media type that does not go with the transfer syntax.
        let h = "multipart/related; type=image/jpeg; transfer-syntax=1.2.840.10008.1.2.4.202";
        assert_eq!(frames_for(h, HTJ2K_RPCL, true), None);
        // A well-formed but unknown transfer syntax.
        let h = "multipart/related; type=image/jphc; transfer-syntax=1.2.3.4";
        assert_eq!(frames_for(h, HTJ2K_RPCL, true), None);
        // Single-part and non-pixel types for frames, non-DICOM types for instances.
        for h in [
            "image/jphc",
            "application/octet-stream",
            "application/dicom+json",
            "text/html",
        ] {
            assert_eq!(frames_for(h, HTJ2K_RPCL, true), None, "{h}");
        }
        for h in [
            "application/json",
            "multipart/related; type=application/octet-stream",
            "image/*",
        ] {
            assert_eq!(
                negotiate_instance(&accept(h), HTJ2K_RPCL, true),
                None,
                "{h}"
            );
        }
        // The stored syntax can be neither transcoded nor matched.
        let h = "application/dicom; transfer-syntax=1.2.840.10008.1.2.4.50";
        assert_eq!(negotiate_instance(&accept(h), HTJ2K_RPCL, true), None);
        let h = "application/dicom; transfer-syntax=1.2.840.10008.1.2.1";
        assert_eq!(negotiate_instance(&accept(h), HTJ2K_RPCL, false), None);
        let n = negotiate_instance(&accept(h), ELE, false).unwrap();
        assert_eq!(n.rendition, Rendition::StoredBytes);
    }

    #[test]
    fn maps_transfer_syntaxes_to_media_types() {
        let canonical = |ts: &str| canonical_media_type(ts);
        assert_eq!(canonical(HTJ2K_RPCL), "image/jphc");
        assert_eq!(canonical(HTJ2K_LOSSLESS), "image/jphc");
        assert_eq!(canonical(HTJ2K), "image/jphc");
        assert!(
            pixel_media_types(HTJ2K_RPCL)
                .unwrap()
                .contains(&"image/jph")
        );
        assert!(!pixel_media_types(HTJ2K).unwrap().contains(&"image/jph"));
        assert_eq!(canonical(J2K_LOSSLESS), "image/jp2");
        assert!(pixel_media_types(J2K).unwrap().contains(&"image/j2c"));
        for ts in ["50", "51", "57", "70"] {
            assert_eq!(
                canonical(&format!("1.2.840.10008.1.2.4.{ts}")),
                "image/jpeg"
            );
        }
        assert_eq!(canonical("1.2.840.10008.1.2.4.80"), "image/jls");
        assert_eq!(canonical("1.2.840.10008.1.2.4.81"), "image/jls");
        assert_eq!(canonical(ELE), OCTET_STREAM);
        assert_eq!(canonical("1.2.840.10008.1.2.5"), "image/dicom-rle");
        assert_eq!(canonical("1.2.840.10008.1.2.4.100"), "video/mpeg");
        assert_eq!(canonical("1.2.840.10008.1.2.4.102"), "video/mp4");
        assert_eq!(canonical("1.2.840.10008.1.2.4.112"), "image/jxl");
        assert_eq!(pixel_media_types("1.2.840.10008.1.2.4.999"), None);
        assert_eq!(pixel_media_types("1.2.840.10008.1.2.40"), None);
    }

    #[test]
    fn part_content_type_carries_the_transfer_syntax() {
        let n = negotiate_frames(&accept(OHIF), HTJ2K_RPCL, true).unwrap();
        assert_eq!(
            n.part_content_type(),
            "image/jphc; transfer-syntax=1.2.840.10008.1.2.4.202"
        );
        assert!(n.multipart);
    }
}
