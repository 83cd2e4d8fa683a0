//! The byte stream under an IMAP session: TLS, optional COMPRESS=DEFLATE,
//! byte counters, and a filter that lets the parser read BINARY literals.
//!
//! Layers, from the socket up:
//! `TcpStream` → TLS → [`CountingStream`] (wire bytes) → deflate (after COMPRESS)
//! → [`Literal8Filter`] → async-imap.
//!
//! The filter exists because imap-proto does not parse `~{n}` (RFC 3516
//! literal8), which is the only way a server may send a message that holds
//! NUL bytes unaltered, nor the `BINARY[]` item that carries it (presented
//! as `BODY[]`; only the caller that asked for BINARY sees it). It tracks literal boundaries, so it only ever turns
//! a `~{n}` that ends a response line into `{n}`; literal contents pass
//! through untouched.

use std::future::Future as _;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};

use async_compression::tokio::bufread::DeflateDecoder;
use async_compression::tokio::write::DeflateEncoder;
use tokio::io::{AsyncRead, AsyncWrite, BufReader, ReadBuf};
use tokio::net::TcpStream;

use crate::rate::RateCap;

pub(crate) type TlsStream = tokio_rustls::client::TlsStream<TcpStream>;

/// The longest response line (outside literals) a server may send. Servers
/// bound their command lines the same way; a line this long is garbage or
/// an attack, and async-imap re-parses a growing line from its start on
/// every read, so an unbounded one burns CPU for minutes. 4 MiB leaves room
/// for a `SEARCH` answer of half a million UIDs.
pub const MAX_LINE: usize = 4 << 20;

/// A literal that went to a file instead of memory (see [`Spill`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spilled {
    /// The file, removed when the last handle to it goes (stored or not).
    pub file: Arc<SpillFile>,
    pub len: u64,
    /// sha256 of the bytes, computed as they were written.
    pub sha256: [u8; 32],
    /// Whether the bytes hold 0x80 (a server's stand-in for NUL).
    pub has_0x80: bool,
}

/// A spill file, removed from disk when dropped: whatever path a message
/// takes (stored, refused, or lost with its connection), its file goes.
#[derive(Debug, PartialEq, Eq)]
pub struct SpillFile(std::path::PathBuf);

impl SpillFile {
    pub fn path(&self) -> &std::path::Path {
        &self.0
    }

    /// Takes charge of a file made elsewhere (a message assembled from
    /// pieces): it goes when the handle does.
    pub fn adopt(path: std::path::PathBuf) -> SpillFile {
        SpillFile(path)
    }
}

/// A large literal the connection broke in the middle of: the bytes that
/// arrived, in their file, and the response line that announced it (as
/// the server sent it), which says whose bytes they are.
#[derive(Debug)]
pub struct CutLiteral {
    pub file: SpillFile,
    pub arrived: u64,
    pub head: Vec<u8>,
}

impl Drop for SpillFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Where literals larger than `threshold` go: each is written to a new file
/// in `dir` as it arrives, and the parser sees a short token in its place,
/// so one large message costs a file, not memory. Callers swap the token
/// for the file with [`Spill::take`].
#[derive(Debug, Clone)]
pub struct Spill {
    pub dir: std::path::PathBuf,
    pub threshold: u64,
    files: Arc<std::sync::Mutex<std::collections::HashMap<Vec<u8>, Spilled>>>,
    /// The last literal cut short, kept for whoever continues it.
    cut: Arc<std::sync::Mutex<Option<CutLiteral>>>,
    nonce: u64,
}

impl Spill {
    pub fn new(dir: std::path::PathBuf, threshold: u64) -> Spill {
        use std::hash::{BuildHasher as _, Hasher as _};
        // Tokens no message can forge: unguessable per connection.
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(std::process::id() as u64);
        Spill {
            dir,
            threshold,
            files: Default::default(),
            cut: Default::default(),
            nonce: h.finish(),
        }
    }

    /// The file a token stands for, handed over once.
    pub fn take(&self, token: &[u8]) -> Option<Spilled> {
        if !token.starts_with(SPILL_PREFIX) {
            return None;
        }
        self.files.lock().unwrap().remove(token)
    }

