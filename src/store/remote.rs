//! Object storage (Azure Blob Storage, S3) through the `object_store`
//! crate: the blobs under `<prefix>/objects/`, named as on disk, and the
//! shards' index snapshots and leases under `<prefix>/index/`.
//!
//! The store's callers are synchronous (blocking threads); requests run on
//! a small runtime of this module's own, so a caller on any thread can
//! wait for one.

use std::future::Future;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result, anyhow, bail};
use futures::{StreamExt as _, TryStreamExt as _};
use object_store::path::Path as Key;
use object_store::{
    ObjectStore, ObjectStoreExt as _, PutMode, PutOptions, PutPayload, UpdateVersion,
};

use super::blob::{self, BlobDamaged, BlobFault, BlobHash, Blobs, Listed, Put, Source};

/// Blobs at most this large (compressed) go in one request; larger ones in
/// parts of [`PART`], so that no request holds a whole large message.
const ONE_REQUEST: u64 = 32 << 20;
const PART: usize = 8 << 20;
/// Requests in flight at once for a batch of small blobs.
const IN_FLIGHT: usize = 16;
/// How often a conditional write is repeated after its connection broke.
const WRITE_TRIES: u32 = 4;

/// An object-storage address for a store: `az://container/prefix`,
/// `s3://bucket/prefix`, or an `https://` address of either.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectUrl {
    url: url::Url,
    /// As the user wrote it, without a trailing `/`: what is shown.
    text: String,
}

impl ObjectUrl {
    /// `None` when `text` is not a URL (a directory); an error naming the
    /// value when it is one mailferry cannot use.
    pub fn parse(text: &str) -> Result<Option<ObjectUrl>> {
        if !text.contains("://") {
            return Ok(None);
        }
        let url = url::Url::parse(text)
            .with_context(|| format!("the store {text:?} is not a valid URL"))?;
        let known = match url.scheme() {
            "az" | "azure" | "abfs" | "abfss" | "adl" | "s3" | "s3a" => true,
            "https" => url.host_str().is_some_and(|h| {
                h.ends_with(".blob.core.windows.net")
                    || h.ends_with(".dfs.core.windows.net")
                    || h.ends_with(".amazonaws.com")
            }),
            _ => false,
        };
        if !known {
            bail!(
                "the store {text:?} is not a directory nor an object-storage address mailferry \
                 knows (az://container/prefix, s3://bucket/prefix, or an https:// address of \
                 Azure Blob Storage or Amazon S3)"
            );
        }
        // Where a SAS token or a signed URL would go: it would be shown.
        if url.query().is_some() || !url.username().is_empty() || url.password().is_some() {
            bail!(
                "the store address must not carry credentials (a query string or a user): give \
                 them in the environment, as AZURE_STORAGE_SAS_TOKEN, AZURE_STORAGE_ACCOUNT_KEY, \
                 AWS_ACCESS_KEY_ID ..., and the store as {}://{}{}",
                url.scheme(),
                url.host_str().unwrap_or(""),
                url.path()
            );
        }
        Ok(Some(ObjectUrl {
            text: text.trim_end_matches('/').to_string(),
            url,
        }))
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl std::fmt::Display for ObjectUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// The settings of each cloud's SDKs that `object_store` understands,
/// from the environment: `AZURE_*` and `AWS_*` (and `IDENTITY_ENDPOINT`
/// of Azure's managed identity). Values are credentials: never shown.
pub fn settings_from_env() -> Vec<(String, String)> {
    std::env::vars()
        .filter(|(k, _)| {
            k.starts_with("AZURE_") || k.starts_with("AWS_") || k == "IDENTITY_ENDPOINT"
        })
        .map(|(k, v)| {
            let k = if k == "IDENTITY_ENDPOINT" {
                "azure_msi_endpoint".to_string()
            } else {
                k.to_ascii_lowercase()
            };
            (k, v)
        })
        .collect()
}

/// One object store, and what has been asked of it.
pub struct Remote {
    store: Box<dyn ObjectStore>,
    prefix: Key,
    url: ObjectUrl,
    runtime: tokio::runtime::Runtime,
    requests: AtomicU64,
}

/// A stored object's bytes and version.
pub struct Fetched {
    pub bytes: Vec<u8>,
    pub version: Version,
}

/// An object's version, for a write that must not overwrite a newer one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    e_tag: Option<String>,
    version: Option<String>,
}

impl Remote {
    /// Connects (lazily: no request is made) to the store at `url` with
    /// `settings` (see [`settings_from_env`]).
    pub fn new(url: &ObjectUrl, settings: &[(String, String)]) -> Result<Remote> {
        // A large part over a slow link takes longer than the default 30 s.
        Remote::with_timeout(url, settings, "10m")
    }

