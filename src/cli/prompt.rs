//! The one confirmation prompt: before a write a person must approve, they type the env's name
//! on a terminal. Without a terminal only `--yes` confirms; being in CI confirms nothing.

use std::io::{BufRead as _, IsTerminal as _, Write as _};

use crate::cli::printer::Printer;

/// What a person answered to a typed confirmation.
pub(crate) enum Answer {
    Confirmed,
    Refused,
    /// Nobody can answer: no terminal (or `--quiet` hides the question).
    NoTerminal,
}

/// Asks `question` on stderr and reads a line: confirmed when it is exactly `expected`.
pub(crate) fn ask(printer: &Printer, question: &str, expected: &str) -> std::io::Result<Answer> {
    // The question needs someone at a terminal who can see it (stderr shown, not `--quiet`).
    let interactive = std::io::stdin().is_terminal()
        && std::io::stderr().is_terminal()
        && !printer.progress_target().is_hidden();
    if !interactive {
        return Ok(Answer::NoTerminal);
    }
    let mut stderr = std::io::stderr().lock();
    write!(stderr, "{question} ")?;
    stderr.flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(if answer.trim() == expected {
        Answer::Confirmed
    } else {
        Answer::Refused
    })
}

/// Asks to confirm a write to `env`; `why` says what needs the confirmation ("`prod` is
/// protected", "`local` holds rows …"), `rerun` is the command to pass `--yes` to. Returns
/// whether it was confirmed; a refusal has been printed.
pub(crate) fn confirm(printer: &Printer, env: &str, why: &str, yes: bool, rerun: &str) -> bool {
    if yes {
        printer.message(&format!("{why}; confirmed by `--yes`"));
        return true;
    }
    match ask(printer, &format!("{why}. Type `{env}` to continue:"), env) {
        Ok(Answer::Confirmed) => true,
        Ok(Answer::Refused) => {
            printer.error("not confirmed; nothing was written", None);
            false
        }
        Ok(Answer::NoTerminal) => {
            printer.error(
                &format!("{why} and there is no terminal to confirm on; nothing was written"),
                Some(&format!(
                    "run it in a terminal and type `{env}`, or pass `--yes` once a person has approved it: `{rerun} --yes`"
                )),
            );
            false
        }
        Err(error) => {
            printer.error(
                &format!("could not read the confirmation: {error}; nothing was written"),
                None,
            );
            false
        }
    }
}
