//! Chunk files read on the calling thread. DataFusion's default `file://` store (`object_store`'s
//! `LocalFileSystem`) hands every ranged read to a blocking thread pool; a fragment over dozens of chunk files makes
//! hundreds of such reads, and the hand-offs cost more than the reads (measured with strace: most syscall time in
//! futex). Chunk files are local and small: a positioned read (`pread`) right where DataFusion asks is cheaper.
//! Everything that is not a ranged read goes to `LocalFileSystem`.

use std::fmt;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::object_store::local::LocalFileSystem;
use datafusion::object_store::path::Path;
use datafusion::object_store::{
    Attributes, CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload,
    ObjectMeta, ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};
use futures::stream::BoxStream;

#[derive(Debug, Default)]
pub struct PreadStore {
    inner: LocalFileSystem,
}

impl fmt::Display for PreadStore {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "PreadStore")
    }
}

impl PreadStore {
    fn read(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> Result<(Vec<bytes::Bytes>, ObjectMeta)> {
        let path = self.inner.path_to_filesystem(location)?;
        let error = |e: std::io::Error| datafusion::object_store::Error::Generic {
            store: "PreadStore",
            source: Box::new(e),
        };
        let file = std::fs::File::open(&path).map_err(error)?;
        let metadata = file.metadata().map_err(error)?;
        let size = metadata.len();
        let mut out = Vec::with_capacity(ranges.len());
        for r in ranges {
            let end = r.end.min(size);
            let mut buf = vec![0u8; end.saturating_sub(r.start) as usize];
            file.read_exact_at(&mut buf, r.start).map_err(error)?;
            BYTES_READ.fetch_add(buf.len() as u64, std::sync::atomic::Ordering::Relaxed);
            out.push(bytes::Bytes::from(buf));
        }
        let meta = ObjectMeta {
            location: location.clone(),
            last_modified: metadata
                .modified()
                .map(chrono::DateTime::<chrono::Utc>::from)
                .unwrap_or_default(),
            size,
            e_tag: None,
            version: None,
        };
        Ok((out, meta))
    }
}

#[async_trait]
impl ObjectStore for PreadStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let plain = options.if_match.is_none()
            && options.if_none_match.is_none()
            && options.if_modified_since.is_none()
            && options.if_unmodified_since.is_none()
            && !options.head;
        match (&options.range, plain) {
            (Some(range), true) => {
                let path = self.inner.path_to_filesystem(location)?;
                let size = std::fs::metadata(&path)
                    .map_err(|e| datafusion::object_store::Error::Generic {
                        store: "PreadStore",
                        source: Box::new(e),
                    })?
                    .len();
                let range =
                    range
                        .as_range(size)
                        .map_err(|e| datafusion::object_store::Error::Generic {
                            store: "PreadStore",
                            source: Box::new(e),
                        })?;
                let (mut parts, meta) = self.read(location, std::slice::from_ref(&range))?;
                let bytes = parts.pop().unwrap_or_default();
                Ok(GetResult {
                    payload: GetResultPayload::Stream(Box::pin(futures::stream::once(
                        async move { Ok(bytes) },
                    ))),
                    meta,
                    range,
                    attributes: Attributes::default(),
                })
            }
            _ => self.inner.get_opts(location, options).await,
        }
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> Result<Vec<bytes::Bytes>> {
        Ok(self.read(location, ranges)?.0)
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

/// Bytes read from chunk files by positioned reads since the process started (`/metrics`).
static BYTES_READ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Bytes read from chunk files since the process started.
pub fn bytes_read() -> u64 {
    BYTES_READ.load(std::sync::atomic::Ordering::Relaxed)
}

/// Registers the store for `file://` in a session.
pub fn install(ctx: &datafusion::prelude::SessionContext) {
    if let Ok(url) = url::Url::parse("file://") {
        ctx.runtime_env()
            .register_object_store(&url, Arc::new(PreadStore::default()));
    }
}
