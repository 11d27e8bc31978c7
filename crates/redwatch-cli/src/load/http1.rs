//! The HTTP/1.1 exchange on a connection held by one task at a time (a closed-loop worker's, or
//! one checked out of the open loop's pool), the way wrk does it:
//! the request is written from bytes serialized once per template, and the response is read
//! into a reusable per-connection buffer, its head parsed by httparse and its body read by its
//! framing and counted, never held. hyper's client connection spent most of a request's
//! instructions on what a load generator does not need: a header map for the response, the
//! channels between the request's sender, the connection and the body, and a new read buffer
//! per response.

use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{Context, Waker};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf};
use tokio_util::either::Either;

use super::client::{Answer, ErrorKind, Outcome, Prepared, RequestTemplate, Stream, classify_io};

/// A connection's read buffer: responses are read in chunks of this size, and it grows only
/// for a response head (or chunk-size line, or trailer section) that does not fit, back to
/// this size after that exchange. Load testing keeps hundreds of connections open.
pub const READ_BUFFER_BYTES: usize = 4096;

/// The largest response head, chunk-size line or trailer section accepted; beyond it the
/// response fails as `other` (a server sending that much before the body is broken).
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Most header fields in a response head or trailer section (as hyper's default).
const MAX_HEADERS: usize = 100;

/// An HTTP/1.1 connection used by the one task that owns it, one exchange at a time.
#[derive(Debug)]
pub struct OwnedHttp1 {
    stream: Stream,
    /// The request being written, reused for every request.
    request: Vec<u8>,
    buffer: ReadBuffer,
    /// Whether the connection can carry another exchange: false after a response that closes
    /// it (`Connection: close`, HTTP/1.0 without keep-alive, a body delimited by the close),
    /// after a failed or abandoned exchange, and once the peer has closed it.
    reusable: bool,
}

impl OwnedHttp1 {
    pub fn new(stream: Stream) -> Self {
        Self {
            stream,
            request: Vec::new(),
            buffer: ReadBuffer::new(),
            reusable: true,
        }
    }

    /// Whether the connection can take another request. Between exchanges nothing reads the
    /// connection: one read attempt that does not wait tells whether the peer has closed it
    /// (or sent something nobody asked for, which makes the next response unreadable too). A
    /// quiet connection costs no system call here, since tokio knows the socket was drained.
    pub fn ready(&mut self) -> bool {
        if !self.reusable {
            return false;
        }
        let quiet = match &mut self.stream {
            // Without registering for a wake-up, which a poll would.
            Either::Left(tcp) => matches!(
                tcp.try_read(&mut self.buffer.bytes),
                Err(err) if err.kind() == io::ErrorKind::WouldBlock
            ),
            Either::Right(_) => {
                let mut cx = Context::from_waker(Waker::noop());
                let mut unread = ReadBuf::new(&mut self.buffer.bytes);
                Pin::new(&mut self.stream)
                    .poll_read(&mut cx, &mut unread)
                    .is_pending()
            }
        };
        self.reusable = quiet;
        quiet
    }

    /// Whether the connection can no longer carry an exchange (as far as is known without
    /// reading it).
    pub fn is_closed(&self) -> bool {
        !self.reusable
    }

    /// Writes the request and reads the response to the end of its body.
    pub async fn send(&mut self, template: &RequestTemplate, prepared: &Prepared) -> Outcome {
        // Until it completes, an exchange leaves the connection in an unknown state (one cut
        // short by the timeout is dropped half way).
        self.reusable = false;
        self.request.clear();
        template.write_http1(prepared, &mut self.request)?;
        self.stream
            .write_all(&self.request)
            .await
            .map_err(|err| classify_io(&err, ErrorKind::Other))?;
        // A no-op for TCP; TLS may still hold encrypted records the socket did not take.
        self.stream
            .flush()
            .await
            .map_err(|err| classify_io(&err, ErrorKind::Other))?;
        let (answer, reusable) =
            read_response(&mut self.stream, &mut self.buffer, template.is_head()).await?;
        self.reusable = reusable;
        Ok(answer)
    }
}

/// Bytes read from a connection and not yet consumed: `bytes[start..end]`.
#[derive(Debug)]
pub struct ReadBuffer {
    bytes: Vec<u8>,
    start: usize,
    end: usize,
}

impl ReadBuffer {
    pub fn new() -> Self {
        Self {
            bytes: vec![0; READ_BUFFER_BYTES],
            start: 0,
            end: 0,
        }
    }

    fn unconsumed(&self) -> &[u8] {
        &self.bytes[self.start..self.end]
    }

    fn consume(&mut self, count: usize) {
        self.start += count;
        if self.start >= self.end {
            // Empty: the next read starts at the front.
            self.start = 0;
            self.end = 0;
        }
    }

    /// Reads once into the free space; `Ok(0)` at the end of the stream.
    async fn read_more<R: AsyncRead + Unpin>(&mut self, io: &mut R) -> Result<usize, ErrorKind> {
        if self.end == self.bytes.len() {
            if self.start > 0 {
                self.bytes.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else if self.bytes.len() < MAX_HEAD_BYTES {
                let grown = (self.bytes.len() * 2).min(MAX_HEAD_BYTES);
                self.bytes.resize(grown, 0);
            } else {
                return Err(ErrorKind::Other);
            }
        }
        let read = io
            .read(&mut self.bytes[self.end..])
            .await
            .map_err(|err| classify_io(&err, ErrorKind::Other))?;
        self.end += read;
        Ok(read)
    }

    /// Reads more of a response that is not complete yet: the end of the stream is a close
    /// mid-exchange.
    async fn fill<R: AsyncRead + Unpin>(&mut self, io: &mut R) -> Result<(), ErrorKind> {
        match self.read_more(io).await? {
            0 => Err(ErrorKind::Reset),
            _ => Ok(()),
        }
    }

    /// Back to the usual size after an exchange that made it grow, when nothing is left in it.
    fn shrink(&mut self) {
        if self.bytes.len() > READ_BUFFER_BYTES && self.start == self.end {
            self.bytes.truncate(READ_BUFFER_BYTES);
            self.bytes.shrink_to_fit();
        }
    }
}

/// How a response's body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// No body: the response to a HEAD request, a 204 or a 304 (or a 101).
    Empty,
    Length(u64),
    Chunked,
    /// Neither a length nor chunked: the body ends when the server closes the connection.
    UntilClose,
}

/// What the exchange needs of a response head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Head {
    /// The head's size in bytes.
    length: usize,
    status: u16,
    framing: Framing,
    /// The server keeps the connection open after this response.
    keep_alive: bool,
}

