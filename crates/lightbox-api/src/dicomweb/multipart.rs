//! multipart/related bodies (RFC 2387, RFC 2046 §5.1): streaming WADO-RS responses out, and
//! reading STOW-RS requests part by part within limits, never holding more than a chunk and a
//! header block.
//!
//! Writing: [`write_multipart`] turns a stream of [`OutPart`]s into a stream of `Bytes` for
//! `axum::body::Body::from_stream`; [`content_type_header`] gives the response's `Content-Type`.
//!
//! Reading: [`MultipartReader::new`] takes the request's `Content-Type` and body stream;
//! [`MultipartReader::next_part`] yields each [`Part`] with its headers, whose
//! [`Part::chunk`] yields the body in pieces, so a caller can stream each part straight to
//! storage. A part left unread is skipped by the next `next_part`. Framing and limit
//! violations end the request with a [`MultipartError`]; a part whose `Content-Type` is wrong is
//! reported by [`Part::check_dicom`] and the following parts stay readable.
//!
//! The delimiter is searched across chunk edges: bytes that could begin a delimiter are held back
//! until the next chunk tells. The first boundary may open the body or follow a preamble; a
//! preamble and epilogue are ignored; transport padding (spaces, tabs) after a boundary is
//! allowed; header lines end with CRLF and may be folded.

use std::error::Error as StdError;
use std::fmt;
use std::pin::Pin;

use bytes::{Buf, Bytes, BytesMut};
use futures::stream::{self, BoxStream, Stream, StreamExt};
use http::{HeaderMap, HeaderName, HeaderValue};
use memchr::memmem;

use super::accept::parse_media_type;

type BoxError = Box<dyn StdError + Send + Sync>;

/// The media type every STOW-RS part must have.
pub const DICOM: &str = "application/dicom";

/// The longest boundary RFC 2046 allows.
const MAX_BOUNDARY: usize = 70;
/// The most transport padding (spaces and tabs) accepted after a boundary.
const MAX_PADDING: usize = 256;

// ---------------------------------------------------------------------------------------------
// Writing

/// A fresh random boundary (`lightbox-` and 32 hex digits): a token, so never quoted.
pub fn new_boundary() -> String {
    format!("lightbox-{}", uuid::Uuid::new_v4().simple())
}

/// The response's `Content-Type`: `multipart/related; type="<related_type>"; boundary=<b>`.
pub fn content_type_header(boundary: &str, related_type: &str) -> String {
    format!(
        "multipart/related; type=\"{related_type}\"; boundary={}",
        quote_if_needed(boundary)
    )
}

