//! `BuiltinS3`: `S3Access` over the built-in endpoint's directory tree. Listing walks the bucket
//! directory in key order (pruning subtrees outside the prefix or before the continuation), reads
//! are plain file reads, writes go through the endpoint's own PutObject so metadata stays
//! consistent with what the endpoint serves.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use tokio::io::AsyncReadExt;

use crate::access::{ListPage, S3Access, S3AccessError, S3Object};
use crate::store::{Store, check_key};

/// The built-in S3's buckets, read and written in-process.
#[derive(Clone, Debug)]
pub struct BuiltinS3 {
    store: Store,
}

impl BuiltinS3 {
    /// Opens the buckets under `root` (the built-in endpoint's root). When the endpoint runs in the
    /// same process, use [`S3Endpoint::builtin_access`](crate::S3Endpoint::builtin_access)
    /// instead: one root must have one store.
    pub fn open(root: &Path) -> std::io::Result<Self> {
        Ok(Self {
            store: Store::open(root)?,
        })
    }

    pub(crate) fn from_store(store: Store) -> Self {
        Self { store }
    }

    fn bucket(&self, bucket: &str) -> Result<PathBuf, S3AccessError> {
        match self.store.bucket_dir(bucket) {
            Some(dir) if dir.is_dir() => Ok(dir),
            _ => Err(S3AccessError::NoSuchBucket),
        }
    }
}

#[async_trait::async_trait]
impl S3Access for BuiltinS3 {
    async fn list(
        &self,
        bucket: &str,
        prefix: &str,
        continuation: Option<String>,
    ) -> Result<ListPage, S3AccessError> {
        let dir = self.bucket(bucket)?;
        let prefix = prefix.to_owned();
        tokio::task::spawn_blocking(move || {
            list_sorted(
                &dir,
                &prefix,
                continuation.as_deref(),
                crate::LIST_PAGE_SIZE,
            )
        })
        .await
        .map_err(|_| S3AccessError::Other("the listing task failed".into()))?
        .map_err(|e| S3AccessError::Other(format!("cannot list the built-in S3: {}", e.kind())))
    }

    async fn get(&self, bucket: &str, key: &str, max_bytes: u64) -> Result<Bytes, S3AccessError> {
        let dir = self.bucket(bucket)?;
        if check_key(key).is_err() {
            return Err(S3AccessError::NoSuchKey);
        }
        let path = dir.join(key);
        let mut file = match tokio::fs::File::open(&path).await {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(S3AccessError::NoSuchKey);
            }
            Err(e) => return Err(io_error("open", &e)),
        };
        let meta = file.metadata().await.map_err(|e| io_error("stat", &e))?;
        if !meta.is_file() {
            return Err(S3AccessError::NoSuchKey);
        }
        if meta.len() > max_bytes {
            return Err(S3AccessError::TooLarge {
                size: meta.len(),
                max: max_bytes,
            });
        }
        let mut buf = Vec::with_capacity(meta.len() as usize);
        // An object replaced meanwhile is a new file (rename), so this one cannot grow; bound
        // the read anyway.
        (&mut file)
            .take(max_bytes.saturating_add(1))
            .read_to_end(&mut buf)
            .await
            .map_err(|e| io_error("read", &e))?;
        if buf.len() as u64 > max_bytes {
            return Err(S3AccessError::TooLarge {
                size: buf.len() as u64,
                max: max_bytes,
            });
        }
        Ok(Bytes::from(buf))
    }

    async fn put(&self, bucket: &str, key: &str, body: Bytes) -> Result<(), S3AccessError> {
        self.bucket(bucket)?;
        self.store
            .put_bytes(bucket, key, body)
            .await
            .map_err(|e| match e.code() {
                s3s::S3ErrorCode::NoSuchBucket => S3AccessError::NoSuchBucket,
                code => S3AccessError::Other(format!(
                    "the built-in S3 refused the write: {}",
                    code.as_str()
                )),
            })
    }
}

