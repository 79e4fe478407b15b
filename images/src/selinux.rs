//! SELinux file labels for an image's files: the `selinux` build option of a package (Gentoo's
//! meaning: the package's policy and file contexts go with it).
//!
//! The file contexts come from a compiled SELinux *module package* (`.pp`, as Debian's
//! `selinux-policy-default` ships them under `/usr/share/selinux/default/`, there
//! bzip2-compressed): a little-endian header (magic `0xf97cff8f`, version, section count, one
//! offset per section), then sections that each start with their own magic. The file-context
//! section (magic `0xf97cff90`) is the module's `.fc` text, running to the next section or the
//! end of the file: one rule a line, `REGEX [TYPE] CONTEXT`, where `REGEX` is a POSIX extended
//! regular expression matched against the whole path, `TYPE` restricts the rule to one kind of
//! file (`--` regular file, `-d` directory, `-l` symlink, `-c`, `-b`, `-s`, `-p`) and
//! `<<none>>` as the context means "leave unlabelled".
//!
//! When several rules match a path, the most specific wins, as `fc_sort` orders a policy's
//! file contexts: a rule without regular-expression metacharacters beats one with them, then
//! the longer literal stem (the text before the first metacharacter), the longer expression,
//! a rule with a file type over one without, and the later line last.
//!
//! The module is untrusted input like any store content: its header, offsets and text are
//! checked against the file's size, a module larger than [`MAX_MODULE_BYTES`] or with more
//! than [`MAX_SECTIONS`] sections or [`MAX_RULES`] rules is refused, and every expression is
//! compiled with a size limit.

use std::io::Read;

use sha2::{Digest, Sha256};

/// The magic of a module package (`SEPOL_MODULE_PACKAGE_MAGIC`).
pub const MODULE_PACKAGE_MAGIC: u32 = 0xf97c_ff8f;
/// The magic of the file-context section (`SEPOL_PACKAGE_SECTION_FC`).
pub const SECTION_FC_MAGIC: u32 = 0xf97c_ff90;
/// The largest module package read (Debian's largest, `apache.pp`, is 0.7 MB).
pub const MAX_MODULE_BYTES: u64 = 64 << 20;
/// The most sections a module package may declare (libsepol writes at most 6).
pub const MAX_SECTIONS: u32 = 64;
/// The most file-context rules taken from the modules of one image.
pub const MAX_RULES: usize = 100_000;
/// The compiled size limit of one file-context expression.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// The xattr name of a file's SELinux label, as a PAX record key in a layer tar.
pub const PAX_KEY: &str = "SCHILY.xattr.security.selinux";

/// A module package or file-context text that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelinuxError {
    #[error("not an SELinux module package: {0}")]
    NotAModule(String),
    #[error("file contexts line {line}: {why}")]
    Line { line: usize, why: String },
    #[error("{0}")]
    Limit(String),
}

/// The kind of file a rule may be restricted to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    Regular,
    Dir,
    Symlink,
    Char,
    Block,
    Socket,
    Fifo,
}

impl FileKind {
    fn parse(s: &str) -> Option<FileKind> {
        Some(match s {
            "--" => FileKind::Regular,
            "-d" => FileKind::Dir,
            "-l" => FileKind::Symlink,
            "-c" => FileKind::Char,
            "-b" => FileKind::Block,
            "-s" => FileKind::Socket,
            "-p" => FileKind::Fifo,
            _ => return None,
        })
    }
}

