//! Fuzz target: arbitrary bytes through `info`, `decode` (full and reduced) and checksums.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lightbox_codec::{DecodeOptions, decode, info, resolution_checksums};

fuzz_target!(|data: &[u8]| {
    let opts = DecodeOptions {
        max_samples: 1 << 20,
        ..Default::default()
    };
    let _ = info(data);
    if decode(data, &opts).is_ok() {
        let _ = resolution_checksums(data, &opts);
    }
    let _ = decode(
        data,
        &DecodeOptions {
            max_resolution_levels: Some(1),
            ..opts
        },
    );
});
