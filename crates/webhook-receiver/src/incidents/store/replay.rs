//! Reading the log back at start: line by line with a bounded line length, so neither a huge file
//! nor a file without newlines (garbage, a runaway writer) can take the agent's memory. What does
//! not parse (a torn last line, invalid UTF-8, a foreign line) is skipped with a warning.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::Path;

use super::super::Incident;

/// Longest line read back; longer ones are skipped. Incidents are bounded far below this.
pub(super) const MAX_LINE: usize = 16 << 20;

/// Unreadable lines warned about one by one per file; the rest are counted in one summary.
const WARN_LINES: usize = 10;

/// What one file held.
#[derive(Debug, Default)]
pub(super) struct FileReplay {
    /// The newest `want` incidents of the file, oldest first.
    pub incidents: VecDeque<Incident>,
    pub read: usize,
    pub skipped: usize,
}

/// Streams `path` and keeps its last `want` incidents. A missing file is empty.
pub(super) fn replay(path: &Path, want: usize) -> io::Result<FileReplay> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(FileReplay::default()),
        Err(e) => return Err(e),
    };
    // A device or a pipe may never end (/dev/zero): only regular files are read back.
    if !file.metadata()?.is_file() {
        tracing::warn!(path = %path.display(), "the incident log is not a regular file; nothing replayed");
        return Ok(FileReplay::default());
    }
    let mut reader = BufReader::with_capacity(64 * 1024, file);
    let mut out = FileReplay::default();
    let mut line = Vec::new();
    let mut number = 0usize;
    loop {
        number += 1;
        let status = next_line(&mut reader, &mut line, MAX_LINE)?;
        let problem = match status {
            Line::Eof => break,
            Line::TooLong(len) => Some(format!("line of {len} bytes or more is too long")),
            Line::Complete if line.iter().all(u8::is_ascii_whitespace) => None,
            Line::Complete => match serde_json::from_slice::<Incident>(&line) {
                Ok(incident) => {
                    out.read += 1;
                    if want > 0 {
                        if out.incidents.len() == want {
                            out.incidents.pop_front();
                        }
                        out.incidents.push_back(incident);
                    }
                    None
                }
                // serde_json may quote part of the line: keep the warning short.
                Err(e) => Some(e.to_string().chars().take(200).collect()),
            },
        };
        if let Some(problem) = problem {
            out.skipped += 1;
            if out.skipped <= WARN_LINES {
                tracing::warn!(path = %path.display(), line = number, error = %problem, "skipping unreadable incident log line");
            }
        }
    }
    if out.skipped > WARN_LINES {
        tracing::warn!(path = %path.display(), skipped = out.skipped, "skipped unreadable incident log lines (only the first {WARN_LINES} were listed)");
    }
    Ok(out)
}

enum Line {
    /// `buf` holds the line, without its newline (the last line of a file may lack one).
    Complete,
    /// The line was longer than the limit (its length so far); it was skipped.
    TooLong(usize),
    Eof,
}

/// Reads up to the next `\n` into `buf`, never holding more than `max` bytes.
fn next_line(reader: &mut impl BufRead, buf: &mut Vec<u8>, max: usize) -> io::Result<Line> {
    buf.clear();
    let mut len = 0usize;
    let mut seen_any = false;
    loop {
        let available = match reader.fill_buf() {
            Ok(a) => a,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            return Ok(match (seen_any, len > max) {
                (false, _) => Line::Eof,
                (true, true) => Line::TooLong(len),
                (true, false) => Line::Complete,
            });
        }
        seen_any = true;
        let (chunk, done) = match available.iter().position(|b| *b == b'\n') {
            Some(i) => (&available[..i], Some(i + 1)),
            None => (available, None),
        };
        len = len.saturating_add(chunk.len());
        if len <= max {
            buf.extend_from_slice(chunk);
        } else {
            buf.clear();
        }
        let consumed = done.unwrap_or(chunk.len());
        reader.consume(consumed);
        if done.is_some() {
            return Ok(if len > max {
                Line::TooLong(len)
            } else {
                Line::Complete
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8], max: usize) -> Vec<String> {
        let mut r = BufReader::with_capacity(4, input);
        let mut buf = Vec::new();
        let mut out = Vec::new();
        loop {
            match next_line(&mut r, &mut buf, max).unwrap() {
                Line::Eof => return out,
                Line::TooLong(n) => out.push(format!("too long {n}")),
                Line::Complete => out.push(String::from_utf8_lossy(&buf).into_owned()),
            }
        }
    }

    #[test]
    fn lines_are_split_and_bounded() {
        assert_eq!(lines(b"ab\ncd", 10), ["ab", "cd"]);
        assert_eq!(lines(b"ab\n\ncd\n", 10), ["ab", "", "cd"]);
        assert_eq!(
            lines(b"0123456789abc\nok\n0123456789abc", 10),
            ["too long 13", "ok", "too long 13"]
        );
        assert!(lines(b"", 10).is_empty());
    }
}
