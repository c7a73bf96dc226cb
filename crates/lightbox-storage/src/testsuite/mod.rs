//! Conformance suites that every Catalog and every BlobStore backend must pass. Backends' test
//! files call `catalog::run` / `blob::run` on a fresh, empty instance.

pub mod blob;
pub mod catalog;
