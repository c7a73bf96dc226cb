//! lightbox-api (placeholder while the crate is being written).
