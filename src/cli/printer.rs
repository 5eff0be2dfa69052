//! The printer owns every byte d1ctl writes to the terminal: data on stdout, messages, warnings,
//! errors and progress on stderr.

use std::io::{IsTerminal, Write};

use indicatif::ProgressDrawTarget;
use serde::Serialize;

use crate::cli::{ColorChoice, Format, GlobalArgs};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Style {
    Bold,
    Dim,
    Green,
    Red,
    Yellow,
    Cyan,
}

impl Style {
    fn code(self) -> &'static str {
        match self {
            Style::Bold => "1",
            Style::Dim => "2",
            Style::Green => "32",
            Style::Red => "31",
            Style::Yellow => "33",
            Style::Cyan => "36",
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Printer {
    pub(crate) format: Format,
    quiet: bool,
    verbose: u8,
    stdout_color: bool,
    stderr_color: bool,
    stderr_is_terminal: bool,
    /// Whether a JSON document went to stdout (shared by clones): an error then adds none.
    printed_json: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Printer {
    pub(crate) fn new(global: &GlobalArgs, no_color_env: bool) -> Self {
        let stdout_is_terminal = std::io::stdout().is_terminal();
        let stderr_is_terminal = std::io::stderr().is_terminal();
        let color = |terminal: bool| match global.color {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => terminal && !no_color_env,
        };
        Self {
            format: global.format,
            quiet: global.quiet,
            verbose: global.verbose,
            stdout_color: color(stdout_is_terminal),
            stderr_color: color(stderr_is_terminal),
            stderr_is_terminal,
            printed_json: std::sync::Arc::default(),
        }
    }

    pub(crate) fn is_json(&self) -> bool {
        self.format == Format::Json
    }

    pub(crate) fn verbose(&self) -> bool {
        self.verbose > 0
    }

    /// `-vv`: HTTP traces too.
    pub(crate) fn http_traces(&self) -> bool {
        self.verbose > 1
    }

    /// Whether stderr gets colours (for the `-v` log lines too).
    pub(crate) fn stderr_color(&self) -> bool {
        self.stderr_color
    }

    /// Data on stdout: printed even with `--quiet`.
    #[expect(clippy::unused_self, reason = "all output goes through the printer")]
    pub(crate) fn data(&self, text: &str) -> std::io::Result<()> {
        let mut out = std::io::stdout().lock();
        out.write_all(text.as_bytes())?;
        if !text.ends_with('\n') {
            out.write_all(b"\n")?;
        }
        out.flush()
    }

    pub(crate) fn json(&self, value: &impl Serialize) -> std::io::Result<()> {
        let text = serde_json::to_string_pretty(value).map_err(std::io::Error::other)?;
        self.printed_json
            .store(true, std::sync::atomic::Ordering::Relaxed);
        self.data(&text)
    }

    /// With `--format json`, an error is also a JSON object on stdout,
    /// `{"error": {"code", "message", "hint"}}`, unless the command already printed its own
    /// document (which then is the answer, and says what failed).
    pub(crate) fn json_error(&self, code: u8, message: &str, hint: Option<&str>) {
        if !self.is_json() || self.printed_json.load(std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        let value = serde_json::json!({
            "error": { "code": code, "message": message, "hint": hint }
        });
        // stdout gone (`| head`): the text on stderr still says it.
        let _ = self.json(&value);
    }

    /// A message on stderr, hidden by `--quiet`.
    pub(crate) fn message(&self, text: &str) {
        if !self.quiet {
            write_stderr(text);
        }
    }

    /// A detail shown with `--verbose`.
    pub(crate) fn detail(&self, text: &str) {
        if self.verbose() {
            write_stderr(&self.paint(Style::Dim, text));
        }
    }

    pub(crate) fn warning(&self, text: &str) {
        if !self.quiet {
            write_stderr(&format!("{}: {text}", self.paint(Style::Yellow, "warning")));
        }
    }

    /// An error with its hint; never hidden.
    pub(crate) fn error(&self, text: &str, hint: Option<&str>) {
        let mut message = format!("{}: {text}", self.paint(Style::Red, "error"));
        if let Some(hint) = hint {
            message.push_str(&format!("\n\n{}: {hint}", self.paint(Style::Cyan, "hint")));
        }
        write_stderr(&message);
    }

    /// `text` styled for stderr (plain when colour is off).
    pub(crate) fn paint(&self, style: Style, text: &str) -> String {
        paint(self.stderr_color, style, text)
    }

    /// `text` styled for stdout (plain when colour is off).
    pub(crate) fn paint_out(&self, style: Style, text: &str) -> String {
        paint(self.stdout_color, style, text)
    }

    /// Whether stderr is a terminal (where progress can redraw in place).
    pub(crate) fn stderr_is_terminal(&self) -> bool {
        self.stderr_is_terminal
    }

    /// A child process's standard output sent to stderr, so stdout stays data (hooks, step
    /// commands); the child gets no output when stderr cannot be shared.
    #[expect(
        clippy::unused_self,
        reason = "the printer owns where output goes, so callers ask it"
    )]
    pub(crate) fn stderr_stdio(&self) -> std::process::Stdio {
        use std::os::fd::AsFd as _;
        std::io::stderr()
            .as_fd()
            .try_clone_to_owned()
            .map_or_else(|_| std::process::Stdio::null(), std::process::Stdio::from)
    }

    /// Where progress bars draw: stderr on a terminal, nowhere otherwise or when quiet.
    pub(crate) fn progress_target(&self) -> ProgressDrawTarget {
        if self.quiet || !self.stderr_is_terminal {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        }
    }
}

fn paint(enabled: bool, style: Style, text: &str) -> String {
    if enabled {
        format!("\x1b[{}m{text}\x1b[0m", style.code())
    } else {
        text.to_owned()
    }
}

fn write_stderr(text: &str) {
    let mut err = std::io::stderr().lock();
    // Nothing sensible is left to do when stderr itself is gone.
    let _ = err.write_all(text.as_bytes());
    if !text.ends_with('\n') {
        let _ = err.write_all(b"\n");
    }
}
