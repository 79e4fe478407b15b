//! Every example command shown to users is checked: the `buildit …` lines of every command's
//! `--help` (read from the grammar, `buildit_cli::args::Cli`) and of the fenced code blocks of
//! `README.md` and `docs/*.md`.
//!
//! All of them must parse with the real grammar. Those without a placeholder (docs/cli.md,
//! "Examples and placeholders": `<name>`, `…`, `$(…)`, an upper-case NAME, a registry host)
//! also run as written, one block after the other in one fresh directory holding a copy of
//! `examples/`, with a fresh store, so no example changes the repository. Blocks with a
//! command that builds or downloads (realise/build, run, image, contents, log, debian, push,
//! `buildit DIR`) run in the tests' shared warm store and need `bwrap`.

use crate::root;
use libtest_mimic::{Failed, Trial};
use std::path::{Path, PathBuf};

/// One example: where it is shown, its text and its words.
#[derive(Clone, Debug)]
struct Example {
    at: String,
    text: String,
    words: Vec<String>,
    /// Part of a pipeline or with a redirection: parsed, not run.
    shell: bool,
    /// Shown failing (a transcript whose output is a diagnostic): it must exit 1.
    fails: bool,
}

/// The examples shown together (one help text, one code block), run in order.
#[derive(Clone, Debug)]
struct Block {
    at: String,
    examples: Vec<Example>,
}

/// The subcommands whose examples build, download or need a built store.
const HEAVY: &[&str] = &[
    "realise", "build", "run", "image", "contents", "log", "debian", "push",
];

