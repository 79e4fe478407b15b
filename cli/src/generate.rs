//! `buildit completions SHELL` and `buildit man DIR`: shell completion scripts (clap_complete)
//! and manual pages (clap_mangen), both generated from the one grammar in [`crate::args`], so
//! they cannot drift from what the parser accepts.

use crate::args::Cli;
use clap::CommandFactory;
use std::path::{Path, PathBuf};

/// The completion script for `shell`.
pub fn completions(shell: clap_complete::Shell) -> String {
    let mut cmd = Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, "buildit", &mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// Write `buildit.1` and one page per command (`buildit-eval.1`, `buildit-store-gc.1`, …) into
/// `dir`, creating it; the pages written, in order.
pub fn man_pages(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    let mut cmd = Cli::command();
    cmd.build();
    write_pages(&cmd, "buildit", dir, &mut written)?;
    Ok(written)
}

/// The page of `cmd` (named `name`) and, recursively, of its subcommands.
fn write_pages(
    cmd: &clap::Command,
    name: &str,
    dir: &Path,
    written: &mut Vec<PathBuf>,
) -> std::io::Result<()> {
    let page = cmd.clone().name(name.to_string());
    let path = dir.join(format!("{name}.1"));
    let mut text = Vec::new();
    clap_mangen::Man::new(page).render(&mut text)?;
    std::fs::write(&path, text)?;
    written.push(path);
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        if sub.get_name() == "help" {
            continue;
        }
        write_pages(sub, &format!("{name}-{}", sub.get_name()), dir, written)?;
    }
    Ok(())
}
