//! lightbox-sigv4 (placeholder while the crate is being written).
