//! A loopback stand-in for the Hugging Face hub, so download tests run without network.
//!
//! Serves local folders as model repos at revision `main` (or the fixed [`COMMIT`]) on
//! `127.0.0.1:<free port>`, answering the routes hf-hub 0.4's blocking client uses, with the headers it
//! needs:
//! - `GET /{org}/{name}/resolve/{rev}/{file}` — hf-hub first asks for `Range: bytes=0-0` without following
//!   redirects and reads `x-repo-commit`, `x-linked-etag` or `etag` (the blob file name in the cache) and
//!   the total size from `Content-Range`; then it downloads with `Range: bytes={start}-`. Small files are
//!   answered directly; weight files (`*.safetensors`, `*.bin`) get a 302 to `/lfs/{etag}` as the real hub
//!   redirects LFS files to its CDN. Missing files: 404 with `x-error-code: EntryNotFound` (and
//!   `x-repo-commit`), unknown repos: 401 `RepoNotFound`, unknown revisions: 404 `RevisionNotFound`.
//! - `GET /api/models/{org}/{name}/revision/{rev}` — repo info JSON (`sha`, `siblings`).
//! - `HEAD` on any of these: the same headers without a body.
//!
//! One request per connection (`Connection: close`), handled on one thread; dropping the server stops it.
//! Every request is counted and logged so tests can assert that a run made none.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// The commit every served repo claims to be at.
pub const COMMIT: &str = "c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00";

/// A served file.
struct Entry {
    bytes: Vec<u8>,
    etag: String,
}

/// Requests seen, shared with the server thread; outlives the server.
#[derive(Clone, Default)]
pub struct RequestLog {
    count: Arc<AtomicUsize>,
    lines: Arc<Mutex<Vec<String>>>,
}

impl RequestLog {
    /// How many requests arrived.
    pub fn count(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }

    /// `"GET /path (range)"` per request, in order.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    fn record(&self, line: String) {
        self.lines.lock().unwrap().push(line);
        self.count.fetch_add(1, Ordering::SeqCst);
    }
}

/// The running server. Stops (and joins its thread) when dropped.
pub struct FakeHub {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    log: RequestLog,
}

impl FakeHub {
    /// Serves each `(repo id, folder)`; every regular file under the folder becomes a repo file.
    pub fn start(repos: &[(&str, &Path)]) -> FakeHub {
        let mut served: BTreeMap<String, BTreeMap<String, Entry>> = BTreeMap::new();
        for (id, dir) in repos {
            let mut files = BTreeMap::new();
            collect(dir, dir, &mut files);
            served.insert(id.to_string(), files);
        }
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let log = RequestLog::default();
        let thread = {
            let stop = stop.clone();
            let log = log.clone();
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    // A misbehaving client must not wedge the test.
                    let _ = handle(stream, addr, &served, &log);
                }
            })
        };
        FakeHub {
            addr,
            stop,
            thread: Some(thread),
            log,
        }
    }

    /// `http://127.0.0.1:PORT`, the value for `HF_ENDPOINT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A handle on the request log that stays valid after the server is dropped.
    pub fn log(&self) -> RequestLog {
        self.log.clone()
    }

    /// Requests so far.
    pub fn requests(&self) -> usize {
        self.log.count()
    }
}

impl Drop for FakeHub {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept; the thread sees the flag and ends.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn collect(root: &Path, dir: &Path, files: &mut BTreeMap<String, Entry>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect(root, &path, files);
        } else {
            let bytes = std::fs::read(&path).unwrap();
            let name = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            let etag = etag(&bytes);
            files.insert(name, Entry { bytes, etag });
        }
    }
}

/// A content hash shaped like the hub's (hex); not cryptographic, only distinct per content.
fn etag(bytes: &[u8]) -> String {
    let fnv = |seed: u64| {
        bytes.iter().fold(seed, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        })
    };
    format!(
        "{:016x}{:016x}{:016x}{:016x}",
        fnv(0xcbf2_9ce4_8422_2325),
        fnv(0x8422_2325_cbf2_9ce4),
        fnv(bytes.len() as u64),
        fnv(0x1234_5678_9abc_def0)
    )
}

struct Request {
    method: String,
    path: String,
    range: Option<String>,
}

fn read_request(stream: &TcpStream) -> std::io::Result<Request> {
    let mut reader = BufReader::new(stream.try_clone()?).take(64 * 1024);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let path = parts.next().unwrap_or_default().to_string();
    let mut range = None;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.trim().eq_ignore_ascii_case("range") {
                range = Some(value.trim().to_string());
            }
        }
    }
    Ok(Request {
        method,
        path,
        range,
    })
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn new(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    fn header(mut self, name: &str, value: impl Into<String>) -> Reply {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    fn error(status: u16, code: &str) -> Reply {
        let body = format!("{{\"error\":\"{code}\"}}").into_bytes();
        Reply {
            body,
            ..Reply::new(status)
        }
        .header("x-error-code", code)
        .header("content-type", "application/json")
    }
}

fn handle(
    stream: TcpStream,
    addr: SocketAddr,
    served: &BTreeMap<String, BTreeMap<String, Entry>>,
    log: &RequestLog,
) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    let request = read_request(&stream)?;
    if request.method.is_empty() {
        // The wake-up connection from Drop, or a client that gave up.
        return Ok(());
    }
    log.record(format!(
        "{} {}{}",
        request.method,
        request.path,
        request
            .range
            .as_deref()
            .map(|r| format!(" ({r})"))
            .unwrap_or_default()
    ));
    let reply = route(&request, addr, served);
    let mut out = stream;
    let reason = match reply.status {
        200 => "OK",
        206 => "Partial Content",
        302 => "Found",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        416 => "Range Not Satisfiable",
        _ => "Other",
    };
    let mut head = format!("HTTP/1.1 {} {reason}\r\n", reply.status);
    for (name, value) in &reply.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!(
        "content-length: {}\r\nconnection: close\r\n\r\n",
        reply.body.len()
    ));
    out.write_all(head.as_bytes())?;
    if request.method != "HEAD" {
        out.write_all(&reply.body)?;
    }
    out.flush()
}

