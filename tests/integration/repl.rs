//! REPL transcripts: `tests/data/repl/*.txt`. A line `> input` is fed to the REPL back end
//! (`. more` lines continue it); the lines up to the next input are the expected output. A line
//! `tab> text` asks for the completions of `text` (cursor at its end), printed on one line. A
//! transcript whose first line is `# --no-typecheck` runs with type checking off.
//!
//! A transcript whose first line is `# store` builds (`:b`): it gets a fresh store in a
//! temporary directory (the evaluator writes derivations there, `:b` builds there), `@BUSYBOX@`
//! in inputs names a directory with the static busybox at `bin/busybox`, and in the output the
//! temporary directory reads `$TMP` and store hashes read `HASH`. Needs `busybox-static` and
//! `bwrap`: without them such a transcript is ignored with the reason, and under CI it fails
//! naming what is missing. The corpus holds at least [`MIN_TRANSCRIPTS`] transcripts.

use crate::{data, name_of, snapshot};
use buildit_cli::render::{ReplRender, Style};
use buildit_driver::repl::Repl;
use buildit_stdlib::FsIo;
use libtest_mimic::Trial;

/// Replay the inputs of a transcript and produce the transcript buildit writes.
pub fn replay(text: &str, cwd: &str) -> String {
    let mut repl = Repl::new(
        Box::new(FsIo::new(|_| {})),
        cwd,
        Box::new(ReplRender(Style::plain())),
    );
    if text.starts_with("# --no-typecheck") {
        repl.set_typecheck(false);
    }
    replay_with(repl, text, |i| i.to_string())
}

/// Replay a `# store` transcript (see the module docs) in a fresh store.
fn replay_store(text: &str, cwd: &str) -> Result<String, String> {
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let bb = tmp.path().join("busybox");
    std::fs::create_dir_all(bb.join("bin")).map_err(|e| e.to_string())?;
    std::fs::copy(crate::tool_path("busybox"), bb.join("bin/busybox"))
        .map_err(|e| format!("busybox-static is needed: {e}"))?;
    let layout = buildit_store::StoreLayout::at(tmp.path().join("root"));
    let io = buildit_stdlib::StoreIo::new(FsIo::new(|_| {}), layout.clone());
    let mut repl = Repl::new(Box::new(io), cwd, Box::new(ReplRender(Style::plain())));
    repl.set_session(buildit_driver::Session::new(layout));
    let bb = bb.display().to_string();
    let out = replay_with(repl, text, |i| i.replace("@BUSYBOX@", &bb));
    let out = out.replace(&tmp.path().display().to_string(), "$TMP");
    Ok(hide_log_names(&hide_hashes(&out)))
}

/// `…/log/<2 characters>/<30 characters>-` (a log named by its `.drv` hash) → `…/log/HASH-`.
fn hide_log_names(s: &str) -> String {
    const LOG: &str = "/var/buildit/log/";
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find(LOG) {
        out.push_str(&rest[..i + LOG.len()]);
        rest = &rest[i + LOG.len()..];
        if let Some(dash) = rest.find('-').filter(|&d| d == 33) {
            out.push_str("HASH");
            rest = &rest[dash..];
        }
    }
    out.push_str(rest);
    out
}

/// `/bld/store/<32 characters>-` → `/bld/store/HASH-`.
fn hide_hashes(s: &str) -> String {
    const PREFIX: &str = "/bld/store/";
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find(PREFIX) {
        out.push_str(&rest[..i + PREFIX.len()]);
        rest = &rest[i + PREFIX.len()..];
        let hash = rest.get(..33);
        if hash
            .is_some_and(|h| h.ends_with('-') && h[..32].bytes().all(|b| b.is_ascii_alphanumeric()))
        {
            out.push_str("HASH-");
            rest = &rest[33..];
        }
    }
    out.push_str(rest);
    out
}

fn replay_with(mut repl: Repl, text: &str, fix_input: impl Fn(&str) -> String) -> String {
    let mut out = String::new();
    let mut input: Option<String> = None;
    let flush = |repl: &mut Repl, input: &mut Option<String>, out: &mut String| {
        if let Some(i) = input.take() {
            let r = repl.handle(&fix_input(&i));
            out.push_str(&r.text);
        }
    };
    for line in text.lines() {
        if line.starts_with('#') {
            out.push_str(line);
            out.push('\n');
        } else if let Some(t) = line.strip_prefix("tab> ") {
            flush(&mut repl, &mut input, &mut out);
            let (_, candidates) = repl.complete(t, t.len());
            out.push_str(line);
            out.push('\n');
            out.push_str(&candidates.join(" "));
            out.push('\n');
        } else if let Some(i) = line.strip_prefix("> ") {
            flush(&mut repl, &mut input, &mut out);
            out.push_str(line);
            out.push('\n');
            input = Some(i.to_string());
        } else if let Some(more) = line.strip_prefix(". ") {
            out.push_str(line);
            out.push('\n');
            if let Some(i) = &mut input {
                i.push('\n');
                i.push_str(more);
            }
        }
    }
    flush(&mut repl, &mut input, &mut out);
    out
}

/// The fewest transcripts `tests/data/repl/` may hold.
const MIN_TRANSCRIPTS: usize = 7;

pub fn trials() -> Vec<Trial> {
    let (files, guard) = crate::corpus("repl", "txt", MIN_TRANSCRIPTS);
    let mut v = vec![guard];
    for p in files {
        let name = format!("repl::{}", name_of(&p));
        let store = std::fs::read_to_string(&p).is_ok_and(|t| t.starts_with("# store"));
        let f = move || {
            let text = std::fs::read_to_string(&p).map_err(|e| e.to_string())?;
            let cwd = data("repl").to_string_lossy().into_owned();
            let actual = if store {
                replay_store(&text, &cwd)?
            } else {
                replay(&text, &cwd)
            };
            snapshot(&p, &actual).map_err(Into::into)
        };
        v.push(if store {
            crate::gated(name, &["bwrap", "busybox"], false, f)
        } else {
            Trial::test(name, f)
        });
    }
    v
}