impl Head {
    /// A 1xx response other than 101: another response follows, the one that answers.
    fn is_interim(&self) -> bool {
        (100..200).contains(&self.status) && self.status != 101
    }
}

/// Parses the response head at the start of `bytes`: `Ok(None)` until it is complete.
fn parse_head(bytes: &[u8], head_request: bool) -> Result<Option<Head>, ErrorKind> {
    let mut fields = [MaybeUninit::<httparse::Header<'_>>::uninit(); MAX_HEADERS];
    let mut response = httparse::Response::new(&mut []);
    let length = match httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut response,
        bytes,
        &mut fields,
    ) {
        Ok(httparse::Status::Complete(length)) => length,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(ErrorKind::Other),
    };
    let (Some(status), Some(version)) = (response.code, response.version) else {
        return Err(ErrorKind::Other);
    };
    let mut content_length: Option<u64> = None;
    let mut transfer_encoding = false;
    let mut chunked = false;
    let mut close = false;
    let mut keep_alive_token = false;
    for field in response.headers.iter() {
        let name = field.name;
        if name.eq_ignore_ascii_case("content-length") {
            let value = parse_content_length(field.value).ok_or(ErrorKind::Other)?;
            if content_length.is_some_and(|earlier| earlier != value) {
                return Err(ErrorKind::Other);
            }
            content_length = Some(value);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            transfer_encoding = true;
            // Chunked only if it is the last coding applied (RFC 9112, 6.3).
            chunked = tokens(field.value)
                .last()
                .is_some_and(|coding| coding.eq_ignore_ascii_case(b"chunked"));
        } else if name.eq_ignore_ascii_case("connection") {
            for option in tokens(field.value) {
                close |= option.eq_ignore_ascii_case(b"close");
                keep_alive_token |= option.eq_ignore_ascii_case(b"keep-alive");
            }
        }
    }
    // HTTP/1.1 keeps the connection unless told otherwise; HTTP/1.0 only when asked to.
    let mut keep_alive = !close && (version >= 1 || keep_alive_token);
    let framing = if head_request || matches!(status, 100..=199 | 204 | 304) {
        Framing::Empty
    } else if transfer_encoding {
        // Transfer-Encoding overrides Content-Length; with a final coding other than chunked
        // the body ends at the close.
        if chunked {
            Framing::Chunked
        } else {
            Framing::UntilClose
        }
    } else if let Some(length) = content_length {
        Framing::Length(length)
    } else {
        Framing::UntilClose
    };
    // After 101 the connection no longer speaks HTTP/1.1.
    if framing == Framing::UntilClose || status == 101 {
        keep_alive = false;
    }
    Ok(Some(Head {
        length,
        status,
        framing,
        keep_alive,
    }))
}