/// Split a shell command line into words: quotes, backslashes and `$(…)` (kept whole, as a
/// placeholder); it ends at a comment (`#` starting a word), or at a pipe, a list operator or
/// a redirection (then the flag is set).
fn shell_words(line: &str) -> (Vec<String>, bool) {
    let mut shell = false;
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                for d in chars.by_ref() {
                    if d == '\'' {
                        break;
                    }
                    cur.push(d);
                }
            }
            '"' => {
                in_word = true;
                while let Some(d) = chars.next() {
                    match d {
                        '"' => break,
                        '\\' => {
                            if let Some(e) = chars.next() {
                                cur.push(e);
                            }
                        }
                        _ => cur.push(d),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(e) = chars.next() {
                    cur.push(e);
                }
            }
            '$' if chars.peek() == Some(&'(') => {
                in_word = true;
                let mut depth = 0;
                cur.push('$');
                for d in chars.by_ref() {
                    cur.push(d);
                    match d {
                        '(' => depth += 1,
                        ')' => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                }
            }
            '#' if !in_word => break,
            // (quoted ones were taken whole above)
            '|' | ';' | '&' => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                }
                in_word = false;
                shell = true;
                break;
            }
            // a redirection starts a word (`>`, `2>`); inside one (`<hash>`) it is text
            '>' if !in_word || cur == "2" => {
                cur.clear();
                in_word = false;
                shell = true;
                break;
            }
            '<' if !in_word && chars.peek().is_none_or(|c| c.is_whitespace()) => {
                shell = true;
                break;
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    (words, shell)
}

/// Whether a word stands for something the reader supplies (docs/cli.md, "Examples and
/// placeholders").
fn is_placeholder(word: &str) -> bool {
    let angle = word.find('<').is_some_and(|i| word[i..].contains('>'))
        // `<buildit>` is the standard library's path, not a placeholder
        && !word.contains("<buildit>");
    let upper = word.len() >= 2
        && word.chars().next().is_some_and(|c| c.is_ascii_uppercase())
        && word
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_' || c == '.');
    let registry = word
        .split_once('/')
        .is_some_and(|(host, _)| host.contains(':') || host.ends_with(".example"));
    angle || upper || registry || word.contains('…') || word.contains("...") || word.contains("$(")
}

impl Example {
    fn new(at: String, text: &str) -> Option<Example> {
        let (words, shell) = shell_words(text);
        (words.first().map(String::as_str) == Some("buildit")).then(|| Example {
            at,
            text: text.to_string(),
            words: words[1..].to_vec(),
            shell,
            fails: false,
        })
    }

    /// Whether the example runs (no placeholder, no pipe or redirection).
    fn runs(&self) -> bool {
        !self.shell && !self.words.iter().any(|w| is_placeholder(w))
    }

    /// The subcommand, as `main` sees it (`buildit DIR` is `buildit build DIR`).
    fn command(&self) -> Option<&str> {
        let first = self.words.iter().find(|w| !w.starts_with('-'))?;
        if root().join(first).join("container.yaml").is_file() {
            Some("build")
        } else {
            Some(first.as_str())
        }
    }

    fn is_heavy(&self) -> bool {
        self.command().is_some_and(|c| HEAVY.contains(&c))
    }

    /// The arguments `main` parses (with `build` inserted before a spec directory).
    fn argv(&self) -> Vec<String> {
        let mut v = vec!["buildit".to_string()];
        if let Some(first) = self.words.first() {
            if !first.starts_with('-') && root().join(first).join("container.yaml").is_file() {
                v.push("build".into());
            }
        }
        v.extend(self.words.iter().cloned());
        v
    }
}

/// The examples of every command's help, one block per command.
fn help_blocks() -> Vec<Block> {
    fn walk(cmd: &clap::Command, path: &str, out: &mut Vec<Block>) {
        let texts = [cmd.get_after_help(), cmd.get_after_long_help()];
        let at = format!("help of `{path}`");
        let examples: Vec<Example> = texts
            .into_iter()
            .flatten()
            .flat_map(|t| {
                t.to_string()
                    .lines()
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
            .filter_map(|l| Example::new(at.clone(), l.trim()))
            .collect();
        if !examples.is_empty() {
            out.push(Block { at, examples });
        }
        for sub in cmd.get_subcommands() {
            walk(sub, &format!("{path} {}", sub.get_name()), out);
        }
    }
    let mut out = Vec::new();
    walk(
        &<buildit_cli::args::Cli as clap::CommandFactory>::command(),
        "buildit",
        &mut out,
    );
    out
}

/// The documents whose code blocks are checked.
fn doc_files() -> Vec<PathBuf> {
    let mut v = vec![root().join("README.md")];
    v.extend(crate::glob(&root().join("docs"), "md"));
    v
}

/// The `buildit …` lines (or `$ buildit …`) of the fenced code blocks of a Markdown file, one
/// block per fence; lines ending in `\` continue on the next.
fn doc_blocks(file: &Path) -> Vec<Block> {
    let name = file
        .strip_prefix(root())
        .unwrap_or(file)
        .display()
        .to_string();
    let text = std::fs::read_to_string(file).unwrap_or_default();
    let mut out = Vec::new();
    let mut current: Option<Block> = None;
    let mut pending = String::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            match current.take() {
                Some(b) if !b.examples.is_empty() => out.push(b),
                Some(_) => {}
                None => {
                    current = Some(Block {
                        at: format!("{name}:{}", n + 1),
                        examples: Vec::new(),
                    })
                }
            }
            continue;
        }
        let Some(block) = current.as_mut() else {
            continue;
        };
        let t = line.trim();
        let t = t.strip_prefix("$ ").unwrap_or(t);
        if let Some(cont) = t.strip_suffix('\\') {
            pending.push_str(cont);
            continue;
        }
        let full = format!("{pending}{t}");
        pending.clear();
        if full.starts_with("buildit::") {
            if let Some(last) = block.examples.last_mut() {
                last.fails = true;
            }
        }
        if full.starts_with("buildit ") {
            if let Some(e) = Example::new(format!("{name}:{}", n + 1), &full) {
                block.examples.push(e);
            }
        }
    }
    out
}

fn all_blocks() -> Vec<Block> {
    let mut v = help_blocks();
    for f in doc_files() {
        v.extend(doc_blocks(&f));
    }
    v
}

/// Copy a directory tree (files and directories; symbolic links as links).
fn copy_tree(src: &Path, dst: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dst)?;
    for e in std::fs::read_dir(src)? {
        let e = e?;
        let (from, to) = (e.path(), dst.join(e.file_name()));
        let t = e.file_type()?;
        if t.is_dir() {
            copy_tree(&from, &to)?;
        } else if t.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&from)?, &to)?;
        } else {
            std::fs::copy(&from, &to)?;
        }
    }
    Ok(())
}

/// Run the runnable examples of a block in order, in one fresh directory, with `store` (a
/// fresh one when `None`).
fn run_block(block: &Block, store: Option<&Path>) -> Result<(), Failed> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    copy_tree(&root().join("examples"), &dir.path().join("examples"))
        .map_err(|e| format!("copying examples/: {e}"))?;
    // the committed Debian lock, which the refresh examples rewrite
    let lock_dir = dir.path().join("stdlib/debian");
    std::fs::create_dir_all(&lock_dir).map_err(|e| e.to_string())?;
    std::fs::copy(
        root().join("stdlib/debian/bookworm.lock"),
        lock_dir.join("bookworm.lock"),
    )
    .map_err(|e| format!("copying the Debian lock: {e}"))?;
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).map_err(|e| e.to_string())?;
    let fresh = dir.path().join("store-root");
    let store = store.unwrap_or(&fresh);
    for e in block.examples.iter().filter(|e| e.runs()) {
        let mut cmd = crate::cli::buildit();
        let words = e.words.iter().map(|w| match w.strip_prefix("~/") {
            Some(rest) => home.join(rest).display().to_string(),
            None => w.clone(),
        });
        cmd.args(words)
            .current_dir(dir.path())
            .env("HOME", &home)
            .env("BUILDIT_STORE_ROOT", store)
            .stdin(std::process::Stdio::null());
        if e.is_heavy() {
            if let Some(lock) = crate::e2e::debian_lock_for_builds()? {
                cmd.env("BUILDIT_DEBIAN_LOCK", lock);
            }
        }
        let out = cmd.output().map_err(|x| x.to_string())?;
        let want = if e.fails { Some(1) } else { Some(0) };
        if out.status.code() != want {
            return Err(format!(
                "{}: `{}` ended with {} (expected exit {}) in a copy of examples/:\n--- stdout\n{}--- stderr\n{}",
                e.at,
                e.text,
                out.status,
                want.unwrap_or(0),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
            .into());
        }
    }
    Ok(())
}