/// One line of a file-context text.
#[derive(Clone, Debug)]
pub struct Rule {
    /// The expression as written.
    pub pattern: String,
    regex: regex::Regex,
    pub kind: Option<FileKind>,
    /// `None` for `<<none>>`.
    pub context: Option<String>,
    /// (no metacharacters, stem length, length, has a kind, line): larger is more specific.
    rank: (bool, usize, usize, bool, usize),
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

/// The file-context text of a module package (empty when the module has none).
pub fn module_file_contexts(pp: &[u8]) -> Result<String, SelinuxError> {
    let bad = |why: &str| SelinuxError::NotAModule(why.to_string());
    if pp.len() as u64 > MAX_MODULE_BYTES {
        return Err(SelinuxError::Limit(format!(
            "a module package of {} bytes is larger than {MAX_MODULE_BYTES}",
            pp.len()
        )));
    }
    if u32_at(pp, 0) != Some(MODULE_PACKAGE_MAGIC) {
        return Err(bad("wrong magic number"));
    }
    let count = u32_at(pp, 8).ok_or_else(|| bad("truncated header"))?;
    if count == 0 || count > MAX_SECTIONS {
        return Err(bad(&format!("{count} sections")));
    }
    let header_end = 12 + 4 * count as usize;
    let mut offsets: Vec<usize> = Vec::with_capacity(count as usize);
    for i in 0..count as usize {
        let o = u32_at(pp, 12 + 4 * i).ok_or_else(|| bad("truncated section table"))? as usize;
        if o < header_end || o.saturating_add(4) > pp.len() {
            return Err(bad(&format!(
                "section {i} at offset {o} is outside the file"
            )));
        }
        if offsets.last().is_some_and(|&p| o < p.saturating_add(4)) {
            return Err(bad("sections out of order"));
        }
        offsets.push(o);
    }
    for (i, &o) in offsets.iter().enumerate() {
        if u32_at(pp, o) != Some(SECTION_FC_MAGIC) {
            continue;
        }
        let end = offsets.get(i + 1).copied().unwrap_or(pp.len());
        let text = pp
            .get(o + 4..end)
            .ok_or_else(|| bad("file-context section outside the file"))?;
        return String::from_utf8(text.to_vec())
            .map_err(|_| bad("the file-context section is not UTF-8 text"));
    }
    Ok(String::new())
}

/// Whether `c` makes an expression more than a literal (`fc_sort`'s list).
fn is_meta(c: char) -> bool {
    matches!(
        c,
        '.' | '^' | '$' | '?' | '*' | '+' | '|' | '[' | '(' | '{' | '\\'
    )
}

/// Parse a file-context text into rules. Comments (`#`), blank lines and lines of templates
/// that `genhomedircon` expands per user (`HOME_DIR`, `HOME_ROOT`, `USER`, `ROLE`) are skipped.
pub fn parse_file_contexts(text: &str, first_line: usize) -> Result<Vec<Rule>, SelinuxError> {
    let mut out = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line = first_line + n;
        let l = raw.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = l.split_whitespace().collect();
        let (pattern, kind, context) = match fields.as_slice() {
            [p, c] => (*p, None, *c),
            [p, k, c] => {
                let kind = FileKind::parse(k).ok_or_else(|| SelinuxError::Line {
                    line,
                    why: format!("unknown file type `{k}`"),
                })?;
                (*p, Some(kind), *c)
            }
            _ => {
                return Err(SelinuxError::Line {
                    line,
                    why: "not `REGEX [TYPE] CONTEXT`".into(),
                })
            }
        };
        if ["HOME_DIR", "HOME_ROOT", "USER", "ROLE"]
            .iter()
            .any(|t| pattern.contains(t))
        {
            continue;
        }
        if out.len() >= MAX_RULES {
            return Err(SelinuxError::Limit(format!(
                "more than {MAX_RULES} file-context rules"
            )));
        }
        let context = match context {
            "<<none>>" => None,
            c if c.split(':').count() >= 3 && !c.contains(|ch: char| ch.is_control()) => {
                Some(c.to_string())
            }
            c => {
                return Err(SelinuxError::Line {
                    line,
                    why: format!("`{c}` is not a security context (user:role:type[:level])"),
                })
            }
        };
        let regex = regex::RegexBuilder::new(&format!("^(?:{pattern})$"))
            .size_limit(REGEX_SIZE_LIMIT)
            .build()
            .map_err(|e| SelinuxError::Line {
                line,
                why: format!("`{pattern}`: {e}"),
            })?;
        let stem = pattern.chars().take_while(|&c| !is_meta(c)).count();
        let literal = !pattern.chars().any(is_meta);
        out.push(Rule {
            pattern: pattern.to_string(),
            regex,
            kind,
            context,
            rank: (literal, stem, pattern.len(), kind.is_some(), line),
        });
    }
    Ok(out)
}

/// Labels for one set of files: the rules of some modules, matched against each file's path
/// with `prefix` in front (a package's files are matched as if installed there).
#[derive(Clone, Debug)]
pub struct Labels {
    rules: Vec<Rule>,
    /// Put before a path relative to the labelled tree (`/usr` for a package: its `sbin/nginx`
    /// is matched as `/usr/sbin/nginx`; empty for the image's own tree).
    pub prefix: String,
    /// sha256 over the prefix and the rules' text: what a cached layer's key records.
    pub digest: String,
}