/// The elements of a comma-separated header value, without surrounding whitespace.
fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&byte| byte == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|token| !token.is_empty())
}

/// A `Content-Length` value: digits, or a list of identical ones (as some proxies send).
fn parse_content_length(value: &[u8]) -> Option<u64> {
    let mut length = None;
    for element in value.split(|&byte| byte == b',').map(<[u8]>::trim_ascii) {
        if element.is_empty() {
            return None;
        }
        let mut parsed: u64 = 0;
        for &byte in element {
            if !byte.is_ascii_digit() {
                return None;
            }
            parsed = parsed
                .checked_mul(10)?
                .checked_add(u64::from(byte - b'0'))?;
        }
        if length.is_some_and(|earlier| earlier != parsed) {
            return None;
        }
        length = Some(parsed);
    }
    length
}

/// Reads one response (after any 1xx interim responses) to the end of its body, from `buffer`
/// and then `io`: its status, the body's size, and whether the connection can carry another
/// exchange. `head_request`: the request was HEAD, so the response has no body.
pub async fn read_response<R: AsyncRead + Unpin>(
    io: &mut R,
    buffer: &mut ReadBuffer,
    head_request: bool,
) -> Result<(Answer, bool), ErrorKind> {
    let head = loop {
        // Usually nothing has arrived yet when the exchange starts: no head to parse.
        if !buffer.unconsumed().is_empty()
            && let Some(head) = parse_head(buffer.unconsumed(), head_request)?
        {
            buffer.consume(head.length);
            if !head.is_interim() {
                break head;
            }
            continue;
        }
        buffer.fill(io).await?;
    };
    let bytes = match head.framing {
        Framing::Empty => 0,
        Framing::Length(length) => read_length(io, buffer, length).await?,
        Framing::Chunked => read_chunked(io, buffer).await?,
        Framing::UntilClose => read_until_close(io, buffer).await?,
    };
    // Bytes beyond the response were not asked for (no request is pipelined): whatever they
    // are, the next response could not be told from them.
    let reusable = head.keep_alive && buffer.unconsumed().is_empty();
    buffer.shrink();
    Ok((
        Answer {
            status: head.status,
            bytes,
        },
        reusable,
    ))
}

/// Reads `length` body bytes, counting and dropping them.
async fn read_length<R: AsyncRead + Unpin>(
    io: &mut R,
    buffer: &mut ReadBuffer,
    length: u64,
) -> Result<u64, ErrorKind> {
    let mut remaining = length;
    loop {
        let available = buffer.unconsumed().len();
        let taken = usize::try_from(remaining).map_or(available, |left| left.min(available));
        buffer.consume(taken);
        remaining -= taken as u64;
        if remaining == 0 {
            return Ok(length);
        }
        buffer.fill(io).await?;
    }
}

/// Reads a chunked body and its trailer section; returns the size of the data.
async fn read_chunked<R: AsyncRead + Unpin>(
    io: &mut R,
    buffer: &mut ReadBuffer,
) -> Result<u64, ErrorKind> {
    let mut total: u64 = 0;
    loop {
        let size = loop {
            let line = buffer.unconsumed();
            // httparse reads a line without digits as size 0, the last chunk.
            if line.first().is_some_and(|first| !first.is_ascii_hexdigit()) {
                return Err(ErrorKind::Other);
            }
            match httparse::parse_chunk_size(line) {
                Ok(httparse::Status::Complete((used, size))) => {
                    buffer.consume(used);
                    break size;
                }
                Ok(httparse::Status::Partial) => buffer.fill(io).await?,
                Err(_) => return Err(ErrorKind::Other),
            }
        };
        if size == 0 {
            break;
        }
        total = total.checked_add(size).ok_or(ErrorKind::Other)?;
        read_length(io, buffer, size).await?;
        while buffer.unconsumed().len() < 2 {
            buffer.fill(io).await?;
        }
        if !buffer.unconsumed().starts_with(b"\r\n") {
            return Err(ErrorKind::Other);
        }
        buffer.consume(2);
    }
    // The trailer section: fields (ignored), then an empty line.
    loop {
        if buffer.unconsumed().starts_with(b"\r\n") {
            buffer.consume(2);
            return Ok(total);
        }
        let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
        match httparse::parse_headers(buffer.unconsumed(), &mut fields) {
            Ok(httparse::Status::Complete((used, _))) => {
                buffer.consume(used);
                return Ok(total);
            }
            Ok(httparse::Status::Partial) => buffer.fill(io).await?,
            Err(_) => return Err(ErrorKind::Other),
        }
    }
}

