//! A connection shim in front of hyper that repairs the HTTP/2 `:authority` of requests
//! sent by grpc-go clients dialing a "passthrough" target.
//!
//! `etcdctl` 3.4 dials per-endpoint maintenance calls (`endpoint status`, `defrag`,
//! `endpoint hashkv`, `move-leader`) with the target `passthrough:///http://host:port`, so
//! grpc-go sends `:authority: http://host:port`. grpc-go servers (real etcd) accept that;
//! the `h2` crate under hyper rejects it ("malformed authority") with RST_STREAM
//! PROTOCOL_ERROR. h2 offers no hook to relax that check, so this module rewrites the
//! client→server byte stream before hyper sees it:
//!
//! - a connection that does not open with the HTTP/2 client preface (HTTP/1.1, e.g.
//!   `/metrics` via curl) is passed through untouched;
//! - after the preface the stream is parsed as HTTP/2 frames. Each header block (HEADERS
//!   plus its CONTINUATION frames) is HPACK-decoded with a decoder that tracks the client's
//!   dynamic table, an `:authority` that is not a valid authority is normalized
//!   (`scheme://host:port/path` → `host:port`), and the block is re-encoded without the
//!   dynamic table (static-table references and literals "without indexing" only), so the
//!   server's decoder table stays empty and in sync. It goes out as one HEADERS frame,
//!   split into CONTINUATION frames at [`OUT_FRAME_PAYLOAD_MAX`]; END_STREAM is kept,
//!   padding and priority are dropped (h2 ignores priority);
//! - every other frame, and all server→client bytes, pass through unchanged. Frame
//!   payloads other than header blocks are streamed, never buffered whole, and go straight
//!   into hyper's read buffer when nothing is pending;
//! - a connection whose *first* header block needs no repair (every client but grpc-go's
//!   passthrough dialer) gets that block byte for byte and is passed through untouched
//!   from then on ([`Policy::UntilFirstCleanBlock`]): grpc-go sends one `:authority` for
//!   every stream of a connection, and HPACK decoding on the hot path of every request
//!   costs about a sixth of the server's CPU on small puts (loona builds a Huffman table
//!   per string). Because the first block went out unchanged, h2's HPACK table is the
//!   client's and nothing needs tracking afterwards.
//!
//! The shim is a plain `AsyncRead + AsyncWrite` wrapper ([`ShimStream`]) around the TCP
//! stream: no extra task or copy per connection beyond the frame headers.
//!
//! HPACK: `loona-hpack` decodes. It is the maintained successor of `fluke-hpack` (same
//! authors, bearcove/loona, 2024), whose lineage is the long-standing `hpack` 0.3 (2016,
//! unmaintained); it decodes Huffman strings, keeps the dynamic table and lets us cap the
//! table size updates a client may send. `httlib-hpack` would also work but has seen no
//! release since 2021. loona's *encoder* always inserts new fields into the dynamic table,
//! which is exactly what the re-encoding must not do, so encoding here is the few lines of
//! "literal without indexing" (RFC 7541 §6.2.2) on top of loona's `encode_integer_into`.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use axum::http::uri::Authority;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use loona_hpack::encoder::encode_integer_into;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, error};

/// The HTTP/2 client connection preface (RFC 9113 §3.4).
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// HTTP/2 frame header length.
const FRAME_HEAD_LEN: usize = 9;
/// Largest header block (HPACK bytes over HEADERS + CONTINUATION) the shim buffers.
/// Frame payloads are at most 2^24-1 bytes by the frame format; only header blocks are
/// buffered, so this is the shim's memory bound per connection besides [`READ_CHUNK`].
const HEADER_BLOCK_BYTES_MAX: usize = 1 << 20;
/// Largest decoded header list (RFC 7541 §4.1 sizes: name + value + 32 per field). An
/// indexed field is one byte on the wire but may expand to a whole table entry.
const HEADER_LIST_BYTES_MAX: usize = 1 << 20;
/// Payload size of the HEADERS/CONTINUATION frames the shim emits: the HTTP/2 default
/// SETTINGS_MAX_FRAME_SIZE, which hyper's server keeps, so it is always acceptable.
const OUT_FRAME_PAYLOAD_MAX: usize = 16_384;
/// The HPACK dynamic table size the server allows the client (SETTINGS_HEADER_TABLE_SIZE).
/// The builder in [`serve_connection`] does not change h2's default of 4096, so a client
/// table size update above this is a compression error, as h2 itself would treat it.
const CLIENT_HEADER_TABLE_SIZE_MAX: usize = 4_096;
/// Bytes read from the socket at once when the input has to go through the rewriter.
const READ_CHUNK: usize = 32 * 1024;
/// Buffer capacity kept between uses; a buffer grown past it by one large header block is
/// freed afterwards, so idle connections stay small.
const RETAINED_BUFFER_BYTES_MAX: usize = 64 * 1024;
/// Back-off after an accept error that is not about a single connection (e.g. EMFILE).
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_secs(1);

const FRAME_HEADERS: u8 = 0x1;
const FRAME_CONTINUATION: u8 = 0x9;
const FLAG_END_STREAM: u8 = 0x1;
const FLAG_END_HEADERS: u8 = 0x4;
const FLAG_PADDED: u8 = 0x8;
const FLAG_PRIORITY: u8 = 0x20;
/// Stream dependency (4) + weight (1) in a HEADERS frame with the PRIORITY flag.
const PRIORITY_FIELDS_LEN: usize = 5;
/// Most bytes a HEADERS payload carries besides its header block fragment: pad length,
/// priority fields and up to 255 bytes of padding.
const HEADERS_FRAME_EXTRA_MAX: usize = 1 + PRIORITY_FIELDS_LEN + 255;

/// Static-table entries (RFC 7541 Appendix A) the encoder refers to: the ones gRPC and
/// HTTP clients send. Anything else is sent as a literal name.
const STATIC_FULL: &[(usize, &[u8], &[u8])] = &[
    (2, b":method", b"GET"),
    (3, b":method", b"POST"),
    (4, b":path", b"/"),
    (6, b":scheme", b"http"),
    (7, b":scheme", b"https"),
];
const STATIC_NAMES: &[(usize, &[u8])] = &[
    (1, b":authority"),
    (2, b":method"),
    (4, b":path"),
    (6, b":scheme"),
    (16, b"accept-encoding"),
    (19, b"accept"),
    (23, b"authorization"),
    (28, b"content-length"),
    (31, b"content-type"),
    (58, b"user-agent"),
];