/// The `bld-examples` lines of docs/language.md: (expression, expected output or `error CODE`).
fn builtin_examples() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(root().join("docs/language.md")).unwrap_or_default();
    let mut out = Vec::new();
    let mut inside = false;
    for line in text.lines() {
        if line.starts_with("```") {
            inside = line.trim() == "```bld-examples";
            continue;
        }
        if let (true, Some((expr, want))) = (inside, line.split_once("  ⇒  ")) {
            out.push((expr.trim().to_string(), want.trim().to_string()));
        }
    }
    out
}

/// Every builtin of the evaluator's table has a line in docs/language.md's "Builtins by
/// example" that uses it, and every line evaluates to what it says.
fn every_builtin_has_an_example() -> Trial {
    Trial::test("examples::every-builtin-has-an-example", || {
        let examples = builtin_examples();
        let mut names: Vec<&str> = buildit_eval::builtins::all_primops()
            .iter()
            .map(|p| p.name)
            .collect();
        names.extend(["currentSystem", "storeDir", "langVersion"]);
        let uses = |expr: &str, name: &str| {
            let pat = format!("builtins.{name}");
            expr.match_indices(&pat).any(|(i, _)| {
                !expr[i + pat.len()..]
                    .starts_with(|c: char| c.is_ascii_alphanumeric() || c == '\'' || c == '_')
            })
        };
        let missing: Vec<&str> = names
            .iter()
            .copied()
            .filter(|n| !examples.iter().any(|(e, _)| uses(e, n)))
            .collect();
        let mut bad = Vec::new();
        if !missing.is_empty() {
            bad.push(format!(
                "builtins without an example: {}",
                missing.join(" ")
            ));
        }
        let store = tempfile::tempdir().map_err(|e| e.to_string())?;
        for (expr, want) in &examples {
            let out = crate::cli::buildit()
                .args(["--store-root"])
                .arg(store.path())
                .args(["eval", "--no-typecheck", "-E", expr])
                .current_dir(root())
                .output()
                .map_err(|e| e.to_string())?;
            let got = match want.strip_prefix("error ") {
                Some(code) => (out.status.code() == Some(1)
                    && String::from_utf8_lossy(&out.stderr).starts_with(code))
                .then(|| want.clone()),
                None => out
                    .status
                    .success()
                    .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string()),
            };
            if got.as_deref() != Some(want.as_str()) {
                bad.push(format!(
                    "`{expr}`: expected {want}, got {:?}\n{}",
                    got,
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
        }
        if bad.is_empty() {
            Ok(())
        } else {
            Err(bad.join("\n").into())
        }
    })
}

pub fn trials() -> Vec<Trial> {
    let blocks = all_blocks();
    let count: usize = blocks.iter().map(|b| b.examples.len()).sum();
    let mut v = vec![every_builtin_has_an_example()];
    v.push(Trial::test("examples::every-example-parses", {
        let blocks = blocks.clone();
        move || {
            // the help has examples for most commands and the docs have more: a broken
            // collector cannot pass by finding nothing
            if count < 40 {
                return Err(format!("only {count} examples found").into());
            }
            let mut bad = Vec::new();
            for e in blocks.iter().flat_map(|b| &b.examples) {
                if let Err(err) = <buildit_cli::args::Cli as clap::Parser>::try_parse_from(e.argv())
                {
                    bad.push(format!("{}: `{}`:\n{err}", e.at, e.text));
                }
            }
            if bad.is_empty() {
                Ok(())
            } else {
                Err(bad.join("\n").into())
            }
        }
    }));
    for b in blocks {
        let runnable = b.examples.iter().filter(|e| e.runs()).count();
        if runnable == 0 {
            continue;
        }
        let name = format!("examples::run::{}", b.at);
        if b.examples.iter().any(|e| e.runs() && e.is_heavy()) {
            v.push(crate::gated(name, &["bwrap"], false, move || {
                let store = crate::pkgs::shared_store()?;
                run_block(&b, Some(store))
            }));
        } else {
            v.push(Trial::test(name, move || run_block(&b, None)));
        }
    }
    v
}
