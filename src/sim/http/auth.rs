//! Who may call the Cloudflare API: tokens and account ids.
use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, StatusCode};

use super::App;
use super::response::ApiError;

impl App {
    pub(super) fn authenticate(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let accepted = |token: &str| {
            !token.is_empty() && (self.tokens.is_empty() || self.tokens.iter().any(|t| t == token))
        };
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|value| value.to_str().ok())
                .map(str::trim)
        };
        let bearer = header(AUTHORIZATION.as_str()).map(|value| {
            value
                .split_once(' ')
                .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                .map_or("", |(_, token)| token.trim())
        });
        if bearer.is_some_and(accepted) {
            return Ok(());
        }
        let email = header("x-auth-email");
        let key = header("x-auth-key");
        if email.is_some_and(|email| !email.is_empty()) && key.is_some_and(accepted) {
            return Ok(());
        }
        let status = if bearer.is_none() && email.is_none() && key.is_none() {
            StatusCode::UNAUTHORIZED
        } else {
            StatusCode::FORBIDDEN
        };
        Err(ApiError::new(status, 10000, "Authentication error"))
    }
}

/// The credential a request carries, as sent: the bearer token, or else the `X-Auth-Key`.
pub(super) fn credential(headers: &HeaderMap) -> Option<String> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::trim)
    };
    let bearer = header(AUTHORIZATION.as_str()).and_then(|value| {
        value
            .split_once(' ')
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
    });
    bearer
        .or_else(|| header("x-auth-key"))
        .filter(|credential| !credential.is_empty())
        .map(str::to_owned)
}

pub(super) fn valid_account(path: &str) -> bool {
    let account = path
        .strip_prefix("/client/v4/accounts/")
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_default();
    !account.is_empty()
        && account.len() <= 32
        && account
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts() {
        assert!(valid_account(
            "/client/v4/accounts/023e105f4ecef8ad9ca31a8372d0c353/d1/database"
        ));
        assert!(!valid_account(
            "/client/v4/accounts/023e105f4ecef8ad9ca31a8372d0c353aa/d1/database"
        ));
        assert!(!valid_account("/client/v4/accounts/bad%20id/d1/database"));
    }
}
