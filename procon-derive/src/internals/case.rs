//! Name conversions, for the defaults derived from Rust identifiers.

/// Converts a type name to snake_case: `BankAccount` → `bank_account`.
///
/// Acronyms stay one word (`HTTPRequest` → `http_request`), as a reader would split them;
/// a word boundary is an uppercase letter after a lowercase letter or a digit, or the last
/// uppercase letter of a run that a lowercase letter follows.
pub(crate) fn snake_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    let mut chars = name.chars().peekable();
    let mut prev: Option<char> = None;
    while let Some(c) = chars.next() {
        if c.is_uppercase() {
            let next_is_lower = chars.peek().is_some_and(|next| next.is_lowercase());
            let boundary = prev.is_some_and(|p| {
                p.is_lowercase() || p.is_numeric() || (p.is_uppercase() && next_is_lower)
            });
            if boundary {
                out.push('_');
            }
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
        prev = Some(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::snake_case;

    #[test]
    fn converts_type_names_to_snake_case() {
        for (name, expected) in [
            ("Account", "account"),
            ("BankAccount", "bank_account"),
            ("HTTPRequest", "http_request"),
            ("IOError", "io_error"),
            ("UserID", "user_id"),
            ("Account2FA", "account2_fa"),
            ("V2Event", "v2_event"),
            ("Bank_Account", "bank_account"),
            ("already_snake", "already_snake"),
            ("A", "a"),
            ("", ""),
        ] {
            assert_eq!(snake_case(name), expected, "snake_case({name:?})");
        }
    }
}