    /// Whether `bytes` is one of this connection's tokens (not a message).
    pub fn is_token(&self, bytes: &[u8]) -> bool {
        bytes.starts_with(SPILL_PREFIX) && self.files.lock().unwrap().contains_key(bytes)
    }

    /// The literal the connection broke in the middle of, if it was
    /// large enough to go to a file, handed over once.
    pub fn take_cut(&self) -> Option<CutLiteral> {
        self.cut.lock().unwrap().take()
    }

    fn token(&self, n: u64) -> Vec<u8> {
        let mut t = SPILL_PREFIX.to_vec();
        t.extend_from_slice(format!("{:016x}-{n}", self.nonce).as_bytes());
        t
    }
}

const SPILL_PREFIX: &[u8] = b"\0mailferry-spill-";

/// A literal being written to its file.
struct Spilling {
    file: std::io::BufWriter<std::fs::File>,
    path: std::path::PathBuf,
    left: u64,
    len: u64,
    hasher: sha2::Sha256,
    has_0x80: bool,
    token: Vec<u8>,
    /// The response line up to the literal, as the server sent it.
    head: Vec<u8>,
}

impl std::fmt::Debug for Spilling {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Spilling({}, {} left)", self.path.display(), self.left)
    }
}

/// A large message could not be written to its spill file (a full disk):
/// a local failure, not the server's.
#[derive(Debug, thiserror::Error)]
#[error("cannot write a large message to {path}: {source}")]
pub struct SpillFailed {
    pub path: std::path::PathBuf,
    pub source: io::Error,
}

/// A server sent a response line longer than [`MAX_LINE`].
#[derive(Debug, thiserror::Error)]
#[error("the server sent a response line of more than {} MiB without a line end", MAX_LINE >> 20)]
pub struct LineTooLong;

/// Bytes that crossed the network for one connection (after compression).
#[derive(Debug, Default)]
pub struct WireStats {
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
}

#[derive(Debug)]
pub(crate) struct CountingStream {
    inner: TlsStream,
    stats: Arc<WireStats>,
    /// The process's `--max-rate`, with this stream's waits on it.
    cap: Option<Arc<RateCap>>,
    read_wait: Option<Pin<Box<tokio::time::Sleep>>>,
    write_wait: Option<Pin<Box<tokio::time::Sleep>>>,
    scratch: Vec<u8>,
}

/// Waits (returning Pending) while the cap is in debt; then how many bytes
/// one read or write may move.
fn allowance(
    cap: &Option<Arc<RateCap>>,
    wait: &mut Option<Pin<Box<tokio::time::Sleep>>>,
    cx: &mut Context<'_>,
) -> Poll<usize> {
    let Some(cap) = cap else {
        return Poll::Ready(usize::MAX);
    };
    loop {
        if let Some(sleep) = wait.as_mut() {
            ready!(sleep.as_mut().poll(cx));
            *wait = None;
        }
        match cap.wait() {
            None => return Poll::Ready(cap.burst()),
            Some(d) => *wait = Some(Box::pin(tokio::time::sleep(d))),
        }
    }
}

impl AsyncRead for CountingStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let limit = ready!(allowance(&this.cap, &mut this.read_wait, cx));
        let n = if limit >= buf.remaining() {
            let before = buf.filled().len();
            ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
            buf.filled().len() - before
        } else {
            this.scratch.resize(limit, 0);
            let mut small = ReadBuf::new(&mut this.scratch);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut small))?;
            let n = small.filled().len();
            buf.put_slice(&this.scratch[..n]);
            n
        };
        if let Some(cap) = &this.cap {
            cap.charge(n);
        }
        this.stats.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for CountingStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let limit = ready!(allowance(&this.cap, &mut this.write_wait, cx));
        let n = ready!(Pin::new(&mut this.inner).poll_write(cx, &buf[..buf.len().min(limit)]))?;
        if let Some(cap) = &this.cap {
            cap.charge(n);
        }
        this.stats.bytes_out.fetch_add(n as u64, Ordering::Relaxed);
        Poll::Ready(Ok(n))
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

type Deflated = DeflateDecoder<BufReader<DeflateEncoder<CountingStream>>>;

#[derive(Debug)]
enum Layer {
    Plain(Box<CountingStream>),
    Deflate(Box<Deflated>),
    /// Only while switching layers.
    Switching,
}