fn route(
    request: &Request,
    addr: SocketAddr,
    served: &BTreeMap<String, BTreeMap<String, Entry>>,
) -> Reply {
    if request.method != "GET" && request.method != "HEAD" {
        return Reply::new(405);
    }
    let path = request.path.split('?').next().unwrap_or_default();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match segments.as_slice() {
        ["api", "models", org, name, "revision", rev] => {
            let id = format!("{org}/{name}");
            let Some(files) = served.get(&id) else {
                return Reply::error(401, "RepoNotFound");
            };
            if !known_revision(rev) {
                return Reply::error(404, "RevisionNotFound");
            }
            let siblings: Vec<String> = files
                .keys()
                .map(|f| format!("{{\"rfilename\":\"{f}\"}}"))
                .collect();
            let body = format!(
                "{{\"id\":\"{id}\",\"modelId\":\"{id}\",\"sha\":\"{COMMIT}\",\"siblings\":[{}]}}",
                siblings.join(",")
            );
            Reply {
                body: body.into_bytes(),
                ..Reply::new(200)
            }
            .header("content-type", "application/json")
        }
        ["lfs", etag] => {
            let entry = served
                .values()
                .flat_map(|files| files.values())
                .find(|entry| entry.etag == *etag);
            match entry {
                // The CDN knows nothing of commits: only the bytes, with range support.
                Some(entry) => ranged(&entry.bytes, request.range.as_deref())
                    .header("etag", format!("\"{}\"", entry.etag)),
                None => Reply::new(404),
            }
        }
        [org, name, "resolve", rev, file @ ..] if !file.is_empty() => {
            let id = format!("{org}/{name}");
            let Some(files) = served.get(&id) else {
                return Reply::error(401, "RepoNotFound");
            };
            if !known_revision(&rev.replace("%2F", "/")) {
                return Reply::error(404, "RevisionNotFound");
            }
            let file = file.join("/");
            let Some(entry) = files.get(&file) else {
                return Reply::error(404, "EntryNotFound").header("x-repo-commit", COMMIT);
            };
            let quoted = format!("\"{}\"", entry.etag);
            if is_lfs(&file) {
                Reply::new(302)
                    .header("location", format!("http://{addr}/lfs/{}", entry.etag))
                    .header("x-repo-commit", COMMIT)
                    .header("x-linked-etag", &quoted)
                    .header("x-linked-size", entry.bytes.len().to_string())
                    .header("etag", "\"git-pointer-etag\"")
            } else {
                ranged(&entry.bytes, request.range.as_deref())
                    .header("x-repo-commit", COMMIT)
                    .header("etag", &quoted)
            }
        }
        _ => Reply::new(404),
    }
}

fn known_revision(rev: &str) -> bool {
    rev == "main" || rev == COMMIT
}

fn is_lfs(file: &str) -> bool {
    file.ends_with(".safetensors") || file.ends_with(".bin")
}

/// 200 with the whole body, or 206 for `bytes=a-b` / `bytes=a-`; 416 when the start is past the end.
fn ranged(bytes: &[u8], range: Option<&str>) -> Reply {
    let size = bytes.len();
    let Some(spec) = range.and_then(|r| r.strip_prefix("bytes=")) else {
        return Reply {
            body: bytes.to_vec(),
            ..Reply::new(200)
        }
        .header("accept-ranges", "bytes");
    };
    let (start, end) = spec.split_once('-').unwrap_or((spec, ""));
    let start: usize = start.trim().parse().unwrap_or(0);
    let end: usize = end
        .trim()
        .parse()
        .map(|e: usize| e.min(size.saturating_sub(1)))
        .unwrap_or(size.saturating_sub(1));
    if size == 0 {
        return Reply::new(200).header("content-range", "bytes */0");
    }
    if start >= size || start > end {
        return Reply::new(416).header("content-range", format!("bytes */{size}"));
    }
    Reply {
        body: bytes[start..=end].to_vec(),
        ..Reply::new(206)
    }
    .header("accept-ranges", "bytes")
    .header("content-range", format!("bytes {start}-{end}/{size}"))
}

/// The cache folder name hf-hub and huggingface_hub use for a model repo.
pub fn cache_folder(id: &str) -> String {
    format!("models--{}", id.replace('/', "--"))
}

/// `<cache>/models--org--name/snapshots/<COMMIT>`.
pub fn snapshot_dir(cache: &Path, id: &str) -> PathBuf {
    cache.join(cache_folder(id)).join("snapshots").join(COMMIT)
}