/// Serves `router` on `listener` like `axum::serve`, with every connection behind the
/// [`ShimStream`] rewrite. Runs until the task is dropped; per-connection errors are
/// logged at debug.
pub async fn serve(listener: TcpListener, router: Router) -> io::Result<()> {
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                error!(error = %e, "accept error");
                tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                continue;
            }
        };
        let router = router.clone();
        tokio::spawn(async move {
            if let Err(e) = serve_connection(tcp, router).await {
                debug!(%peer, error = %e, "client connection ended with an error");
            }
        });
    }
}

fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// One connection: hyper (HTTP/1.1 or HTTP/2, detected from the first bytes) over the shim.
async fn serve_connection(
    tcp: TcpStream,
    router: Router,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    tcp.set_nodelay(true)?;
    let io = TokioIo::new(ShimStream::new(tcp));
    let mut builder = Builder::new(TokioExecutor::new());
    // As axum::serve does (HTTP/2 extended CONNECT, for websockets).
    builder.http2().enable_connect_protocol();
    builder
        .serve_connection_with_upgrades(io, TowerToHyperService::new(router))
        .await
}

/// An IO stream whose read side is the client's bytes with HTTP/2 header blocks rewritten
/// (see the module docs); writes pass straight through.
pub struct ShimStream<S> {
    inner: S,
    rewriter: Rewriter,
    /// Socket bytes on their way into the rewriter.
    scratch: Box<[u8]>,
    /// Rewritten bytes not yet handed to the reader; `out[out_pos..]` is pending.
    out: Vec<u8>,
    out_pos: usize,
    eof: bool,
}

impl<S> ShimStream<S> {
    pub fn new(inner: S) -> Self {
        ShimStream {
            inner,
            rewriter: Rewriter::new(),
            scratch: vec![0; READ_CHUNK].into_boxed_slice(),
            out: Vec::new(),
            out_pos: 0,
            eof: false,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ShimStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.out_pos < this.out.len() {
                let n = (this.out.len() - this.out_pos).min(buf.remaining());
                buf.put_slice(&this.out[this.out_pos..this.out_pos + n]);
                this.out_pos += n;
                if this.out_pos == this.out.len() {
                    reset_buffer(&mut this.out);
                    this.out_pos = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if this.eof || buf.remaining() == 0 {
                return Poll::Ready(Ok(()));
            }
            // Bytes the rewriter would copy verbatim (a DATA payload, or a connection that
            // is not HTTP/2) go straight into the caller's buffer.
            let direct = this.rewriter.verbatim_budget();
            if direct > 0 {
                let dst = buf.initialize_unfilled_to(direct.min(buf.remaining()));
                let mut direct_buf = ReadBuf::new(dst);
                ready!(Pin::new(&mut this.inner).poll_read(cx, &mut direct_buf))?;
                let n = direct_buf.filled().len();
                if n == 0 {
                    this.eof = true;
                } else {
                    this.rewriter.consumed_verbatim(n);
                    buf.advance(n);
                }
                return Poll::Ready(Ok(()));
            }
            let mut scratch = ReadBuf::new(&mut this.scratch);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut scratch))?;
            if scratch.filled().is_empty() {
                // A frame cut short by EOF is dropped; hyper sees a clean end of input.
                this.eof = true;
                continue;
            }
            this.rewriter
                .feed(scratch.filled(), &mut this.out)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ShimStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Why the shim gave up on a connection (it is closed; h2 would have sent GOAWAY).
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ShimError {
    #[error("HTTP/2 header block larger than {HEADER_BLOCK_BYTES_MAX} bytes")]
    HeaderBlockTooLarge,
    #[error("HTTP/2 header list larger than {HEADER_LIST_BYTES_MAX} bytes")]
    HeaderListTooLarge,
    #[error("HTTP/2 frame of type {0:#x} inside a header block")]
    ExpectedContinuation(u8),
    #[error("HTTP/2 CONTINUATION frame outside a header block")]
    UnexpectedContinuation,
    #[error("HTTP/2 HEADERS frame with invalid padding or priority fields")]
    BadPadding,
    #[error("HPACK decoding failed: {0}")]
    Hpack(loona_hpack::decoder::DecoderError),
}

/// Where the rewriter is in the client's byte stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Matching the client preface; `matched` bytes of it seen so far.
    Preface { matched: usize },
    /// Not HTTP/2 with prior knowledge: everything is copied.
    Passthrough,
    /// Collecting a frame header into `head`.
    FrameHead,
    /// Copying the rest of a frame that is not part of a header block.
    Copy { remaining: usize },
    /// Collecting a HEADERS/CONTINUATION payload into `payload`.
    HeaderPayload { remaining: usize },
}

/// How long a connection's header blocks go through the rewriter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Until the first header block, if it needs no repair; then the connection passes
    /// through untouched. What [`serve`] uses.
    UntilFirstCleanBlock,
    /// Every header block is decoded and re-encoded: the rewriting machinery alone, which
    /// the tests exercise without the pass-through.
    #[cfg(test)]
    Always,
}

/// The client→server rewrite as a push parser: bytes in, rewritten bytes out. All input
/// is always consumed; incomplete frame headers and header payloads are kept (bounded).
pub struct Rewriter {
    state: State,
    policy: Policy,
    /// Header blocks completed so far on this connection.
    blocks_seen: u64,
    decoder: loona_hpack::Decoder<'static>,
    head: [u8; FRAME_HEAD_LEN],
    head_len: usize,
    /// Type and flags of the header frame being collected.
    frame_type: u8,
    frame_flags: u8,
    frame_stream: u32,
    payload: Vec<u8>,
    /// The header block being assembled, and the HEADERS frame that opened it.
    block: Vec<u8>,
    block_open: bool,
    block_stream: u32,
    block_end_stream: bool,
    /// Re-encoded header block.
    encoded: Vec<u8>,
}

impl Default for Rewriter {
    fn default() -> Self {
        Self::new()
    }
}

impl Rewriter {
    pub fn new() -> Self {
        Self::with_policy(Policy::UntilFirstCleanBlock)
    }

    pub fn with_policy(policy: Policy) -> Self {
        let mut decoder = loona_hpack::Decoder::new();
        decoder.set_max_allowed_table_size(CLIENT_HEADER_TABLE_SIZE_MAX);
        Rewriter {
            state: State::Preface { matched: 0 },
            policy,
            blocks_seen: 0,
            decoder,
            head: [0; FRAME_HEAD_LEN],
            head_len: 0,
            frame_type: 0,
            frame_flags: 0,
            frame_stream: 0,
            payload: Vec::new(),
            block: Vec::new(),
            block_open: false,
            block_stream: 0,
            block_end_stream: false,
            encoded: Vec::new(),
        }
    }

