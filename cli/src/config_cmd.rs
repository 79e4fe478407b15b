//! `buildit config show [--json] [DIR]`: the merged configuration (docs/config.md), each value
//! with where it came from. The text form is itself a configuration file (YAML, locations in
//! their full written form) with the origin of every value in a comment, `FILE:LINE`,
//! `command line`, `environment (VARIABLE)` or `default`; `--json` prints the same as one
//! object whose values are `{ value, from: { kind, file?, line?, variable? } }`.

use std::fmt::Write as _;
use std::process::ExitCode;

use buildit_driver::config::{
    Discover, DiscoverTarget, LoadedConfig, Origin, RepositoryConfig, Sourced,
};
use buildit_driver::DriverError;

use crate::args::{ConfigArgs, ConfigCommand, ConfigShowArgs};

/// The column origin comments start at (values longer than that push theirs right).
const COMMENT_COLUMN: usize = 48;

/// Run `buildit config …`.
pub fn run(a: ConfigArgs) -> Result<ExitCode, DriverError> {
    match a.command {
        ConfigCommand::Show(s) => show(&s),
    }
}

fn show(a: &ConfigShowArgs) -> Result<ExitCode, DriverError> {
    let cli = buildit_driver::config::CliConfig {
        discover: a.discover.clone(),
        substitute: None,
    };
    let cfg = buildit_driver::config::load(a.dir.as_deref(), &cli)?;
    if a.json {
        let text = serde_json::to_string_pretty(&cfg).map_err(|e| {
            DriverError::request(
                "buildit::config::json",
                format!("cannot print the configuration as JSON: {e}"),
                "a path in the configuration is not UTF-8; show it without --json",
            )
        })?;
        println!("{text}");
    } else {
        print!("{}", render(&cfg));
    }
    Ok(ExitCode::SUCCESS)
}

/// The text form of `cfg`.
pub fn render(cfg: &LoadedConfig) -> String {
    let mut out = String::new();
    if cfg.files.is_empty() {
        out.push_str("# no configuration file was read\n");
    } else {
        out.push_str("# files read, in merge order (later overrides earlier):\n");
        for f in &cfg.files {
            let _ = writeln!(out, "#   {}", scalar(&f.to_string_lossy()));
        }
    }
    line(
        &mut out,
        0,
        "substitute",
        &cfg.substitute.value.to_string(),
        &cfg.substitute.from,
    );
    line(
        &mut out,
        0,
        "timeout",
        &cfg.timeout.value.to_string(),
        &cfg.timeout.from,
    );
    if let Some(r) = &cfg.remote {
        out.push_str("remote-execution:\n");
        let texts = [
            ("url", r.url.as_ref().map(|v| (scalar(&v.value), &v.from))),
            (
                "instance",
                r.instance.as_ref().map(|v| (scalar(&v.value), &v.from)),
            ),
            (
                "fallback",
                r.fallback.as_ref().map(|v| (v.value.to_string(), &v.from)),
            ),
            (
                "accept-cached",
                r.accept_cached
                    .as_ref()
                    .map(|v| (v.value.to_string(), &v.from)),
            ),
            (
                "ca-file",
                r.ca_file
                    .as_ref()
                    .map(|v| (scalar(&v.value.to_string_lossy()), &v.from)),
            ),
            (
                "cores",
                r.cores.as_ref().map(|v| (v.value.to_string(), &v.from)),
            ),
        ];
        for (key, v) in texts {
            if let Some((text, from)) = v {
                line(&mut out, 2, key, &text, from);
            }
        }
    }
    if cfg.repositories.is_empty() {
        out.push_str("repositories: []\n");
    } else {
        out.push_str("repositories:\n");
        for r in &cfg.repositories {
            repository(&mut out, r);
        }
    }
    if cfg.mirrors.is_empty() {
        out.push_str("mirrors: {}\n");
    } else {
        out.push_str("mirrors:\n");
        for (name, urls) in &cfg.mirrors {
            let list: Vec<String> = urls.value.iter().map(|u| scalar(u)).collect();
            line(
                &mut out,
                2,
                &scalar(name),
                &format!("[{}]", list.join(", ")),
                &urls.from,
            );
        }
    }
    keys(&mut out, "trusted-keys", &cfg.trusted_keys);
    keys(&mut out, "revoked-keys", &cfg.revoked_keys);
    match &cfg.signing_key {
        Some(k) => line(
            &mut out,
            0,
            "signing-key",
            &scalar(&k.value.to_string_lossy()),
            &k.from,
        ),
        None => out.push_str("signing-key: null\n"),
    }
    if cfg.discover.is_empty() {
        out.push_str("discover: []\n");
    } else {
        out.push_str("discover:\n");
        for d in &cfg.discover {
            item(&mut out, &scalar(&discover_text(&d.value)), &d.from);
        }
    }
    out
}

