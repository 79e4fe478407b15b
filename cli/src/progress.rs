//! Build progress on stderr, from the scheduler's [`BuildEvent`]s: an indicatif display on a
//! terminal (running builds with their latest log line, downloads, totals, elapsed time),
//! plain lines otherwise, one JSON object per event and line with `--json`, or nothing with
//! `-q`. `-L` adds every log line (`NAME> line`), `-v` each finished download.
//! Kept apart from the commands so that every command that builds shows progress alike.

use std::collections::{BTreeMap, HashMap};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use buildit_builder::BuildEvent;
use buildit_store::StorePath;

/// How progress is shown (on stderr).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// indicatif bars (terminal).
    Bars,
    /// One plain line per build start/end.
    Plain,
    /// One JSON object per event.
    Json,
    /// Nothing.
    Quiet,
}

impl Progress {
    /// Nothing with `-q`, else bars on a terminal, plain lines otherwise.
    pub fn auto() -> Progress {
        if crate::output::get().quiet {
            Progress::Quiet
        } else if std::io::stderr().is_terminal() {
            Progress::Bars
        } else {
            Progress::Plain
        }
    }
}

/// Renders events on stderr.
pub struct Ui {
    mode: Progress,
    start: Instant,
    total: usize,
    done: usize,
    failed: usize,
    multi: Option<indicatif::MultiProgress>,
    main: Option<indicatif::ProgressBar>,
    running: HashMap<StorePath, indicatif::ProgressBar>,
    downloads: BTreeMap<String, indicatif::ProgressBar>,
    /// The failed builds (name, derivation, reason), listed by [`Ui::finish`] when there are
    /// several; a single failure is the command's error, reported once, by `main`.
    failures: Vec<(String, StorePath, String)>,
    /// The package name of each running build (the prefix of its `-L` log lines).
    names: HashMap<StorePath, String>,
    verbosity: crate::output::Verbosity,
}

impl Ui {
    pub fn new(mode: Progress) -> Ui {
        let (multi, main) = if mode == Progress::Bars {
            let m = indicatif::MultiProgress::new();
            let bar = m.add(indicatif::ProgressBar::new(0));
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "[{elapsed_precise}] {bar:30} {pos}/{len} built {msg}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar.enable_steady_tick(Duration::from_millis(200));
            (Some(m), Some(bar))
        } else {
            (None, None)
        };
        Ui {
            mode,
            start: Instant::now(),
            total: 0,
            done: 0,
            failed: 0,
            multi,
            main,
            running: HashMap::new(),
            downloads: BTreeMap::new(),
            names: HashMap::new(),
            failures: Vec::new(),
            verbosity: crate::output::get(),
        }
    }

    pub fn event(&mut self, e: BuildEvent) {
        match self.mode {
            Progress::Quiet => {}
            Progress::Json => {
                if let Ok(s) = serde_json::to_string(&e) {
                    eprintln!("{s}");
                }
            }
            Progress::Plain => self.plain(e),
            Progress::Bars => self.bars(e),
        }
    }

    fn plain(&mut self, e: BuildEvent) {
        match e {
            BuildEvent::Planned {
                builds,
                substitutions,
            } => {
                self.total = builds;
                if builds > 0 || substitutions > 0 {
                    eprintln!(
                        "{} will be built, {} substituted",
                        crate::output::plural(builds, "derivation", "derivations"),
                        crate::output::plural(substitutions, "path", "paths")
                    );
                }
            }
            BuildEvent::Started { drv, name } => {
                eprintln!("building '{drv}'");
                self.names.insert(drv, name);
            }
            BuildEvent::Finished {
                name,
                duration,
                remote,
                ..
            } => {
                self.done += 1;
                eprintln!(
                    "built {name}{} in {:.2} s [{}/{}]",
                    remote_note(remote),
                    duration.as_secs_f64(),
                    self.done,
                    self.total
                );
            }
            BuildEvent::Failed {
                drv, name, reason, ..
            } => {
                self.failed += 1;
                self.failures.push((name, drv, reason));
            }
            BuildEvent::Substituted { path } => eprintln!("substituted '{path}'"),
            BuildEvent::Looked { .. } | BuildEvent::Fetching { .. } => {}
            BuildEvent::LogLine { drv, line } => {
                if self.verbosity.print_build_logs {
                    eprintln!("{}> {line}", self.name_of(&drv));
                }
            }
            BuildEvent::Download {
                url, bytes, total, ..
            } => {
                if self.verbosity.verbose && total.is_some_and(|t| t == bytes) {
                    eprintln!("downloaded {url} ({bytes} bytes)");
                }
            }
        }
    }

