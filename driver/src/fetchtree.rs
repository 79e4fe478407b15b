//! The fetcher behind `builtins.fetchTarball` and `builtins.fetchGit`: what the evaluation's
//! store glue ([`buildit_stdlib::fetchtree`]) calls when a pinned tree is not in the store yet.
//!
//! It only brings an archive into the work directory it is given; unpacking under the archive
//! rules, the hash check and registration are the glue's, so nothing fetched here is trusted.
//!
//! - A tarball is downloaded with the builder's fetcher ([`buildit_builder::fetch`]): http(s),
//!   `file://` and `mirror://NAME/…`, retries with backoff, its connect and read timeout.
//! - A git revision is fetched with the system `git` into a fresh bare repository (the ref
//!   given, else the revision itself, else every branch and tag), and its tree exported with
//!   `git archive`. Attributes in the repository are overridden (`$GIT_DIR/info/attributes`:
//!   no end-of-line conversion, filters, `ident`, `export-subst` or `export-ignore`) and the
//!   user's and system's configuration are not read for the export, so the tree is the
//!   commit's exact blobs on every machine. Each git command runs under a time limit and the
//!   archive under a size limit; `GIT_DIR` and the like from the environment are ignored.

use std::cell::OnceCell;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use buildit_builder::fetch::{fetch_url, FetchRequest, Mirrors};
use buildit_eval::io::TreeSource;
use buildit_stdlib::fetchtree::TreeFetcher;
use buildit_stdlib::unpack::UnpackLimits;

/// How long one git command may run (a fetch of a large repository included).
pub const GIT_TIMEOUT: Duration = Duration::from_secs(600);

/// Environment variables that would point git at another repository or object store.
const GIT_ENV: &[&str] = &[
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_COMMON_DIR",
    "GIT_NAMESPACE",
    "GIT_CEILING_DIRECTORIES",
    "GIT_CONFIG",
    "GIT_CONFIG_PARAMETERS",
    "GIT_CONFIG_COUNT",
];

/// The attributes that make `git archive` write the commit's blobs exactly.
const RAW_ATTRIBUTES: &str = "* -text -eol -filter -ident -export-subst -export-ignore\n";

/// The fetcher the driver gives to evaluation.
pub struct Fetcher {
    mirrors: OnceCell<Mirrors>,
    git_timeout: Duration,
    /// Bytes a `git archive` may write (the unpacking limit plus room for headers).
    max_archive: u64,
}

impl Default for Fetcher {
    fn default() -> Fetcher {
        Fetcher::new()
    }
}

impl Fetcher {
    /// A fetcher with the machine's mirrors (read when first needed) and the default limits.
    pub fn new() -> Fetcher {
        let limits = UnpackLimits::default();
        Fetcher {
            mirrors: OnceCell::new(),
            git_timeout: GIT_TIMEOUT,
            max_archive: limits
                .max_bytes
                .saturating_add(limits.max_entries.saturating_mul(2048)),
        }
    }

    fn tarball(&self, url: &str, work: &Path) -> Result<PathBuf, String> {
        let dest = work.join("download");
        let mirrors = self.mirrors.get_or_init(crate::builtins::mirrors);
        let req = FetchRequest::new(vec![url.to_string()], mirrors);
        fetch_url(&req, &dest, &mut |_| {}).map_err(|e| e.to_string())?;
        Ok(dest)
    }

    fn git(
        &self,
        url: &str,
        rev: &str,
        git_ref: Option<&str>,
        work: &Path,
    ) -> Result<PathBuf, String> {
        let repo = work.join("repo.git");
        let repo_s = repo.to_string_lossy().into_owned();
        self.run_git(&["init", "--bare", "--quiet", &repo_s], Hermetic::Yes, None)
            .map_err(|e| format!("git init: {e}"))?;
        fs::write(repo.join("info/attributes"), RAW_ATTRIBUTES)
            .or_else(|_| {
                fs::create_dir_all(repo.join("info"))
                    .and_then(|_| fs::write(repo.join("info/attributes"), RAW_ATTRIBUTES))
            })
            .map_err(|e| format!("writing the export attributes: {e}"))?;
        let gd = format!("--git-dir={repo_s}");
        let fetch = |refspecs: &[&str]| {
            let mut args = vec![gd.as_str(), "fetch", "--no-tags", "--quiet", "--", url];
            args.extend_from_slice(refspecs);
            self.run_git(&args, Hermetic::No, None)
        };
        let what = match git_ref {
            Some(r) => {
                let full = if r.starts_with("refs/") {
                    r.to_string()
                } else {
                    format!("refs/heads/{r}")
                };
                fetch(&[&format!("+{full}:refs/buildit/fetched")])
                    .map_err(|e| format!("git fetch {url} {full}: {e}"))?;
                format!("ref {full} of {url}")
            }
            None => {
                if fetch(&[rev]).is_err() {
                    fetch(&["+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"])
                        .map_err(|e| format!("git fetch {url}: {e}"))?;
                }
                format!("the branches and tags of {url}")
            }
        };
        let commit = format!("{rev}^{{commit}}");
        if self
            .run_git(&[&gd, "cat-file", "-e", &commit], Hermetic::Yes, None)
            .is_err()
        {
            return Err(format!(
                "revision {rev} is not in {what} (give the `ref` that contains it, or check the revision)"
            ));
        }
        let out = work.join("tree.tar");
        let out_s = format!("--output={}", out.to_string_lossy());
        self.run_git(
            &[&gd, "archive", "--format=tar", &out_s, rev],
            Hermetic::Yes,
            Some((&out, self.max_archive)),
        )
        .map_err(|e| format!("git archive {rev}: {e}"))?;
        Ok(out)
    }

