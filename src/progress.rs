//! Progress on a terminal, for the two front doors (the CLI and the Python
//! module): indicatif bars on an interactive terminal; when stderr is not a
//! terminal or `CI` is set, plain rate-limited lines for the CLI (bars flooding
//! Docker and CI logs is a classic complaint about model downloaders) and
//! nothing for the Python module (a library stays quiet in a script's log).
//! This is the only place that knows indicatif.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::reporter::{Event, Reporter};
use crate::units::human_bytes;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Quiet,
    Default,
    Verbose,
}

enum Style {
    Bars(MultiProgress),
    Lines,
    /// Not a terminal, and the caller wants no lines (the Python module).
    Hidden,
}

struct Download {
    /// `Downloaded` or `Uploaded`, said when it ends.
    done_verb: &'static str,
    label: String,
    size: Option<u64>,
    done: u64,
    started: Instant,
    last_line: Instant,
    bar: Option<ProgressBar>,
}

pub struct Printer {
    level: Level,
    style: Style,
    downloads: Mutex<HashMap<usize, Download>>,
}

/// How often a plain progress line may be printed per download.
const LINE_INTERVAL: Duration = Duration::from_secs(5);

impl Printer {
    /// The CLI's: bars on a terminal, lines otherwise.
    pub fn new(level: Level) -> Printer {
        Printer::with_fallback(level, Style::Lines)
    }

    /// The Python module's: bars on a terminal, nothing otherwise.
    pub fn bars_or_nothing() -> Printer {
        Printer::with_fallback(Level::Default, Style::Hidden)
    }

    fn with_fallback(level: Level, fallback: Style) -> Printer {
        let interactive = std::io::stderr().is_terminal() && !crate::env::is_ci();
        let style = if interactive && level != Level::Quiet {
            Style::Bars(MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(10)))
        } else {
            fallback
        };
        Printer {
            level,
            style,
            downloads: Mutex::new(HashMap::new()),
        }
    }

    /// A status line (`Locked 3 models`), unless quiet.
    pub fn status(&self, verb: &str, rest: &str) {
        if self.level == Level::Quiet {
            return;
        }
        let line = format!("{} {rest}", paint(STATUS, &format!("{verb:>12}")));
        match &self.style {
            Style::Bars(m) => {
                let _ = m.println(line);
            }
            Style::Lines => eprintln!("{line}"),
            Style::Hidden => {}
        }
    }

    /// A transfer begins: a bar on a terminal, a line otherwise.
    fn start(&self, id: usize, label: &str, size: Option<u64>, resumed_from: u64, verbs: (&str, &'static str)) {
        let bar = match &self.style {
            Style::Bars(m) => {
                let bar = m.add(ProgressBar::new(size.unwrap_or(0)));
                bar.set_style(
                    ProgressStyle::with_template(
                        "{msg:40!} {bar:30} {bytes:>10}/{total_bytes:<10} {bytes_per_sec:>12} {eta:>4}",
                    )
                    .unwrap(),
                );
                bar.set_message(label.to_string());
                bar.set_position(resumed_from);
                Some(bar)
            }
            Style::Hidden => None,
            Style::Lines => {
                let size = size.map(human_bytes).unwrap_or_else(|| "unknown size".into());
                let resumed = if resumed_from > 0 {
                    format!(", resuming at {}", human_bytes(resumed_from))
                } else {
                    String::new()
                };
                eprintln!("{:>12} {label} ({size}{resumed})", verbs.0);
                None
            }
        };
        self.downloads.lock().unwrap().insert(
            id,
            Download {
                done_verb: verbs.1,
                label: label.to_string(),
                size,
                done: resumed_from,
                started: Instant::now(),
                last_line: Instant::now(),
                bar,
            },
        );
    }

    /// A transfer ends: its line, when it went well.
    fn finish(&self, id: usize, label: &str, ok: bool) {
        let Some(d) = self.downloads.lock().unwrap().remove(&id) else {
            return;
        };
        if let Some(bar) = d.bar {
            bar.finish_and_clear();
        }
        if ok {
            let secs = d.started.elapsed().as_secs_f64();
            self.status(
                d.done_verb,
                &format!("{label} ({}) in {secs:.1} s", human_bytes(d.done)),
            );
        }
    }

    /// Warnings are printed in every style (a Python user is told too), but
    /// not under `-q`, which prints only errors.
    pub fn warn(&self, message: &str) {
        if self.level != Level::Quiet {
            eprintln!("{}: {message}", paint(WARNING, "warning"));
        }
    }
}

