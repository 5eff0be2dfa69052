//! SQL text as normalised tokens: words lower-cased, identifiers unquoted, comments dropped.

/// The tokens of SQL text, normalised (words lower-cased, identifiers unquoted, comments
/// dropped), for rules that look at statements word by word.
pub fn words(sql: &str) -> Vec<String> {
    tokenize(sql).into_iter().map(|t| t.text).collect()
}

/// A token of SQL text, normalised: words lower-cased, quoted identifiers unquoted,
/// literals kept as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Token {
    pub(crate) text: String,
    /// A string or blob literal (never lower-cased).
    pub(crate) literal: bool,
}

pub(crate) fn tokenize(sql: &str) -> Vec<Token> {
    let chars: Vec<char> = sql.chars().collect();
    let mut tokens: Vec<Token> = Vec::new();
    let mut i = 0;
    let word = |text: String| Token {
        text,
        literal: false,
    };
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '-' && chars.get(i + 1) == Some(&'-') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && chars.get(i + 1) == Some(&'*') {
            i += 2;
            while i < chars.len() && !(chars[i] == '*' && chars.get(i + 1) == Some(&'/')) {
                i += 1;
            }
            i += 2;
        } else if c == '\'' || ((c == 'x' || c == 'X') && chars.get(i + 1) == Some(&'\'')) {
            let start = i;
            if c != '\'' {
                i += 1;
            }
            i += 1;
            while i < chars.len() {
                if chars[i] == '\'' {
                    if chars.get(i + 1) == Some(&'\'') {
                        i += 2;
                        continue;
                    }
                    break;
                }
                i += 1;
            }
            i += 1;
            let text: String = chars[start..i.min(chars.len())].iter().collect();
            tokens.push(Token {
                text,
                literal: true,
            });
        } else if c == '"' || c == '`' || c == '[' {
            let close = if c == '[' { ']' } else { c };
            let mut text = String::new();
            i += 1;
            while i < chars.len() {
                if chars[i] == close {
                    if close != ']' && chars.get(i + 1) == Some(&close) {
                        text.push(close);
                        i += 2;
                        continue;
                    }
                    break;
                }
                text.push(chars[i]);
                i += 1;
            }
            i += 1;
            tokens.push(word(identifier_text(&text)));
        } else if c.is_alphanumeric() || c == '_' || c == '$' {
            let start = i;
            // A number keeps its decimal point; in a name, `.` is its own token (`new.email`).
            let number = c.is_ascii_digit();
            while i < chars.len()
                && (chars[i].is_alphanumeric()
                    || chars[i] == '_'
                    || chars[i] == '$'
                    || (number && chars[i] == '.'))
            {
                i += 1;
            }
            let text: String = chars[start..i].iter().collect();
            tokens.push(word(text.to_lowercase()));
        } else {
            let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
            if ["||", "<=", ">=", "<>", "!=", "==", "<<", ">>"].contains(&two.as_str()) {
                tokens.push(word(two));
                i += 2;
            } else {
                tokens.push(word(c.to_string()));
                i += 1;
            }
        }
    }
    drop_if_not_exists(&tokens)
}

/// An identifier's canonical spelling: bare and lower-cased when that is unambiguous.
pub(super) fn identifier_text(name: &str) -> String {
    let lower = name.to_lowercase();
    if lower.chars().all(|c| c.is_alphanumeric() || c == '_') && !lower.is_empty() {
        lower
    } else {
        format!("\"{}\"", lower.replace('"', "\"\""))
    }
}

fn drop_if_not_exists(tokens: &[Token]) -> Vec<Token> {
    let mut out = Vec::with_capacity(tokens.len());
    let mut i = 0;
    while i < tokens.len() {
        if tokens[i].text == "if"
            && tokens.get(i + 1).is_some_and(|t| t.text == "not")
            && tokens.get(i + 2).is_some_and(|t| t.text == "exists")
            && i > 0
            && ["table", "index", "trigger", "view"].contains(&tokens[i - 1].text.as_str())
        {
            i += 3;
            continue;
        }
        out.push(tokens[i].clone());
        i += 1;
    }
    out
}

/// Tokens joined with single spaces, none inside parentheses or before commas.
pub(crate) fn join_tokens(tokens: &[Token]) -> String {
    let mut out = String::new();
    for (i, token) in tokens.iter().enumerate() {
        // A call keeps its `(` on the name (`lower(x)`); a keyword does not (`check (x)`).
        let call = token.text == "("
            && i > 0
            && !tokens[i - 1].literal
            && is_word(&tokens[i - 1].text)
            && !is_keyword(&tokens[i - 1].text);
        let glue = i > 0
            && !call
            && !matches!(token.text.as_str(), "," | ")" | ";" | ".")
            && !matches!(tokens[i - 1].text.as_str(), "(" | ".");
        if glue {
            out.push(' ');
        }
        out.push_str(&token.text);
    }
    out.trim_end_matches(';').trim_end().to_owned()
}

fn is_word(text: &str) -> bool {
    text.chars()
        .next()
        .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '"')
}

/// Keywords after which `(` starts a group rather than a call (kept apart for readability).
fn is_keyword(text: &str) -> bool {
    matches!(
        text,
        "as" | "in"
            | "on"
            | "and"
            | "or"
            | "not"
            | "check"
            | "key"
            | "values"
            | "using"
            | "when"
            | "then"
            | "else"
            | "exists"
            | "where"
            | "from"
            | "select"
            | "default"
    )
}

/// Index of the `)` matching the `(` at `open` (or the end).
pub(super) fn matching(tokens: &[Token], open: usize) -> usize {
    let mut depth = 0;
    for (i, token) in tokens.iter().enumerate().skip(open) {
        match token.text.as_str() {
            "(" => depth += 1,
            ")" => {
                depth -= 1;
                if depth == 0 {
                    return i;
                }
            }
            _ => {}
        }
    }
    tokens.len()
}

pub(super) fn split_top_level(tokens: &[Token]) -> Vec<&[Token]> {
    let mut items = Vec::new();
    let mut depth = 0;
    let mut start = 0;
    for (i, token) in tokens.iter().enumerate() {
        match token.text.as_str() {
            "(" => depth += 1,
            ")" => depth -= 1,
            "," if depth == 0 => {
                items.push(&tokens[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if start < tokens.len() {
        items.push(&tokens[start..]);
    }
    items
}

/// The column and constraint definitions of a `CREATE TABLE`, as token lists.
pub(super) fn column_definitions(tokens: &[Token]) -> Vec<Vec<Token>> {
    let Some(open) = tokens.iter().position(|t| t.text == "(") else {
        return Vec::new();
    };
    let close = matching(tokens, open);
    split_top_level(&tokens[open + 1..close.min(tokens.len())])
        .into_iter()
        .map(<[Token]>::to_vec)
        .collect()
}

/// The normalised text of the parenthesised group starting at `start`.
pub(super) fn balanced_after(tokens: &[Token], start: usize) -> String {
    if tokens.get(start).is_none_or(|t| t.text != "(") {
        return String::new();
    }
    let close = matching(tokens, start);
    join_tokens(&tokens[start..=close.min(tokens.len() - 1)])
}

pub(super) fn strip_outer_parens(text: &str) -> String {
    let tokens = tokenize(text);
    if tokens.first().is_some_and(|t| t.text == "(") && matching(&tokens, 0) == tokens.len() - 1 {
        return join_tokens(&tokens[1..tokens.len() - 1]);
    }
    text.to_owned()
}

pub(super) fn normalize_type(declared: &str) -> String {
    join_tokens(&tokenize(declared)).to_ascii_uppercase()
}
