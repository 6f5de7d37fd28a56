//! Requests as raw bytes: HTTP/1.x written out by hand, and HTTP/2 frames (prior knowledge and
//! after an h2c upgrade), so that nothing normalizes them on the way to the proxy.

/// `METHOD target VERSION`, a Host header, `headers` (whole lines), then `body` as is.
pub fn http1(method: &str, target: &str, version: &str, headers: &[&str], body: &[u8]) -> Vec<u8> {
    let mut out = format!("{method} {target} {version}\r\nHost: socket-proxy:2375\r\n");
    for h in headers {
        out.push_str(h);
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}

pub fn get(target: &str) -> Vec<u8> {
    http1("GET", target, "HTTP/1.1", &[], b"")
}

pub fn post(target: &str) -> Vec<u8> {
    http1("POST", target, "HTTP/1.1", &[], b"")
}

/// `body` as one chunk of a chunked body.
pub fn chunked(body: &[u8]) -> Vec<u8> {
    let mut out = format!("{:x}\r\n", body.len()).into_bytes();
    out.extend_from_slice(body);
    out.extend_from_slice(b"\r\n0\r\n\r\n");
    out
}

pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// An HTTP/2 request with prior knowledge, as `curl --http2-prior-knowledge -T -` sends it: the
/// preface, SETTINGS, HEADERS, and the body in a DATA frame (no content-length).
pub fn h2(method: &str, path: &str, body: Option<&[u8]>) -> Vec<u8> {
    let mut out = PREFACE.to_vec();
    frame(&mut out, 0x4, 0, 0, &[]);
    out.extend(h2_stream(method, path, body, 1));
    out
}

/// HEADERS (+ DATA) of one stream.
pub fn h2_stream(method: &str, path: &str, body: Option<&[u8]>, stream: u32) -> Vec<u8> {
    let mut block = Vec::new();
    for (n, v) in [
        (":method", method),
        (":scheme", "http"),
        (":path", path),
        (":authority", "socket-proxy:2375"),
        ("content-type", "application/json"),
    ] {
        literal(&mut block, n, v);
    }
    let mut out = Vec::new();
    // END_HEADERS, and END_STREAM when there is no body.
    let flags = 0x4 | if body.is_none() { 0x1 } else { 0 };
    frame(&mut out, 0x1, flags, stream, &block);
    if let Some(b) = body {
        frame(&mut out, 0x0, 0x1, stream, b);
    }
    out
}

fn frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    let len = payload.len() as u32;
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    out.extend_from_slice(payload);
}

/// HPACK "literal header field without indexing, new name", no Huffman coding.
fn literal(out: &mut Vec<u8>, name: &str, value: &str) {
    out.push(0);
    for s in [name, value] {
        integer7(out, s.len());
        out.extend_from_slice(s.as_bytes());
    }
}

fn integer7(out: &mut Vec<u8>, n: usize) {
    if n < 127 {
        out.push(n as u8);
        return;
    }
    out.push(127);
    let mut n = n - 127;
    while n >= 128 {
        out.push((n % 128 + 128) as u8);
        n /= 128;
    }
    out.push(n as u8);
}