    /// [`Remote::new`] whose requests give up after `timeout` ("30s"):
    /// for the lease, which must be renewed well within its life.
    pub fn with_timeout(
        url: &ObjectUrl,
        settings: &[(String, String)],
        timeout: &str,
    ) -> Result<Remote> {
        // reqwest is built without a default TLS provider (mailferry
        // passes its own to each client); object_store's client needs one.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut settings: Vec<(String, String)> = settings.to_vec();
        if !settings.iter().any(|(k, _)| k == "timeout") {
            settings.push(("timeout".into(), timeout.into()));
        }
        let (store, prefix) = object_store::parse_url_opts(&url.url, settings)
            .map_err(|e| anyhow!("cannot use the store {url}: {}", redact(&e.to_string())))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("mailferry-objects")
            .enable_all()
            .build()
            .context("cannot start the object-storage runtime")?;
        Ok(Remote {
            store,
            prefix,
            url: url.clone(),
            runtime,
            requests: AtomicU64::new(0),
        })
    }

    pub fn url(&self) -> &ObjectUrl {
        &self.url
    }

    /// Requests made so far (each try of a retried request counts once).
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    fn key(&self, name: &str) -> Key {
        let mut key = self.prefix.clone();
        for part in name.split('/') {
            key = key.join(part);
        }
        key
    }

    /// Runs `f` on this store's runtime and waits for it, from any thread.
    /// Unconstrained: called from a task of another tokio runtime (an
    /// upload reading a blob), `f` would spend that task's cooperative
    /// budget, and once it is spent every poll says "yield" and wakes at
    /// once; as this thread never goes back to that runtime to refill it,
    /// the wait would spin for ever.
    fn run<F: Future>(&self, f: F) -> F::Output {
        let _in = self.runtime.enter();
        futures::executor::block_on(tokio::task::unconstrained(f))
    }

    fn count(&self, n: u64) {
        self.requests.fetch_add(n, Ordering::Relaxed);
    }

    /// Writes `bytes` as `name` unless an object of that name exists;
    /// returns whether this call made it.
    pub fn put_new(&self, name: &str, bytes: Vec<u8>) -> Result<bool> {
        self.run(self.put_new_async(name, bytes))
    }

    async fn put_new_async(&self, name: &str, bytes: Vec<u8>) -> Result<bool> {
        let key = self.key(name);
        let payload = PutPayload::from(bytes);
        let mut tries = 0;
        let answer = loop {
            self.count(1);
            let answer = self
                .store
                .put_opts(&key, payload.clone(), PutMode::Create.into())
                .await;
            // object_store does not repeat a conditional write whose
            // connection broke (it may have been done); for a name that is
            // its content, doing it again is harmless: "already there".
            if tries < WRITE_TRIES && matches!(&answer, Err(e) if transport_failed(e)) {
                tries += 1;
                tokio::time::sleep(std::time::Duration::from_millis(100 << tries)).await;
                continue;
            }
            break answer;
        };
        match answer {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            // An S3 look-alike without conditional writes: ask, then write.
            Err(object_store::Error::NotImplemented { .. }) => {
                if self.exists_async(name).await? {
                    return Ok(false);
                }
                self.count(1);
                self.store
                    .put(&key, payload)
                    .await
                    .map_err(|e| self.error("write", name, e))?;
                Ok(true)
            }
            Err(e) => Err(self.error("write", name, e)),
        }
    }