impl Printer {
    /// `bytes` more of transfer `id`: its bar moves, or in CI a line says
    /// how far it is, at most every [`LINE_INTERVAL`].
    fn progress(&self, id: usize, bytes: u64) {
        let mut downloads = self.downloads.lock().unwrap();
        let Some(d) = downloads.get_mut(&id) else {
            return;
        };
        d.done += bytes;
        if let Some(bar) = &d.bar {
            bar.set_position(d.done);
        } else if matches!(self.style, Style::Lines) && d.last_line.elapsed() >= LINE_INTERVAL {
            d.last_line = Instant::now();
            let rate = d.done as f64 / d.started.elapsed().as_secs_f64().max(1e-3);
            let pct = (d.size)
                .map(|s| format!("{:.0}% of {}", 100.0 * d.done as f64 / s.max(1) as f64, human_bytes(s)))
                .unwrap_or_else(|| human_bytes(d.done));
            eprintln!("{:>12} {} {pct} at {}/s", "", d.label, human_bytes(rate as u64));
        }
    }
}

impl Reporter for Printer {
    fn report(&self, event: Event<'_>) {
        if self.level == Level::Quiet {
            return;
        }
        match event {
            Event::Request { method, url } if self.level == Level::Verbose => {
                // A signed URL's query is its signature: never printed.
                self.status("Request", &format!("{method} {}", crate::http::redact(url)))
            }
            Event::Request { .. } => {}
            Event::Resolving { model } if self.level == Level::Verbose => self.status("Resolving", model),
            Event::Resolving { .. } => {}
            Event::Verifying { model } => {
                if self.level == Level::Verbose {
                    self.status("Verifying", model)
                }
            }
            Event::WaitingForPeer { model, mirror } => self.status(
                "Waiting",
                &format!("for another runner to push `{model}` to `oci://{mirror}` (it holds the lease and is fetching it from upstream)"),
            ),
            Event::Warning { message } => self.warn(message),
            Event::VerifyPlan { files, helpers, budget } => {
                if self.level == Level::Verbose {
                    self.status(
                        "Verifying",
                        &format!(
                            "{files} weight file(s) with {helpers} libtorch helper(s) in parallel, within {} of tensors (`verify.max_memory`)",
                            human_bytes(budget)
                        ),
                    )
                }
            }
            Event::Rehashing {
                files,
                bytes,
                threads,
                why,
            } => self.status(
                "Hashing",
                &format!("{files} file(s) ({}) on {threads} thread(s): {why}", human_bytes(bytes)),
            ),
            Event::Retrying {
                label,
                attempt,
                reason,
                wait,
            } => self.status(
                "Retrying",
                &format!(
                    "{label} (attempt {attempt} failed: {reason}; next in {:.1} s)",
                    wait.as_secs_f64()
                ),
            ),
            Event::DownloadStarted {
                id,
                label,
                size,
                resumed_from,
            } => self.start(id, label, size, resumed_from, ("Downloading", "Downloaded")),
            Event::UploadStarted { id, label, size } => self.start(id, label, Some(size), 0, ("Uploading", "Uploaded")),
            Event::DownloadProgress { id, bytes } => self.progress(id, bytes),
            Event::DownloadFinished { id, label, ok } | Event::UploadFinished { id, label, ok } => {
                self.finish(id, label, ok)
            }
        }
    }
}

/// Colours as cargo uses them: status verbs green, warnings yellow, errors
/// red, hints cyan; all bold.
pub const STATUS: anstyle::Style = anstyle::AnsiColor::Green.on_default().bold();
pub const WARNING: anstyle::Style = anstyle::AnsiColor::Yellow.on_default().bold();
pub const ERROR: anstyle::Style = anstyle::AnsiColor::Red.on_default().bold();
pub const HINT: anstyle::Style = anstyle::AnsiColor::Cyan.on_default().bold();

/// `text` in `style` when stderr takes colour (`--color`, `NO_COLOR`, a terminal).
pub fn paint(style: anstyle::Style, text: &str) -> String {
    match anstream::AutoStream::choice(&std::io::stderr()) {
        anstream::ColorChoice::Never => text.to_string(),
        _ => format!("{style}{text}{style:#}"),
    }
}
