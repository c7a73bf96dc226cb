//! `Store`: the `s3s::S3` implementation behind the built-in endpoint. It delegates to
//! `s3s_fs::FileSystem` and adds what s3s-fs lacks: a missing bucket is `NoSuchBucket` (s3s-fs
//! would create it on PutObject), `BucketAlreadyOwnedByYou`, `BucketNotEmpty`, keys that cannot be
//! stored as paths are refused up front, stale s3s-fs metadata is dropped with its object, empty
//! directories are pruned, continuation tokens are opaque, MaxKeys is capped at 1000 and
//! `encoding-type=url` listings are really URL-encoded (botocore decodes them).
//!
//! Layout (s3s-fs's): `ROOT/BUCKET/KEY` is the object (keys with `/` nest as directories);
//! s3s-fs keeps its own files (`.bucket-….json`, `.upload-…`, `.upload_id-….part-N`, `.tmp.…`)
//! directly in `ROOT`, never inside a bucket directory.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use s3s::dto::*;
use s3s::{S3, S3Error, S3ErrorCode, S3Request, S3Response, S3Result, s3_error};

/// Longest file name the file systems we run on accept.
const NAME_MAX: usize = 255;
/// Longest S3 key.
const KEY_MAX: usize = 1024;
/// Largest ListObjects page S3 returns.
const MAX_KEYS: i32 = 1000;

/// The shared store; cheap to clone. There must be one per root: s3s-fs names its temporary
/// files with a per-instance counter.
#[derive(Clone)]
pub(crate) struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    fs: s3s_fs::FileSystem,
    root: PathBuf,
    /// Names this store's own temporary files (see [`Store::put_long`]).
    tmp_counter: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (creating it if needed) the store over `root`.
    pub(crate) fn open(root: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(root)?;
        let root = root.canonicalize()?;
        let fs = s3s_fs::FileSystem::new(&root)
            .map_err(|e| std::io::Error::other(format!("cannot open the S3 directory: {e:?}")))?;
        Ok(Self {
            inner: Arc::new(Inner {
                fs,
                root,
                tmp_counter: std::sync::atomic::AtomicU64::new(0),
            }),
        })
    }

    /// The directory of a bucket with a valid name.
    pub(crate) fn bucket_dir(&self, bucket: &str) -> Option<PathBuf> {
        s3s::path::check_bucket_name(bucket).then(|| self.inner.root.join(bucket))
    }

    /// The directory of an existing bucket, or `NoSuchBucket`.
    pub(crate) fn existing_bucket(&self, bucket: &str) -> S3Result<PathBuf> {
        match self.bucket_dir(bucket) {
            Some(dir) if dir.is_dir() => Ok(dir),
            Some(_) => Err(s3_error!(
                NoSuchBucket,
                "The specified bucket does not exist"
            )),
            None => Err(s3_error!(
                InvalidBucketName,
                "The specified bucket is not valid."
            )),
        }
    }

    /// Writes one object through the same code path as PutObject.
    pub(crate) async fn put_bytes(&self, bucket: &str, key: &str, body: Bytes) -> S3Result<()> {
        let len = i64::try_from(body.len()).map_err(|_| s3_error!(EntityTooLarge))?;
        let input = PutObjectInput::builder()
            .bucket(bucket.to_owned())
            .key(key.to_owned())
            .content_length(Some(len))
            .body(Some(StreamingBlob::from(s3s::Body::from(body))))
            .build()
            .map_err(|_| s3_error!(InternalError))?;
        self.put_object(internal_request(input, http::Method::PUT))
            .await
            .map(|_| ())
    }

    /// s3s-fs's metadata files for an object (see `s3s_fs::FileSystem::get_metadata_path`).
    fn metadata_files(&self, bucket: &str, key: &str) -> [PathBuf; 2] {
        let b = URL_SAFE_NO_PAD.encode(bucket);
        let k = URL_SAFE_NO_PAD.encode(key);
        [
            self.inner
                .root
                .join(format!(".bucket-{b}.object-{k}.internal.json")),
            self.inner
                .root
                .join(format!(".bucket-{b}.object-{k}.metadata.json")),
        ]
    }

    /// Removes what a deleted object leaves behind: s3s-fs's metadata files and the directories
    /// of its key that are now empty.
    async fn forget(&self, bucket_dir: &Path, bucket: &str, key: &str) {
        for f in self.metadata_files(bucket, key) {
            let _ = tokio::fs::remove_file(f).await;
        }
        let mut dir = bucket_dir.join(key);
        while let Some(parent) = dir.parent() {
            if parent == bucket_dir || !parent.starts_with(bucket_dir) {
                break;
            }
            if tokio::fs::remove_dir(parent).await.is_err() {
                break;
            }
            dir = parent.to_owned();
        }
    }
}