    /// Writes `bytes` as `name`, replacing what is there.
    pub fn put(&self, name: &str, bytes: Vec<u8>) -> Result<Version> {
        self.count(1);
        let r = self
            .run(self.store.put(&self.key(name), bytes.into()))
            .map_err(|e| self.error("write", name, e))?;
        Ok(Version {
            e_tag: r.e_tag,
            version: r.version,
        })
    }

    /// Writes `bytes` as `name` only if it is still at `version` (or, with
    /// `None`, only if there is none). `Ok(None)` when it is not.
    pub fn put_if(
        &self,
        name: &str,
        bytes: Vec<u8>,
        version: Option<&Version>,
    ) -> Result<Option<Version>> {
        let mode = match version {
            None => PutMode::Create,
            Some(v) => PutMode::Update(UpdateVersion {
                e_tag: v.e_tag.clone(),
                version: v.version.clone(),
            }),
        };
        let payload = PutPayload::from(bytes);
        let mut tries = 0;
        let answer = loop {
            self.count(1);
            let answer = self.run(self.store.put_opts(
                &self.key(name),
                payload.clone(),
                PutOptions::from(mode.clone()),
            ));
            // Made again when its connection broke: if the first went
            // through, this one is refused, and the caller reads the
            // object back to tell.
            if tries < WRITE_TRIES && matches!(&answer, Err(e) if transport_failed(e)) {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(100 << tries));
                continue;
            }
            break answer;
        };
        match answer {
            Ok(r) => Ok(Some(Version {
                e_tag: r.e_tag,
                version: r.version,
            })),
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. },
            ) => Ok(None),
            Err(e) => Err(self.error("write", name, e)),
        }
    }

    /// The object `name`, or `None` when there is none.
    pub fn get(&self, name: &str) -> Result<Option<Fetched>> {
        self.run(self.get_async(name))
    }

    async fn get_async(&self, name: &str) -> Result<Option<Fetched>> {
        self.count(1);
        let got = match self.store.get(&self.key(name)).await {
            Ok(g) => g,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.error("read", name, e)),
        };
        let version = Version {
            e_tag: got.meta.e_tag.clone(),
            version: got.meta.version.clone(),
        };
        let bytes = got.bytes().await.map_err(|e| self.error("read", name, e))?;
        Ok(Some(Fetched {
            bytes: bytes.to_vec(),
            version,
        }))
    }

    /// Is there an object `name`?
    pub fn exists(&self, name: &str) -> Result<bool> {
        self.run(self.exists_async(name))
    }

    async fn exists_async(&self, name: &str) -> Result<bool> {
        self.count(1);
        match self.store.head(&self.key(name)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.error("read", name, e)),
        }
    }

    /// Names (relative to the prefix) and sizes of the objects under `dir`.
    pub fn list(&self, dir: &str) -> Result<Vec<(String, u64)>> {
        let base = self.key(dir);
        let strip = format!("{}/", self.prefix.as_ref());
        self.count(1);
        let metas: Vec<object_store::ObjectMeta> = self
            .run(self.store.list(Some(&base)).try_collect())
            .map_err(|e| self.error("list", dir, e))?;
        // A listing comes in pages of 5,000 (Azure) or 1,000 (S3).
        self.count(metas.len() as u64 / 1000);
        Ok(metas
            .into_iter()
            .map(|m| {
                let full = m.location.as_ref();
                let name = if self.prefix.as_ref().is_empty() {
                    full
                } else {
                    full.strip_prefix(&strip).unwrap_or(full)
                };
                (name.to_string(), m.size)
            })
            .collect())
    }

    /// Is there any object under `dir`? (One page of a listing at most.)
    pub fn any(&self, dir: &str) -> Result<bool> {
        let base = self.key(dir);
        self.count(1);
        match self.run(async { self.store.list(Some(&base)).next().await }) {
            None => Ok(false),
            Some(Ok(_)) => Ok(true),
            Some(Err(e)) => Err(self.error("list", dir, e)),
        }
    }

    /// Removes `name` (gone already is fine).
    pub fn delete(&self, name: &str) -> Result<()> {
        self.count(1);
        match self.run(self.store.delete(&self.key(name))) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.error("remove", name, e)),
        }
    }

    /// Writes the file at `path` as `name`, replacing what is there: in
    /// parts when it is large.
    pub fn put_file(&self, name: &str, path: &Path) -> Result<()> {
        let size = std::fs::metadata(path)
            .with_context(|| format!("cannot read {}", path.display()))?
            .len();
        if size <= ONE_REQUEST {
            let bytes =
                std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
            self.put(name, bytes)?;
            return Ok(());
        }
        self.run(self.put_parts(name, path))
    }

    async fn put_parts(&self, name: &str, path: &Path) -> Result<()> {
        let key = self.key(name);
        self.count(1);
        let upload = self
            .store
            .put_multipart(&key)
            .await
            .map_err(|e| self.error("write", name, e))?;
        let mut writer = object_store::WriteMultipart::new_with_chunk_size(upload, PART);
        let sent = async {
            let mut file = std::fs::File::open(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let mut buf = vec![0u8; PART];
            loop {
                let n = read_full(&mut file, &mut buf)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                if n == 0 {
                    break;
                }
                // At most two parts in flight: memory stays at a few parts.
                writer
                    .wait_for_capacity(2)
                    .await
                    .map_err(|e| self.error("write", name, e))?;
                self.count(1);
                writer.write(&buf[..n]);
            }
            Ok::<_, anyhow::Error>(())
        }
        .await;
        if let Err(e) = sent {
            // The parts sent so far would stay in the store, billed.
            self.count(1);
            let _ = writer.abort().await;
            return Err(e);
        }
        self.count(1);
        writer
            .finish()
            .await
            .map_err(|e| self.error("write", name, e))?;
        Ok(())
    }

    /// Writes the object `name` to the file at `path`; false when there is none.
    pub fn get_file(&self, name: &str, path: &Path) -> Result<bool> {
        self.run(async {
            self.count(1);
            let got = match self.store.get(&self.key(name)).await {
                Ok(g) => g,
                Err(object_store::Error::NotFound { .. }) => return Ok(false),
                Err(e) => return Err(self.error("read", name, e)),
            };
            let mut out = crate::files::create(path, crate::files::PRIVATE_FILE)
                .with_context(|| format!("cannot create {}", path.display()))?;
            let mut stream = got.into_stream();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| self.error("read", name, e))?;
                std::io::Write::write_all(&mut out, &chunk)
                    .with_context(|| format!("cannot write {}", path.display()))?;
            }
            out.sync_all()
                .with_context(|| format!("cannot fsync {}", path.display()))?;
            Ok(true)
        })
    }

    fn error(&self, doing: &str, name: &str, e: object_store::Error) -> anyhow::Error {
        anyhow!(
            "cannot {doing} {}/{name}: {}",
            self.url,
            redact(&e.to_string())
        )
    }
}