    /// Run `git ARGS` with the time limit; `watch` is a file the command writes whose size is
    /// bounded. The error is the command's own message (its first lines).
    fn run_git(
        &self,
        args: &[&str],
        hermetic: Hermetic,
        watch: Option<(&Path, u64)>,
    ) -> Result<(), String> {
        let err_file =
            tempfile::tempfile().map_err(|e| format!("cannot capture git's errors: {e}"))?;
        let err_clone = err_file
            .try_clone()
            .map_err(|e| format!("cannot capture git's errors: {e}"))?;
        let mut cmd = Command::new("git");
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(err_clone))
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("LC_ALL", "C");
        for v in GIT_ENV {
            cmd.env_remove(v);
        }
        if hermetic == Hermetic::Yes {
            cmd.env("GIT_CONFIG_NOSYSTEM", "1")
                .env("GIT_CONFIG_GLOBAL", "/dev/null");
        }
        let mut child = cmd.spawn().map_err(|e| {
            format!("cannot run git ({e}); fetchGit needs the `git` program on PATH")
        })?;
        let started = Instant::now();
        let status = loop {
            match child.try_wait() {
                Ok(Some(s)) => break s,
                Ok(None) => {}
                Err(e) => return Err(format!("waiting for git: {e}")),
            }
            let too_big = watch
                .and_then(|(p, max)| fs::metadata(p).ok().filter(|m| m.len() > max).map(|_| max));
            if let Some(max) = too_big {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("the tree is larger than the limit of {max} bytes"));
            }
            if started.elapsed() > self.git_timeout {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "no answer within {} s; stopped",
                    self.git_timeout.as_secs()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        if status.success() {
            return Ok(());
        }
        let mut text = String::new();
        let _ = std::io::Seek::rewind(&mut &err_file);
        let _ = (&err_file).take(4096).read_to_string(&mut text);
        let msg: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .take(4)
            .collect();
        Err(if msg.is_empty() {
            format!("git failed ({status})")
        } else {
            msg.join("; ")
        })
    }
}

/// Whether a git command runs without the user's and the system's configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Hermetic {
    Yes,
    /// A fetch: the user's configuration holds credentials, proxies and URL rewrites.
    No,
}

impl TreeFetcher for Fetcher {
    fn fetch(&self, source: &TreeSource, work: &Path) -> Result<PathBuf, String> {
        match source {
            TreeSource::Tarball { url, .. } => self.tarball(url, work),
            TreeSource::Git { url, rev, git_ref } => self.git(url, rev, git_ref.as_deref(), work),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn git_in(dir: &Path, args: &[&str]) -> String {
        let out = Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@example.org"])
            .args(args)
            .current_dir(dir)
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .output()
            .expect("git runs");
        assert!(out.status.success(), "{args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn have_git() -> bool {
        Command::new("git").arg("--version").output().is_ok()
    }

    /// A revision of a local repository comes back as a tar of its exact blobs (an
    /// `export-subst` attribute in the repository changes nothing); a missing revision is
    /// an error naming it.
    #[test]
    fn git_revision_as_archive() {
        if !have_git() {
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let src = dir.path().join("src");
        fs::create_dir(&src).expect("mkdir");
        git_in(&src, &["init", "-q"]);
        fs::write(src.join("default.bld"), "\"$Format:%H$\"\n").expect("write");
        fs::write(src.join(".gitattributes"), "default.bld export-subst\n").expect("write");
        git_in(&src, &["add", "."]);
        git_in(&src, &["commit", "-q", "-m", "one"]);
        let rev = git_in(&src, &["rev-parse", "HEAD"]);
        let work = dir.path().join("work");
        fs::create_dir(&work).expect("mkdir");
        let f = Fetcher::new();
        let url = format!("file://{}", src.display());
        let tar_path = f
            .fetch(
                &TreeSource::Git {
                    url: url.clone(),
                    rev: rev.clone(),
                    git_ref: None,
                },
                &work,
            )
            .expect("fetched");
        let tree = buildit_stdlib::unpack::unpack_archive(
            &tar_path,
            &work.join("tree"),
            false,
            UnpackLimits::default(),
        )
        .expect("unpacked");
        assert_eq!(
            fs::read_to_string(tree.join("default.bld")).expect("file"),
            "\"$Format:%H$\"\n"
        );
        let found = tree.join(".gitattributes").exists();
        assert!(found);
        let work2 = dir.path().join("work2");
        fs::create_dir(&work2).expect("mkdir");
        let e = f
            .fetch(
                &TreeSource::Git {
                    url,
                    rev: "0".repeat(40),
                    git_ref: Some("master".into()),
                },
                &work2,
            )
            .expect_err("no such revision");
        assert!(e.contains(&"0".repeat(40)) || e.contains("master"), "{e}");
    }
}