impl Labels {
    /// Labels from module packages (their raw bytes), for paths under `prefix`.
    pub fn from_modules(modules: &[Vec<u8>], prefix: &str) -> Result<Labels, SelinuxError> {
        let mut rules = Vec::new();
        let mut h = Sha256::new();
        h.update(format!("buildit-selinux-v1\n{prefix}\n").as_bytes());
        let mut line = 1;
        for m in modules {
            let text = module_file_contexts(m)?;
            h.update(text.as_bytes());
            h.update(b"\0");
            let rs = parse_file_contexts(&text, line)?;
            line += text.lines().count();
            rules.extend(rs);
            if rules.len() > MAX_RULES {
                return Err(SelinuxError::Limit(format!(
                    "more than {MAX_RULES} file-context rules"
                )));
            }
        }
        Ok(Labels {
            rules,
            prefix: prefix.trim_end_matches('/').to_string(),
            digest: hex::encode(h.finalize()),
        })
    }

    /// The same rules for another prefix.
    pub fn with_prefix(&self, prefix: &str) -> Labels {
        let mut l = self.clone();
        l.prefix = prefix.trim_end_matches('/').to_string();
        let mut h = Sha256::new();
        h.update(self.digest.as_bytes());
        h.update(format!("\n{}\n", l.prefix).as_bytes());
        l.digest = hex::encode(h.finalize());
        l
    }

    /// The rules, in their order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The label of the file at `rel` (relative to the labelled tree, `""` for its root),
    /// or `None` when no rule gives one.
    pub fn label(&self, rel: &str, kind: FileKind) -> Option<&str> {
        let rel = rel.trim_matches('/');
        let path = match (self.prefix.is_empty(), rel.is_empty()) {
            (true, true) => "/".to_string(),
            (true, false) => format!("/{rel}"),
            (false, true) => self.prefix.clone(),
            (false, false) => format!("{}/{rel}", self.prefix),
        };
        self.rules
            .iter()
            .filter(|r| r.kind.is_none_or(|k| k == kind) && r.regex.is_match(&path))
            .max_by_key(|r| r.rank)
            .and_then(|r| r.context.as_deref())
    }
}

/// Read a module package, bounded by [`MAX_MODULE_BYTES`].
pub fn read_module(mut r: impl Read) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    r.by_ref()
        .take(MAX_MODULE_BYTES + 1)
        .read_to_end(&mut buf)?;
    if buf.len() as u64 > MAX_MODULE_BYTES {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("an SELinux module package larger than {MAX_MODULE_BYTES} bytes"),
        ));
    }
    Ok(buf)
}

