//! [`FsIo`]: reads files and directories from the host file system, `$HOME` and the environment,
//! and hands `builtins.trace` messages to a sink chosen by the caller (the CLI prints them to
//! stderr; tests collect them).

use buildit_eval::io::{EvalIo, FileKind};
use std::io;

type TraceSink = Box<dyn Fn(&str)>;

pub struct FsIo {
    trace: TraceSink,
    /// Whether `builtins.getEnv` sees the real environment (`--impure`); pure by default.
    impure_env: bool,
}

impl FsIo {
    /// File-system access with traces sent to `trace`.
    pub fn new(trace: impl Fn(&str) + 'static) -> FsIo {
        FsIo {
            trace: Box::new(trace),
            impure_env: false,
        }
    }

    pub fn with_impure_env(mut self, yes: bool) -> FsIo {
        self.impure_env = yes;
        self
    }
}

fn kind_of(ft: std::fs::FileType) -> FileKind {
    if ft.is_file() {
        FileKind::Regular
    } else if ft.is_dir() {
        FileKind::Directory
    } else if ft.is_symlink() {
        FileKind::Symlink
    } else {
        FileKind::Unknown
    }
}

impl EvalIo for FsIo {
    fn read_file(&self, path: &str) -> io::Result<Vec<u8>> {
        std::fs::read(path)
    }

    fn file_kind(&self, path: &str) -> Option<FileKind> {
        std::fs::metadata(path).ok().map(|m| kind_of(m.file_type()))
    }

    fn read_dir(&self, path: &str) -> io::Result<Vec<(String, FileKind)>> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(path)? {
            let e = e?;
            let kind = e.file_type().map(kind_of).unwrap_or(FileKind::Unknown);
            out.push((e.file_name().to_string_lossy().into_owned(), kind));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    fn home_dir(&self) -> Option<String> {
        std::env::var("HOME").ok()
    }

    fn get_env(&self, name: &str) -> Option<String> {
        if self.impure_env {
            std::env::var(name).ok()
        } else {
            None
        }
    }

    fn trace(&self, message: &str) {
        (self.trace)(message)
    }
}
