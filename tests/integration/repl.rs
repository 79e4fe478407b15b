//! REPL transcripts: `tests/data/repl/*.txt`. A line `> input` is fed to the REPL back end
//! (`. more` lines continue it); the lines up to the next input are the expected output. A line
//! `tab> text` asks for the completions of `text` (cursor at its end), printed on one line. A
//! transcript whose first line is `# --no-typecheck` runs with type checking off.

use crate::{data, glob, name_of, snapshot};
use buildit_cli::render::Style;
use buildit_cli::repl::Repl;
use buildit_stdlib::FsIo;
use libtest_mimic::Trial;

/// Replay the inputs of a transcript and produce the transcript buildit writes.
pub fn replay(text: &str, cwd: &str) -> String {
    let mut repl = Repl::new(Box::new(FsIo::new(|_| {})), cwd, Style::plain());
    if text.starts_with("# --no-typecheck") {
        repl.set_typecheck(false);
    }
    let mut out = String::new();
    let mut input: Option<String> = None;
    let flush = |repl: &mut Repl, input: &mut Option<String>, out: &mut String| {
        if let Some(i) = input.take() {
            let r = repl.handle(&i);
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

pub fn trials() -> Vec<Trial> {
    glob(&data("repl"), "txt")
        .into_iter()
        .map(|p| {
            Trial::test(format!("repl::{}", name_of(&p)), move || {
                let text = std::fs::read_to_string(&p).map_err(|e| e.to_string())?;
                let cwd = data("repl").to_string_lossy().into_owned();
                let actual = replay(&text, &cwd);
                snapshot(&p, &actual).map_err(Into::into)
            })
        })
        .collect()
}
