//! The builtins that fetch during evaluation: `fetchTarball { url; sha256; }` and
//! `fetchGit { url; rev; }`. They exist so that a package set published elsewhere can be
//! imported (`import (builtins.fetchTarball { … })`), as Nix users share channels.
//!
//! Evaluation stays pure: both builtins require the pin (a hash of the unpacked tree, a full
//! git revision), so the result is a function of the expression, and a tree already in the
//! store is used without any network access. The fetching itself is done by the
//! [`crate::io::EvalIo`] (the store glue and the driver); this module checks the arguments and
//! turns the answer into a store path string that carries its context.

use std::rc::Rc;

use crate::builtins::strings::{arg, force_string_no_ctx};
use crate::error::{ErrorKind, EvalError};
use crate::io::{TreeError, TreeRequest, TreeSource};
use crate::symbol::Symbol;
use crate::value::{Attrs, Context, ContextElem, EvalResult, NixString, PrimOp, Value};
use crate::Evaluator;
use buildit_lang::Span;

pub(crate) fn primops() -> Vec<PrimOp> {
    vec![
        PrimOp { name: "fetchTarball", arity: 1, func: fetch_tarball, doc: "fetchTarball { url; sha256 | hash; name ? \"source\"; }: the store path of the tarball at url unpacked (its single top-level directory stripped), pinned by the recursive hash of that tree; fetched during evaluation, once per store" },
        PrimOp { name: "fetchGit", arity: 1, func: fetch_git, doc: "fetchGit { url; rev; ref ? …; name ? \"source\"; }: { outPath; rev; shortRev; submodules; } for the tree of commit rev (40 hex digits) of the git repository at url; fetched during evaluation, once per store" },
    ]
}

fn err(kind: ErrorKind, msg: impl Into<String>, span: Span) -> EvalError {
    EvalError::new(kind, msg, span)
}

/// A string argument that may not carry a context (a URL computed from a derivation's output
/// would need that derivation built first: arbitrary import from derivation).
fn plain_string(ev: &mut Evaluator, v: &Value, what: &str, span: Span) -> EvalResult<String> {
    force_string_no_ctx(ev, v, span)
        .map(|s| s.as_str().to_string())
        .map_err(|e| e.add_trace(span, format!("while evaluating the argument `{what}`")))
}

/// The error of a failed fetch, with the code that says what failed.
fn tree_error(builtin: &str, e: TreeError, span: Span) -> EvalError {
    match e {
        TreeError::Unavailable(m) => err(ErrorKind::Store, format!("{builtin}: {m}"), span)
            .with_help("evaluate with a store (`buildit eval`, `buildit build`); `buildit check` has none"),
        TreeError::Invalid(m) => err(ErrorKind::Invalid, format!("{builtin}: {m}"), span),
        TreeError::HashMismatch {
            url,
            expected,
            actual,
        } => err(
            ErrorKind::HashMismatch,
            format!(
                "{builtin}: hash mismatch in the tree fetched from {url}\n  expected: {expected}\n       got: {actual}\nnothing was registered"
            ),
            span,
        )
        .with_help(format!(
            "if the new content is what you want (check where it comes from), pin it: sha256 = \"{actual}\";"
        )),
        TreeError::Fetch(m) => err(ErrorKind::Fetch, format!("{builtin}: {m}"), span),
    }
}

/// The store path as a string that depends on it.
fn store_string(p: String) -> Value {
    let ctx = Context::single(ContextElem::Opaque(Rc::from(p.as_str())));
    Value::String(NixString::new(p, ctx))
}