/// The key multipart uploads of long keys are created under (see `create_multipart_upload`).
const LONG_KEY_PLACEHOLDER: &str = "lightbox-long-key";
/// Where multipart uploads of long keys are assembled, in the root (not a valid bucket name, so
/// never listed as a bucket).
const LONG_KEY_STAGING: &str = ".lightbox-long-keys";

/// Keys too long for s3s-fs's metadata file names (base64 of bucket and key in one file name)
/// are stored without that metadata: content type and user metadata are not kept, the ETag is the
/// MD5 of the content (s3s-fs computes it when no metadata exists).
impl Store {
    async fn put_long(
        &self,
        dir: &Path,
        input: PutObjectInput,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        use futures::StreamExt;
        use s3s::crypto::{Checksum, Md5};
        use tokio::io::AsyncWriteExt;

        let Some(mut body) = input.body else {
            return Err(s3_error!(IncompleteBody));
        };
        let n = self
            .inner
            .tmp_counter
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // s3s-fs removes `.tmp.*.internal.part` files left over in the root when it starts.
        let tmp = self.inner.root.join(format!(
            ".tmp.lightbox-{}-{n}.internal.part",
            std::process::id()
        ));
        let result: S3Result<String> = async {
            let file = tokio::fs::File::create(&tmp)
                .await
                .map_err(S3Error::internal_error)?;
            let mut writer = tokio::io::BufWriter::new(file);
            let mut md5 = Md5::new();
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| s3_error!(IncompleteBody, "{e}"))?;
                md5.update(&chunk);
                writer
                    .write_all(&chunk)
                    .await
                    .map_err(S3Error::internal_error)?;
            }
            writer.flush().await.map_err(S3Error::internal_error)?;
            let digest = md5.finalize();
            if let Some(expected) = &input.content_md5 {
                let expected = base64::engine::general_purpose::STANDARD
                    .decode(expected)
                    .map_err(|_| s3_error!(InvalidDigest))?;
                if expected.as_slice() != digest.as_ref() {
                    return Err(s3_error!(
                        BadDigest,
                        "The Content-MD5 you specified did not match what we received."
                    ));
                }
            }
            let path = dir.join(&input.key);
            if let Some(parent) = path.parent() {
                tokio::fs::create_dir_all(parent)
                    .await
                    .map_err(S3Error::internal_error)?;
            }
            tokio::fs::rename(&tmp, &path)
                .await
                .map_err(S3Error::internal_error)?;
            Ok(hex(digest.as_ref()))
        }
        .await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&tmp).await;
        }
        Ok(S3Response::new(PutObjectOutput {
            e_tag: Some(ETag::Strong(result?)),
            ..Default::default()
        }))
    }

    fn placeholder_metadata(&self, bucket: &str, upload_id: &str) -> PathBuf {
        self.inner.root.join(format!(
            ".bucket-{}.object-{}.upload-{upload_id}.metadata.json",
            URL_SAFE_NO_PAD.encode(bucket),
            URL_SAFE_NO_PAD.encode(LONG_KEY_PLACEHOLDER)
        ))
    }

    /// Completes a long key's upload in the staging directory, then moves it into place.
    async fn complete_long(
        &self,
        dir: &Path,
        mut req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        let bucket = std::mem::replace(&mut req.input.bucket, LONG_KEY_STAGING.to_owned());
        let upload_id = req.input.upload_id.clone();
        if uuid_like(&upload_id).is_none() {
            return Err(s3_error!(NoSuchUpload));
        }
        let key = std::mem::replace(&mut req.input.key, upload_id.clone());
        let mut resp = self.inner.fs.complete_multipart_upload(req).await?;
        let staged = self.inner.root.join(LONG_KEY_STAGING).join(&upload_id);
        let _ = tokio::fs::remove_file(self.placeholder_metadata(&bucket, &upload_id)).await;
        for f in self.metadata_files(LONG_KEY_STAGING, &upload_id) {
            let _ = tokio::fs::remove_file(f).await;
        }
        let path = dir.join(&key);
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(S3Error::internal_error)?;
        }
        tokio::fs::rename(&staged, &path)
            .await
            .map_err(S3Error::internal_error)?;
        let mut out = match resp.output.future.take() {
            Some(f) => f.await?,
            None => std::mem::take(&mut resp.output),
        };
        out.bucket = Some(bucket);
        out.key = Some(key);
        resp.output = out;
        Ok(resp)
    }
}