/// The stream async-imap reads and writes.
#[derive(Debug)]
pub struct Wire {
    layer: Layer,
    filter: Literal8Filter,
    stats: Arc<WireStats>,
}

impl Wire {
    pub(crate) fn new(tls: TlsStream, cap: Option<Arc<RateCap>>) -> Wire {
        let stats = Arc::new(WireStats::default());
        Wire {
            layer: Layer::Plain(Box::new(CountingStream {
                inner: tls,
                stats: stats.clone(),
                cap,
                read_wait: None,
                write_wait: None,
                scratch: Vec::new(),
            })),
            filter: Literal8Filter::default(),
            stats,
        }
    }

    pub fn stats(&self) -> Arc<WireStats> {
        self.stats.clone()
    }

    /// Closing will reset the connection (SO_LINGER 0) instead of ending
    /// it: bytes still in our buffers (APPENDs written ahead) are dropped,
    /// not delivered to the server after we have given up on them.
    pub(crate) fn reset_on_close(&self) {
        let counted = match &self.layer {
            Layer::Plain(c) => c.as_ref(),
            Layer::Deflate(d) => d.get_ref().get_ref().get_ref(),
            Layer::Switching => return,
        };
        let _ = counted.inner.get_ref().0.set_zero_linger();
    }

    /// Where the last `* NAMESPACE` answer goes (its text after the word).
    pub(crate) fn namespace_slot(&self) -> Arc<std::sync::Mutex<Option<String>>> {
        self.filter.namespace.clone()
    }

    /// From now on, literals larger than `spill.threshold` go to files.
    pub(crate) fn spill_to(&mut self, spill: Spill) {
        self.filter.spill = Some(spill);
    }

    /// Starts DEFLATE in both directions; call right after the server's OK
    /// to `COMPRESS DEFLATE`, before anything else is sent.
    pub(crate) fn start_deflate(&mut self) {
        if let Layer::Plain(counted) = std::mem::replace(&mut self.layer, Layer::Switching) {
            let encoder = DeflateEncoder::new(*counted);
            self.layer = Layer::Deflate(Box::new(DeflateDecoder::new(BufReader::new(encoder))));
        }
    }

    fn poll_layer_read(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match &mut self.layer {
            Layer::Plain(c) => Pin::new(c.as_mut()).poll_read(cx, buf),
            Layer::Deflate(d) => Pin::new(d.as_mut()).poll_read(cx, buf),
            Layer::Switching => Poll::Ready(Err(io::Error::other("stream is switching layers"))),
        }
    }

    fn writer(&mut self) -> io::Result<Pin<&mut (dyn AsyncWrite + Unpin + Send)>> {
        match &mut self.layer {
            Layer::Plain(c) => Ok(Pin::new(c.as_mut())),
            Layer::Deflate(d) => Ok(Pin::new(d.get_mut().get_mut())),
            Layer::Switching => Err(io::Error::other("stream is switching layers")),
        }
    }
}

impl AsyncRead for Wire {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            // Before anything reaches the parser: a message whose file could
            // not be written must never be handed on as if it had been.
            if let Some(e) = this.filter.spill_error.take() {
                this.filter.failed = true;
                return Poll::Ready(Err(e));
            }
            if this.filter.failed {
                return Poll::Ready(Err(io::Error::other(
                    "the connection is unusable after a failed write to the store",
                )));
            }
            if this.filter.copy_out(buf) {
                return Poll::Ready(Ok(()));
            }
            if this.filter.line.len() > MAX_LINE {
                return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, LineTooLong)));
            }
            let mut chunk = [0u8; 16 * 1024];
            let mut chunk_buf = ReadBuf::new(&mut chunk);
            if let Err(e) = ready!(this.poll_layer_read(cx, &mut chunk_buf)) {
                this.filter.cut_spill();
                return Poll::Ready(Err(e));
            }
            let data = chunk_buf.filled();
            if data.is_empty() {
                // End of stream: hand out whatever partial line is left.
                this.filter.cut_spill();
                this.filter.finish();
                this.filter.copy_out(buf);
                return Poll::Ready(Ok(()));
            }
            this.filter.push(data);
        }
    }
}

impl AsyncWrite for Wire {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.writer()?.poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.writer()?.poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.writer()?.poll_shutdown(cx)
    }
}