fn quote_if_needed(value: &str) -> String {
    let token = !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if token {
        value.to_string()
    } else {
        format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

/// The body of an outgoing part: in memory, or streamed (e.g. from storage).
pub enum PartBody<E> {
    Full(Bytes),
    Stream(BoxStream<'static, Result<Bytes, E>>),
}

impl<E> From<Bytes> for PartBody<E> {
    fn from(b: Bytes) -> Self {
        Self::Full(b)
    }
}

/// One part of a multipart/related response.
pub struct OutPart<E> {
    content_type: HeaderValue,
    content_location: Option<HeaderValue>,
    body: PartBody<E>,
}

impl<E> OutPart<E> {
    /// A part with its `Content-Type` (e.g. `image/jphc; transfer-syntax=…`) and optional
    /// `Content-Location`; fails if either contains characters a header cannot carry.
    pub fn new(
        content_type: &str,
        content_location: Option<&str>,
        body: impl Into<PartBody<E>>,
    ) -> Result<Self, http::header::InvalidHeaderValue> {
        Ok(Self {
            content_type: HeaderValue::from_str(content_type)?,
            content_location: content_location.map(HeaderValue::from_str).transpose()?,
            body: body.into(),
        })
    }
}

/// Writes a multipart/related body: for each part, the delimiter, its headers and its body;
/// then the close delimiter. An error from `parts` or from a part's body is passed on and ends
/// the stream (the response is then cut short, as it must be). With no parts, only the close
/// delimiter is written (RFC 2046 wants at least one part: callers send 404 or 406 instead).
pub fn write_multipart<S, E>(
    boundary: &str,
    parts: S,
) -> impl Stream<Item = Result<Bytes, E>> + Send + 'static
where
    S: Stream<Item = Result<OutPart<E>, E>> + Send + 'static,
    E: Send + 'static,
{
    let writer = Writer {
        parts: Box::pin(parts),
        boundary: boundary.to_string(),
        body: None,
        started: false,
        done: false,
    };
    stream::unfold(writer, |mut w| async move {
        let item = w.next_item().await?;
        Some((item, w))
    })
}

struct Writer<S, E> {
    parts: Pin<Box<S>>,
    boundary: String,
    body: Option<BoxStream<'static, Result<Bytes, E>>>,
    started: bool,
    done: bool,
}

impl<S, E> Writer<S, E>
where
    S: Stream<Item = Result<OutPart<E>, E>> + Send + 'static,
    E: Send + 'static,
{
    async fn next_item(&mut self) -> Option<Result<Bytes, E>> {
        loop {
            if self.done {
                return None;
            }
            if let Some(body) = &mut self.body {
                match body.next().await {
                    Some(Ok(b)) if b.is_empty() => continue,
                    Some(Ok(b)) => return Some(Ok(b)),
                    Some(Err(e)) => {
                        self.done = true;
                        return Some(Err(e));
                    }
                    None => {
                        self.body = None;
                        continue;
                    }
                }
            }
            let item = self.parts.next().await;
            let lead = if self.started { "\r\n" } else { "" };
            match item {
                Some(Ok(part)) => {
                    self.started = true;
                    let mut head = BytesMut::new();
                    head.extend_from_slice(lead.as_bytes());
                    head.extend_from_slice(b"--");
                    head.extend_from_slice(self.boundary.as_bytes());
                    head.extend_from_slice(b"\r\nContent-Type: ");
                    head.extend_from_slice(part.content_type.as_bytes());
                    if let Some(location) = &part.content_location {
                        head.extend_from_slice(b"\r\nContent-Location: ");
                        head.extend_from_slice(location.as_bytes());
                    }
                    head.extend_from_slice(b"\r\n\r\n");
                    self.body = Some(match part.body {
                        PartBody::Full(b) => stream::once(async move { Ok(b) }).boxed(),
                        PartBody::Stream(s) => s,
                    });
                    return Some(Ok(head.freeze()));
                }
                Some(Err(e)) => {
                    self.done = true;
                    return Some(Err(e));
                }
                None => {
                    self.done = true;
                    let close = format!("{lead}--{}--\r\n", self.boundary);
                    return Some(Ok(Bytes::from(close)));
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Reading

/// Bounds on a request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest body of one part, in bytes.
    pub max_part_size: u64,
    /// Largest request, in bytes, up to the close delimiter (an epilogue is not read).
    pub max_total_size: u64,
    /// Most parts in one request.
    pub max_parts: usize,
    /// Largest header block of one part, in bytes, including its closing empty line.
    pub max_header_size: usize,
}

impl Default for Limits {
    /// HealthImaging's 1 GB per STOW-RS request (notes §12); 10,000 parts; 16 KiB of headers.
    fn default() -> Self {
        Self {
            max_part_size: 1 << 30,
            max_total_size: 1 << 30,
            max_parts: 10_000,
            max_header_size: 16 * 1024,
        }
    }
}

/// Why a multipart/related request cannot be read (all but `Body` are the client's fault).
#[derive(Debug)]
pub enum MultipartError {
    /// The `Content-Type` header does not parse (the reason).
    InvalidContentType(String),
    /// The `Content-Type` is not `multipart/related` (the media type found).
    NotMultipartRelated(String),
    /// The `Content-Type` has no `boundary` parameter.
    MissingBoundary,
    /// The boundary is empty, longer than 70 characters or has characters RFC 2046 forbids.
    InvalidBoundary(String),
    /// The body holds no boundary delimiter at all.
    MissingFirstBoundary,
    /// A boundary is followed by something other than a line end or `--`.
    MalformedDelimiter,
    /// A part's header line is not `Name: value` (part index, 0-based; the reason).
    MalformedHeader { part: usize, reason: String },
    /// The body ends before the close delimiter `--boundary--`.
    MissingFinalBoundary,
    /// A part's body exceeds [`Limits::max_part_size`].
    PartTooLarge { part: usize, limit: u64 },
    /// The request exceeds [`Limits::max_total_size`].
    BodyTooLarge { limit: u64 },
    /// The request has more than [`Limits::max_parts`] parts.
    TooManyParts { limit: usize },
    /// A part's header block exceeds [`Limits::max_header_size`].
    HeadersTooLarge { part: usize, limit: usize },
    /// Reading the request body failed (a transport error, not the client's framing).
    Body(BoxError),
    /// The reader already failed; nothing more can be read.
    Aborted,
}

impl fmt::Display for MultipartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidContentType(r) => write!(f, "invalid Content-Type: {r}"),
            Self::NotMultipartRelated(t) => {
                write!(f, "Content-Type is {t}, not multipart/related")
            }
            Self::MissingBoundary => write!(f, "Content-Type has no boundary parameter"),
            Self::InvalidBoundary(b) => write!(f, "invalid multipart boundary {b:?}"),
            Self::MissingFirstBoundary => write!(f, "multipart body contains no boundary"),
            Self::MalformedDelimiter => {
                write!(f, "multipart boundary not followed by a line end or \"--\"")
            }
            Self::MalformedHeader { part, reason } => {
                write!(f, "malformed header in part {}: {reason}", part + 1)
            }
            Self::MissingFinalBoundary => {
                write!(f, "multipart body ends without its final boundary")
            }
            Self::PartTooLarge { part, limit } => {
                write!(f, "part {} is larger than {limit} bytes", part + 1)
            }
            Self::BodyTooLarge { limit } => write!(f, "request body is larger than {limit} bytes"),
            Self::TooManyParts { limit } => write!(f, "request has more than {limit} parts"),
            Self::HeadersTooLarge { part, limit } => {
                write!(
                    f,
                    "headers of part {} are larger than {limit} bytes",
                    part + 1
                )
            }
            Self::Body(e) => write!(f, "reading the request body failed: {e}"),
            Self::Aborted => write!(f, "the multipart body was already rejected"),
        }
    }
}

impl StdError for MultipartError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self {
            Self::Body(e) => Some(e.as_ref()),
            _ => None,
        }
    }
}

/// Why one part is not a DICOM instance (reported per part; the request goes on).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartProblem {
    MissingContentType,
    /// The header does not parse (its text).
    InvalidContentType(String),
    /// Another media type (the one found, lowercased).
    UnexpectedContentType(String),
}

impl fmt::Display for PartProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingContentType => write!(f, "part has no Content-Type"),
            Self::InvalidContentType(t) => write!(f, "part has an invalid Content-Type {t:?}"),
            Self::UnexpectedContentType(t) => write!(f, "part has Content-Type {t}"),
        }
    }
}

/// What a request's `Content-Type` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelatedContentType {
    pub boundary: String,
    /// The `type` parameter, lowercased (RFC 2387 makes it required; DICOMweb clients may omit it).
    pub related_type: Option<String>,
    /// The `start` parameter (the root part's Content-ID), if any.
    pub start: Option<String>,
}

/// Parses a `multipart/related` `Content-Type` and validates its boundary.
pub fn parse_related_content_type(header: &str) -> Result<RelatedContentType, MultipartError> {
    let media =
        parse_media_type(header).map_err(|e| MultipartError::InvalidContentType(e.to_string()))?;
    if media.essence != "multipart/related" {
        return Err(MultipartError::NotMultipartRelated(media.essence));
    }
    let boundary = media
        .param("boundary")
        .ok_or(MultipartError::MissingBoundary)?;
    validate_boundary(boundary)?;
    Ok(RelatedContentType {
        boundary: boundary.to_string(),
        related_type: media.param("type").map(str::to_ascii_lowercase),
        start: media.param("start").map(str::to_string),
    })
}