    fn bars(&mut self, e: BuildEvent) {
        let (Some(multi), Some(main)) = (self.multi.as_ref(), self.main.as_ref()) else {
            return;
        };
        match e {
            BuildEvent::Planned { builds, .. } => {
                self.total = builds;
                main.set_length(builds as u64);
            }
            BuildEvent::Started { drv, name } => {
                let b = multi.add(indicatif::ProgressBar::new_spinner());
                b.set_style(
                    indicatif::ProgressStyle::with_template(
                        "  {spinner} {prefix:.bold} {wide_msg}",
                    )
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
                );
                b.set_prefix(name.clone());
                self.names.insert(drv.clone(), name);
                b.enable_steady_tick(Duration::from_millis(120));
                self.running.insert(drv, b);
            }
            BuildEvent::LogLine { drv, line } => {
                if self.verbosity.print_build_logs {
                    let _ = multi.println(format!("{}> {line}", self.name_of(&drv)));
                }
                if let Some(b) = self.running.get(&drv) {
                    b.set_message(line);
                }
            }
            BuildEvent::Finished {
                drv,
                name,
                duration,
                remote,
                ..
            } => {
                self.done += 1;
                if let Some(b) = self.running.remove(&drv) {
                    b.finish_and_clear();
                    multi.remove(&b);
                }
                main.inc(1);
                let _ = multi.println(format!(
                    "built {name}{} in {:.2} s",
                    remote_note(remote),
                    duration.as_secs_f64()
                ));
            }
            BuildEvent::Failed {
                drv, name, reason, ..
            } => {
                self.failed += 1;
                if let Some(b) = self.running.remove(&drv) {
                    b.finish_and_clear();
                    multi.remove(&b);
                }
                main.set_message(format!("({} failed)", self.failed));
                self.failures.push((name, drv, reason));
            }
            BuildEvent::Substituted { path } => {
                let _ = multi.println(format!("substituted '{path}'"));
            }
            BuildEvent::Looked { .. } | BuildEvent::Fetching { .. } => {}
            BuildEvent::Download {
                url, bytes, total, ..
            } => {
                let b = self.downloads.entry(url.clone()).or_insert_with(|| {
                    let b = multi.add(indicatif::ProgressBar::new(total.unwrap_or(0)));
                    b.set_style(
                        indicatif::ProgressStyle::with_template(
                            "  ↓ {bytes}/{total_bytes} {bytes_per_sec} {wide_msg}",
                        )
                        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
                    );
                    b.set_message(url.clone());
                    b
                });
                if let Some(t) = total {
                    b.set_length(t);
                }
                b.set_position(bytes);
                if total == Some(bytes) {
                    b.finish_and_clear();
                }
            }
        }
    }

    /// The package name of a running build, for its log lines (the store path's name part
    /// before it started, which cannot happen: the scheduler reports the start first).
    fn name_of(&self, drv: &StorePath) -> String {
        self.names
            .get(drv)
            .cloned()
            .unwrap_or_else(|| drv.name().trim_end_matches(".drv").to_string())
    }

    pub fn finish(&mut self) {
        if let Some(main) = self.main.take() {
            main.finish_and_clear();
        }
        for (_, b) in self.running.drain() {
            b.finish_and_clear();
        }
        for (_, b) in std::mem::take(&mut self.downloads) {
            b.finish_and_clear();
        }
        if self.failures.len() > 1 && matches!(self.mode, Progress::Plain | Progress::Bars) {
            for (name, drv, reason) in &self.failures {
                eprintln!("failed: {name}: {reason} (the log: buildit log {drv})");
            }
        }
        if self.mode == Progress::Plain && self.total > 1 {
            eprintln!(
                "{} built, {} failed in {:.2} s",
                self.done,
                self.failed,
                self.start.elapsed().as_secs_f64()
            );
        }
    }
}

/// How a remote build ran, for its `built` line.
fn remote_note(r: Option<buildit_builder::RemoteRun>) -> &'static str {
    match r {
        None => "",
        Some(buildit_builder::RemoteRun::Executed) => " remotely",
        Some(buildit_builder::RemoteRun::Cached) => " (remote ActionCache hit)",
    }
}