/// Rewrites `~{n}` at the end of a response line to `{n}` (see module docs).
#[derive(Debug, Default)]
struct Literal8Filter {
    /// The response line being read, up to its LF.
    line: Vec<u8>,
    /// Bytes of literal content still to pass through untouched.
    literal_left: u64,
    /// Bytes ready for the reader, from `out_pos` on.
    out: Vec<u8>,
    out_pos: usize,
    spill: Option<Spill>,
    spilling: Option<Spilling>,
    spilled: u64,
    spill_error: Option<io::Error>,
    /// A spill failed: nothing more is handed to the parser.
    failed: bool,
    /// The last `* NAMESPACE` line, which imap-proto cannot parse: kept
    /// here for the session and never handed to the parser.
    namespace: Arc<std::sync::Mutex<Option<String>>>,
}

impl Literal8Filter {
    /// Copies ready bytes into `buf`; false when there were none.
    fn copy_out(&mut self, buf: &mut ReadBuf<'_>) -> bool {
        let ready = &self.out[self.out_pos..];
        if ready.is_empty() || buf.remaining() == 0 {
            return false;
        }
        let n = ready.len().min(buf.remaining());
        buf.put_slice(&ready[..n]);
        self.out_pos += n;
        if self.out_pos == self.out.len() {
            self.out.clear();
            self.out_pos = 0;
        }
        true
    }

