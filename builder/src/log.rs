//! Build logs: one zstd-compressed file per derivation under the store's log directory
//! (`ROOT/var/buildit/log/<first 2 chars>/<rest of the .drv base name>.log.zst`), written while
//! the build runs, split into lines for progress callbacks, with the last lines kept for error
//! reports. The sandbox and the in-process builtins share [`LogSink`], so both kinds of build
//! leave the same kind of log.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use buildit_store::{StoreLayout, StorePath};

/// How many lines a failure report carries.
pub const TAIL_LINES: usize = 25;
/// A line longer than this is cut (the log file keeps every byte).
const MAX_LINE: usize = 64 * 1024;

/// Where the log of `drv` lives.
pub fn log_path(layout: &StoreLayout, drv: &StorePath) -> PathBuf {
    let base = drv.base_name();
    let (a, b) = base.split_at(2);
    layout.log_dir().join(a).join(format!("{b}.log.zst"))
}

/// The decompressed log of `drv`, if one was written.
pub fn read_log(layout: &StoreLayout, drv: &StorePath) -> std::io::Result<Vec<u8>> {
    let f = File::open(log_path(layout, drv))?;
    let mut out = Vec::new();
    // A log cut short by a killed build is still worth showing: keep what decodes.
    let mut dec = zstd::stream::read::Decoder::new(f)?;
    match dec.read_to_end(&mut out) {
        Ok(_) => Ok(out),
        Err(_) if !out.is_empty() => Ok(out),
        Err(e) => Err(e),
    }
}

/// A log being written: compressed file, line splitting, tail, byte count.
pub struct LogSink<'a> {
    /// The file until the first output: the encoder is created then (its set-up costs as
    /// much as a trivial build's log), a silent build gets an empty zstd frame.
    file: Option<File>,
    enc: Option<zstd::stream::write::Encoder<'static, BufWriter<File>>>,
    path: PathBuf,
    partial: Vec<u8>,
    tail: VecDeque<String>,
    bytes: u64,
    on_line: &'a mut dyn FnMut(&str),
}

impl<'a> LogSink<'a> {
    /// Create (truncate) the log file of `drv`.
    pub fn create(
        layout: &StoreLayout,
        drv: &StorePath,
        on_line: &'a mut dyn FnMut(&str),
    ) -> std::io::Result<LogSink<'a>> {
        let path = log_path(layout, drv);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let f = File::create(&path)?;
        Ok(LogSink {
            file: Some(f),
            enc: None,
            path,
            partial: Vec::new(),
            tail: VecDeque::with_capacity(TAIL_LINES + 1),
            bytes: 0,
            on_line,
        })
    }

    /// The log file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Uncompressed bytes written so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Append raw output.
    pub fn write(&mut self, data: &[u8]) -> std::io::Result<()> {
        if let Some(f) = self.file.take() {
            // Level 1: logs are written while builds run; speed matters more than ratio.
            self.enc = Some(zstd::stream::write::Encoder::new(BufWriter::new(f), 1)?);
        }
        self.bytes += data.len() as u64;
        if let Some(enc) = self.enc.as_mut() {
            enc.write_all(data)?;
        }
        let mut rest = data;
        while let Some(i) = rest.iter().position(|&b| b == b'\n') {
            self.partial.extend_from_slice(&rest[..i]);
            self.flush_line();
            rest = &rest[i + 1..];
        }
        self.partial.extend_from_slice(rest);
        if self.partial.len() > MAX_LINE {
            self.flush_line();
        }
        Ok(())
    }

    /// Append one whole line (for builtins that produce messages, not byte streams).
    pub fn line(&mut self, line: &str) -> std::io::Result<()> {
        let mut v = line.as_bytes().to_vec();
        v.push(b'\n');
        self.write(&v)
    }

    fn flush_line(&mut self) {
        let mut bytes = std::mem::take(&mut self.partial);
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
        bytes.truncate(MAX_LINE);
        let line = String::from_utf8_lossy(&bytes).into_owned();
        (self.on_line)(&line);
        if self.tail.len() == TAIL_LINES {
            self.tail.pop_front();
        }
        self.tail.push_back(line);
    }

    /// The last lines (up to [`TAIL_LINES`]), including an unterminated last line.
    pub fn tail(&self) -> Vec<String> {
        let mut v: Vec<String> = self.tail.iter().cloned().collect();
        if !self.partial.is_empty() {
            if v.len() == TAIL_LINES {
                v.remove(0);
            }
            v.push(String::from_utf8_lossy(&self.partial).into_owned());
        }
        v
    }

    /// Flush the last partial line to the callback and finish the compressed file.
    pub fn finish(&mut self) -> std::io::Result<()> {
        if !self.partial.is_empty() {
            self.flush_line();
        }
        if let Some(enc) = self.enc.take() {
            let mut w = enc.finish()?;
            w.flush()?;
        }
        if let Some(mut f) = self.file.take() {
            f.write_all(empty_frame())?;
        }
        Ok(())
    }
}

/// A zstd frame of no bytes (the log of a silent build).
fn empty_frame() -> &'static [u8] {
    static EMPTY: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    EMPTY.get_or_init(|| zstd::stream::encode_all(&[][..], 1).unwrap_or_default())
}

impl Drop for LogSink<'_> {
    fn drop(&mut self) {
        if let Some(enc) = self.enc.take() {
            let _ = enc.finish().map(|mut w| w.flush());
        }
        if let Some(mut f) = self.file.take() {
            let _ = f.write_all(empty_frame());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_tail_and_roundtrip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let layout = StoreLayout::at(dir.path());
        let drv = StorePath::from_fingerprint("t", "t.drv").expect("valid");
        let mut seen = Vec::new();
        let mut cb = |l: &str| seen.push(l.to_string());
        let mut sink = LogSink::create(&layout, &drv, &mut cb).expect("create");
        for i in 0..30 {
            sink.write(format!("line {i}\r\n").as_bytes())
                .expect("write");
        }
        sink.write(b"par").expect("write");
        sink.write(b"tial").expect("write");
        let tail = sink.tail();
        assert_eq!(tail.len(), TAIL_LINES);
        assert_eq!(tail.last().map(String::as_str), Some("partial"));
        assert_eq!(tail.first().map(String::as_str), Some("line 6"));
        sink.finish().expect("finish");
        drop(sink);
        assert_eq!(seen.len(), 31);
        assert_eq!(seen[0], "line 0");
        let log = read_log(&layout, &drv).expect("read");
        assert!(log.starts_with(b"line 0\r\nline 1\r\n"));
        assert!(log.ends_with(b"line 29\r\npartial"));
        let p = log_path(&layout, &drv);
        assert!(p.starts_with(layout.log_dir().join(&drv.hash_part()[..2])));
    }

    #[test]
    fn silent_build_leaves_an_empty_valid_log() {
        let dir = tempfile::tempdir().expect("tempdir");
        let layout = StoreLayout::at(dir.path());
        let drv = StorePath::from_fingerprint("s", "s.drv").expect("valid");
        let mut cb = |_: &str| {};
        let mut sink = LogSink::create(&layout, &drv, &mut cb).expect("create");
        sink.finish().expect("finish");
        drop(sink);
        assert!(
            std::fs::metadata(log_path(&layout, &drv))
                .expect("log")
                .len()
                > 0
        );
        assert_eq!(read_log(&layout, &drv).expect("read"), b"");
    }
}