fn fetch_tarball(ev: &mut Evaluator, a: &[Value], span: Span) -> EvalResult<Value> {
    let v = ev.force(&arg(a, 0))?;
    let attrs = match &v {
        Value::Attrs(attrs) => attrs.clone(),
        Value::String(_) | Value::Path(_) => {
            return Err(err(
                ErrorKind::MissingArgument,
                "fetchTarball: a bare URL is not pinned; evaluation fetches only what a hash pins",
                span,
            )
            .with_help(
                "write builtins.fetchTarball { url = \"…\"; sha256 = \"…\"; } (evaluate once with a wrong hash: the error prints the one to pin)",
            ))
        }
        other => return Err(ev.type_error("a set", other, span)),
    };
    let mut url = None;
    let mut sha256 = None;
    let mut hash = None;
    let mut name = None;
    for (k, v) in attrs.iter_sorted() {
        let v = v.clone();
        match k.as_str() {
            "url" => url = Some(plain_string(ev, &v, "url", span)?),
            "sha256" => sha256 = Some(plain_string(ev, &v, "sha256", span)?),
            "hash" => hash = Some(plain_string(ev, &v, "hash", span)?),
            "name" => name = Some(plain_string(ev, &v, "name", span)?),
            other => {
                return Err(err(
                    ErrorKind::UnexpectedArgument,
                    format!("unsupported argument '{other}' to 'fetchTarball'"),
                    span,
                )
                .with_help("the arguments are `url`, `sha256` (or `hash`) and `name`"))
            }
        }
    }
    let url = url.ok_or_else(|| {
        err(
            ErrorKind::MissingArgument,
            "missing required argument 'url' to 'fetchTarball'",
            span,
        )
    })?;
    let hash = match (sha256, hash) {
        (Some(_), Some(_)) => {
            return Err(err(
                ErrorKind::Invalid,
                "fetchTarball: give either `sha256` or `hash`, not both",
                span,
            ))
        }
        (Some(h), None) => h,
        (None, Some(h)) if h.contains('-') => h,
        (None, Some(h)) => {
            return Err(err(
                ErrorKind::Invalid,
                format!("fetchTarball: `hash` is an SRI hash (sha256-<base64>), not '{h}'"),
                span,
            )
            .with_help("write a hex or nix-base32 sha256 as `sha256 = \"…\";`"))
        }
        (None, None) => {
            return Err(err(
                ErrorKind::MissingArgument,
                format!("fetchTarball {url}: missing `sha256` (or `hash`); evaluation fetches only what a hash pins"),
                span,
            )
            .with_help("add sha256 = \"\"; once: the error prints the hash of what the URL holds now, to pin after checking it"))
        }
    };
    let req = TreeRequest {
        name: name.unwrap_or_else(|| "source".to_string()),
        source: TreeSource::Tarball { url, hash },
    };
    let p = ev
        .io()
        .fetch_tree(&req)
        .map_err(|e| tree_error("fetchTarball", e, span))?;
    Ok(store_string(p))
}