/// Reads a body that ends when the server closes the connection.
async fn read_until_close<R: AsyncRead + Unpin>(
    io: &mut R,
    buffer: &mut ReadBuffer,
) -> Result<u64, ErrorKind> {
    let mut total = 0u64;
    loop {
        let available = buffer.unconsumed().len();
        total += available as u64;
        buffer.consume(available);
        if buffer.read_more(io).await? == 0 {
            return Ok(total);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::task::Poll;
    use std::time::Duration;

    use super::*;

    /// A stream that returns `pieces` one per read, then the end of the stream (or an error).
    struct Scripted {
        pieces: std::collections::VecDeque<Vec<u8>>,
        end: Option<io::ErrorKind>,
    }

    impl Scripted {
        fn new(pieces: &[&[u8]]) -> Self {
            Self {
                pieces: pieces.iter().map(|piece| piece.to_vec()).collect(),
                end: None,
            }
        }
    }

    impl AsyncRead for Scripted {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let Some(mut piece) = self.pieces.pop_front() else {
                return Poll::Ready(match self.end {
                    Some(kind) => Err(io::Error::from(kind)),
                    None => Ok(()),
                });
            };
            let taken = piece.len().min(buf.remaining());
            buf.put_slice(&piece[..taken]);
            if taken < piece.len() {
                self.pieces.push_front(piece.split_off(taken));
            }
            Poll::Ready(Ok(()))
        }
    }

    fn read_pieces(pieces: &[&[u8]], head_request: bool) -> Result<(Answer, bool), ErrorKind> {
        let mut io = Scripted::new(pieces);
        let mut buffer = ReadBuffer::new();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        runtime.block_on(read_response(&mut io, &mut buffer, head_request))
    }

    fn read(response: &[u8]) -> Result<(Answer, bool), ErrorKind> {
        read_pieces(&[response], false)
    }

    fn answer(status: u16, bytes: u64, reusable: bool) -> Result<(Answer, bool), ErrorKind> {
        Ok((Answer { status, bytes }, reusable))
    }

    /// The same result whichever byte boundary the response is split at, and read byte by byte.
    fn assert_every_split(
        response: &[u8],
        head_request: bool,
        expected: Result<(Answer, bool), ErrorKind>,
    ) {
        assert_eq!(read_pieces(&[response], head_request), expected, "whole");
        for split in 1..response.len() {
            let (first, second) = response.split_at(split);
            assert_eq!(
                read_pieces(&[first, second], head_request),
                expected,
                "split at {split}"
            );
        }
        let bytes: Vec<&[u8]> = response.chunks(1).collect();
        assert_eq!(read_pieces(&bytes, head_request), expected, "byte by byte");
    }

    #[test]
    fn content_length_body() {
        assert_every_split(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\n\r\nhello",
            false,
            answer(200, 5, true),
        );
        assert_every_split(
            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
            false,
            answer(200, 0, true),
        );
        // Identical repeated lengths are one length; different ones are malformed.
        assert_eq!(
            read(b"HTTP/1.1 200 OK\r\ncontent-length: 2, 2\r\ncontent-length: 2\r\n\r\nok"),
            answer(200, 2, true)
        );
        for bad in [
            &b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\nok"[..],
            b"HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: \r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: 99999999999999999999999\r\n\r\n",
        ] {
            assert_eq!(read(bad), Err(ErrorKind::Other), "{bad:?}");
        }
    }

    #[test]
    fn a_body_larger_than_the_buffer_is_counted_not_held() {
        let body = vec![b'x'; 3 * READ_BUFFER_BYTES + 17];
        let mut response =
            format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len()).into_bytes();
        response.extend_from_slice(&body);
        let mut io = Scripted::new(&[&response]);
        let mut buffer = ReadBuffer::new();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let result = runtime.block_on(read_response(&mut io, &mut buffer, false));
        assert_eq!(result, answer(200, body.len() as u64, true));
        assert_eq!(buffer.bytes.len(), READ_BUFFER_BYTES);
    }

    #[test]
    fn chunked_body_with_extensions_and_trailers() {
        assert_every_split(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
              5;name=value\r\nhello\r\n1A \r\nabcdefghijklmnopqrstuvwxyz\r\n\
              0;last\r\nx-checksum: 1\r\nx-other: 2\r\n\r\n",
            false,
            answer(200, 31, true),
        );
        assert_every_split(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
            false,
            answer(200, 3, true),
        );
        // Transfer-Encoding overrides Content-Length.
        assert_eq!(
            read(
                b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\ntransfer-encoding: chunked\r\n\r\n\
                  0\r\n\r\n"
            ),
            answer(200, 0, true)
        );
        for bad in [
            &b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n"[..],
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabcX\r\n0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n0\r\nbad trailer\r\n\r\n",
        ] {
            assert_eq!(read(bad), Err(ErrorKind::Other), "{bad:?}");
        }
    }

    #[test]
    fn close_delimited_body_ends_at_the_close() {
        assert_every_split(
            b"HTTP/1.1 200 OK\r\nx: y\r\n\r\nuntil the end",
            false,
            answer(200, 13, false),
        );
        // A final coding other than chunked is delimited by the close too.
        assert_eq!(
            read(b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\nabc"),
            answer(200, 3, false)
        );
    }

    #[test]
    fn interim_responses_are_skipped() {
        assert_every_split(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n\
              HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
            false,
            answer(200, 2, true),
        );
    }

    #[test]
    fn responses_without_a_body() {
        // A HEAD response's Content-Length is the GET's, with no body sent.
        assert_every_split(
            b"HTTP/1.1 200 OK\r\ncontent-length: 1234\r\n\r\n",
            true,
            answer(200, 0, true),
        );
        assert_every_split(
            b"HTTP/1.1 204 No Content\r\n\r\n",
            false,
            answer(204, 0, true),
        );
        assert_eq!(
            read(b"HTTP/1.1 304 Not Modified\r\ncontent-length: 10\r\n\r\n"),
            answer(304, 0, true)
        );
    }

    #[test]
    fn connection_close_and_http10_end_the_connection() {
        assert_every_split(
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nConnection: close\r\n\r\nok",
            false,
            answer(200, 2, false),
        );
        assert_eq!(
            read(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: x, Close\r\n\r\nok"),
            answer(200, 2, false)
        );
        assert_eq!(
            read(b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok"),
            answer(200, 2, false)
        );
        assert_eq!(
            read(b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\nconnection: keep-alive\r\n\r\nok"),
            answer(200, 2, true)
        );
        // Bytes after the response nobody asked for make the connection unusable.
        assert_eq!(
            read(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokHTTP/1.1"),
            answer(200, 2, false)
        );
    }

    /// A header field of 1 KiB (so that a head can be large with few fields).
    fn long_field() -> Vec<u8> {
        let mut field = b"x-filler: ".to_vec();
        field.resize(1022, b'x');
        field.extend_from_slice(b"\r\n");
        field
    }

    #[test]
    fn malformed_and_oversized_heads_are_other() {
        for bad in [
            &b"HTTP/1.1 2000 OK\r\n\r\n"[..],
            b"HTTP/2 200 OK\r\n\r\n",
            b"hello\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nbad header\r\n\r\n",
        ] {
            assert_eq!(read(bad), Err(ErrorKind::Other), "{bad:?}");
        }
        let mut huge = b"HTTP/1.1 200 OK\r\n".to_vec();
        while huge.len() <= MAX_HEAD_BYTES {
            huge.extend_from_slice(&long_field());
        }
        assert_eq!(read(&huge), Err(ErrorKind::Other));
        let mut too_many = b"HTTP/1.1 200 OK\r\n".to_vec();
        for _ in 0..=MAX_HEADERS {
            too_many.extend_from_slice(b"x: y\r\n");
        }
        too_many.extend_from_slice(b"\r\n");
        assert_eq!(read(&too_many), Err(ErrorKind::Other));
    }

    #[test]
    fn a_big_head_grows_the_buffer_for_one_exchange() {
        let mut big = b"HTTP/1.1 200 OK\r\n".to_vec();
        while big.len() < 3 * READ_BUFFER_BYTES {
            big.extend_from_slice(&long_field());
        }
        big.extend_from_slice(b"content-length: 2\r\n\r\nok");
        assert_eq!(read(&big), answer(200, 2, true));
        let mut io = Scripted::new(&[&big]);
        let mut buffer = ReadBuffer::new();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        assert_eq!(
            runtime.block_on(read_response(&mut io, &mut buffer, false)),
            answer(200, 2, true)
        );
        assert_eq!(buffer.bytes.len(), READ_BUFFER_BYTES);
    }

    /// Exchanges over loopback with a server that answers each request head with the next of
    /// `answers`, then closes the connection.
    #[tokio::test]
    async fn exchanges_on_a_connection_until_it_is_closed() {
        use tokio::io::AsyncBufReadExt;

        use crate::load::client::Target;
        use crate::load::mix::MixEntry;

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let answers: [&[u8]; 3] = [
                b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
                b"HTTP/1.1 201 Created\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
                b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            ];
            let mut heads = Vec::new();
            for answer in answers {
                let (stream, _) = listener.accept().await.unwrap();
                let mut stream = tokio::io::BufStream::new(stream);
                // Two requests on the first connection, then it is closed while idle.
                for _ in 0..if heads.is_empty() { 2 } else { 1 } {
                    let mut head = String::new();
                    while !head.ends_with("\r\n\r\n") {
                        if stream.read_line(&mut head).await.unwrap() == 0 {
                            return heads;
                        }
                    }
                    heads.push(head);
                    stream.write_all(answer).await.unwrap();
                    stream.flush().await.unwrap();
                }
            }
            heads
        });
        let target = Target::http(addr);
        let entry = MixEntry {
            method: hyper::Method::GET,
            path: "/x".into(),
            weight: 1,
            name: None,
        };
        let template = target
            .template(0, &entry, &hyper::HeaderMap::new(), false, None)
            .unwrap();
        let prepared = template.prepare(1, 0).unwrap();
        let connect = || async {
            let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            OwnedHttp1::new(Either::Left(stream))
        };

        let mut connection = connect().await;
        assert!(connection.ready());
        let first = connection.send(&template, &prepared).await;
        assert_eq!(
            first,
            Ok(Answer {
                status: 200,
                bytes: 2
            })
        );
        assert!(connection.ready(), "kept alive and quiet");
        let second = connection.send(&template, &prepared).await;
        assert_eq!(
            second,
            Ok(Answer {
                status: 200,
                bytes: 2
            })
        );
        // The server closes the connection between exchanges: the next ready() sees it.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!connection.ready(), "closed by the peer while idle");

        let mut connection = connect().await;
        let chunked = connection.send(&template, &prepared).await;
        assert_eq!(
            chunked,
            Ok(Answer {
                status: 201,
                bytes: 3
            })
        );
        let mut connection = connect().await;
        let closing = connection.send(&template, &prepared).await;
        assert_eq!(
            closing,
            Ok(Answer {
                status: 200,
                bytes: 0
            })
        );
        assert!(!connection.ready(), "connection: close");

        let heads = server.await.unwrap();
        assert_eq!(heads.len(), 4);
        assert!(
            heads
                .iter()
                .all(|head| head == &format!("GET /x HTTP/1.1\r\nhost: {addr}\r\n\r\n")),
            "{heads:?}"
        );
    }

    #[test]
    fn a_close_mid_exchange_is_a_reset() {
        let responses: [&[u8]; 4] = [
            b"",
            b"HTTP/1.1 200 OK\r\ncontent-le",
            b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhel",
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n",
        ];
        for truncated in responses {
            assert_eq!(read(truncated), Err(ErrorKind::Reset), "{truncated:?}");
        }
        // A reset by the peer, as the socket reports it.
        let mut io = Scripted::new(&[b"HTTP/1.1 200 OK\r\n"]);
        io.end = Some(io::ErrorKind::ConnectionReset);
        let mut buffer = ReadBuffer::new();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        assert_eq!(
            runtime.block_on(read_response(&mut io, &mut buffer, false)),
            Err(ErrorKind::Reset)
        );
    }
}
