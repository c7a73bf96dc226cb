//! Optional per-thread reuse of large `i32` buffers, so repeated encodes/decodes on one thread
//! do not pay the kernel's page-fault and zeroing cost for every fresh multi-megabyte plane.
//! Enabled only inside a call whose options ask for it ([`Reuse`] guard); otherwise buffers are
//! allocated and freed normally.

use std::cell::{Cell, RefCell};

/// Buffers smaller than this are not worth pooling.
const MIN_POOLED: usize = 1 << 16;
/// Upper bound on the bytes a thread keeps between calls.
const MAX_RETAINED_BYTES: usize = 256 << 20;

thread_local! {
    static ENABLED: Cell<bool> = const { Cell::new(false) };
    static POOL: RefCell<Vec<Vec<i32>>> = const { RefCell::new(Vec::new()) };
}

/// Enables buffer reuse on this thread until dropped.
pub(crate) struct Reuse(bool);

impl Reuse {
    pub fn new(enable: bool) -> Reuse {
        let prev = ENABLED.with(|e| e.replace(enable));
        Reuse(prev)
    }
}

impl Drop for Reuse {
    fn drop(&mut self) {
        ENABLED.with(|e| e.set(self.0));
    }
}

fn take(n: usize) -> Option<Vec<i32>> {
    if n < MIN_POOLED || !ENABLED.with(|e| e.get()) {
        return None;
    }
    POOL.with(|p| {
        let mut p = p.borrow_mut();
        let best = p
            .iter()
            .enumerate()
            .filter(|(_, v)| v.capacity() >= n)
            .min_by_key(|(_, v)| v.capacity())
            .map(|(i, _)| i)?;
        let mut v = p.swap_remove(best);
        v.clear();
        Some(v)
    })
}

/// An empty vector with room for `n` values.
pub(crate) fn with_capacity(n: usize) -> Vec<i32> {
    take(n).unwrap_or_else(|| Vec::with_capacity(n))
}

/// `n` zeros.
pub(crate) fn zeroed(n: usize) -> Vec<i32> {
    match take(n) {
        Some(mut v) => {
            v.resize(n, 0);
            v
        }
        None => vec![0; n],
    }
}

/// Hands a buffer back for reuse (or frees it).
pub(crate) fn recycle(v: Vec<i32>) {
    if v.capacity() < MIN_POOLED || !ENABLED.with(|e| e.get()) {
        return;
    }
    POOL.with(|p| {
        let mut p = p.borrow_mut();
        let held: usize = p.iter().map(|b| b.capacity() * 4).sum();
        if held + v.capacity() * 4 <= MAX_RETAINED_BYTES {
            p.push(v);
        } else if let Some((i, _)) = p.iter().enumerate().min_by_key(|(_, b)| b.capacity()) {
            // Prefer keeping the larger buffer.
            if p[i].capacity() < v.capacity()
                && held - p[i].capacity() * 4 + v.capacity() * 4 <= MAX_RETAINED_BYTES
            {
                p[i] = v;
            }
        }
    });
}