/// RFC 2046 `boundary`: 1–70 `bchars`, not ending in a space.
fn validate_boundary(boundary: &str) -> Result<(), MultipartError> {
    let bchar = |b: u8| b.is_ascii_alphanumeric() || b"'()+_,-./:=? ".contains(&b);
    let ok = !boundary.is_empty()
        && boundary.len() <= MAX_BOUNDARY
        && boundary.bytes().all(bchar)
        && !boundary.ends_with(' ');
    if ok {
        Ok(())
    } else {
        Err(MultipartError::InvalidBoundary(boundary.to_string()))
    }
}

/// Reads a multipart/related request body part by part.
pub struct MultipartReader<S> {
    body: S,
    parser: Parser,
    related_type: Option<String>,
    /// Bytes taken from `body` (at most `max_total_size`).
    received: u64,
    /// No more input: the body ended, or the total limit was reached.
    input_done: bool,
    /// The body had more than `max_total_size` bytes.
    truncated: bool,
}

impl<S, E> MultipartReader<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: Into<BoxError>,
{
    /// A reader for a request with this `Content-Type` (must be `multipart/related` with a
    /// boundary; `type` optional) and body (e.g. `Body::into_data_stream()`; `Box::pin` a
    /// stream that is not `Unpin`).
    pub fn new(content_type: &str, body: S, limits: Limits) -> Result<Self, MultipartError> {
        let ct = parse_related_content_type(content_type)?;
        let mut reader = Self::with_boundary(&ct.boundary, body, limits)?;
        reader.related_type = ct.related_type;
        Ok(reader)
    }

    /// A reader for a body with this boundary.
    pub fn with_boundary(boundary: &str, body: S, limits: Limits) -> Result<Self, MultipartError> {
        validate_boundary(boundary)?;
        Ok(Self {
            body,
            parser: Parser::new(boundary, limits),
            related_type: None,
            received: 0,
            input_done: false,
            truncated: false,
        })
    }

    /// The request's `type` parameter, lowercased.
    pub fn related_type(&self) -> Option<&str> {
        self.related_type.as_deref()
    }

    /// Bytes read from the body so far.
    pub fn bytes_read(&self) -> u64 {
        self.received
    }

    /// The next part, after skipping what is left of the current one; `None` after the close
    /// delimiter. Errors end the request: later calls return [`MultipartError::Aborted`].
    pub async fn next_part(&mut self) -> Result<Option<Part<'_, S>>, MultipartError> {
        loop {
            match self.event().await? {
                Event::Part(headers) => {
                    let index = self.parser.parts - 1;
                    return Ok(Some(Part {
                        headers,
                        index,
                        reader: self,
                    }));
                }
                Event::End => return Ok(None),
                Event::Data(_) | Event::PartEnd => {}
            }
        }
    }

    async fn event(&mut self) -> Result<Event, MultipartError> {
        let result = self.pull_event().await;
        if result.is_err() {
            self.parser.state = State::Failed;
        }
        result
    }

    async fn pull_event(&mut self) -> Result<Event, MultipartError> {
        loop {
            if let Some(event) = self.parser.step()? {
                return Ok(event);
            }
            if self.input_done {
                return Err(if self.truncated {
                    MultipartError::BodyTooLarge {
                        limit: self.parser.limits.max_total_size,
                    }
                } else {
                    self.parser.eof_error()
                });
            }
            match self.body.next().await {
                None => self.input_done = true,
                Some(Err(e)) => return Err(MultipartError::Body(e.into())),
                Some(Ok(chunk)) => {
                    let room = self.parser.limits.max_total_size - self.received;
                    let take = if chunk.len() as u64 > room {
                        self.truncated = true;
                        self.input_done = true;
                        room as usize
                    } else {
                        chunk.len()
                    };
                    self.received += take as u64;
                    self.parser.buf.extend_from_slice(&chunk[..take]);
                }
            }
        }
    }
}

/// One part of a request: its headers, and its body read with [`Part::chunk`].
pub struct Part<'a, S> {
    pub headers: HeaderMap,
    index: usize,
    reader: &'a mut MultipartReader<S>,
}

impl<S, E> Part<'_, S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: Into<BoxError>,
{
    /// The part's position in the request, from 0.
    pub fn index(&self) -> usize {
        self.index
    }

    pub fn content_type(&self) -> Option<&str> {
        self.header_str(http::header::CONTENT_TYPE)
    }

    pub fn content_location(&self) -> Option<&str> {
        self.header_str(http::header::CONTENT_LOCATION)
    }

    fn header_str(&self, name: HeaderName) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Whether the part's media type is `expected` (parameters such as `transfer-syntax` are
    /// allowed).
    pub fn expect_content_type(&self, expected: &str) -> Result<(), PartProblem> {
        let Some(value) = self.headers.get(http::header::CONTENT_TYPE) else {
            return Err(PartProblem::MissingContentType);
        };
        let text = String::from_utf8_lossy(value.as_bytes());
        let media = parse_media_type(&text)
            .map_err(|_| PartProblem::InvalidContentType(text.to_string()))?;
        if media.essence.eq_ignore_ascii_case(expected) {
            Ok(())
        } else {
            Err(PartProblem::UnexpectedContentType(media.essence))
        }
    }

    /// Whether the part is `application/dicom`, as every STOW-RS part must be.
    pub fn check_dicom(&self) -> Result<(), PartProblem> {
        self.expect_content_type(DICOM)
    }

    /// The next piece of the body; `None` at its end.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, MultipartError> {
        match self.reader.parser.state {
            State::Body => {}
            State::Failed => return Err(MultipartError::Aborted),
            _ => return Ok(None),
        }
        match self.reader.event().await? {
            Event::Data(b) => Ok(Some(b)),
            // In the body state the parser yields only data or the part's end.
            Event::PartEnd | Event::Part(_) | Event::End => Ok(None),
        }
    }

    /// The body as a stream (e.g. for a storage upload); it ends after the first error.
    pub fn into_stream(self) -> impl Stream<Item = Result<Bytes, MultipartError>> {
        stream::unfold(Some(self), |part| async move {
            let mut part = part?;
            match part.chunk().await {
                Ok(Some(b)) => Some((Ok(b), Some(part))),
                Ok(None) => None,
                Err(e) => Some((Err(e), None)),
            }
        })
    }

    /// The whole body in memory (at most [`Limits::max_part_size`]): for small parts and tests.
    pub async fn bytes(mut self) -> Result<Bytes, MultipartError> {
        let mut out = BytesMut::new();
        while let Some(b) = self.chunk().await? {
            out.extend_from_slice(&b);
        }
        Ok(out.freeze())
    }
}

