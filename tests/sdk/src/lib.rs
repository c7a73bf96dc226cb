//! Test support for the official AWS SDK tests against Lightbox.
