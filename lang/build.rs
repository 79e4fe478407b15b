//! Build script: generates the LR(1) parsers from `src/grammar.lalrpop` with lalrpop.
//!
//! Two parsers come out of the one grammar: `grammar.rs`, with error recovery (`!`), and
//! `grammar_strict.rs`, the same grammar with the recovery alternatives (the lines containing
//! `<e:!>`) removed. The strict one is used on very deeply nested inputs, where lalrpop's error
//! recovery (which rescans the whole parse stack for every token it skips) would be too slow.

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=src/grammar.lalrpop");
    if let Err(e) = run() {
        eprintln!("lalrpop failed: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    lalrpop::Configuration::new()
        .use_cargo_dir_conventions()
        .emit_rerun_directives(true)
        .process()?;

    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let grammar = std::fs::read_to_string("src/grammar.lalrpop")?;
    let strict: Vec<&str> = grammar.lines().filter(|l| !l.contains("<e:!>")).collect();
    let dir = out.join("strict");
    std::fs::create_dir_all(&dir)?;
    let file = dir.join("grammar_strict.lalrpop");
    std::fs::write(&file, strict.join("\n"))?;
    lalrpop::Configuration::new()
        .set_in_dir(&dir)
        .set_out_dir(&out)
        .force_build(true)
        .process_file(&file)?;
    Ok(())
}
