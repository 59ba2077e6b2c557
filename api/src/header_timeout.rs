//! Closing connections that send their request headers too slowly.
//!
//! A client that opens connections and sends their headers a byte at a time
//! would otherwise hold each connection (and its task and buffers) open for
//! as long as it likes: hyper only bounds the header read when given a
//! timer, and poem 3.1 gives it none, nor exposes the setting. So the
//! listener's connections are wrapped here: from the moment a request head
//! begins (the connection opening, or the first byte of a following request
//! on a kept-alive connection) until the blank line that ends it, the head
//! must arrive within `FLAGMETER_HEADER_TIMEOUT_MS`; otherwise reading fails
//! and the connection is closed.
//!
//! Only the head is timed. Bodies have their own bound ([`crate::body_limit`]),
//! a response being streamed is never cut (no head is expected while the
//! client sends nothing), and an HTTP/2 connection (prior knowledge, whose
//! frames have no blank lines) is left alone after its preface.

use std::{
    io,
    pin::Pin,
    task::{Context, Poll, ready},
    time::Duration,
};

use poem::{
    http::uri::Scheme,
    listener::Acceptor,
    web::{LocalAddr, RemoteAddr},
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    time::{Instant, Sleep, sleep_until},
};

/// An acceptor whose connections must send each request head in time.
pub struct HeaderTimeout<A> {
    inner: A,
    timeout: Duration,
}

impl<A> HeaderTimeout<A> {
    pub fn new(inner: A, timeout: Duration) -> Self {
        Self { inner, timeout }
    }
}

impl<A: Acceptor> Acceptor for HeaderTimeout<A> {
    type Io = TimedHead<A::Io>;

    fn local_addr(&self) -> Vec<LocalAddr> {
        self.inner.local_addr()
    }

    async fn accept(&mut self) -> io::Result<(Self::Io, LocalAddr, RemoteAddr, Scheme)> {
        let (io, local, remote, scheme) = self.inner.accept().await?;
        Ok((TimedHead::new(io, self.timeout), local, remote, scheme))
    }
}

/// The HTTP/2 connection preface starts so; no HTTP/1 method does.
const HTTP2_PREFACE: &[u8] = b"PRI";

/// A connection whose request heads are timed.
pub struct TimedHead<Io> {
    io: Io,
    timeout: Duration,
    /// When the head being received must be complete; `None` while no head
    /// is under way.
    deadline: Option<Pin<Box<Sleep>>>,
    /// Whether the next bytes read belong to a request head.
    in_head: bool,
    /// How much of the blank line (`\r\n\r\n`) that ends a head was last read.
    matched: usize,
    /// The connection's first bytes, to recognise HTTP/2.
    first: Vec<u8>,
    /// HTTP/2: nothing is timed.
    exempt: bool,
}

impl<Io> TimedHead<Io> {
    fn new(io: Io, timeout: Duration) -> Self {
        Self {
            io,
            timeout,
            // A new connection must send its first head in time, too.
            deadline: Some(Box::pin(sleep_until(Instant::now() + timeout))),
            in_head: true,
            matched: 0,
            first: Vec::with_capacity(HTTP2_PREFACE.len()),
            exempt: false,
        }
    }

    /// Follows the bytes just read through the head they belong to.
    fn observe(&mut self, bytes: &[u8]) {
        if self.exempt || !self.in_head || bytes.is_empty() {
            return;
        }
        if self.first.len() < HTTP2_PREFACE.len() {
            let take = (HTTP2_PREFACE.len() - self.first.len()).min(bytes.len());
            self.first.extend_from_slice(&bytes[..take]);
            if self.first == HTTP2_PREFACE {
                self.exempt = true;
                self.deadline = None;
                return;
            }
        }
        if self.deadline.is_none() {
            self.deadline = Some(Box::pin(sleep_until(Instant::now() + self.timeout)));
        }
        for &byte in bytes {
            self.matched = match (self.matched, byte) {
                (0 | 2, b'\r') => self.matched + 1,
                (1 | 3, b'\n') => self.matched + 1,
                (_, b'\r') => 1,
                _ => 0,
            };
            if self.matched == 4 {
                // The head is complete; what follows is its body.
                self.in_head = false;
                self.deadline = None;
                self.matched = 0;
                return;
            }
        }
    }
}

impl<Io: AsyncRead + Unpin> AsyncRead for TimedHead<Io> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(deadline) = this.deadline.as_mut()
            && deadline.as_mut().poll(cx).is_ready()
        {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "request headers not received in time",
            )));
        }
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.io).poll_read(cx, buf))?;
        let filled = buf.filled()[before..].to_vec();
        this.observe(&filled);
        Poll::Ready(Ok(()))
    }
}

impl<Io: AsyncWrite + Unpin> AsyncWrite for TimedHead<Io> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = ready!(Pin::new(&mut this.io).poll_write(cx, buf))?;
        // A response is going out: the next bytes the client sends start a
        // new head (the clock starts with its first byte). An interim
        // `100 Continue` invites the body instead.
        if written > 0 && !buf.starts_with(b"HTTP/1.1 100 ") {
            this.in_head = true;
            this.matched = 0;
        }
        Poll::Ready(Ok(written))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timed() -> TimedHead<()> {
        TimedHead::new((), Duration::from_secs(60))
    }

    #[tokio::test]
    async fn the_clock_stops_at_the_blank_line_and_restarts_with_the_next_head() {
        let mut head = timed();
        head.observe(b"GET / HTTP/1.1\r\nHost: x\r");
        assert!(head.deadline.is_some());
        head.observe(b"\n\r\nbody without blank lines");
        assert!(head.deadline.is_none() && !head.in_head);
        head.observe(b"\r\n\r\n more body");
        assert!(head.deadline.is_none(), "a body is not timed");
        head.in_head = true;
        head.observe(b"G");
        assert!(head.deadline.is_some(), "the next head is timed");
    }

    #[tokio::test]
    async fn http2_is_left_alone() {
        let mut head = timed();
        head.observe(b"PR");
        head.observe(b"I * HTTP/2.0\r\n\r\nSM\r\n\r\n");
        assert!(head.exempt && head.deadline.is_none());
    }
}
