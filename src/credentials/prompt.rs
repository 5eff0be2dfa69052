//! Reading a token for `d1ctl auth login`.

use std::io::{IsTerminal, Read};

use super::{CredentialError, Secret};

/// Reads a token for `d1ctl auth login`: from a hidden prompt on the terminal when stdin is a
/// TTY (the prompt is written to the terminal, not to stdout), otherwise from all of stdin
/// (`printf %s "$TOKEN" | d1ctl auth login staging`). Surrounding whitespace is trimmed; an empty
/// token or one with whitespace inside is refused with [`CredentialError::Input`].
///
/// This blocks; from async code call it inside `tokio::task::spawn_blocking`.
pub fn read_secret_from_stdin_or_prompt(
    env: &str,
    prompt: &str,
) -> Result<Secret, CredentialError> {
    let stdin = std::io::stdin();
    let raw = if stdin.is_terminal() {
        rpassword::prompt_password(prompt).map_err(|error| CredentialError::Input {
            env: env.to_owned(),
            message: format!("cannot read from the terminal: {error}"),
        })?
    } else {
        let mut raw = String::new();
        stdin
            .lock()
            .read_to_string(&mut raw)
            .map_err(|error| CredentialError::Input {
                env: env.to_owned(),
                message: format!("cannot read stdin: {error}"),
            })?;
        raw
    };
    parse_token(env, raw)
}

/// Validates a token as typed or piped.
pub(super) fn parse_token(env: &str, raw: String) -> Result<Secret, CredentialError> {
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Err(CredentialError::Input {
            env: env.to_owned(),
            message: "the token is empty".to_owned(),
        });
    }
    if trimmed
        .chars()
        .any(|character| character.is_whitespace() || character.is_control())
    {
        return Err(CredentialError::Input {
            env: env.to_owned(),
            message: "the token contains whitespace or several lines; give exactly one token"
                .to_owned(),
        });
    }
    if trimmed.len() == raw.len() {
        Ok(Secret::new(raw))
    } else {
        Ok(Secret::new(trimmed.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn piped_token_is_trimmed() {
        let secret = parse_token("staging", "tok-123\n".to_owned()).expect("valid");
        assert_eq!(secret.expose(), "tok-123");
    }

    #[test]
    fn empty_or_multi_line_input_is_refused_without_echoing_it() {
        assert!(matches!(
            parse_token("staging", " \n".to_owned()),
            Err(CredentialError::Input { .. })
        ));
        let error = parse_token("staging", "first-secret\nsecond-secret\n".to_owned())
            .expect_err("refused");
        assert!(!error.to_string().contains("secret"), "{error}");
    }
}
