//! `buildit search [QUERY]`: the package set's atoms (category/name), their versions and build
//! options (with defaults and descriptions), filtered by substring (case-insensitive). Versions
//! are listed newest first; options and description are the newest version's. It evaluates the embedded
//! set (`(import <buildit>).pkgs.atoms`) without building anything. With `--debian` it lists
//! Debian source packages from the `Sources` indexes instead (`driver::debian_src`): the
//! machine's apt lists, or a private apt root (`--apt-root DIR`, fetched first with
//! `--update`), with every version the indexes hold and the newest one's binaries.

use crate::common::session;
use buildit_driver::DriverError;
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct SearchArgs {
    /// Show atoms containing this text (all when absent)
    pub query: Option<String>,
    /// Print JSON: [{ atom, versions, options: { name: { default, description } } }]
    #[arg(long)]
    pub json: bool,
    /// The store's physical root (the standard library is materialised there)
    #[arg(long, value_name = "DIR")]
    pub store_root: Option<PathBuf>,
    /// List Debian source packages (from the deb-src `Sources` indexes) instead of atoms
    #[arg(long)]
    pub debian: bool,
    /// With --debian: read the indexes of this private apt root instead of the machine's
    #[arg(long, value_name = "DIR", requires = "debian")]
    pub apt_root: Option<PathBuf>,
    /// With --apt-root: write its deb and deb-src sources (the machine's Debian mirrors) and
    /// run `apt-get update` in it first
    #[arg(long, requires = "apt_root")]
    pub update: bool,
    /// With --debian: the Debian release (its -updates and -security suites are included)
    #[arg(long, default_value = "bookworm", requires = "debian")]
    pub suite: String,
}

/// `buildit search --debian`: source packages, their versions, the newest one's binaries.
fn run_debian_search(a: &SearchArgs) -> Result<ExitCode, DriverError> {
    let index = buildit_driver::debian_src::SourceIndexes {
        apt_root: a.apt_root.clone(),
        update: a.update,
        suite: a.suite.clone(),
        arch: "amd64".to_string(),
    }
    .load()?;
    let hits = buildit_driver::debian_src::search(&index, a.query.as_deref().unwrap_or(""));
    if a.json {
        println!(
            "{}",
            serde_json::to_string(&hits).unwrap_or_else(|_| "[]".to_string())
        );
        return Ok(ExitCode::SUCCESS);
    }
    if hits.is_empty() {
        return Err(DriverError::request(
            "buildit::search::no-match",
            format!(
                "no Debian source package contains '{}'",
                a.query.as_deref().unwrap_or_default()
            ),
            "source package names are as in `apt-cache showsrc NAME`; run without a query to list every one",
        ));
    }
    for h in hits {
        println!(
            "{} [{}]  {}; builds {}",
            h.name,
            h.versions.join(" "),
            h.format,
            h.binaries.join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn run_search(a: SearchArgs) -> Result<ExitCode, DriverError> {
    if a.debian {
        return run_debian_search(&a);
    }
    let set = buildit_driver::pkgset::package_set(&session(a.store_root.as_deref(), false))?;
    let q = a.query.clone().unwrap_or_default().to_lowercase();
    let hits: Vec<(&String, &buildit_driver::pkgset::Atom)> = set
        .atoms
        .iter()
        .filter(|(name, _)| name.to_lowercase().contains(&q))
        .collect();
    let options =
        |atom: &buildit_driver::pkgset::Atom| atom.newest_options().cloned().unwrap_or_default();
    if a.json {
        let list: Vec<serde_json::Value> = hits
            .iter()
            .map(|(name, atom)| {
                let opts: serde_json::Map<String, serde_json::Value> = options(atom)
                    .into_iter()
                    .map(|(n, o)| {
                        let v = serde_json::json!({ "default": o.default, "description": o.description });
                        (n, v)
                    })
                    .collect();
                serde_json::json!({
                    "atom": name,
                    "description": atom.description,
                    "options": opts,
                    "versions": atom.versions,
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(list));
        return Ok(ExitCode::SUCCESS);
    }
    if hits.is_empty() {
        return Err(DriverError::request(
            "buildit::search::no-match",
            format!("no package atom contains '{}'", a.query.unwrap_or_default()),
            "run `buildit search` without a query to list every atom",
        ));
    }
    for (name, atom) in hits {
        println!("{name} [{}]  {}", atom.versions.join(" "), atom.description);
        for (opt, o) in options(atom) {
            let on = if o.default { "+" } else { "-" };
            println!("    {on}{opt}  {}", o.description);
        }
    }
    Ok(ExitCode::SUCCESS)
}