enum Event {
    Part(HeaderMap),
    Data(Bytes),
    PartEnd,
    End,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before the first delimiter.
    Preamble,
    /// Just after a delimiter: `--` (close), or padding and CRLF (a part follows).
    Delimiter,
    Headers,
    Body,
    Done,
    Failed,
}

/// The synchronous core: consumes `buf`, yields events; `None` means "needs more input".
struct Parser {
    /// CRLF `--` boundary.
    delimiter: Vec<u8>,
    finder: memmem::Finder<'static>,
    buf: BytesMut,
    state: State,
    limits: Limits,
    /// Parts begun so far.
    parts: usize,
    /// Body bytes of the current part so far.
    part_bytes: u64,
    /// How far the current header block has been searched for its end.
    header_scanned: usize,
}

impl Parser {
    fn new(boundary: &str, limits: Limits) -> Self {
        let delimiter = [b"\r\n--", boundary.as_bytes()].concat();
        let finder = memmem::Finder::new(&delimiter).into_owned();
        let mut buf = BytesMut::with_capacity(8 * 1024);
        // A body may open with the boundary itself: the CRLF before it is implied.
        buf.extend_from_slice(b"\r\n");
        Self {
            delimiter,
            finder,
            buf,
            state: State::Preamble,
            limits,
            parts: 0,
            part_bytes: 0,
            header_scanned: 0,
        }
    }

    fn eof_error(&self) -> MultipartError {
        match self.state {
            State::Preamble => MultipartError::MissingFirstBoundary,
            _ => MultipartError::MissingFinalBoundary,
        }
    }

    fn step(&mut self) -> Result<Option<Event>, MultipartError> {
        match self.state {
            State::Preamble => {
                if let Some(i) = self.finder.find(&self.buf) {
                    self.buf.advance(i + self.delimiter.len());
                    self.state = State::Delimiter;
                    return self.step();
                }
                let keep = self.delimiter.len() - 1;
                if self.buf.len() > keep {
                    let drop = self.buf.len() - keep;
                    self.buf.advance(drop);
                }
                Ok(None)
            }
            State::Delimiter => self.delimiter_line(),
            State::Headers => self.headers(),
            State::Body => self.body(),
            State::Done => Ok(Some(Event::End)),
            State::Failed => Err(MultipartError::Aborted),
        }
    }

    fn delimiter_line(&mut self) -> Result<Option<Event>, MultipartError> {
        let at = |i: usize| self.buf.get(i).copied();
        if at(0) == Some(b'-') {
            return match at(1) {
                None => Ok(None),
                Some(b'-') => {
                    // The close delimiter; whatever follows is the epilogue.
                    self.buf.clear();
                    self.state = State::Done;
                    Ok(Some(Event::End))
                }
                Some(_) => Err(MultipartError::MalformedDelimiter),
            };
        }
        let pad = self
            .buf
            .iter()
            .take_while(|&&b| b == b' ' || b == b'\t')
            .count();
        if pad > MAX_PADDING {
            return Err(MultipartError::MalformedDelimiter);
        }
        match (at(pad), at(pad + 1)) {
            (None, _) | (Some(b'\r'), None) => Ok(None),
            (Some(b'\r'), Some(b'\n')) => {
                self.buf.advance(pad + 2);
                self.parts += 1;
                if self.parts > self.limits.max_parts {
                    return Err(MultipartError::TooManyParts {
                        limit: self.limits.max_parts,
                    });
                }
                self.state = State::Headers;
                self.header_scanned = 0;
                self.headers()
            }
            _ => Err(MultipartError::MalformedDelimiter),
        }
    }

    fn headers(&mut self) -> Result<Option<Event>, MultipartError> {
        let part = self.parts - 1;
        let limit = self.limits.max_header_size;
        let too_large = MultipartError::HeadersTooLarge { part, limit };
        // The block ends with an empty line: at once (no headers), or after the last header.
        let end = if self.buf.starts_with(b"\r\n") {
            Some(0)
        } else {
            let from = self.header_scanned.saturating_sub(3);
            memmem::find(&self.buf[from..], b"\r\n\r\n").map(|i| from + i + 2)
        };
        let Some(end) = end else {
            if self.buf.len() >= limit {
                return Err(too_large);
            }
            self.header_scanned = self.buf.len();
            return Ok(None);
        };
        // `end` is where the closing empty line starts.
        if end + 2 > limit {
            return Err(too_large);
        }
        let block = self.buf.split_to(end + 2);
        let headers = parse_header_block(&block[..end], part)?;
        if let Some(length) = headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            && length > self.limits.max_part_size
        {
            return Err(MultipartError::PartTooLarge {
                part,
                limit: self.limits.max_part_size,
            });
        }
        self.state = State::Body;
        self.part_bytes = 0;
        Ok(Some(Event::Part(headers)))
    }

    fn body(&mut self) -> Result<Option<Event>, MultipartError> {
        let n = match self.finder.find(&self.buf) {
            Some(0) => {
                self.buf.advance(self.delimiter.len());
                self.state = State::Delimiter;
                return Ok(Some(Event::PartEnd));
            }
            Some(i) => i,
            None => self.safe_len(),
        };
        if n == 0 {
            return Ok(None);
        }
        self.part_bytes += n as u64;
        if self.part_bytes > self.limits.max_part_size {
            return Err(MultipartError::PartTooLarge {
                part: self.parts - 1,
                limit: self.limits.max_part_size,
            });
        }
        Ok(Some(Event::Data(self.buf.split_to(n).freeze())))
    }

    /// How much of `buf` surely precedes any delimiter: all but a tail that is a prefix of it.
    fn safe_len(&self) -> usize {
        let len = self.buf.len();
        let start = len.saturating_sub(self.delimiter.len() - 1);
        (start..len)
            .find(|&j| self.buf[j] == b'\r' && self.delimiter.starts_with(&self.buf[j..]))
            .unwrap_or(len)
    }
}

