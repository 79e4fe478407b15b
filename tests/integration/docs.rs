//! Documentation and repository text that must stay true: the builtin table of `docs/language.md`
//! is generated from the primops' own documentation, so a builtin cannot be added without being
//! documented; and no merge may leave conflict markers behind in a tracked file.

use crate::{bless, root};
use libtest_mimic::Trial;

const START: &str = "<!-- builtins:start";
const END: &str = "<!-- builtins:end -->";

fn table() -> String {
    let mut ops = buildit_eval::builtins::all_primops();
    ops.sort_by_key(|p| p.name);
    let mut out = String::from("\n| builtin | arguments | what it does |\n|---|---|---|\n");
    for p in ops {
        out.push_str(&format!(
            "| `builtins.{}` | {} | {} |\n",
            p.name,
            p.arity,
            p.doc.replace('|', "\\|")
        ));
    }
    out.push_str("| `builtins.currentSystem` | — | `\"x86_64-linux\"`, the only system buildit builds for |\n");
    out.push_str("| `builtins.storeDir` | — | `\"/bld/store\"`, the logical store directory |\n");
    out.push_str("| `builtins.langVersion`, `builtins.nixVersion` | — | `6` and `\"2.8.0\"`: the Nix language level buildit follows |\n");
    out
}

/// Files of the repository: the tracked ones when git is there, else every file outside build
/// output.
fn repo_files() -> Vec<std::path::PathBuf> {
    let root = root();
    if let Ok(out) = std::process::Command::new("git")
        .arg("-C")
        .arg(&root)
        .args(["ls-files", "-z"])
        .output()
    {
        if out.status.success() && !out.stdout.is_empty() {
            return out
                .stdout
                .split(|b| *b == 0)
                .filter(|p| !p.is_empty())
                .map(|p| root.join(String::from_utf8_lossy(p).as_ref()))
                .collect();
        }
    }
    let mut files = Vec::new();
    let mut stack = vec![root];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            let name = e.file_name();
            if matches!(
                name.to_str(),
                Some("target" | ".git" | "corpus" | "artifacts")
            ) {
                continue;
            }
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(p),
                Ok(t) if t.is_file() => files.push(p),
                _ => {}
            }
        }
    }
    files
}

/// Lines a merge left behind (`<<<<<<< ours`, `>>>>>>> theirs`) in text files.
fn conflict_markers() -> Vec<String> {
    let mut found = Vec::new();
    for f in repo_files() {
        let Ok(text) = std::fs::read_to_string(&f) else {
            continue; // binary or unreadable: not a text file a merge could have marked
        };
        for (n, line) in text.lines().enumerate() {
            if line.starts_with("<<<<<<< ") || line.starts_with(">>>>>>> ") {
                found.push(format!("{}:{}: {line}", f.display(), n + 1));
            }
        }
    }
    found
}

pub fn trials() -> Vec<Trial> {
    vec![
        Trial::test("docs::no-merge-conflict-markers-in-the-repository", || {
            let found = conflict_markers();
            if found.is_empty() {
                Ok(())
            } else {
                Err(format!("merge conflict markers left in:\n{}", found.join("\n")).into())
            }
        }),
        Trial::test("docs::language-md-documents-every-builtin", || {
            let path = root().join("docs/language.md");
            let text = std::fs::read_to_string(&path).map_err(|e| e.to_string())?;
            let start = text.find(START).ok_or("no builtins:start marker")?;
            let start = start + text[start..].find("-->").ok_or("unclosed marker")? + 3;
            let end = text.find(END).ok_or("no builtins:end marker")?;
            let want = table();
            if text[start..end] == want {
                return Ok(());
            }
            if bless() {
                let new = format!("{}{}{}", &text[..start], want, &text[end..]);
                std::fs::write(&path, new).map_err(|e| e.to_string())?;
                return Ok(());
            }
            Err("docs/language.md's builtin table is out of date; run the tests with BUILDIT_BLESS=1".into())
        }),
    ]
}
