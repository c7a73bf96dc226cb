//! DICOMweb building blocks: PS3.18 content negotiation (`accept`) and multipart/related
//! bodies (`multipart`).

pub mod accept;
pub mod multipart;