/// Header lines (`Name: value`, each ended by CRLF, continuation lines folded in).
fn parse_header_block(block: &[u8], part: usize) -> Result<HeaderMap, MultipartError> {
    let malformed = |reason: String| MultipartError::MalformedHeader { part, reason };
    let mut lines: Vec<(&[u8], Vec<u8>)> = Vec::new();
    for line in block.split_inclusive(|&b| b == b'\n') {
        let line = line
            .strip_suffix(b"\r\n")
            .ok_or_else(|| malformed("line not ended by CRLF".into()))?;
        if line.first().is_some_and(|&b| b == b' ' || b == b'\t') {
            let (_, value) = lines
                .last_mut()
                .ok_or_else(|| malformed("continuation line before any header".into()))?;
            value.push(b' ');
            value.extend_from_slice(line.trim_ascii());
            continue;
        }
        let colon = line
            .iter()
            .position(|&b| b == b':')
            .ok_or_else(|| malformed(format!("no colon in {:?}", snippet(line))))?;
        lines.push((&line[..colon], line[colon + 1..].trim_ascii().to_vec()));
    }
    let mut headers = HeaderMap::new();
    for (name, value) in lines {
        let name = HeaderName::from_bytes(name)
            .map_err(|_| malformed(format!("invalid header name {:?}", snippet(name))))?;
        let value = HeaderValue::from_bytes(&value)
            .map_err(|_| malformed(format!("invalid value for {name}")))?;
        headers
            .try_append(name, value)
            .map_err(|_| malformed("too many headers".into()))?;
    }
    Ok(headers)
}