fn io_error(what: &str, e: &std::io::Error) -> S3AccessError {
    S3AccessError::Other(format!("cannot {what} a built-in S3 object: {}", e.kind()))
}

/// Up to `limit` objects under `prefix` with keys after `after`, in key order, and the key to
/// continue after when there are more.
fn list_sorted(
    bucket_dir: &Path,
    prefix: &str,
    after: Option<&str>,
    limit: usize,
) -> std::io::Result<ListPage> {
    let mut out = Vec::new();
    walk(
        bucket_dir,
        String::new(),
        prefix,
        after,
        limit + 1,
        &mut out,
    )?;
    let next = if out.len() > limit {
        out.truncate(limit);
        out.last().map(|o| o.key.clone())
    } else {
        None
    };
    Ok(ListPage { objects: out, next })
}

/// Visits `dir` (whose keys start with `base`) in key order. Sorting directory names with a `/`
/// appended makes a depth-first walk yield keys in byte order.
fn walk(
    dir: &Path,
    base: String,
    prefix: &str,
    after: Option<&str>,
    want: usize,
    out: &mut Vec<S3Object>,
) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        // Removed meanwhile (an emptied directory being pruned).
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let mut children: Vec<(String, bool)> = Vec::new();
    for entry in entries {
        let entry = entry?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        let Ok(meta) = entry.metadata() else {
            continue;
        };
        let key = if meta.is_dir() {
            format!("{base}{name}/")
        } else if meta.is_file() {
            format!("{base}{name}")
        } else {
            continue;
        };
        children.push((key, meta.is_dir()));
    }
    children.sort_unstable();
    for (key, is_dir) in children {
        if out.len() >= want {
            return Ok(());
        }
        if is_dir {
            // Keys below start with `key`: skip the subtree when none can match the prefix or
            // all of them are at or before `after`.
            if !(key.starts_with(prefix) || prefix.starts_with(key.as_str())) {
                continue;
            }
            if after.is_some_and(|a| a > key.as_str() && !a.starts_with(key.as_str())) {
                continue;
            }
            let name = &key[base.len()..key.len() - 1];
            walk(&dir.join(name), key.clone(), prefix, after, want, out)?;
        } else {
            if !key.starts_with(prefix) || after.is_some_and(|a| key.as_str() <= a) {
                continue;
            }
            let size = std::fs::metadata(dir.join(&key[base.len()..]))
                .map(|m| m.len())
                .unwrap_or(0);
            out.push(S3Object { key, size });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(root: &Path, key: &str) {
        let p = root.join(key);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, key.as_bytes()).unwrap();
    }

    #[test]
    fn walks_in_key_order_with_prefix_and_continuation() {
        let dir = tempfile::tempdir().unwrap();
        let keys = [
            "a-b", "a.c", "a/b/c", "a/b0", "a/b-", "a0", "ab/x", "b/y/z", "in/1", "in/10", "in/2",
            "in2/1", "in-1",
        ];
        for k in keys {
            touch(dir.path(), k);
        }
        let mut expected: Vec<&str> = keys.to_vec();
        expected.sort_unstable();

        let mut got = Vec::new();
        let mut next = None;
        loop {
            let page = list_sorted(dir.path(), "", next.as_deref(), 3).unwrap();
            assert!(page.objects.len() <= 3);
            got.extend(page.objects.into_iter().map(|o| o.key));
            next = page.next;
            if next.is_none() {
                break;
            }
        }
        assert_eq!(got, expected);

        let page = list_sorted(dir.path(), "in", None, 100).unwrap();
        let keys: Vec<_> = page.objects.iter().map(|o| o.key.as_str()).collect();
        assert_eq!(keys, ["in-1", "in/1", "in/10", "in/2", "in2/1"]);
        let page = list_sorted(dir.path(), "in/", Some("in/10"), 100).unwrap();
        let keys: Vec<_> = page.objects.iter().map(|o| o.key.as_str()).collect();
        assert_eq!(keys, ["in/2"]);
        assert_eq!(page.objects[0].size, 4);
    }
}
