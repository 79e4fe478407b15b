//! Documentation that must stay true: the builtin table of `docs/language.md` is generated from
//! the primops' own documentation, so a builtin cannot be added without being documented.

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

pub fn trials() -> Vec<Trial> {
    vec![Trial::test(
        "docs::language-md-documents-every-builtin",
        || {
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
        },
    )]
}
