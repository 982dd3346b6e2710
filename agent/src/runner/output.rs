//! A command's output into the task's log: line by line, each line cut at [`MAX_LINE`] bytes
//! as it is read (the rest up to its newline skipped), bytes that are not UTF-8 replaced, and
//! read only while the task's unsent output leaves room (`LineSink::stream_line`).

use crate::report::LineSink;
use tofuflow_proto::v1::LogStream;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio::task::JoinHandle;

/// A line longer than this is cut while read (the reporter cuts again at 64 KiB after masking,
/// so a secret is never cut in two where it would show).
pub const MAX_LINE: usize = 1 << 20;

/// Streams stdout (or captures it, with `capture`) and stderr into the task's log.
pub fn read(
    out: impl AsyncRead + Send + Unpin + 'static,
    err: impl AsyncRead + Send + Unpin + 'static,
    sink: &LineSink,
    capture: bool,
) -> (JoinHandle<String>, JoinHandle<()>) {
    let s1 = sink.clone();
    let out_task = tokio::spawn(async move {
        let mut captured = String::new();
        if capture {
            let _ = BufReader::new(out).read_to_string(&mut captured).await;
        } else {
            stream(out, &s1, LogStream::Stdout).await;
        }
        captured
    });
    let s2 = sink.clone();
    let err_task = tokio::spawn(async move { stream(err, &s2, LogStream::Stderr).await });
    (out_task, err_task)
}

/// Every line of `from` into the log as `stream`, until its end or a read error.
pub async fn stream(from: impl AsyncRead + Unpin, sink: &LineSink, stream: LogStream) {
    let mut r = BufReader::new(from);
    while let Ok(Some(line)) = next_line(&mut r, MAX_LINE).await {
        sink.stream_line(stream, line).await;
    }
}

/// The next line without its `\n` (or `\r\n`), at most `max` bytes of it (marked when cut), not
/// UTF-8 replaced; `None` at the end.
pub async fn next_line<R: AsyncBufRead + Unpin>(
    r: &mut R,
    max: usize,
) -> std::io::Result<Option<String>> {
    let mut buf = Vec::new();
    let mut cut = false;
    loop {
        let avail = r.fill_buf().await?;
        if avail.is_empty() {
            return Ok((!buf.is_empty() || cut).then(|| text(buf, cut)));
        }
        let (used, ended) = match avail.iter().position(|b| *b == b'\n') {
            Some(i) => (i + 1, true),
            None => (avail.len(), false),
        };
        let room = max - buf.len();
        let kept = if ended { used - 1 } else { used };
        buf.extend_from_slice(&avail[..kept.min(room)]);
        cut |= kept > room;
        r.consume(used);
        if ended {
            if buf.last() == Some(&b'\r') && !cut {
                buf.pop();
            }
            return Ok(Some(text(buf, cut)));
        }
    }
}

fn text(buf: Vec<u8>, cut: bool) -> String {
    let mut s = String::from_utf8(buf)
        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
    if cut {
        s.push_str(" …[line truncated]");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn all(input: &[u8], max: usize) -> Vec<String> {
        let mut r = BufReader::with_capacity(4, input);
        let mut out = Vec::new();
        while let Some(l) = next_line(&mut r, max).await.unwrap() {
            out.push(l);
        }
        out
    }

    #[tokio::test]
    async fn lines_are_split_stripped_of_their_ends_and_the_last_needs_no_newline() {
        assert_eq!(all(b"a\nbc\r\n\nlast", 100).await, ["a", "bc", "", "last"]);
        assert!(all(b"", 100).await.is_empty());
    }

    #[tokio::test]
    async fn a_long_line_is_cut_and_marked_and_the_next_line_is_whole() {
        let lines = all(b"0123456789abc\nnext\n", 10).await;
        assert_eq!(lines, ["0123456789 …[line truncated]", "next"]);
        let exact = all(b"0123456789\n", 10).await;
        assert_eq!(exact, ["0123456789"], "exactly the limit is not cut");
    }

    #[tokio::test]
    async fn bytes_that_are_not_utf8_are_replaced_and_reading_goes_on() {
        let lines = all(b"ok\n\xff\xfebad\nafter\n", 100).await;
        assert_eq!(lines, ["ok", "\u{FFFD}\u{FFFD}bad", "after"]);
    }
}