/// A full commit hash: 40 lowercase hex digits.
fn is_full_rev(rev: &str) -> bool {
    rev.len() == 40 && rev.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn fetch_git(ev: &mut Evaluator, a: &[Value], span: Span) -> EvalResult<Value> {
    let v = ev.force(&arg(a, 0))?;
    let attrs = match &v {
        Value::Attrs(attrs) => attrs.clone(),
        Value::String(_) | Value::Path(_) => {
            return Err(err(
                ErrorKind::MissingArgument,
                "fetchGit: a bare URL is not pinned; evaluation fetches only a given revision",
                span,
            )
            .with_help("write builtins.fetchGit { url = \"…\"; rev = \"<40 hex digits>\"; }"))
        }
        other => return Err(ev.type_error("a set", other, span)),
    };
    let mut url = None;
    let mut rev = None;
    let mut git_ref = None;
    let mut name = None;
    for (k, v) in attrs.iter_sorted() {
        let v = v.clone();
        match k.as_str() {
            "url" => {
                url = Some(match ev.force(&v)? {
                    Value::Path(p) => format!("file://{p}"),
                    other => plain_string(ev, &other, "url", span)?,
                })
            }
            "rev" => rev = Some(plain_string(ev, &v, "rev", span)?),
            "ref" => git_ref = Some(plain_string(ev, &v, "ref", span)?),
            "name" => name = Some(plain_string(ev, &v, "name", span)?),
            "submodules" => {
                if ev.force_bool(&v, span)? {
                    return Err(err(
                        ErrorKind::Unsupported,
                        "fetchGit: `submodules = true` is not supported",
                        span,
                    )
                    .with_help("fetch each submodule with its own fetchGit (its url and rev)"));
                }
            }
            // the tree of a revision is the same however much history is fetched
            "shallow" | "allRefs" => {
                ev.force_bool(&v, span)?;
            }
            other => {
                return Err(err(
                    ErrorKind::UnexpectedArgument,
                    format!("unsupported argument '{other}' to 'fetchGit'"),
                    span,
                )
                .with_help(
                    "the arguments are `url`, `rev`, `ref`, `name`, `submodules`, `shallow` and `allRefs`",
                ))
            }
        }
    }
    let url = url.ok_or_else(|| {
        err(
            ErrorKind::MissingArgument,
            "missing required argument 'url' to 'fetchGit'",
            span,
        )
    })?;
    let rev = rev.ok_or_else(|| {
        err(
            ErrorKind::MissingArgument,
            format!("fetchGit {url}: missing `rev`; evaluation fetches only a given revision"),
            span,
        )
        .with_help(
            "pin the commit: rev = \"<40 hex digits>\"; (`git rev-parse HEAD` in the repository)",
        )
    })?;
    if !is_full_rev(&rev) {
        return Err(err(
            ErrorKind::Invalid,
            format!("fetchGit {url}: `rev` must be a full commit hash (40 lowercase hex digits), not '{rev}'"),
            span,
        )
        .with_help("a branch or tag name goes in `ref`; `rev` pins the commit"));
    }
    if git_ref.as_deref().is_some_and(|r| {
        r.is_empty() || r.starts_with('-') || r.contains("..") || r.chars().any(char::is_whitespace)
    }) {
        return Err(err(
            ErrorKind::Invalid,
            format!("fetchGit {url}: invalid `ref`"),
            span,
        ));
    }
    let req = TreeRequest {
        name: name.unwrap_or_else(|| "source".to_string()),
        source: TreeSource::Git {
            url,
            rev: rev.clone(),
            git_ref,
        },
    };
    let p = ev
        .io()
        .fetch_tree(&req)
        .map_err(|e| tree_error("fetchGit", e, span))?;
    let entries = vec![
        (Symbol::intern("outPath"), store_string(p)),
        (Symbol::intern("shortRev"), Value::string(&rev[..7])),
        (Symbol::intern("rev"), Value::string(rev.as_str())),
        (Symbol::intern("submodules"), Value::Bool(false)),
    ];
    Ok(Value::attrs(Attrs::from_unsorted(entries)))
}

#[cfg(test)]
mod tests {
    use crate::io::{EvalIo, FileKind, TreeError, TreeRequest, TreeSource};
    use crate::Evaluator;
    use std::cell::RefCell;
    use std::rc::Rc;

    /// An IO that records tree requests and answers with a made-up store path.
    struct Trees(Rc<RefCell<Vec<TreeRequest>>>);

    impl EvalIo for Trees {
        fn read_file(&self, p: &str) -> std::io::Result<Vec<u8>> {
            Err(std::io::Error::other(p.to_string()))
        }
        fn file_kind(&self, _p: &str) -> Option<FileKind> {
            None
        }
        fn read_dir(&self, p: &str) -> std::io::Result<Vec<(String, FileKind)>> {
            Err(std::io::Error::other(p.to_string()))
        }
        fn home_dir(&self) -> Option<String> {
            None
        }
        fn trace(&self, _m: &str) {}
        fn fetch_tree(&self, req: &TreeRequest) -> Result<String, TreeError> {
            self.0.borrow_mut().push(req.clone());
            match &req.source {
                TreeSource::Tarball { hash, .. } if hash.starts_with('0') => {
                    Err(TreeError::HashMismatch {
                        url: "u".into(),
                        expected: hash.clone(),
                        actual: "1111".into(),
                    })
                }
                _ => Ok(format!(
                    "/bld/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-{}",
                    req.name
                )),
            }
        }
    }

    fn eval(src: &str) -> (String, Vec<TreeRequest>) {
        let seen = Rc::new(RefCell::new(Vec::new()));
        let mut ev = Evaluator::new(Box::new(Trees(seen.clone())));
        let out = match ev.eval_str(src) {
            Ok(v) => {
                crate::print::print_value(&mut ev, &v).unwrap_or_else(|e| format!("error: {e:?}"))
            }
            Err(e) => format!("error: {e:?}"),
        };
        let seen = seen.borrow().clone();
        (out, seen)
    }

    #[test]
    fn tarball_needs_its_pin() {
        let (out, seen) = eval(r#"builtins.fetchTarball "http://x/a.tar.gz""#);
        assert!(
            out.contains("buildit::eval::missing-argument") && out.contains("not pinned"),
            "{out}"
        );
        assert!(seen.is_empty());
        let (out, _) = eval(r#"fetchTarball { url = "http://x/a.tar.gz"; }"#);
        assert!(out.contains("missing `sha256`"), "{out}");
        let (out, _) = eval(r#"fetchTarball { url = "u"; hash = "abc"; }"#);
        assert!(out.contains("SRI"), "{out}");
        let (out, _) = eval(r#"fetchTarball { url = "u"; sha256 = "1"; hash = "sha256-x"; }"#);
        assert!(out.contains("not both"), "{out}");
        let (out, _) = eval(r#"fetchTarball { url = "u"; sha256 = "1"; md5 = "x"; }"#);
        assert!(out.contains("unexpected-argument"), "{out}");
    }

    #[test]
    fn tarball_result_is_a_store_path_with_context() {
        let (out, seen) = eval(
            r#"let p = builtins.fetchTarball { url = "http://x/a.tar.gz"; sha256 = "abc"; name = "set"; };
               in [ p (builtins.hasContext p) ]"#,
        );
        assert_eq!(
            out,
            r#"[ "/bld/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-set" true ]"#
        );
        assert_eq!(
            seen[0].source,
            TreeSource::Tarball {
                url: "http://x/a.tar.gz".into(),
                hash: "abc".into()
            }
        );
    }

    #[test]
    fn mismatch_prints_the_actual_hash() {
        let (out, _) = eval(r#"builtins.fetchTarball { url = "u"; sha256 = "0000"; }"#);
        assert!(out.contains("buildit::eval::hash-mismatch"), "{out}");
        assert!(out.contains("got: 1111"), "{out}");
    }

    #[test]
    fn git_needs_a_full_rev() {
        let (out, seen) = eval(r#"builtins.fetchGit "file:///r""#);
        assert!(out.contains("not pinned"), "{out}");
        let (out, _) = eval(r#"builtins.fetchGit { url = "file:///r"; }"#);
        assert!(out.contains("missing `rev`"), "{out}");
        let (out, _) = eval(r#"builtins.fetchGit { url = "file:///r"; rev = "main"; }"#);
        assert!(out.contains("full commit hash"), "{out}");
        let (out, _) = eval(
            r#"builtins.fetchGit { url = "file:///r"; rev = "0123456789abcdef0123456789abcdef01234567"; submodules = true; }"#,
        );
        assert!(out.contains("buildit::eval::unsupported"), "{out}");
        assert!(seen.is_empty());
    }

    /// Without a store (the default `EvalIo`), fetching is refused with the store's code.
    #[test]
    fn no_store_no_fetch() {
        let mut ev = Evaluator::new(Box::new(crate::io::PureIo::default()));
        let e = ev
            .eval_str(r#"builtins.fetchTarball { url = "http://x/a.tar.gz"; sha256 = ""; }"#)
            .expect_err("no store");
        assert_eq!(e.kind(), crate::ErrorKind::Store, "{e:?}");
        assert!(e.message().contains("needs a store"), "{e:?}");
    }

    #[test]
    fn git_result_attributes() {
        let (out, seen) = eval(
            r#"let r = fetchGit { url = "file:///r"; rev = "0123456789abcdef0123456789abcdef01234567"; ref = "main"; };
               in [ r.shortRev "${r}" r.submodules ]"#,
        );
        assert_eq!(
            out,
            r#"[ "0123456" "/bld/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-source" false ]"#
        );
        assert_eq!(
            seen[0].source,
            TreeSource::Git {
                url: "file:///r".into(),
                rev: "0123456789abcdef0123456789abcdef01234567".into(),
                git_ref: Some("main".into())
            }
        );
    }
}
