//! A fault-injecting Redis proxy for one client connection: it forwards the client's
//! commands one RESP frame at a time and, while held, keeps them until the test
//! releases them, each released command answered before the call returns. Tests can
//! so run the commands of several connections (and their own, such as a `FLUSHALL`)
//! in any order they choose, even commands a client wrote in one pipeline.
//!
//! Blocking sockets and two threads per connection: the test's own runtime is not
//! involved, so a test can hold commands while the client's futures wait.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The length of the first complete RESP2/RESP3 frame in `buf`, if it holds one.
pub fn frame_len(buf: &[u8]) -> Option<usize> {
    let line_end = |from: usize| -> Option<usize> {
        buf.get(from..)?
            .windows(2)
            .position(|w| w == b"\r\n")
            .map(|p| from + p)
    };
    let end = line_end(0)?;
    let header = std::str::from_utf8(buf.get(1..end)?).ok()?;
    let after = end + 2;
    match *buf.first()? {
        b'+' | b'-' | b':' | b'_' | b',' | b'#' | b'(' => Some(after),
        b'$' | b'=' | b'!' => {
            let n: i64 = header.parse().ok()?;
            if n < 0 {
                return Some(after);
            }
            let total = after + usize::try_from(n).ok()? + 2;
            (buf.len() >= total).then_some(total)
        }
        kind @ (b'*' | b'~' | b'>' | b'%' | b'|') => {
            let n: i64 = header.parse().ok()?;
            if n < 0 {
                return Some(after);
            }
            let items = usize::try_from(n).ok()? * if matches!(kind, b'%' | b'|') { 2 } else { 1 };
            let mut at = after;
            for _ in 0..items {
                at += frame_len(&buf[at..])?;
            }
            // An attribute precedes the value it describes.
            if kind == b'|' {
                at += frame_len(&buf[at..])?;
            }
            Some(at)
        }
        _ => None,
    }
}

#[derive(Default)]
struct State {
    hold: bool,
    queue: VecDeque<Vec<u8>>,
    upstream: Option<TcpStream>,
    sent: usize,
    answered: usize,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
    fn send(state: &mut State, frame: &[u8]) {
        if let Some(up) = state.upstream.as_mut() {
            let _ = up.write_all(frame);
            state.sent += 1;
        }
    }
}

/// The proxy. Dropping it leaves its threads to end with their connections.
pub struct RespGate {
    pub port: u16,
    shared: Arc<Shared>,
}

impl RespGate {
    /// A proxy to the Redis server on `upstream_port`, for one client connection.
    pub fn start(upstream_port: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let shared = Arc::new(Shared::default());
        let accepting = Arc::clone(&shared);
        std::thread::spawn(move || {
            let Ok((client, _)) = listener.accept() else {
                return;
            };
            let upstream = TcpStream::connect(("127.0.0.1", upstream_port)).expect("redis");
            let _ = (client.set_nodelay(true), upstream.set_nodelay(true));
            accepting.lock().upstream = Some(upstream.try_clone().expect("clone"));
            let (replies_to, shared) = (client.try_clone().expect("clone"), Arc::clone(&accepting));
            std::thread::spawn(move || relay_replies(upstream, replies_to, &shared));
            relay_commands(client, &accepting);
        });
        Self { port, shared }
    }

    /// `redis://` URL of the proxy.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// From now on, commands wait for [`Self::release_one`]; or, with `false`, the held
    /// ones go on (in order) and the rest pass straight through.
    pub fn hold(&self, hold: bool) {
        let mut state = self.shared.lock();
        state.hold = hold;
        if !hold {
            while let Some(frame) = state.queue.pop_front() {
                Shared::send(&mut state, &frame);
            }
        }
    }

    /// Waits until `n` commands are held.
    pub fn wait_held(&self, n: usize) {
        let state = self.shared.lock();
        drop(
            self.shared
                .wait_until(state, "commands held", |s| s.queue.len() >= n),
        );
    }

    /// Forwards the oldest held command and waits until Redis has answered it.
    pub fn release_one(&self) {
        let mut state = self.shared.lock();
        let frame = state.queue.pop_front().expect("a held command");
        Shared::send(&mut state, &frame);
        drop(
            self.shared
                .wait_until(state, "an answer from redis", |s| s.answered >= s.sent),
        );
    }
}

impl Shared {
    /// Waits (10 s at most) until `done` holds of the state.
    fn wait_until<'a>(
        &'a self,
        mut state: MutexGuard<'a, State>,
        what: &str,
        done: impl Fn(&State) -> bool,
    ) -> MutexGuard<'a, State> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done(&state) {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "waited 10 s for {what}");
            state = self.changed.wait_timeout(state, left).expect("lock").0;
        }
        state
    }
}

/// Reads `from` until it closes, handing each complete RESP frame to `frame` (which
/// returns `false` to stop).
fn for_each_frame(mut from: TcpStream, mut frame: impl FnMut(Vec<u8>) -> bool) {
    let (mut buf, mut chunk) = (Vec::new(), [0u8; 16 * 1024]);
    loop {
        let n = match from.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        while let Some(len) = frame_len(&buf) {
            if !frame(buf.drain(..len).collect()) {
                return;
            }
        }
    }
}

/// The client's commands: held while the gate holds (or while earlier ones wait).
fn relay_commands(client: TcpStream, shared: &Shared) {
    for_each_frame(client, |frame| {
        let mut state = shared.lock();
        if state.hold || !state.queue.is_empty() {
            state.queue.push_back(frame);
        } else {
            Shared::send(&mut state, &frame);
        }
        drop(state);
        shared.changed.notify_all();
        true
    });
}

/// Redis's answers, straight back, each counted.
fn relay_replies(upstream: TcpStream, mut client: TcpStream, shared: &Shared) {
    for_each_frame(upstream, |frame| {
        if client.write_all(&frame).is_err() {
            return false;
        }
        shared.lock().answered += 1;
        shared.changed.notify_all();
        true
    });
}

#[cfg(test)]
mod tests {
    use super::frame_len;

    #[test]
    fn frames_are_measured_whole_or_not_at_all() {
        let cmd = b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n";
        assert_eq!(frame_len(cmd), Some(cmd.len()));
        for cut in 0..cmd.len() {
            assert_eq!(frame_len(&cmd[..cut]), None, "cut at {cut}");
        }
        let two = [&cmd[..], b"+OK\r\n"].concat();
        assert_eq!(frame_len(&two), Some(cmd.len()));
        assert_eq!(frame_len(b"$-1\r\n+OK\r\n"), Some(5));
        assert_eq!(frame_len(b"%1\r\n+a\r\n:1\r\nx"), Some(12));
        assert_eq!(frame_len(b"*-1\r\n"), Some(5));
    }
}