    /// How many of the next input bytes would be copied verbatim (0: they need parsing).
    fn verbatim_budget(&self) -> usize {
        match self.state {
            State::Passthrough => usize::MAX,
            State::Copy { remaining } => remaining,
            _ => 0,
        }
    }

    /// The caller copied `n` (≤ [`Self::verbatim_budget`]) input bytes itself.
    fn consumed_verbatim(&mut self, n: usize) {
        if let State::Copy { remaining } = self.state {
            debug_assert!(n <= remaining);
            self.state = if n >= remaining {
                State::FrameHead
            } else {
                State::Copy {
                    remaining: remaining - n,
                }
            };
        }
    }

    /// Consumes `input`, appending the rewritten bytes to `out`.
    pub fn feed(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> Result<(), ShimError> {
        while !input.is_empty() {
            match self.state {
                State::Preface { matched } => {
                    let n = (PREFACE.len() - matched).min(input.len());
                    if input[..n] != PREFACE[matched..matched + n] {
                        out.extend_from_slice(&PREFACE[..matched]);
                        out.extend_from_slice(input);
                        self.state = State::Passthrough;
                        return Ok(());
                    }
                    input = &input[n..];
                    if matched + n == PREFACE.len() {
                        out.extend_from_slice(PREFACE);
                        self.state = State::FrameHead;
                    } else {
                        self.state = State::Preface {
                            matched: matched + n,
                        };
                    }
                }
                State::Passthrough => {
                    out.extend_from_slice(input);
                    return Ok(());
                }
                State::FrameHead => {
                    let n = (FRAME_HEAD_LEN - self.head_len).min(input.len());
                    self.head[self.head_len..self.head_len + n].copy_from_slice(&input[..n]);
                    self.head_len += n;
                    input = &input[n..];
                    if self.head_len == FRAME_HEAD_LEN {
                        self.head_len = 0;
                        self.begin_frame(out)?;
                    }
                }
                State::Copy { remaining } => {
                    let n = remaining.min(input.len());
                    out.extend_from_slice(&input[..n]);
                    input = &input[n..];
                    self.state = if n == remaining {
                        State::FrameHead
                    } else {
                        State::Copy {
                            remaining: remaining - n,
                        }
                    };
                }
                State::HeaderPayload { remaining } => {
                    let n = remaining.min(input.len());
                    self.payload.extend_from_slice(&input[..n]);
                    input = &input[n..];
                    if n == remaining {
                        self.state = State::FrameHead;
                        self.end_header_frame(out)?;
                    } else {
                        self.state = State::HeaderPayload {
                            remaining: remaining - n,
                        };
                    }
                }
            }
        }
        Ok(())
    }

    /// A complete frame header is in `head`.
    fn begin_frame(&mut self, out: &mut Vec<u8>) -> Result<(), ShimError> {
        let h = &self.head;
        let len = (usize::from(h[0]) << 16) | (usize::from(h[1]) << 8) | usize::from(h[2]);
        let (frame_type, flags) = (h[3], h[4]);
        let stream = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;
        let header_frame = match frame_type {
            FRAME_HEADERS if !self.block_open => true,
            FRAME_CONTINUATION if self.block_open && stream == self.block_stream => true,
            FRAME_CONTINUATION if !self.block_open => {
                return Err(ShimError::UnexpectedContinuation)
            }
            other if self.block_open => return Err(ShimError::ExpectedContinuation(other)),
            _ => false,
        };
        if !header_frame {
            out.extend_from_slice(h);
            self.state = if len == 0 {
                State::FrameHead
            } else {
                State::Copy { remaining: len }
            };
            return Ok(());
        }
        if self.block.len() + len > HEADER_BLOCK_BYTES_MAX + HEADERS_FRAME_EXTRA_MAX {
            return Err(ShimError::HeaderBlockTooLarge);
        }
        self.frame_type = frame_type;
        self.frame_flags = flags;
        self.frame_stream = stream;
        self.payload.clear();
        if len == 0 {
            self.end_header_frame(out)
        } else {
            self.state = State::HeaderPayload { remaining: len };
            Ok(())
        }
    }

    /// A complete HEADERS or CONTINUATION payload is in `payload`.
    fn end_header_frame(&mut self, out: &mut Vec<u8>) -> Result<(), ShimError> {
        let flags = self.frame_flags;
        let fragment = if self.frame_type == FRAME_HEADERS {
            let mut start = 0;
            let mut pad = 0;
            if flags & FLAG_PADDED != 0 {
                pad = usize::from(*self.payload.first().ok_or(ShimError::BadPadding)?);
                start = 1;
            }
            if flags & FLAG_PRIORITY != 0 {
                start += PRIORITY_FIELDS_LEN;
            }
            if start + pad > self.payload.len() {
                return Err(ShimError::BadPadding);
            }
            self.block.clear();
            self.block_open = true;
            self.block_stream = self.frame_stream;
            self.block_end_stream = flags & FLAG_END_STREAM != 0;
            &self.payload[start..self.payload.len() - pad]
        } else {
            &self.payload[..]
        };
        if self.block.len() + fragment.len() > HEADER_BLOCK_BYTES_MAX {
            return Err(ShimError::HeaderBlockTooLarge);
        }
        self.block.extend_from_slice(fragment);
        if flags & FLAG_END_HEADERS != 0 {
            self.block_open = false;
            let repaired = self.rewrite_block()?;
            self.blocks_seen += 1;
            if !repaired && self.blocks_seen == 1 && self.policy == Policy::UntilFirstCleanBlock {
                // The original bytes, so h2's HPACK table stays the client's; the rest of
                // the connection is not parsed any more.
                write_header_frames(out, self.block_stream, self.block_end_stream, &self.block);
                self.state = State::Passthrough;
                self.block = Vec::new();
                self.encoded = Vec::new();
                self.payload = Vec::new();
                return Ok(());
            }
            write_header_frames(out, self.block_stream, self.block_end_stream, &self.encoded);
            reset_buffer(&mut self.block);
            reset_buffer(&mut self.encoded);
            reset_buffer(&mut self.payload);
        }
        Ok(())
    }

    /// Decodes `block` and re-encodes it into `encoded`; whether an `:authority` was
    /// repaired.
    fn rewrite_block(&mut self) -> Result<bool, ShimError> {
        let encoded = &mut self.encoded;
        encoded.clear();
        let mut repaired = false;
        let mut list_bytes = 0usize;
        self.decoder
            .decode_with_cb(&self.block, |name, value| {
                list_bytes += name.len() + value.len() + 32;
                if list_bytes > HEADER_LIST_BYTES_MAX {
                    return;
                }
                let fixed = if &name[..] == b":authority" {
                    normalize_authority(&value)
                } else {
                    None
                };
                repaired |= fixed.is_some();
                encode_field(encoded, &name, fixed.as_deref().unwrap_or(&value));
            })
            .map_err(ShimError::Hpack)?;
        if list_bytes > HEADER_LIST_BYTES_MAX {
            return Err(ShimError::HeaderListTooLarge);
        }
        Ok(repaired)
    }
}

/// Empties `buf`, dropping its allocation if it grew past [`RETAINED_BUFFER_BYTES_MAX`].
fn reset_buffer(buf: &mut Vec<u8>) {
    if buf.capacity() > RETAINED_BUFFER_BYTES_MAX {
        *buf = Vec::new();
    } else {
        buf.clear();
    }
}

/// `Some(host:port)` for an `:authority` h2 would reject that is a URL with a valid
/// authority in it (`http://127.0.0.1:2379`, `https://h:1/x`); `None` leaves the value as
/// it is (valid already, or nothing to salvage — h2 then rejects it as before).
fn normalize_authority(value: &[u8]) -> Option<Vec<u8>> {
    if value.is_empty() || Authority::try_from(value).is_ok() {
        return None;
    }
    let mut rest = value;
    if let Some(i) = rest.windows(3).position(|w| w == b"://") {
        let scheme = &rest[..i];
        let scheme_ok = scheme.first().is_some_and(u8::is_ascii_alphabetic)
            && scheme
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || b == b'+' || b == b'-' || b == b'.');
        if scheme_ok {
            rest = &rest[i + 3..];
        }
    }
    let end = rest
        .iter()
        .position(|&b| matches!(b, b'/' | b'?' | b'#'))
        .unwrap_or(rest.len());
    let host = &rest[..end];
    (!host.is_empty() && Authority::try_from(host).is_ok()).then(|| host.to_vec())
}

/// One field, never touching the dynamic table: a full static-table match as an indexed
/// field, otherwise a literal without indexing (static name index where there is one).
fn encode_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    if let Some(&(index, _, _)) = STATIC_FULL
        .iter()
        .find(|(_, n, v)| *n == name && *v == value)
    {
        write_int(out, index, 7, 0x80);
        return;
    }
    match STATIC_NAMES.iter().find(|(_, n)| *n == name) {
        Some(&(index, _)) => write_int(out, index, 4, 0x00),
        None => {
            out.push(0x00);
            write_string(out, name);
        }
    }
    write_string(out, value);
}