/// Upload ids are UUIDs; anything else must not become a path.
fn uuid_like(s: &str) -> Option<()> {
    (s.len() == 36 && s.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')).then_some(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An `S3Request` for calls made inside the process (no HTTP, no credentials).
pub(crate) fn internal_request<T>(input: T, method: http::Method) -> S3Request<T> {
    S3Request {
        input,
        method,
        uri: http::Uri::from_static("/"),
        headers: http::HeaderMap::new(),
        extensions: http::Extensions::new(),
        credentials: None,
        region: None,
        service: None,
        trailing_headers: None,
    }
}

/// Why a key cannot be an object here, if it cannot: keys map to paths, so no empty, `.` or `..`
/// segment (a trailing `/` is s3s-fs's folder marker), no NUL, no segment longer than a file name.
pub(crate) fn check_key(key: &str) -> Result<(), S3Error> {
    if key.is_empty() {
        return Err(s3_error!(
            InvalidArgument,
            "The object key must not be empty."
        ));
    }
    if key.len() > KEY_MAX {
        return Err(s3_error!(KeyTooLongError, "Your key is too long"));
    }
    let body = key.strip_suffix('/').unwrap_or(key);
    let bad = key.contains('\0')
        || body
            .split('/')
            .any(|s| s.is_empty() || s == "." || s == ".." || s.len() > NAME_MAX);
    if bad {
        return Err(s3_error!(
            InvalidArgument,
            "Lightbox's built-in S3 stores keys as paths: a key cannot start with '/', contain \
             '//', '.' or '..' segments, NUL, or a segment longer than 255 bytes."
        ));
    }
    Ok(())
}

/// s3s-fs names metadata files after the base64 of bucket and key; refuse keys whose names would
/// not fit instead of failing halfway with an internal error.
fn check_metadata_name(bucket: &str, key: &str, multipart: bool) -> Result<(), S3Error> {
    let b64 = |n: usize| (n * 4).div_ceil(3);
    // ".bucket-" B ".object-" K ".internal.json" | ".upload-UUID.metadata.json"
    let suffix = if multipart { 8 + 36 + 14 } else { 14 };
    if 16 + b64(bucket.len()) + b64(key.len()) + suffix > NAME_MAX {
        let room = NAME_MAX.saturating_sub(16 + b64(bucket.len()) + suffix) * 3 / 4;
        return Err(s3_error!(
            KeyTooLongError,
            "Lightbox's built-in S3 stores keys of at most {room} bytes in this bucket."
        ));
    }
    Ok(())
}

/// A new object at `key` needs every ancestor to be a directory (or absent) and its own path not
/// to be a directory.
fn check_placement(bucket_dir: &Path, key: &str) -> Result<(), S3Error> {
    let path = bucket_dir.join(key);
    let clash = || {
        s3_error!(
            InvalidArgument,
            "Lightbox's built-in S3 stores keys as paths: a key cannot be both an object and a \
             prefix of other keys ending in '/'."
        )
    };
    if !key.ends_with('/') && path.is_dir() {
        return Err(clash());
    }
    let mut p = path.parent();
    while let Some(dir) = p {
        if dir == bucket_dir {
            break;
        }
        if dir.is_file() {
            return Err(clash());
        }
        p = dir.parent();
    }
    Ok(())
}

/// True when the bucket directory holds at least one object.
async fn has_objects(dir: PathBuf) -> bool {
    tokio::task::spawn_blocking(move || {
        let mut stack = vec![dir];
        while let Some(d) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&d) else {
                continue;
            };
            for e in entries.flatten() {
                match e.file_type() {
                    Ok(t) if t.is_dir() => stack.push(e.path()),
                    Ok(_) => return true,
                    Err(_) => {}
                }
            }
        }
        false
    })
    .await
    .unwrap_or(true)
}