/// Did the request fail on its way (a connection broken or refused), not
/// with the service's answer? Such a write may or may not have been done.
fn transport_failed(e: &object_store::Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if c.downcast_ref::<object_store::client::HttpError>()
            .is_some()
        {
            return true;
        }
        cause = c.source();
    }
    false
}

fn read_full(file: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// An error's text with every URL's query string cut off: a SAS token or
/// a signature travels there, and errors are shown and logged.
pub fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_url = false;
    let mut cutting = false;
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if !in_url && (rest.starts_with("http://") || rest.starts_with("https://")) {
            in_url = true;
        }
        let ends = c.is_whitespace() || matches!(c, ')' | '"' | '\'' | '>' | ',');
        if in_url && ends {
            in_url = false;
            cutting = false;
        }
        if in_url && c == '?' && !cutting {
            cutting = true;
            out.push_str("?…");
        }
        if !cutting {
            out.push(c);
        }
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// Blobs in object storage: `<prefix>/objects/ab/cdef…`, each written
/// only if absent (content addressing makes a second write of a name the
/// same bytes) and checked against its name when read.
pub struct ObjectBlobs {
    remote: Arc<Remote>,
    /// Where a large message is compressed before it goes.
    tmp: PathBuf,
    tmp_counter: AtomicU64,
}

impl ObjectBlobs {
    pub fn new(remote: Arc<Remote>, tmp: &Path) -> ObjectBlobs {
        ObjectBlobs {
            remote,
            tmp: tmp.to_path_buf(),
            tmp_counter: AtomicU64::new(0),
        }
    }

    fn name(hash: &BlobHash) -> String {
        let hex = hash.to_hex();
        format!("objects/{}/{}", &hex[..2], &hex[2..])
    }

    /// A large message, compressed as a stream into a local file first.
    fn put_large(&self, path: &Path, hash: &BlobHash, replace: bool) -> Result<Put> {
        let n = self.tmp_counter.fetch_add(1, Ordering::Relaxed);
        let staged = self.tmp.join(format!(
            "{}-{n}-{}.up",
            std::process::id(),
            &hash.to_hex()[..16]
        ));
        let result = (|| -> Result<Put> {
            let mut file = crate::files::create(&staged, crate::files::PRIVATE_FILE)
                .with_context(|| format!("cannot create {}", staged.display()))?;
            let stored_size = blob::write_compressed(Source::File(path), &mut file, &staged)?;
            drop(file);
            let name = Self::name(hash);
            if !replace && self.remote.exists(&name)? {
                return Ok(Put {
                    stored_size,
                    created: false,
                });
            }
            if stored_size <= ONE_REQUEST && !replace {
                let bytes = std::fs::read(&staged)
                    .with_context(|| format!("cannot read {}", staged.display()))?;
                let created = self.remote.put_new(&name, bytes)?;
                return Ok(Put {
                    stored_size,
                    created,
                });
            }
            // Parts always overwrite; for a content-addressed name that
            // writes the same bytes.
            self.remote.put_file(&name, &staged)?;
            Ok(Put {
                stored_size,
                created: !replace,
            })
        })();
        let _ = std::fs::remove_file(&staged);
        result.with_context(|| format!("cannot store blob {hash}"))
    }
}

impl Blobs for ObjectBlobs {
    fn put(&self, src: Source<'_>, hash: &BlobHash, replace: bool) -> Result<Put> {
        match src {
            Source::File(path) => self.put_large(path, hash, replace),
            Source::Bytes(raw) if replace => {
                let compressed = blob::compress(raw)?;
                let stored_size = compressed.len() as u64;
                self.remote.put(&Self::name(hash), compressed)?;
                Ok(Put {
                    stored_size,
                    created: false,
                })
            }
            Source::Bytes(_) => self.put_all(&[(src, *hash)]).map(|mut p| p.remove(0)),
        }
    }

    /// Compresses the batch here, then writes it with several requests in
    /// flight: each is a round trip to the storage service.
    fn put_all(&self, items: &[(Source<'_>, BlobHash)]) -> Result<Vec<Put>> {
        let mut out: Vec<Option<Put>> = vec![None; items.len()];
        let mut small = Vec::new();
        // The same message twice in one batch (two UIDs, one content) is
        // written once; the others find it there.
        let mut first: std::collections::HashMap<BlobHash, usize> = Default::default();
        for (at, (src, hash)) in items.iter().enumerate() {
            if first.contains_key(hash) {
                continue;
            }
            first.insert(*hash, at);
            match src {
                Source::File(path) => out[at] = Some(self.put_large(path, hash, false)?),
                Source::Bytes(raw) => small.push((at, *hash, blob::compress(raw)?)),
            }
        }
        let remote = &self.remote;
        let done: Vec<(usize, Put)> = remote.run(
            futures::stream::iter(small.into_iter().map(|(at, hash, compressed)| async move {
                let stored_size = compressed.len() as u64;
                let created = remote
                    .put_new_async(&Self::name(&hash), compressed)
                    .await
                    .with_context(|| format!("cannot store blob {hash}"))?;
                Ok::<_, anyhow::Error>((
                    at,
                    Put {
                        stored_size,
                        created,
                    },
                ))
            }))
            .buffer_unordered(IN_FLIGHT)
            .try_collect(),
        )?;
        for (at, put) in done {
            out[at] = Some(put);
        }
        for (at, (_, hash)) in items.iter().enumerate() {
            if out[at].is_none() {
                let written = out[first[hash]].expect("the first of a content is put");
                out[at] = Some(Put {
                    created: false,
                    ..written
                });
            }
        }
        Ok(out
            .into_iter()
            .map(|p| p.expect("every item put"))
            .collect())
    }

    fn get(&self, hash: &BlobHash) -> Result<Vec<u8>, BlobDamaged> {
        let damaged = |fault| BlobDamaged { hash: *hash, fault };
        match self.remote.get(&Self::name(hash)) {
            Ok(Some(f)) => blob::decode(&f.bytes, hash),
            Ok(None) => Err(damaged(BlobFault::Missing)),
            Err(e) => Err(damaged(BlobFault::Unreadable(format!("{e:#}")))),
        }
    }

    fn exists(&self, hash: &BlobHash) -> bool {
        self.remote.exists(&Self::name(hash)).unwrap_or(false)
    }

    fn list(&self) -> Result<Vec<Listed>> {
        let mut out = Vec::new();
        for (name, size) in self.remote.list("objects")? {
            let location = PathBuf::from(format!("{}/{name}", self.remote.url));
            let hex = name
                .strip_prefix("objects/")
                .and_then(|n| n.split_once('/'))
                .filter(|(dir, _)| dir.len() == 2)
                .map(|(dir, rest)| format!("{dir}{rest}"));
            match hex.as_deref().map(BlobHash::from_hex) {
                Some(Ok(hash)) => out.push(Listed::Blob {
                    hash,
                    location,
                    stored_size: size,
                }),
                _ => out.push(Listed::Stray(location)),
            }
        }
        Ok(out)
    }

    fn remove(&self, hashes: &[BlobHash]) -> Result<()> {
        for hash in hashes {
            self.remote.delete(&Self::name(hash))?;
        }
        Ok(())
    }

    fn location(&self, hash: &BlobHash) -> PathBuf {
        PathBuf::from(format!("{}/{}", self.remote.url, Self::name(hash)))
    }

    fn check(&self, hash: &BlobHash) -> Result<u64, BlobFault> {
        match self.remote.get(&Self::name(hash)) {
            Ok(Some(f)) => {
                blob::check_compressed(&f.bytes, hash)?;
                Ok(f.bytes.len() as u64)
            }
            Ok(None) => Err(BlobFault::Missing),
            Err(e) => Err(BlobFault::Unreadable(format!("{e:#}"))),
        }
    }

    fn requests(&self) -> u64 {
        self.remote.requests()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_are_cut_from_errors() {
        let e = "error sending request for url (https://a.blob.core.windows.net/c/o?sv=2023&sig=SECRET): timed out";
        let r = redact(e);
        assert!(!r.contains("SECRET"), "{r}");
        assert!(
            r.contains("https://a.blob.core.windows.net/c/o?…): timed out"),
            "{r}"
        );
        assert_eq!(redact("no url here? fine"), "no url here? fine");
    }

    #[test]
    fn store_addresses_are_told_apart_from_directories() {
        assert_eq!(ObjectUrl::parse("/var/mail-store").unwrap(), None);
        let az = ObjectUrl::parse("az://mail/batch-1/").unwrap().unwrap();
        assert_eq!(az.as_str(), "az://mail/batch-1");
        assert!(ObjectUrl::parse("s3://bucket/p").unwrap().is_some());
        let err = ObjectUrl::parse("ftp://x/y").unwrap_err().to_string();
        assert!(err.contains("ftp://x/y"), "{err}");
        let err = ObjectUrl::parse("https://acct.blob.core.windows.net/c?sv=1&sig=SECRET")
            .unwrap_err()
            .to_string();
        assert!(
            !err.contains("SECRET") && err.contains("AZURE_STORAGE_SAS_TOKEN"),
            "{err}"
        );
    }
}