/// A `--discover` value that means `d`.
fn discover_text(d: &Discover) -> String {
    let target = match &d.target {
        DiscoverTarget::Repository(name) => name.clone(),
        DiscoverTarget::Location(l) => l.to_string(),
    };
    if d.push {
        format!("{target},push=True")
    } else {
        target
    }
}

fn repository(out: &mut String, r: &RepositoryConfig) {
    let mut first = true;
    let mut field = |out: &mut String, key: &str, value: String, from: &Origin| {
        let indent = if first { "  - " } else { "    " };
        first = false;
        pad_comment(out, format!("{indent}{key}: {value}"), from);
    };
    field(out, "name", scalar(&r.name), &r.from);
    field(
        out,
        "priority",
        r.priority.value.to_string(),
        &r.priority.from,
    );
    field(
        out,
        "download-path",
        scalar(&r.download.value.to_string()),
        &r.download.from,
    );
    if let Some(u) = &r.upload {
        field(out, "upload-path", scalar(&u.value.to_string()), &u.from);
    }
    if let Some(c) = &r.ca_file {
        field(out, "ca-file", scalar(&c.value.to_string_lossy()), &c.from);
    }
    if let Some(s) = &r.ssh_identity {
        field(
            out,
            "ssh-identity",
            scalar(&s.value.to_string_lossy()),
            &s.from,
        );
    }
}

fn keys(out: &mut String, name: &str, keys: &[Sourced<buildit_driver::config::KeySource>]) {
    if keys.is_empty() {
        let _ = writeln!(out, "{name}: []");
        return;
    }
    let _ = writeln!(out, "{name}:");
    for k in keys {
        // a key read from a file is shown as that file (its text is in the JSON form)
        let shown = match &k.value.file {
            Some(f) => f.to_string_lossy().into_owned(),
            None => k.value.text.clone(),
        };
        item(out, &scalar(&shown), &k.from);
    }
}

fn line(out: &mut String, indent: usize, key: &str, value: &str, from: &Origin) {
    pad_comment(out, format!("{:indent$}{key}: {value}", ""), from);
}

fn item(out: &mut String, value: &str, from: &Origin) {
    pad_comment(out, format!("  - {value}"), from);
}

/// `text`, then the origin as a comment at [`COMMENT_COLUMN`] (or two spaces after).
fn pad_comment(out: &mut String, text: String, from: &Origin) {
    let width = text.chars().count();
    let pad = COMMENT_COLUMN.saturating_sub(width).max(2);
    let _ = writeln!(out, "{text}{:pad$}# {}", "", comment(&from.to_string()));
}

/// An origin for a comment: on one line, without control characters.
fn comment(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// `s` as a YAML scalar: plain when that reads back as the same text, else double-quoted
/// (JSON's escapes are YAML's).
fn scalar(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_./:@+=,~%-".contains(c))
        && s.chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || "_./~".contains(c))
        && !s.contains(": ")
        && !matches!(
            s.to_ascii_lowercase().as_str(),
            "true" | "false" | "yes" | "no" | "on" | "off" | "null" | "~"
        )
        && s.parse::<f64>().is_err();
    if plain {
        s.to_string()
    } else {
        serde_json::Value::String(s.to_string()).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars_read_back() {
        assert_eq!(scalar("https://h.example/x"), "https://h.example/x");
        assert_eq!(scalar("team:AAAA+/="), "team:AAAA+/=");
        assert_eq!(scalar("true"), "\"true\"");
        assert_eq!(scalar("50"), "\"50\"");
        assert_eq!(scalar("a b"), "\"a b\"");
        assert_eq!(scalar("-x"), "\"-x\"");
        assert_eq!(scalar("a\u{1b}b"), "\"a\\u001bb\"");
        assert_eq!(scalar(""), "\"\"");
    }

    #[test]
    fn comments_are_aligned_and_one_line() {
        let mut out = String::new();
        pad_comment(&mut out, "timeout: 30".into(), &Origin::Default);
        assert_eq!(out.find('#'), Some(COMMENT_COLUMN));
        let mut out = String::new();
        let o = Origin::File {
            file: "/x\ny".into(),
            line: 3,
        };
        pad_comment(&mut out, "a".repeat(60), &o);
        assert!(out.ends_with("  # /x?y:3\n"), "{out:?}");
    }
}
