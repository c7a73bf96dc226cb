//! lightbox-storage (placeholder while the crate is being written).