    fn push(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            if let Some(sp) = self.spilling.as_mut() {
                use sha2::Digest as _;
                use std::io::Write as _;
                let n = (sp.left.min(data.len() as u64)) as usize;
                let chunk = &data[..n];
                sp.hasher.update(chunk);
                sp.has_0x80 |= chunk.contains(&0x80);
                if self.spill_error.is_none()
                    && let Err(e) = sp.file.write_all(chunk)
                {
                    self.spill_error = Some(spill_failed(&sp.path, e));
                }
                sp.left -= n as u64;
                data = &data[n..];
                if sp.left == 0 {
                    self.finish_spill();
                }
                continue;
            }
            if self.literal_left > 0 {
                let n = (self.literal_left.min(data.len() as u64)) as usize;
                self.out.extend_from_slice(&data[..n]);
                self.literal_left -= n as u64;
                data = &data[n..];
                continue;
            }
            match data.iter().position(|&b| b == b'\n') {
                None => {
                    // Past the bound the line is dropped: the reader fails.
                    if self.line.len() <= MAX_LINE {
                        self.line.extend_from_slice(data);
                    }
                    return;
                }
                Some(nl) => {
                    self.line.extend_from_slice(&data[..=nl]);
                    data = &data[nl + 1..];
                    self.end_line();
                }
            }
        }
    }

    fn end_line(&mut self) {
        if self.line.len() > 12
            && self.line[..12].eq_ignore_ascii_case(b"* NAMESPACE ")
            && literal_at_end(&self.line).is_none()
        {
            let text = String::from_utf8_lossy(&self.line[12..])
                .trim_end()
                .to_string();
            *self.namespace.lock().unwrap() = Some(text);
            self.line.clear();
            return;
        }
        if let Some((mut brace, len)) = literal_at_end(&self.line) {
            let head = self.line[..brace].to_vec();
            if brace > 0 && self.line[brace - 1] == b'~' {
                self.line.remove(brace - 1);
                brace -= 1;
            }
            // imap-proto cannot parse the BINARY[] item name either; the
            // caller that asked for BINARY.PEEK[] reads it as BODY[].
            if self.line[..brace].ends_with(b"BINARY[] ") {
                self.line.splice(
                    brace - b"BINARY[] ".len()..brace,
                    b"BODY[] ".iter().copied(),
                );
            }
            self.literal_left = len;
            if let Some(spill) = self.spill.as_ref().filter(|s| len > s.threshold) {
                // The parser gets a token of the same kind: a literal.
                self.spilled += 1;
                let token = spill.token(self.spilled);
                let path = spill.dir.join(format!(
                    "spill-{}-{:016x}-{}",
                    std::process::id(),
                    spill.nonce,
                    self.spilled
                ));
                match crate::files::create_new(&path, crate::files::PRIVATE_FILE) {
                    Ok(file) => {
                        // Where the literal's size is now (the line may have
                        // been rewritten above).
                        let brace = literal_at_end(&self.line).map_or(0, |(b, _)| b);
                        let digits = format!("{}", len);
                        let at = self.line[brace..]
                            .windows(digits.len())
                            .position(|w| w == digits.as_bytes())
                            .map(|p| brace + p);
                        if let Some(at) = at {
                            self.line.splice(
                                at..at + digits.len(),
                                token.len().to_string().into_bytes(),
                            );
                        }
                        self.literal_left = 0;
                        self.spilling = Some(Spilling {
                            file: std::io::BufWriter::with_capacity(256 * 1024, file),
                            path,
                            left: len,
                            len,
                            hasher: <sha2::Sha256 as sha2::Digest>::new(),
                            has_0x80: false,
                            token,
                            head,
                        });
                    }
                    Err(e) => self.spill_error = Some(spill_failed(&path, e)),
                }
            }
        }
        self.out.extend_from_slice(&self.line);
        self.line.clear();
        if self.spilling.as_ref().is_some_and(|s| s.left == 0) {
            self.finish_spill();
        }
    }

    /// The literal is whole in its file: the token goes to the parser.
    fn finish_spill(&mut self) {
        use sha2::Digest as _;
        use std::io::Write as _;
        let Some(sp) = self.spilling.take() else {
            return;
        };
        let Spilling {
            mut file,
            path,
            len,
            hasher,
            has_0x80,
            token,
            ..
        } = sp;
        if let Err(e) = file.flush()
            && self.spill_error.is_none()
        {
            self.spill_error = Some(spill_failed(&path, e));
        }
        self.out.extend_from_slice(&token);
        if self.spill_error.is_some() {
            // Not registered: the token resolves to nothing, and the read
            // fails before the parser sees it.
            let _ = std::fs::remove_file(&path);
            return;
        }
        if let Some(spill) = &self.spill {
            spill.files.lock().unwrap().insert(
                token,
                Spilled {
                    file: Arc::new(SpillFile(path)),
                    len,
                    sha256: hasher.finalize().into(),
                    has_0x80,
                },
            );
        }
    }

    fn finish(&mut self) {
        self.out.append(&mut self.line);
    }

    /// The connection ended in the middle of a spilled literal: what
    /// arrived is kept (see [`Spill::take_cut`]) rather than thrown away.
    fn cut_spill(&mut self) {
        use std::io::Write as _;
        let Some(mut sp) = self.spilling.take() else {
            return;
        };
        let flushed = sp.file.flush().is_ok() && self.spill_error.is_none();
        let file = SpillFile(sp.path.clone());
        match &self.spill {
            Some(spill) if flushed => {
                *spill.cut.lock().unwrap() = Some(CutLiteral {
                    file,
                    arrived: sp.len - sp.left,
                    head: std::mem::take(&mut sp.head),
                });
            }
            _ => drop(file),
        }
    }
}

impl Drop for Literal8Filter {
    /// A connection dropped mid-literal (a timeout) leaves its cut too.
    fn drop(&mut self) {
        self.cut_spill();
    }
}

fn spill_failed(path: &std::path::Path, source: io::Error) -> io::Error {
    io::Error::other(SpillFailed {
        path: path.to_path_buf(),
        source,
    })
}

