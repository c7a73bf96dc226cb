//! Lightbox's AWS HealthImaging rest-json front end.
//!
//! Pipeline of one request (`http.rs`): read the body within the size limit → verify SigV4
//! against the Host as received → route on method + path (`router.rs`) → decode and validate the
//! input against the pinned model (`decode.rs`) → run the operation's handler (`ops/`) → render
//! the output or the error in AWS's wire format (`error.rs`).
//!
//! Architecture invariant: this crate is the only one that knows status codes, headers and JSON
//! member names; it holds no state of its own beyond configuration.

mod decode;
pub mod dicomweb;
mod error;
mod http;
mod input;
pub mod model;
mod ops;
mod router;

pub use decode::decode as decode_request;
pub use error::ApiError;
pub use http::{ApiState, router};