fn is_url(encoding: &Option<EncodingType>) -> bool {
    encoding
        .as_ref()
        .is_some_and(|e| e.as_str().eq_ignore_ascii_case("url"))
}

/// What S3 escapes in `encoding-type=url` listings: everything but unreserved characters and `/`.
const URL_ENCODE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');

fn url_encode(s: &mut Option<String>) {
    if let Some(v) = s {
        *v = percent_encoding::utf8_percent_encode(v, URL_ENCODE).to_string();
    }
}

fn encode_listing(contents: &mut Option<Vec<Object>>, prefixes: &mut Option<Vec<CommonPrefix>>) {
    for o in contents.iter_mut().flatten() {
        url_encode(&mut o.key);
    }
    for p in prefixes.iter_mut().flatten() {
        url_encode(&mut p.prefix);
    }
}

fn cap_max_keys(max_keys: &mut Option<i32>) {
    *max_keys = Some(max_keys.map_or(MAX_KEYS, |m| m.clamp(0, MAX_KEYS)));
}

#[async_trait::async_trait]
impl S3 for Store {
    async fn create_bucket(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        let already = || {
            s3_error!(
                BucketAlreadyOwnedByYou,
                "Your previous request to create the named bucket succeeded and you already own it."
            )
        };
        let Some(dir) = self.bucket_dir(&req.input.bucket) else {
            return Err(s3_error!(
                InvalidBucketName,
                "The specified bucket is not valid."
            ));
        };
        if dir.exists() {
            return Err(already());
        }
        match self.inner.fs.create_bucket(req).await {
            Err(e) if *e.code() == S3ErrorCode::BucketAlreadyExists => Err(already()),
            other => other,
        }
    }

    async fn delete_bucket(
        &self,
        req: S3Request<DeleteBucketInput>,
    ) -> S3Result<S3Response<DeleteBucketOutput>> {
        let dir = self.existing_bucket(&req.input.bucket)?;
        if has_objects(dir).await {
            return Err(s3_error!(
                BucketNotEmpty,
                "The bucket you tried to delete is not empty"
            ));
        }
        self.inner.fs.delete_bucket(req).await
    }

