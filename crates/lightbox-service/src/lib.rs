//! lightbox-service (placeholder while the crate is being written).