fn write_string(out: &mut Vec<u8>, s: &[u8]) {
    write_int(out, s.len(), 7, 0x00);
    out.extend_from_slice(s);
}

fn write_int(out: &mut Vec<u8>, value: usize, prefix_bits: u8, leading: u8) {
    // Writing into a Vec cannot fail.
    let _ = encode_integer_into(value, prefix_bits, leading, out);
}

/// `block` as HEADERS (+ CONTINUATION) frames of at most [`OUT_FRAME_PAYLOAD_MAX`] bytes.
fn write_header_frames(out: &mut Vec<u8>, stream: u32, end_stream: bool, block: &[u8]) {
    let mut chunks = block.chunks(OUT_FRAME_PAYLOAD_MAX).peekable();
    let mut frame_type = FRAME_HEADERS;
    let mut flags = if end_stream { FLAG_END_STREAM } else { 0 };
    loop {
        let chunk = chunks.next().unwrap_or(&[]);
        let last = chunks.peek().is_none();
        if last {
            flags |= FLAG_END_HEADERS;
        }
        let len = chunk.len() as u32;
        out.extend_from_slice(&len.to_be_bytes()[1..]);
        out.push(frame_type);
        out.push(flags);
        out.extend_from_slice(&stream.to_be_bytes());
        out.extend_from_slice(chunk);
        if last {
            return;
        }
        frame_type = FRAME_CONTINUATION;
        flags = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Huffman codes (RFC 7541 Appendix B) of the characters the tests encode.
    const HUFFMAN_CODES: &[(u8, u32, u8)] = &[
        (b'0', 0x0, 5),
        (b'1', 0x1, 5),
        (b'2', 0x2, 5),
        (b'3', 0x19, 6),
        (b'7', 0x1d, 6),
        (b'9', 0x1f, 6),
        (b'.', 0x17, 6),
        (b'/', 0x18, 6),
        (b':', 0x5c, 7),
        (b'a', 0x3, 5),
        (b'e', 0x5, 5),
        (b'h', 0x27, 6),
        (b'i', 0x6, 5),
        (b'l', 0x28, 6),
        (b'p', 0x2b, 6),
        (b'r', 0x2c, 6),
        (b's', 0x8, 5),
        (b't', 0x9, 5),
    ];

    fn huffman(s: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let (mut acc, mut bits) = (0u64, 0u32);
        for &c in s {
            let &(_, code, len) = HUFFMAN_CODES
                .iter()
                .find(|(ch, _, _)| *ch == c)
                .expect("char in test table");
            acc = (acc << len) | u64::from(code);
            bits += u32::from(len);
            while bits >= 8 {
                out.push((acc >> (bits - 8)) as u8);
                bits -= 8;
            }
        }
        if bits > 0 {
            // EOS padding: the most significant bits of the EOS code, all ones.
            out.push(((acc << (8 - bits)) as u8) | (0xff >> bits));
        }
        out
    }

    /// A tiny HPACK encoder for test input, using what the shim must cope with: Huffman
    /// strings and literals with incremental indexing.
    #[derive(Default)]
    struct TestBlock(Vec<u8>);

    impl TestBlock {
        fn string(&mut self, s: &[u8], huff: bool) {
            if huff {
                let h = huffman(s);
                write_int(&mut self.0, h.len(), 7, 0x80);
                self.0.extend_from_slice(&h);
            } else {
                write_string(&mut self.0, s);
            }
        }
        fn indexed(mut self, index: usize) -> Self {
            write_int(&mut self.0, index, 7, 0x80);
            self
        }
        /// Literal with incremental indexing, name from the table at `index`.
        fn incremental(mut self, index: usize, value: &[u8], huff: bool) -> Self {
            write_int(&mut self.0, index, 6, 0x40);
            self.string(value, huff);
            self
        }
        /// Literal with incremental indexing, new name.
        fn incremental_new(mut self, name: &[u8], value: &[u8], huff: bool) -> Self {
            self.0.push(0x40);
            self.string(name, huff);
            self.string(value, huff);
            self
        }
        fn size_update(mut self, size: usize) -> Self {
            write_int(&mut self.0, size, 5, 0x20);
            self
        }
    }

    fn frame(frame_type: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = (payload.len() as u32).to_be_bytes()[1..].to_vec();
        out.extend_from_slice(&[frame_type, flags]);
        out.extend_from_slice(&stream.to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    fn connection(frames: &[Vec<u8>]) -> Vec<u8> {
        let mut out = PREFACE.to_vec();
        out.extend(frame(0x4, 0, 0, &[])); // SETTINGS
        for f in frames {
            out.extend_from_slice(f);
        }
        out
    }

    /// Feeds `input` in chunks of `chunk` bytes.
    fn rewrite(input: &[u8], chunk: usize) -> Result<Vec<u8>, ShimError> {
        rewrite_with(Policy::Always, input, chunk)
    }

    fn rewrite_with(policy: Policy, input: &[u8], chunk: usize) -> Result<Vec<u8>, ShimError> {
        let mut rw = Rewriter::with_policy(policy);
        let mut out = Vec::new();
        for piece in input.chunks(chunk) {
            rw.feed(piece, &mut out)?;
        }
        Ok(out)
    }

    /// Rewrites with several chunkings, checks they agree, returns the output.
    fn rewrite_all_ways(input: &[u8]) -> Vec<u8> {
        let whole = rewrite(input, input.len().max(1)).expect("rewrite");
        for chunk in [1, 2, 7, 9, 100] {
            assert_eq!(
                rewrite(input, chunk).expect("rewrite"),
                whole,
                "chunk size {chunk}"
            );
        }
        whole
    }

    struct Frame {
        frame_type: u8,
        flags: u8,
        stream: u32,
        payload: Vec<u8>,
    }

    /// Splits the rewriter's output into the preface and frames.
    fn parse(mut out: &[u8]) -> Vec<Frame> {
        assert_eq!(&out[..PREFACE.len()], PREFACE);
        out = &out[PREFACE.len()..];
        let mut frames = Vec::new();
        while !out.is_empty() {
            let len =
                (usize::from(out[0]) << 16) | (usize::from(out[1]) << 8) | usize::from(out[2]);
            frames.push(Frame {
                frame_type: out[3],
                flags: out[4],
                stream: u32::from_be_bytes([out[5], out[6], out[7], out[8]]),
                payload: out[9..9 + len].to_vec(),
            });
            out = &out[9 + len..];
        }
        frames
    }

    /// Asserts a header block uses no dynamic-table representation (no incremental
    /// indexing, no size update, indexes only into the static table) and decodes it with
    /// a fresh decoder, so it needs no state from earlier blocks.
    fn decode_stateless(block: &[u8]) -> Vec<(String, String)> {
        fn int(buf: &[u8], pos: &mut usize, prefix: u8) -> usize {
            let mask = (1usize << prefix) - 1;
            let mut v = usize::from(buf[*pos]) & mask;
            *pos += 1;
            if v == mask {
                let mut shift = 0;
                loop {
                    let b = buf[*pos];
                    *pos += 1;
                    v += usize::from(b & 0x7f) << shift;
                    shift += 7;
                    if b & 0x80 == 0 {
                        break;
                    }
                }
            }
            v
        }
        let mut pos = 0;
        while pos < block.len() {
            let b = block[pos];
            assert!(
                b & 0xc0 != 0x40,
                "literal with incremental indexing at {pos}"
            );
            assert!(b & 0xe0 != 0x20, "dynamic table size update at {pos}");
            if b & 0x80 != 0 {
                let index = int(block, &mut pos, 7);
                assert!(
                    (1..=61).contains(&index),
                    "index {index} outside the static table"
                );
                continue;
            }
            let name_index = int(block, &mut pos, 4);
            assert!(
                name_index <= 61,
                "name index {name_index} outside the static table"
            );
            let strings = if name_index == 0 { 2 } else { 1 };
            for _ in 0..strings {
                let len = int(block, &mut pos, 7);
                pos += len;
            }
        }
        assert_eq!(pos, block.len());
        headers(&mut loona_hpack::Decoder::new(), block)
    }

    fn headers(decoder: &mut loona_hpack::Decoder<'static>, block: &[u8]) -> Vec<(String, String)> {
        decoder
            .decode(block)
            .expect("decode")
            .into_iter()
            .map(|(n, v)| (String::from_utf8(n).unwrap(), String::from_utf8(v).unwrap()))
            .collect()
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    const STATUS_PATH: &[u8] = b"/etcdserverpb.Maintenance/Status";

    /// The request etcdctl 3.4's `endpoint status` sends: authority is the whole URL,
    /// Huffman-coded, inserted into the dynamic table.
    fn etcdctl_block(authority: &[u8]) -> TestBlock {
        TestBlock::default()
            .indexed(3) // :method POST
            .indexed(6) // :scheme http
            .incremental(4, STATUS_PATH, false)
            .incremental(1, authority, true)
            .incremental(31, b"application/grpc", false)
            .incremental_new(b"user-agent", b"grpc-go/1.26.0", false)
            .incremental_new(b"te", b"trailers", true)
    }

    fn expected(authority: &str) -> Vec<(String, String)> {
        pairs(&[
            (":method", "POST"),
            (":scheme", "http"),
            (":path", "/etcdserverpb.Maintenance/Status"),
            (":authority", authority),
            ("content-type", "application/grpc"),
            ("user-agent", "grpc-go/1.26.0"),
            ("te", "trailers"),
        ])
    }

    #[test]
    fn huffman_helper_matches_decoder() {
        let s = b"http://127.0.0.1:2379/teapils";
        assert_eq!(
            loona_hpack::huffman::HuffmanDecoder::new()
                .decode(&huffman(s))
                .unwrap(),
            s
        );
    }

    #[test]
    fn url_authority_is_rewritten_other_frames_unchanged() {
        let block = etcdctl_block(b"http://127.0.0.1:2379").0;
        let data = frame(0x0, FLAG_END_STREAM, 1, b"\0\0\0\0\x05hello");
        let ping = frame(0x6, 0, 0, b"12345678");
        let window = frame(0x8, 0, 0, &[0, 0, 0x10, 0]);
        let input = connection(&[
            frame(FRAME_HEADERS, FLAG_END_HEADERS, 1, &block),
            data.clone(),
            ping.clone(),
            window.clone(),
        ]);
        let out = rewrite_all_ways(&input);
        let frames = parse(&out);
        assert_eq!(frames.len(), 5);
        assert_eq!((frames[0].frame_type, frames[0].payload.len()), (0x4, 0));
        let h = &frames[1];
        assert_eq!(
            (h.frame_type, h.flags, h.stream),
            (FRAME_HEADERS, FLAG_END_HEADERS, 1)
        );
        assert_eq!(decode_stateless(&h.payload), expected("127.0.0.1:2379"));
        let tail: Vec<u8> = frames[2..]
            .iter()
            .flat_map(|f| frame(f.frame_type, f.flags, f.stream, &f.payload))
            .collect();
        assert_eq!(tail, [data, ping, window].concat());
    }

    #[test]
    fn valid_authority_is_untouched() {
        for authority in [
            "127.0.0.1:2379",
            "localhost",
            "[::1]:2379",
            "etcd-0.etcd:2379",
        ] {
            let block = etcdctl_block_plain(authority);
            let input = connection(&[frame(
                FRAME_HEADERS,
                FLAG_END_HEADERS | FLAG_END_STREAM,
                3,
                &block,
            )]);
            let frames = parse(&rewrite_all_ways(&input));
            assert_eq!(frames[1].flags, FLAG_END_HEADERS | FLAG_END_STREAM);
            assert_eq!(
                decode_stateless(&frames[1].payload),
                expected(authority),
                "{authority}"
            );
        }
    }

    /// What `serve` does: a connection that opens with a valid authority is handed on byte
    /// for byte from its first header block on — later blocks are not even parsed.
    #[test]
    fn a_clean_first_block_passes_the_connection_through() {
        let first = etcdctl_block_plain("127.0.0.1:2379");
        let second = TestBlock::default().indexed(3).indexed(6).indexed(66).indexed(65).0;
        let not_hpack = [0xff_u8; 40]; // would be an HPACK error if it were decoded
        let input = connection(&[
            frame(FRAME_HEADERS, FLAG_END_HEADERS | FLAG_PADDED, 1, &[&[2u8][..], &first, &[0, 0]].concat()),
            frame(0x0, FLAG_END_STREAM, 1, b"\0\0\0\0\x05hello"),
            frame(FRAME_HEADERS, FLAG_END_HEADERS, 3, &second),
            frame(FRAME_HEADERS, FLAG_END_HEADERS, 5, &not_hpack),
        ]);
        for chunk in [1, 2, 7, 9, 100, input.len()] {
            let out = rewrite_with(Policy::UntilFirstCleanBlock, &input, chunk).expect("rewrite");
            let frames = parse(&out);
            // Only the first block's padding is gone; its HPACK bytes are the client's.
            assert_eq!((frames[1].flags, &frames[1].payload), (FLAG_END_HEADERS, &first), "chunk {chunk}");
            let rest: Vec<u8> = frames[2..]
                .iter()
                .flat_map(|f| frame(f.frame_type, f.flags, f.stream, &f.payload))
                .collect();
            let input_rest = &input[PREFACE.len() + 9 + 9 + 3 + first.len() ..];
            assert_eq!(rest, input_rest, "chunk {chunk}");
        }
    }

    /// A connection that needed a repair keeps being rewritten: the second block only
    /// refers to dynamic entries of the first, and still comes out repaired.
    #[test]
    fn a_repaired_first_block_keeps_the_connection_rewritten() {
        let first = etcdctl_block(b"http://127.0.0.1:2379").0;
        let second = TestBlock::default().indexed(3).indexed(6).indexed(66).indexed(65).indexed(64).indexed(63).indexed(62).0;
        let input = connection(&[
            frame(FRAME_HEADERS, FLAG_END_HEADERS, 1, &first),
            frame(FRAME_HEADERS, FLAG_END_HEADERS, 3, &second),
        ]);
        let out = rewrite_with(Policy::UntilFirstCleanBlock, &input, 5).expect("rewrite");
        let frames = parse(&out);
        assert_eq!(decode_stateless(&frames[1].payload), expected("127.0.0.1:2379"));
        assert_eq!(decode_stateless(&frames[2].payload), expected("127.0.0.1:2379"));
    }

    fn etcdctl_block_plain(authority: &str) -> Vec<u8> {
        TestBlock::default()
            .indexed(3)
            .indexed(6)
            .incremental(4, STATUS_PATH, false)
            .incremental(1, authority.as_bytes(), false)
            .incremental(31, b"application/grpc", false)
            .incremental_new(b"user-agent", b"grpc-go/1.26.0", false)
            .incremental_new(b"te", b"trailers", true)
            .0
    }

    #[test]
    fn normalize_authority_cases() {
        let n = |s: &str| normalize_authority(s.as_bytes()).map(|v| String::from_utf8(v).unwrap());
        assert_eq!(
            n("http://127.0.0.1:2379").as_deref(),
            Some("127.0.0.1:2379")
        );
        assert_eq!(
            n("https://etcd.example:2379/some/path?q#f").as_deref(),
            Some("etcd.example:2379")
        );
        assert_eq!(n("http://[::1]:2379").as_deref(), Some("[::1]:2379"));
        assert_eq!(n("127.0.0.1:2379/x").as_deref(), Some("127.0.0.1:2379"));
        assert_eq!(n("127.0.0.1:2379"), None);
        assert_eq!(n("localhost"), None);
        assert_eq!(n(""), None);
        // Nothing valid to salvage: left alone (h2 rejects it as before).
        assert_eq!(n("unix:///tmp/etcd.sock"), None);
        assert_eq!(n("http://"), None);
    }

    /// The second block on the connection is nothing but references to entries the first
    /// one inserted (the authority Huffman-coded), so decoding it needs the first's state;
    /// the third updates the table size, inserts, and refers to shifted entries.
    #[test]
    fn dynamic_table_state_carries_across_blocks() {
        // After the first block the dynamic table is: 62 te, 63 user-agent, 64
        // content-type, 65 :authority, 66 :path.
        let first = etcdctl_block(b"http://127.0.0.1:2379").0;
        let second = TestBlock::default()
            .indexed(3)
            .indexed(6)
            .indexed(66)
            .indexed(65)
            .indexed(64)
            .indexed(63)
            .indexed(62)
            .0;
        let third = TestBlock::default()
            .size_update(4096)
            .indexed(3)
            .indexed(6)
            .incremental(4, b"/etcdserverpb.Maintenance/Defragment", false)
            .indexed(66) // :authority, shifted by the insert above
            .indexed(63) // te
            .0;
        let input = connection(&[
            frame(FRAME_HEADERS, FLAG_END_HEADERS, 1, &first),
            frame(FRAME_HEADERS, FLAG_END_HEADERS, 3, &second),
            frame(FRAME_HEADERS, FLAG_END_HEADERS | FLAG_END_STREAM, 5, &third),
        ]);
        let frames = parse(&rewrite_all_ways(&input));
        assert_eq!(
            (frames[1].stream, frames[2].stream, frames[3].stream),
            (1, 3, 5)
        );
        assert_eq!(
            decode_stateless(&frames[1].payload),
            expected("127.0.0.1:2379")
        );
        assert_eq!(
            decode_stateless(&frames[2].payload),
            expected("127.0.0.1:2379")
        );
        assert_eq!(frames[3].flags, FLAG_END_HEADERS | FLAG_END_STREAM);
        assert_eq!(
            decode_stateless(&frames[3].payload),
            pairs(&[
                (":method", "POST"),
                (":scheme", "http"),
                (":path", "/etcdserverpb.Maintenance/Defragment"),
                (":authority", "127.0.0.1:2379"),
                ("te", "trailers"),
            ])
        );
    }

    #[test]
    fn table_size_updates_are_honoured_and_bounded() {
        let first = TestBlock::default()
            .indexed(2)
            .incremental_new(b"x-a", b"1", false)
            .0;
        // Shrinking the table to 0 evicts x-a: a later reference to index 62 is an error.
        let evict = TestBlock::default()
            .size_update(0)
            .size_update(4096)
            .indexed(2)
            .0;
        let stale = TestBlock::default().indexed(62).0;
        let input = connection(&[
            frame(FRAME_HEADERS, FLAG_END_HEADERS, 1, &first),
            frame(
                FRAME_HEADERS,
                FLAG_END_HEADERS,
                3,
                &TestBlock::default().indexed(62).0,
            ),
            frame(FRAME_HEADERS, FLAG_END_HEADERS, 5, &evict),
        ]);
        let frames = parse(&rewrite(&input, input.len()).unwrap());
        assert_eq!(decode_stateless(&frames[2].payload), pairs(&[("x-a", "1")]));
        let mut with_stale = input.clone();
        with_stale.extend(frame(FRAME_HEADERS, FLAG_END_HEADERS, 7, &stale));
        assert!(matches!(rewrite(&with_stale, 10), Err(ShimError::Hpack(_))));
        // Above the table size the server advertises: a compression error.
        let too_big = TestBlock::default()
            .size_update(CLIENT_HEADER_TABLE_SIZE_MAX + 1)
            .indexed(2)
            .0;
        let input = connection(&[frame(FRAME_HEADERS, FLAG_END_HEADERS, 1, &too_big)]);
        assert!(matches!(rewrite(&input, 5), Err(ShimError::Hpack(_))));
    }

    #[test]
    fn continuation_frames_are_reassembled() {
        let block = etcdctl_block(b"http://127.0.0.1:2379").0;
        let (a, rest) = block.split_at(5);
        let (b, c) = rest.split_at(17);
        let input = connection(&[
            frame(FRAME_HEADERS, FLAG_END_STREAM, 1, a),
            frame(FRAME_CONTINUATION, 0, 1, b),
            frame(FRAME_CONTINUATION, 0, 1, &[]),
            frame(FRAME_CONTINUATION, FLAG_END_HEADERS, 1, c),
            frame(0x6, 0, 0, b"abcdefgh"),
        ]);
        let frames = parse(&rewrite_all_ways(&input));
        assert_eq!(frames.len(), 3);
        assert_eq!(
            (frames[1].frame_type, frames[1].flags),
            (FRAME_HEADERS, FLAG_END_STREAM | FLAG_END_HEADERS)
        );
        assert_eq!(
            decode_stateless(&frames[1].payload),
            expected("127.0.0.1:2379")
        );
        assert_eq!(frames[2].frame_type, 0x6);
    }

    #[test]
    fn padded_and_priority_headers_are_unwrapped() {
        let block = etcdctl_block(b"http://127.0.0.1:2379").0;
        let mut payload = vec![4u8]; // pad length
        payload.extend_from_slice(&[0x80, 0, 0, 0, 15]); // exclusive dependency on 0, weight
        payload.extend_from_slice(&block);
        payload.extend_from_slice(&[0; 4]);
        let flags = FLAG_PADDED | FLAG_PRIORITY | FLAG_END_HEADERS | FLAG_END_STREAM;
        let input = connection(&[frame(FRAME_HEADERS, flags, 9, &payload)]);
        let frames = parse(&rewrite_all_ways(&input));
        assert_eq!(
            (frames[1].flags, frames[1].stream),
            (FLAG_END_HEADERS | FLAG_END_STREAM, 9)
        );
        assert_eq!(
            decode_stateless(&frames[1].payload),
            expected("127.0.0.1:2379")
        );
        // Padding longer than the frame.
        let input = connection(&[frame(
            FRAME_HEADERS,
            FLAG_PADDED | FLAG_END_HEADERS,
            1,
            &[9, 0x82],
        )]);
        assert_eq!(rewrite(&input, 3), Err(ShimError::BadPadding));
    }

    #[test]
    fn large_blocks_are_split_at_the_default_frame_size() {
        let big = vec![b'v'; 40_000];
        let block = TestBlock::default()
            .indexed(2)
            .incremental(1, b"http://127.0.0.1:2379", true)
            .incremental_new(b"x-big", &big, false)
            .0;
        let (a, b) = block.split_at(20_000);
        let input = connection(&[
            frame(FRAME_HEADERS, 0, 1, a),
            frame(FRAME_CONTINUATION, FLAG_END_HEADERS, 1, b),
        ]);
        let frames = parse(&rewrite_all_ways(&input));
        let kinds: Vec<(u8, u8, usize)> = frames[1..]
            .iter()
            .map(|f| (f.frame_type, f.flags, f.payload.len()))
            .collect();
        assert_eq!(kinds.len(), 3, "{kinds:?}");
        assert_eq!(kinds[0], (FRAME_HEADERS, 0, OUT_FRAME_PAYLOAD_MAX));
        assert_eq!(kinds[1], (FRAME_CONTINUATION, 0, OUT_FRAME_PAYLOAD_MAX));
        assert_eq!(
            (kinds[2].0, kinds[2].1),
            (FRAME_CONTINUATION, FLAG_END_HEADERS)
        );
        let joined: Vec<u8> = frames[1..].iter().flat_map(|f| f.payload.clone()).collect();
        let got = decode_stateless(&joined);
        assert_eq!(
            got[1],
            (":authority".to_string(), "127.0.0.1:2379".to_string())
        );
        assert_eq!(got[2].1.len(), big.len());
    }

    #[test]
    fn bounds_and_protocol_errors_close_the_connection() {
        let huge_len = HEADER_BLOCK_BYTES_MAX + 1024;
        let mut input = connection(&[]);
        input.extend_from_slice(&(huge_len as u32).to_be_bytes()[1..]);
        input.extend_from_slice(&[FRAME_HEADERS, 0, 0, 0, 0, 1]);
        assert_eq!(rewrite(&input, 4096), Err(ShimError::HeaderBlockTooLarge));
        // Many CONTINUATIONs adding up past the bound.
        let chunk = vec![0x82u8; 60_000];
        let mut frames = vec![frame(FRAME_HEADERS, 0, 1, &chunk)];
        frames.extend((0..20).map(|_| frame(FRAME_CONTINUATION, 0, 1, &chunk)));
        assert_eq!(
            rewrite(&connection(&frames), 65_536),
            Err(ShimError::HeaderBlockTooLarge)
        );
        // A decoded list far larger than its encoding (one indexed entry repeated).
        let mut block = TestBlock::default()
            .incremental_new(b"x-a", &[b'a'; 3000], false)
            .0;
        block.extend(std::iter::repeat_n(0x80 | 62, 400));
        let input = connection(&[frame(FRAME_HEADERS, FLAG_END_HEADERS, 1, &block)]);
        assert_eq!(rewrite(&input, 4096), Err(ShimError::HeaderListTooLarge));
        let input = connection(&[frame(FRAME_CONTINUATION, FLAG_END_HEADERS, 1, &[0x82])]);
        assert_eq!(rewrite(&input, 100), Err(ShimError::UnexpectedContinuation));
        let input = connection(&[frame(FRAME_HEADERS, 0, 1, &[0x82]), frame(0x0, 0, 1, b"x")]);
        assert_eq!(
            rewrite(&input, 100),
            Err(ShimError::ExpectedContinuation(0))
        );
        let input = connection(&[
            frame(FRAME_HEADERS, 0, 1, &[0x82]),
            frame(FRAME_CONTINUATION, FLAG_END_HEADERS, 3, &[]),
        ]);
        assert_eq!(
            rewrite(&input, 100),
            Err(ShimError::ExpectedContinuation(FRAME_CONTINUATION))
        );
    }

    #[test]
    fn non_http2_connections_pass_through() {
        for input in [
            &b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"[..],
            &b"PRI * HTTP/1.1\r\n\r\nxx"[..],
            &b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r"[..], // a preface cut short stays pending
        ] {
            let mut rw = Rewriter::new();
            let mut out = Vec::new();
            for piece in input.chunks(3) {
                rw.feed(piece, &mut out).unwrap();
            }
            if input.len() < PREFACE.len() && PREFACE.starts_with(input) {
                assert!(out.is_empty());
            } else {
                assert_eq!(out, input);
            }
        }
    }

    /// The AsyncRead side: rewriting across reads of every size, verbatim bytes read
    /// straight through, writes passed on.
    #[tokio::test]
    async fn shim_stream_reads_rewritten_bytes() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let block = etcdctl_block(b"http://127.0.0.1:2379").0;
        let data = frame(0x0, 0, 1, &vec![7u8; 100_000]);
        let input = connection(&[
            frame(FRAME_HEADERS, FLAG_END_HEADERS, 1, &block),
            data.clone(),
            data,
        ]);
        let want = rewrite(&input, input.len()).unwrap();
        let (mut client, server) = tokio::io::duplex(4096);
        let mut shim = ShimStream::new(server);
        let writer = {
            let input = input.clone();
            tokio::spawn(async move {
                for piece in input.chunks(1000) {
                    client.write_all(piece).await.unwrap();
                }
                let mut reply = [0u8; 5];
                client.read_exact(&mut reply).await.unwrap();
                assert_eq!(&reply, b"hello");
            })
        };
        let mut got = Vec::new();
        let mut buf = [0u8; 777];
        while got.len() < want.len() {
            let n = shim.read(&mut buf).await.unwrap();
            assert!(n > 0, "early EOF after {} bytes", got.len());
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got, want);
        shim.write_all(b"hello").await.unwrap();
        writer.await.unwrap();
        assert_eq!(shim.read(&mut buf).await.unwrap(), 0);
    }

    /// End to end through hyper/h2: over [`serve`] a request with a URL authority is
    /// answered (h2 alone answers RST_STREAM PROTOCOL_ERROR), and HTTP/1.1 still works.
    #[tokio::test]
    async fn serve_accepts_url_authority_and_http1() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let router = Router::new().route("/x", axum::routing::get(|| async { "ok" }));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(serve(listener, router));

        let block = TestBlock::default()
            .indexed(2) // GET
            .indexed(6) // http
            .incremental(4, b"/x", false)
            .incremental(1, format!("http://{addr}").as_bytes(), false)
            .0;
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.write_all(&connection(&[frame(
            FRAME_HEADERS,
            FLAG_END_HEADERS | FLAG_END_STREAM,
            1,
            &block,
        )]))
        .await
        .unwrap();
        let mut decoder = loona_hpack::Decoder::new();
        let mut buf = Vec::new();
        let status = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                while buf.len() >= 9 {
                    let len = (usize::from(buf[0]) << 16)
                        | (usize::from(buf[1]) << 8)
                        | usize::from(buf[2]);
                    if buf.len() < 9 + len {
                        break;
                    }
                    let f: Vec<u8> = buf.drain(..9 + len).collect();
                    match f[3] {
                        FRAME_HEADERS => {
                            let h = headers(&mut decoder, &f[9..]);
                            return h.into_iter().find(|(n, _)| n == ":status").unwrap().1;
                        }
                        0x3 => return format!("RST_STREAM {:?}", &f[9..]),
                        0x7 => return format!("GOAWAY {:?}", &f[9..]),
                        _ => {}
                    }
                }
                let mut chunk = [0u8; 4096];
                let n = tcp.read(&mut chunk).await.unwrap();
                assert!(n > 0, "server closed the connection");
                buf.extend_from_slice(&chunk[..n]);
            }
        })
        .await
        .expect("a response");
        assert_eq!(status, "200");

        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.write_all(b"GET /x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut reply = String::new();
        tokio::time::timeout(Duration::from_secs(10), tcp.read_to_string(&mut reply))
            .await
            .unwrap()
            .unwrap();
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
        assert!(reply.ends_with("ok"), "{reply}");
        server.abort();
    }
}