/// A module package holding `fc` as its file contexts (and a stand-in policy section): what
/// the tests label with.
#[cfg(test)]
pub fn test_module(fc: &str) -> Vec<u8> {
    let policy = [0xf97c_ff8d_u32.to_le_bytes(), [0; 4]].concat();
    let mut out = Vec::new();
    for v in [MODULE_PACKAGE_MAGIC, 1, 2, 20, 20 + policy.len() as u32] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(&policy);
    out.extend_from_slice(&SECTION_FC_MAGIC.to_le_bytes());
    out.extend_from_slice(fc.as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lines as Debian's `apache.pp` has them (tabs and all).
    const APACHE: &str = "HOME_DIR/((www)|(web)|(public_html))(/.+)?\t\t\tsystem_u:object_r:httpd_user_content_t:s0\n\
/etc/nginx(/.*)?\t\t\t\t\t\tsystem_u:object_r:httpd_config_t:s0\n\
/usr/sbin/nginx\t\t\t\t\t\t--  system_u:object_r:httpd_exec_t:s0\n\
/usr/share/nginx/html(/.*)?\t\t\t\t\tsystem_u:object_r:httpd_sys_content_t:s0\n\
/var/log/nginx(/.*)?\t\t\t\t\t\tsystem_u:object_r:httpd_log_t:s0\n\
/usr/share/nginx/html/private\t-d\t<<none>>\n\
# a comment\n\n";

    #[test]
    fn the_file_context_section_is_found() {
        let m = test_module(APACHE);
        assert_eq!(module_file_contexts(&m).expect("a module"), APACHE);
        // a module without a file-context section has none
        let mut no_fc = test_module("");
        no_fc.truncate(28);
        no_fc[8] = 1;
        assert_eq!(module_file_contexts(&no_fc).expect("a module"), "");
    }

    #[test]
    fn hostile_modules_are_refused() {
        let good = test_module(APACHE);
        assert!(module_file_contexts(b"").is_err());
        assert!(module_file_contexts(&good[..10]).is_err());
        let mut m = good.clone();
        m[0] ^= 1;
        assert!(module_file_contexts(&m).is_err(), "magic");
        let mut m = good.clone();
        m[8..12].copy_from_slice(&1_000_000u32.to_le_bytes());
        assert!(module_file_contexts(&m).is_err(), "section count");
        let mut m = good.clone();
        m[16..20].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(module_file_contexts(&m).is_err(), "offset past the end");
        let mut m = good.clone();
        m[16..20].copy_from_slice(&4u32.to_le_bytes());
        assert!(
            module_file_contexts(&m).is_err(),
            "offset inside the header"
        );
        let mut m = good;
        m.extend_from_slice(&[0xff, 0xfe]);
        assert!(module_file_contexts(&m).is_err(), "not UTF-8");
        for bad in [
            "/x\n",
            "/x -q system_u:object_r:t:s0\n",
            "/x(  system_u:object_r:t:s0\n",
            "/x nolabel\n",
        ] {
            assert!(parse_file_contexts(bad, 1).is_err(), "{bad:?}");
        }
        let e = parse_file_contexts("# c\n/a a:b:c\n/b(\ta:b:c\n", 1).expect_err("line 3");
        assert!(matches!(e, SelinuxError::Line { line: 3, .. }), "{e}");
    }

    #[test]
    fn nginx_paths_get_the_apache_module_labels() {
        let l = Labels::from_modules(&[test_module(APACHE)], "").expect("labels");
        assert_eq!(l.rules().len(), 5, "the HOME_DIR template is skipped");
        assert_eq!(
            l.label("usr/sbin/nginx", FileKind::Regular),
            Some("system_u:object_r:httpd_exec_t:s0")
        );
        // `--`: only a regular file, not the profile's symlink of the same name
        assert_eq!(l.label("usr/sbin/nginx", FileKind::Symlink), None);
        // anchored: neither a longer name nor a prefix match
        assert_eq!(l.label("usr/sbin/nginx2", FileKind::Regular), None);
        assert_eq!(l.label("opt/usr/sbin/nginx", FileKind::Regular), None);
        for (p, k) in [
            ("etc/nginx", FileKind::Dir),
            ("etc/nginx/nginx.conf", FileKind::Regular),
        ] {
            assert_eq!(l.label(p, k), Some("system_u:object_r:httpd_config_t:s0"));
        }
        assert_eq!(l.label("etc/nginxx", FileKind::Dir), None);
        assert_eq!(l.label("etc", FileKind::Dir), None);
        // the more specific rule wins, and `<<none>>` leaves the file unlabelled
        assert_eq!(
            l.label("usr/share/nginx/html/index.html", FileKind::Regular),
            Some("system_u:object_r:httpd_sys_content_t:s0")
        );
        assert_eq!(l.label("usr/share/nginx/html/private", FileKind::Dir), None);
        // a package's files, matched as if installed under /usr
        let pkg = l.with_prefix("/usr");
        assert_eq!(
            pkg.label("sbin/nginx", FileKind::Regular),
            Some("system_u:object_r:httpd_exec_t:s0")
        );
        assert_eq!(pkg.label("", FileKind::Dir), None);
        assert_ne!(pkg.digest, l.digest);
    }

    #[test]
    fn specificity_orders_overlapping_rules() {
        let fc = "/srv(/.*)?\ta:b:general_t:s0\n/srv/www(/.*)?\ta:b:www_t:s0\n/srv/www/x\ta:b:x_t:s0\n/srv/.*\ta:b:late_t:s0\n";
        let l = Labels::from_modules(&[test_module(fc)], "").expect("labels");
        assert_eq!(l.label("srv/www/x", FileKind::Regular), Some("a:b:x_t:s0"));
        assert_eq!(
            l.label("srv/www/y", FileKind::Regular),
            Some("a:b:www_t:s0")
        );
        // the longer literal stem (`/srv/` before `/srv`) wins
        assert_eq!(l.label("srv/z", FileKind::Regular), Some("a:b:late_t:s0"));
        assert_eq!(l.label("srv", FileKind::Dir), Some("a:b:general_t:s0"));
    }
}