fn snippet(bytes: &[u8]) -> String {
    String::from_utf8_lossy(&bytes[..bytes.len().min(64)]).into_owned()
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use proptest::prelude::*;

    use super::*;

    const B: &str = "XbOuNdArY";
    const CT: &str = "multipart/related; type=\"application/dicom\"; boundary=XbOuNdArY";

    type Chunks = stream::Iter<std::vec::IntoIter<Result<Bytes, Infallible>>>;

    fn chunks(body: &[u8], sizes: &[usize]) -> Chunks {
        let mut out = Vec::new();
        let mut rest = body;
        let mut i = 0;
        while !rest.is_empty() {
            let n = sizes
                .get(i)
                .copied()
                .unwrap_or(rest.len())
                .clamp(1, rest.len());
            out.push(Ok(Bytes::copy_from_slice(&rest[..n])));
            rest = &rest[n..];
            i = (i + 1) % sizes.len().max(1);
        }
        stream::iter(out)
    }

    fn run<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    /// Each part's Content-Type (or "-") and body; or the error's name.
    type Parsed = Result<Vec<(String, Vec<u8>)>, String>;

    fn parse_with(content_type: &str, body: &[u8], sizes: &[usize], limits: Limits) -> Parsed {
        run(async {
            let mut reader = MultipartReader::new(content_type, chunks(body, sizes), limits)
                .map_err(|e| name(&e))?;
            let mut parts = Vec::new();
            while let Some(mut part) = reader.next_part().await.map_err(|e| name(&e))? {
                let ct = part.content_type().unwrap_or("-").to_string();
                let mut data = Vec::new();
                while let Some(chunk) = part.chunk().await.map_err(|e| name(&e))? {
                    assert!(!chunk.is_empty());
                    data.extend_from_slice(&chunk);
                }
                parts.push((ct, data));
            }
            // Idempotent at the end.
            assert!(reader.next_part().await.map_err(|e| name(&e))?.is_none());
            Ok(parts)
        })
    }

    fn parse(body: &[u8], sizes: &[usize]) -> Parsed {
        parse_with(CT, body, sizes, Limits::default())
    }

    fn name(e: &MultipartError) -> String {
        let s = format!("{e:?}");
        s.split([' ', '(', '{']).next().unwrap().to_string()
    }

    fn dicom(parts: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for p in parts {
            out.extend_from_slice(
                format!("--{B}\r\nContent-Type: application/dicom\r\n\r\n").as_bytes(),
            );
            out.extend_from_slice(p);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(format!("--{B}--\r\n").as_bytes());
        out
    }

    fn ok(parts: &[&[u8]]) -> Parsed {
        Ok(parts
            .iter()
            .map(|p| ("application/dicom".to_string(), p.to_vec()))
            .collect())
    }

    #[test]
    fn reads_parts_in_any_chunking() {
        let parts: [&[u8]; 3] = [b"DICM first\r\n--XbOuNd\r\n", b"", b"\r\n-\r\n--XbOuNdAr--"];
        let body = dicom(&parts);
        assert_eq!(parse(&body, &[]), ok(&parts));
        assert_eq!(parse(&body, &[1]), ok(&parts));
        assert_eq!(parse(&body, &[2, 3, 5, 7]), ok(&parts[..]));
        for split in 0..body.len() {
            assert_eq!(
                parse(&body, &[split.max(1), body.len()]),
                ok(&parts),
                "{split}"
            );
        }
    }

    #[test]
    fn ignores_preamble_epilogue_and_padding() {
        let body = format!(
            "preamble\r\n--{B} \t\r\nContent-Type: application/dicom\r\n\r\nA\r\n--{B}\r\ncontent-type:application/dicom\r\n\r\nB\r\n--{B}--epilogue\r\n--{B}\r\n"
        );
        assert_eq!(parse(body.as_bytes(), &[1]), ok(&[b"A", b"B"]));
        // No CRLF after the close delimiter; a body opening with CRLF before the boundary.
        let body = format!("\r\n--{B}\r\nContent-Type: application/dicom\r\n\r\nA\r\n--{B}--");
        assert_eq!(parse(body.as_bytes(), &[3]), ok(&[b"A"]));
        // No parts at all is the caller's to judge.
        assert_eq!(parse(format!("--{B}--").as_bytes(), &[]), Ok(vec![]));
    }

    #[test]
    fn parses_headers() {
        let body = format!(
            "--{B}\r\nContent-Type: application/dicom;\r\n transfer-syntax=1.2.840.10008.1.2.1\r\nContent-Location: /a/b\r\nX-Empty:\r\n\r\nA\r\n--{B}\r\n\r\nno headers\r\n--{B}--"
        );
        run(async {
            let mut reader =
                MultipartReader::new(CT, chunks(body.as_bytes(), &[4]), Limits::default()).unwrap();
            assert_eq!(reader.related_type(), Some("application/dicom"));
            let part = reader.next_part().await.unwrap().unwrap();
            assert_eq!(part.index(), 0);
            assert_eq!(
                part.content_type(),
                Some("application/dicom; transfer-syntax=1.2.840.10008.1.2.1")
            );
            assert_eq!(part.content_location(), Some("/a/b"));
            assert_eq!(part.headers.get("x-empty").unwrap(), "");
            assert_eq!(part.check_dicom(), Ok(()));
            drop(part); // unread: skipped
            let part = reader.next_part().await.unwrap().unwrap();
            assert_eq!(part.index(), 1);
            assert!(part.headers.is_empty());
            assert_eq!(part.check_dicom(), Err(PartProblem::MissingContentType));
            assert_eq!(&part.bytes().await.unwrap()[..], b"no headers");
            assert!(reader.next_part().await.unwrap().is_none());
            assert_eq!(reader.bytes_read(), body.len() as u64);
        });
    }

    #[test]
    fn reports_non_dicom_parts_without_aborting() {
        let body = format!(
            "--{B}\r\nContent-Type: application/json\r\n\r\n{{}}\r\n--{B}\r\nContent-Type: ???\r\n\r\nx\r\n--{B}\r\nContent-Type: Application/DICOM\r\n\r\nD\r\n--{B}--"
        );
        run(async {
            let mut reader =
                MultipartReader::new(CT, chunks(body.as_bytes(), &[1]), Limits::default()).unwrap();
            let mut problems = Vec::new();
            while let Some(part) = reader.next_part().await.unwrap() {
                problems.push(part.check_dicom());
            }
            assert_eq!(
                problems,
                vec![
                    Err(PartProblem::UnexpectedContentType(
                        "application/json".into()
                    )),
                    Err(PartProblem::InvalidContentType("???".into())),
                    Ok(()),
                ]
            );
        });
    }

    #[test]
    fn rejects_bad_content_types() {
        let err = |ct: &str| name(&parse_related_content_type(ct).unwrap_err());
        assert_eq!(
            err("multipart/form-data; boundary=a"),
            "NotMultipartRelated"
        );
        assert_eq!(err("application/dicom"), "NotMultipartRelated");
        assert_eq!(
            err("multipart/related; type=\"application/dicom\""),
            "MissingBoundary"
        );
        assert_eq!(
            err("multipart/related; boundary=\"\""),
            "InvalidContentType"
        );
        assert_eq!(err("multipart/related; boundary=\"a \""), "InvalidBoundary");
        assert_eq!(err("multipart/related; boundary=a<b"), "InvalidBoundary");
        assert_eq!(
            err(&format!("multipart/related; boundary={}", "a".repeat(71))),
            "InvalidBoundary"
        );
        assert_eq!(err("multipart/related; boundary"), "InvalidContentType");
        let ct = parse_related_content_type(
            "Multipart/Related; boundary=\"a b'()+_,-./:=?\"; start=\"<root>\"",
        )
        .unwrap();
        assert_eq!(ct.boundary, "a b'()+_,-./:=?");
        assert_eq!(ct.related_type, None);
        assert_eq!(ct.start.as_deref(), Some("<root>"));
        // Quoted boundary with spaces and punctuation works end to end.
        let body =
            b"--a b'()+_,-./:=?\r\nContent-Type: application/dicom\r\n\r\nX\r\n--a b'()+_,-./:=?--";
        assert_eq!(
            parse_with(
                "multipart/related; boundary=\"a b'()+_,-./:=?\"",
                body,
                &[1],
                Limits::default()
            ),
            ok(&[b"X"])
        );
    }

    #[test]
    fn rejects_malformed_framing() {
        let e = |body: &str| parse(body.as_bytes(), &[1]).unwrap_err();
        assert_eq!(e(""), "MissingFirstBoundary");
        assert_eq!(e("no boundary here at all"), "MissingFirstBoundary");
        // Wrong boundary.
        assert_eq!(e("--other\r\n\r\nA\r\n--other--"), "MissingFirstBoundary");
        assert_eq!(
            e(&format!("--{B}X\r\n\r\nA\r\n--{B}--")),
            "MalformedDelimiter"
        );
        assert_eq!(e(&format!("--{B}-x")), "MalformedDelimiter");
        assert_eq!(
            e(&format!("--{B}{}\r\n", " ".repeat(300))),
            "MalformedDelimiter"
        );
        // Missing final boundary: in a body, in headers, after a delimiter.
        assert_eq!(e(&format!("--{B}\r\n\r\nA")), "MissingFinalBoundary");
        assert_eq!(
            e(&format!("--{B}\r\n\r\nA\r\n--{B}")),
            "MissingFinalBoundary"
        );
        assert_eq!(
            e(&format!("--{B}\r\n\r\nA\r\n--{B}\r\n")),
            "MissingFinalBoundary"
        );
        assert_eq!(
            e(&format!("--{B}\r\nContent-Type: a/b\r\n")),
            "MissingFinalBoundary"
        );
        assert_eq!(
            e(&format!("--{B}\r\n\r\nA\r\n--{B}-")),
            "MissingFinalBoundary"
        );
        // Bare LF line ends.
        assert_eq!(
            e(&format!("--{B}\nContent-Type: a/b\n\nA\n--{B}--")),
            "MalformedDelimiter"
        );
        assert_eq!(
            e(&format!(
                "--{B}\r\nContent-Type: a/b\nX: y\r\n\r\nA\r\n--{B}--"
            )),
            "MalformedHeader"
        );
        assert_eq!(
            e(&format!("--{B}\r\nno colon\r\n\r\nA\r\n--{B}--")),
            "MalformedHeader"
        );
        assert_eq!(
            e(&format!("--{B}\r\nBad Name: v\r\n\r\nA\r\n--{B}--")),
            "MalformedHeader"
        );
        assert_eq!(
            e(&format!("--{B}\r\n folded\r\n\r\nA\r\n--{B}--")),
            "MalformedHeader"
        );
    }

    #[test]
    fn enforces_each_limit_with_its_own_error() {
        let body = dicom(&[b"0123456789", b"abc"]);
        let limits = Limits::default();
        let with = |limits: Limits| parse_with(CT, &body, &[1], limits);
        // Exactly at each limit: fine.
        let header_block = "Content-Type: application/dicom\r\n\r\n".len();
        let exact = Limits {
            max_part_size: 10,
            max_total_size: body.len() as u64,
            max_parts: 2,
            max_header_size: header_block,
        };
        assert_eq!(with(exact), ok(&[b"0123456789", b"abc"]));
        let cases = [
            (
                Limits {
                    max_part_size: 9,
                    ..limits
                },
                "PartTooLarge",
            ),
            (
                Limits {
                    max_total_size: body.len() as u64 - 3,
                    ..limits
                },
                "BodyTooLarge",
            ),
            (
                Limits {
                    max_parts: 1,
                    ..limits
                },
                "TooManyParts",
            ),
            (
                Limits {
                    max_header_size: header_block - 1,
                    ..limits
                },
                "HeadersTooLarge",
            ),
        ];
        for (limits, expected) in cases {
            for sizes in [&[1][..], &[3, 5], &[]] {
                let got = parse_with(CT, &body, sizes, limits);
                assert_eq!(got.unwrap_err(), expected, "{limits:?} {sizes:?}");
            }
        }
        // An epilogue beyond the total limit is never read.
        let mut long = body.clone();
        long.extend_from_slice(&[b'e'; 100]);
        let limits = Limits {
            max_total_size: body.len() as u64,
            ..limits
        };
        assert!(parse_with(CT, &long, &[], limits).is_ok());
        // A declared Content-Length over the limit fails before any body byte.
        let declared = format!("--{B}\r\nContent-Length: 11\r\n\r\n0\r\n--{B}--");
        let limits = Limits {
            max_part_size: 10,
            ..Limits::default()
        };
        assert_eq!(
            parse_with(CT, declared.as_bytes(), &[], limits).unwrap_err(),
            "PartTooLarge"
        );
        // Headers without their end grow no further than the limit.
        let endless = format!("--{B}\r\nX: {}", "y".repeat(100_000));
        assert_eq!(
            parse(endless.as_bytes(), &[7]).unwrap_err(),
            "HeadersTooLarge"
        );
    }

    #[test]
    fn errors_abort_the_reader_and_transport_errors_pass_through() {
        run(async {
            let body: Vec<Result<Bytes, std::io::Error>> = vec![
                Ok(Bytes::from(format!("--{B}\r\n\r\nAB"))),
                Err(std::io::Error::other("connection reset")),
            ];
            let mut reader =
                MultipartReader::new(CT, stream::iter(body), Limits::default()).unwrap();
            let mut part = reader.next_part().await.unwrap().unwrap();
            let mut got = Vec::new();
            let err = loop {
                match part.chunk().await {
                    Ok(Some(b)) => got.extend_from_slice(&b),
                    Ok(None) => panic!("unexpected end"),
                    Err(e) => break e,
                }
            };
            assert!(matches!(err, MultipartError::Body(_)));
            assert!(err.to_string().contains("connection reset"));
            assert!(err.source().is_some());
            assert_eq!(got, b"AB");
            assert!(matches!(
                reader.next_part().await,
                Err(MultipartError::Aborted)
            ));
        });
    }

    #[test]
    fn streams_parts_without_buffering_them() {
        let big: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
        let body = dicom(&[&big, b"tail"]);
        run(async {
            let mut reader =
                MultipartReader::new(CT, chunks(&body, &[8192]), Limits::default()).unwrap();
            let mut part = reader.next_part().await.unwrap().unwrap();
            // The first piece comes before the part's end has been read.
            let first = part.chunk().await.unwrap().unwrap();
            assert!(first.len() <= 8192);
            let mut got = first.to_vec();
            let mut largest = 0;
            while let Some(b) = part.chunk().await.unwrap() {
                largest = largest.max(b.len());
                got.extend_from_slice(&b);
            }
            assert!(largest <= 8192 + B.len() + 4, "{largest}");
            assert_eq!(got, big);
            let part = reader.next_part().await.unwrap().unwrap();
            let streamed: Vec<Result<Bytes, MultipartError>> = part.into_stream().collect().await;
            assert_eq!(streamed.len(), 1);
            assert_eq!(&streamed[0].as_ref().unwrap()[..], b"tail");
            assert!(reader.next_part().await.unwrap().is_none());
        });
    }

    #[test]
    fn part_stream_ends_after_an_error() {
        let body = format!("--{B}\r\n\r\n0123456789\r\n--{B}--");
        let limits = Limits {
            max_part_size: 4,
            ..Limits::default()
        };
        run(async {
            let mut reader =
                MultipartReader::new(CT, chunks(body.as_bytes(), &[2]), limits).unwrap();
            let part = reader.next_part().await.unwrap().unwrap();
            let items: Vec<Result<Bytes, MultipartError>> = part.into_stream().collect().await;
            let errors: Vec<String> = items
                .iter()
                .filter_map(|r| r.as_ref().err())
                .map(name)
                .collect();
            assert_eq!(errors, vec!["PartTooLarge".to_string()]);
            assert!(matches!(items.last(), Some(Err(_))));
            assert!(matches!(
                reader.next_part().await,
                Err(MultipartError::Aborted)
            ));
        });
    }

    #[test]
    fn error_messages_name_the_problem() {
        let e = MultipartError::PartTooLarge { part: 2, limit: 5 };
        assert_eq!(e.to_string(), "part 3 is larger than 5 bytes");
        let e = MultipartError::HeadersTooLarge { part: 0, limit: 9 };
        assert_eq!(e.to_string(), "headers of part 1 are larger than 9 bytes");
        assert!(
            MultipartError::MissingFinalBoundary
                .to_string()
                .contains("final boundary")
        );
        assert!(
            PartProblem::UnexpectedContentType("a/b".into())
                .to_string()
                .contains("a/b")
        );
    }

    fn collect(
        s: impl Stream<Item = Result<Bytes, String>> + Send + 'static,
    ) -> Result<Vec<u8>, String> {
        run(async {
            let mut s = std::pin::pin!(s);
            let mut out = Vec::new();
            while let Some(b) = s.next().await {
                out.extend_from_slice(&b?);
            }
            Ok(out)
        })
    }

    #[test]
    fn writes_multipart_related() {
        let streamed: BoxStream<'static, Result<Bytes, String>> = stream::iter([
            Ok(Bytes::from_static(b"ST")),
            Ok(Bytes::new()),
            Ok(Bytes::from_static(b"R")),
        ])
        .boxed();
        let parts = vec![
            OutPart::new(
                "image/jphc; transfer-syntax=1.2.840.10008.1.2.4.202",
                Some("/f/1"),
                Bytes::from_static(b"ONE"),
            ),
            OutPart::new("application/octet-stream", None, PartBody::Stream(streamed)),
        ];
        let parts = stream::iter(parts.into_iter().map(|p| Ok(p.unwrap())));
        let out = collect(write_multipart("bnd", parts)).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "--bnd\r\nContent-Type: image/jphc; transfer-syntax=1.2.840.10008.1.2.4.202\r\nContent-Location: /f/1\r\n\r\nONE\r\n--bnd\r\nContent-Type: application/octet-stream\r\n\r\nSTR\r\n--bnd--\r\n"
        );
        let none = stream::iter(Vec::<Result<OutPart<String>, String>>::new());
        assert_eq!(
            collect(write_multipart("bnd", none)).unwrap(),
            b"--bnd--\r\n"
        );
        assert!(OutPart::<String>::new("a/b\r\nX: y", None, Bytes::new()).is_err());
        assert!(OutPart::<String>::new("a/b", Some("x\ny"), Bytes::new()).is_err());
    }

    #[test]
    fn writer_stops_at_the_first_error() {
        let failing: BoxStream<'static, Result<Bytes, String>> =
            stream::iter([Ok(Bytes::from_static(b"A")), Err("disk".to_string())]).boxed();
        let parts = stream::iter([
            Ok(OutPart::new("a/b", None, PartBody::Stream(failing)).unwrap()),
            Ok(OutPart::new("a/b", None, Bytes::from_static(b"never")).unwrap()),
        ]);
        assert_eq!(
            collect(write_multipart("b", parts)),
            Err("disk".to_string())
        );
        let parts = stream::iter([Err::<OutPart<String>, _>("lookup".to_string())]);
        assert_eq!(
            collect(write_multipart("b", parts)),
            Err("lookup".to_string())
        );
    }

    #[test]
    fn content_type_header_quotes_when_needed() {
        let b = new_boundary();
        assert!(validate_boundary(&b).is_ok());
        assert_ne!(b, new_boundary());
        assert_eq!(
            content_type_header(&b, "application/dicom"),
            format!("multipart/related; type=\"application/dicom\"; boundary={b}")
        );
        assert_eq!(
            content_type_header("a b", "image/jphc"),
            "multipart/related; type=\"image/jphc\"; boundary=\"a b\""
        );
        let ct =
            parse_related_content_type(&content_type_header("a:b", "application/dicom")).unwrap();
        assert_eq!(ct.boundary, "a:b");
        assert_eq!(ct.related_type.as_deref(), Some("application/dicom"));
    }

    /// Bodies made of pieces that resemble delimiters without being one.
    fn tricky_body(boundary: &'static str) -> impl Strategy<Value = Vec<u8>> {
        let piece = prop_oneof![
            prop::collection::vec(any::<u8>(), 0..40),
            Just(b"\r\n".to_vec()),
            Just(b"\r\n--".to_vec()),
            (0..boundary.len()).prop_map(move |k| format!("\r\n--{}", &boundary[..k]).into_bytes()),
            Just(b"\r".to_vec()),
            Just(b"-".to_vec()),
        ];
        prop::collection::vec(piece, 0..8).prop_map(|p| p.concat())
    }

    const PB: &str = "q7Zr9kLw2Xv";

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        #[test]
        fn round_trips_through_writer_and_reader(
            bodies in prop::collection::vec(tricky_body(PB), 1..5),
            sizes in prop::collection::vec(1usize..20, 1..6),
        ) {
            let delimiter = format!("\r\n--{PB}");
            for body in &bodies {
                prop_assume!(memmem::find(&[b"\r\n", &body[..], b"\r\n"].concat(), delimiter.as_bytes()).is_none());
            }
            let parts = bodies.clone().into_iter().map(|b| {
                Ok(OutPart::new(DICOM, None, Bytes::from(b)).unwrap())
            });
            let wire = collect(write_multipart(PB, stream::iter(parts.collect::<Vec<_>>()))).unwrap();
            let ct = content_type_header(PB, DICOM);
            let expected: Parsed = Ok(bodies.iter().map(|b| (DICOM.to_string(), b.clone())).collect());
            prop_assert_eq!(parse_with(&ct, &wire, &sizes, Limits::default()), expected);
        }

        #[test]
        fn outcome_does_not_depend_on_chunking(
            pieces in prop::collection::vec(prop_oneof![
                tricky_body(PB),
                Just(format!("--{PB}\r\n").into_bytes()),
                Just(format!("\r\n--{PB}\r\nContent-Type: application/dicom\r\n\r\n").into_bytes()),
                Just(format!("\r\n--{PB}--").into_bytes()),
                Just(b"X: y\r\n\r\n".to_vec()),
            ], 0..10),
            sizes in prop::collection::vec(1usize..16, 1..6),
            max_part_size in 0u64..64,
            max_header_size in 0usize..64,
            max_parts in 0usize..4,
            max_total_size in 0u64..400,
        ) {
            let body = pieces.concat();
            let limits = Limits { max_part_size, max_total_size, max_parts, max_header_size };
            let ct = content_type_header(PB, DICOM);
            let whole = parse_with(&ct, &body, &[], limits);
            prop_assert_eq!(parse_with(&ct, &body, &sizes, limits), whole.clone());
            prop_assert_eq!(parse_with(&ct, &body, &[1], limits), whole);
        }
    }
}
