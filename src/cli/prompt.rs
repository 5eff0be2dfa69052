//! The one confirmation prompt: before a write a person must approve, they type the env's name
//! on a terminal. Without a terminal only `--yes` confirms; being in CI confirms nothing.

use std::io::{BufRead as _, IsTerminal as _, Write as _};

use crate::cli::printer::Printer;

/// Asks to confirm a write to `env`; `why` says what needs the confirmation ("`prod` is
/// protected", "`local` holds rows …"), `rerun` is the command to pass `--yes` to. Returns
/// whether it was confirmed; a refusal has been printed.
pub(crate) fn confirm(printer: &Printer, env: &str, why: &str, yes: bool, rerun: &str) -> bool {
    if yes {
        printer.message(&format!("{why}; confirmed by `--yes`"));
        return true;
    }
    // The question needs someone at a terminal who can see it (stderr shown, not `--quiet`).
    let interactive = std::io::stdin().is_terminal()
        && std::io::stderr().is_terminal()
        && !printer.progress_target().is_hidden();
    if !interactive {
        printer.error(
            &format!("{why} and there is no terminal to confirm on; nothing was written"),
            Some(&format!(
                "run it in a terminal and type `{env}`, or pass `--yes` once a person has approved it: `{rerun} --yes`"
            )),
        );
        return false;
    }
    let answer = {
        let mut stderr = std::io::stderr().lock();
        let asked =
            write!(stderr, "{why}. Type `{env}` to continue: ").and_then(|()| stderr.flush());
        let mut answer = String::new();
        asked
            .and_then(|()| std::io::stdin().lock().read_line(&mut answer))
            .map(|_| answer)
    };
    match answer {
        Ok(answer) if answer.trim() == env => true,
        Ok(_) => {
            printer.error("not confirmed; nothing was written", None);
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