/// If `line` ends with `{n}\r\n` (or `{n+}\r\n`), the index of `{` and n.
fn literal_at_end(line: &[u8]) -> Option<(usize, u64)> {
    let body = line.strip_suffix(b"}\r\n")?;
    let body = body.strip_suffix(b"+").unwrap_or(body);
    let digits_start = body.iter().rposition(|b| !b.is_ascii_digit())? + 1;
    if body[digits_start - 1] != b'{' || digits_start == body.len() {
        return None;
    }
    let n = std::str::from_utf8(&body[digits_start..])
        .ok()?
        .parse()
        .ok()?;
    Some((digits_start - 1, n))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(chunks: &[&[u8]]) -> Vec<u8> {
        let mut f = Literal8Filter::default();
        for c in chunks {
            f.push(c);
        }
        f.finish();
        f.out[f.out_pos..].to_vec()
    }

    #[test]
    fn literal8_becomes_a_literal_and_contents_pass_untouched() {
        let input: &[u8] = b"* 1 FETCH (UID 1 BINARY[] ~{7}\r\na\0~{2}\r\n)\r\nt OK done\r\n";
        let want: &[u8] = b"* 1 FETCH (UID 1 BODY[] {7}\r\na\0~{2}\r\n)\r\nt OK done\r\n";
        assert_eq!(run(&[input]), want);
        let plain: &[u8] = b"* 3 FETCH (UID 3 BINARY[] {2}\r\nab)\r\n";
        assert_eq!(run(&[plain]), b"* 3 FETCH (UID 3 BODY[] {2}\r\nab)\r\n");
        // The same split at every byte.
        for i in 0..input.len() {
            assert_eq!(run(&[&input[..i], &input[i..]]), want, "split at {i}");
        }
    }

    #[test]
    fn a_large_literal_cut_short_keeps_what_arrived_and_whose_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let spill = Spill::new(dir.path().to_path_buf(), 1000);
        let big: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        let mut input = b"* 1 FETCH (UID 7 BODY[]<2048> {5000}\r\n".to_vec();
        input.extend_from_slice(&big[..3000]);
        let mut f = Literal8Filter::default();
        f.spill = Some(spill.clone());
        f.push(&input);
        drop(f);
        let cut = spill.take_cut().expect("the cut is kept");
        assert_eq!(cut.arrived, 3000);
        assert_eq!(cut.head, b"* 1 FETCH (UID 7 BODY[]<2048> ");
        assert_eq!(std::fs::read(cut.file.path()).unwrap(), &big[..3000]);
        assert!(spill.take_cut().is_none(), "handed over once");
        let path = cut.file.path().to_path_buf();
        drop(cut);
        assert!(!path.exists(), "its file goes with it");
    }

    #[test]
    fn large_literals_go_to_files_and_the_parser_sees_a_token() {
        use sha2::Digest as _;
        let dir = tempfile::tempdir().unwrap();
        let spill = Spill::new(dir.path().to_path_buf(), 1000);
        let big: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        let mut input = b"* 1 FETCH (UID 7 BODY[] {5000}\r\n".to_vec();
        input.extend_from_slice(&big);
        input.extend_from_slice(b" BODY[HEADER] {3}\r\nabc)\r\nt OK done\r\n");
        // In pieces of every size, as a network delivers them.
        for step in [1, 7, 999, 4096, input.len()] {
            let mut f = Literal8Filter::default();
            f.spill = Some(spill.clone());
            for chunk in input.chunks(step) {
                f.push(chunk);
            }
            let out = f.out[f.out_pos..].to_vec();
            let token = spill.token(1);
            let mut want = format!("* 1 FETCH (UID 7 BODY[] {{{}}}\r\n", token.len()).into_bytes();
            want.extend_from_slice(&token);
            want.extend_from_slice(b" BODY[HEADER] {3}\r\nabc)\r\nt OK done\r\n");
            assert_eq!(out, want, "step {step}");
            let spilled = spill.take(&token).expect("registered");
            assert!(spill.take(&token).is_none(), "handed over once");
            assert_eq!(std::fs::read(spilled.file.path()).unwrap(), big);
            let path = spilled.file.path().to_path_buf();
            assert_eq!(spilled.len, 5000);
            assert_eq!(spilled.sha256, <[u8; 32]>::from(sha2::Sha256::digest(&big)));
            assert!(spilled.has_0x80);
            drop(spilled);
            assert!(!path.exists(), "a spill file goes with its last handle");
        }
    }

    #[test]
    fn a_line_past_the_bound_is_not_kept() {
        let mut f = Literal8Filter::default();
        let chunk = vec![b'x'; 1 << 20];
        for _ in 0..(MAX_LINE >> 20) + 3 {
            f.push(&chunk);
        }
        assert!(f.line.len() > MAX_LINE && f.line.len() <= MAX_LINE + chunk.len());
        assert!(f.out.is_empty());
    }

    #[test]
    fn plain_literals_and_lines_are_unchanged() {
        let input: &[u8] = b"* 2 FETCH (BODY[] {5}\r\n~{1}\n)\r\n* LIST () \"/\" \"x~{\"\r\n";
        assert_eq!(run(&[input]), input);
    }
}
