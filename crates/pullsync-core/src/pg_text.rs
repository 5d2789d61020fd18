//! Text an API sent, made fit for Postgres `text` values passed as parameters.
//!
//! Postgres text cannot hold a NUL character: a parameter with one would be a broken
//! datum, not an error. An API that sends one (JSON allows `\u0000`) loses that character
//! and nothing else.

use std::borrow::Cow;

/// `text` without NUL characters; borrowed when it has none.
pub fn without_nul(text: &str) -> Cow<'_, str> {
    if text.contains('\0') {
        Cow::Owned(text.replace('\0', ""))
    } else {
        Cow::Borrowed(text)
    }
}

/// A `text[]` literal of `items` (for one array per row, where a parameter can only be a
/// one-dimensional array of rows): each element quoted, `"` and `\` escaped.
pub fn array_literal<S: AsRef<str>>(items: &[S]) -> String {
    let mut literal =
        String::with_capacity(2 + items.iter().map(|s| s.as_ref().len() + 3).sum::<usize>());
    literal.push('{');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            literal.push(',');
        }
        literal.push('"');
        for c in item.as_ref().chars() {
            match c {
                '\0' => {}
                '"' | '\\' => {
                    literal.push('\\');
                    literal.push(c);
                }
                _ => literal.push(c),
            }
        }
        literal.push('"');
    }
    literal.push('}');
    literal
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_characters_are_dropped_and_nothing_else() {
        assert!(matches!(without_nul("plain"), Cow::Borrowed("plain")));
        assert_eq!(without_nul("a\0b\0"), "ab");
    }

    #[test]
    fn array_literals_quote_every_element() {
        assert_eq!(array_literal::<&str>(&[]), "{}");
        assert_eq!(array_literal(&["1", "2"]), r#"{"1","2"}"#);
        assert_eq!(
            array_literal(&["NULL", "", "a,b", "{x}", " sp "]),
            r#"{"NULL","","a,b","{x}"," sp "}"#
        );
        assert_eq!(
            array_literal(&[r#"q"u\o"#, "n\0ul"]),
            r#"{"q\"u\\o","nul"}"#
        );
    }
}