    async fn head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        self.existing_bucket(&req.input.bucket)?;
        self.inner.fs.head_bucket(req).await
    }

    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        self.existing_bucket(&req.input.bucket)?;
        self.inner.fs.get_bucket_location(req).await
    }

    async fn list_buckets(
        &self,
        req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        let mut resp = self.inner.fs.list_buckets(req).await?;
        if let Some(b) = resp.output.buckets.as_mut() {
            b.sort_by(|x, y| x.name.cmp(&y.name));
        }
        Ok(resp)
    }

    async fn put_object(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        let dir = self.existing_bucket(&req.input.bucket)?;
        check_key(&req.input.key)?;
        check_placement(&dir, &req.input.key)?;
        if !req.input.key.ends_with('/')
            && check_metadata_name(&req.input.bucket, &req.input.key, false).is_err()
        {
            return self.put_long(&dir, req.input).await;
        }
        self.inner.fs.put_object(req).await
    }

    async fn copy_object(
        &self,
        req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        let dir = self.existing_bucket(&req.input.bucket)?;
        check_key(&req.input.key)?;
        check_metadata_name(&req.input.bucket, &req.input.key, false)?;
        check_placement(&dir, &req.input.key)?;
        if let CopySource::Bucket { bucket, key, .. } = &req.input.copy_source {
            let src = self.existing_bucket(bucket)?;
            if check_key(key).is_err() || !src.join(&**key).is_file() {
                return Err(s3_error!(NoSuchKey, "The specified key does not exist."));
            }
        }
        self.inner.fs.copy_object(req).await
    }

    async fn get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        let dir = self.existing_bucket(&req.input.bucket)?;
        if check_key(&req.input.key).is_err() || !dir.join(&req.input.key).is_file() {
            return Err(s3_error!(NoSuchKey, "The specified key does not exist."));
        }
        self.inner.fs.get_object(req).await
    }

    async fn head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        let dir = self.existing_bucket(&req.input.bucket)?;
        if check_key(&req.input.key).is_err() || !dir.join(&req.input.key).is_file() {
            return Err(s3_error!(NoSuchKey, "The specified key does not exist."));
        }
        self.inner.fs.head_object(req).await
    }

    async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        let dir = self.existing_bucket(&req.input.bucket)?;
        if check_key(&req.input.key).is_err() {
            return Ok(S3Response::new(DeleteObjectOutput::default()));
        }
        let (bucket, key) = (req.input.bucket.clone(), req.input.key.clone());
        let resp = self.inner.fs.delete_object(req).await?;
        self.forget(&dir, &bucket, &key).await;
        Ok(resp)
    }

    async fn delete_objects(
        &self,
        mut req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        let dir = self.existing_bucket(&req.input.bucket)?;
        let bucket = req.input.bucket.clone();
        let (valid, invalid): (Vec<_>, Vec<_>) = std::mem::take(&mut req.input.delete.objects)
            .into_iter()
            .partition(|o| check_key(&o.key).is_ok());
        let keys: Vec<String> = valid.iter().map(|o| o.key.clone()).collect();
        req.input.delete.objects = valid;
        let mut resp = self.inner.fs.delete_objects(req).await?;
        for key in &keys {
            self.forget(&dir, &bucket, key).await;
        }
        let deleted = resp.output.deleted.get_or_insert_with(Vec::new);
        deleted.extend(invalid.into_iter().map(|o| DeletedObject {
            key: Some(o.key),
            version_id: o.version_id,
            ..Default::default()
        }));
        Ok(resp)
    }

    async fn list_objects(
        &self,
        mut req: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        self.existing_bucket(&req.input.bucket)?;
        cap_max_keys(&mut req.input.max_keys);
        let url = is_url(&req.input.encoding_type);
        let mut resp = self.inner.fs.list_objects(req).await?;
        let out = &mut resp.output;
        if out.contents.is_none() && out.common_prefixes.is_none() {
            out.next_marker = None;
        }
        if url {
            encode_listing(&mut out.contents, &mut out.common_prefixes);
            url_encode(&mut out.prefix);
            url_encode(&mut out.delimiter);
            url_encode(&mut out.marker);
            url_encode(&mut out.next_marker);
        }
        Ok(resp)
    }

    async fn list_objects_v2(
        &self,
        mut req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        self.existing_bucket(&req.input.bucket)?;
        cap_max_keys(&mut req.input.max_keys);
        let token = req.input.continuation_token.clone();
        if let Some(t) = &token {
            let key = URL_SAFE_NO_PAD
                .decode(t)
                .ok()
                .and_then(|k| String::from_utf8(k).ok())
                .ok_or_else(|| {
                    s3_error!(
                        InvalidArgument,
                        "The continuation token provided is incorrect"
                    )
                })?;
            req.input.continuation_token = Some(key);
        }
        let url = is_url(&req.input.encoding_type);
        let mut resp = self.inner.fs.list_objects_v2(req).await?;
        let out = &mut resp.output;
        out.continuation_token = token;
        out.next_continuation_token = out
            .next_continuation_token
            .take()
            .map(|k| URL_SAFE_NO_PAD.encode(k));
        if url {
            encode_listing(&mut out.contents, &mut out.common_prefixes);
            url_encode(&mut out.prefix);
            url_encode(&mut out.delimiter);
            url_encode(&mut out.start_after);
        }
        Ok(resp)
    }

    async fn create_multipart_upload(
        &self,
        mut req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        let dir = self.existing_bucket(&req.input.bucket)?;
        check_key(&req.input.key)?;
        check_placement(&dir, &req.input.key)?;
        if check_metadata_name(&req.input.bucket, &req.input.key, true).is_err() {
            // s3s-fs keeps the upload's attributes under the key; park them under a short one.
            let key = std::mem::replace(&mut req.input.key, LONG_KEY_PLACEHOLDER.to_owned());
            let mut resp = self.inner.fs.create_multipart_upload(req).await?;
            resp.output.key = Some(key);
            return Ok(resp);
        }
        self.inner.fs.create_multipart_upload(req).await
    }

    async fn upload_part(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        self.existing_bucket(&req.input.bucket)?;
        self.inner.fs.upload_part(req).await
    }

    async fn upload_part_copy(
        &self,
        req: S3Request<UploadPartCopyInput>,
    ) -> S3Result<S3Response<UploadPartCopyOutput>> {
        self.existing_bucket(&req.input.bucket)?;
        if let CopySource::Bucket { bucket, key, .. } = &req.input.copy_source {
            let src = self.existing_bucket(bucket)?;
            if check_key(key).is_err() || !src.join(&**key).is_file() {
                return Err(s3_error!(NoSuchKey, "The specified key does not exist."));
            }
        }
        self.inner.fs.upload_part_copy(req).await
    }

    async fn list_parts(
        &self,
        req: S3Request<ListPartsInput>,
    ) -> S3Result<S3Response<ListPartsOutput>> {
        self.existing_bucket(&req.input.bucket)?;
        self.inner.fs.list_parts(req).await
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        let dir = self.existing_bucket(&req.input.bucket)?;
        check_key(&req.input.key)?;
        check_placement(&dir, &req.input.key)?;
        if check_metadata_name(&req.input.bucket, &req.input.key, true).is_err() {
            return self.complete_long(&dir, req).await;
        }
        // s3s-fs merges the new ETag into the old object's internal info, keeping its checksums.
        let [internal, _] = self.metadata_files(&req.input.bucket, &req.input.key);
        let _ = tokio::fs::remove_file(internal).await;
        self.inner.fs.complete_multipart_upload(req).await
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        self.existing_bucket(&req.input.bucket)?;
        if check_metadata_name(&req.input.bucket, &req.input.key, true).is_err() {
            let _ = tokio::fs::remove_file(
                self.placeholder_metadata(&req.input.bucket, &req.input.upload_id),
            )
            .await;
        }
        self.inner.fs.abort_multipart_upload(req).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_must_map_to_paths() {
        assert!(check_key("in/study/1.dcm").is_ok());
        assert!(check_key("folder/").is_ok());
        assert!(check_key("a b+c%d").is_ok());
        for bad in ["", "/abs", "a//b", "a/./b", "../x", "a/..", "a\0b"] {
            assert!(check_key(bad).is_err(), "{bad:?}");
        }
        assert!(check_key(&"x".repeat(256)).is_err());
        assert!(check_key(&"x/".repeat(600)).is_err());
    }

    #[test]
    fn metadata_names_must_fit() {
        assert!(check_metadata_name("bucket", &"k".repeat(150), false).is_ok());
        assert!(check_metadata_name("bucket", &"k".repeat(200), false).is_err());
        assert!(check_metadata_name("bucket", &"k".repeat(120), true).is_ok());
        assert!(check_metadata_name("bucket", &"k".repeat(150), true).is_err());
    }

    #[test]
    fn url_encoding_matches_s3() {
        let mut s = Some("in/a b+c%d~é.dcm".to_owned());
        url_encode(&mut s);
        assert_eq!(s.unwrap(), "in/a%20b%2Bc%25d~%C3%A9.dcm");
    }
}
