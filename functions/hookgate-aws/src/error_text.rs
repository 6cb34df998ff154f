//! Errors as one readable line: the message and its causes, never a `Debug` dump.
//!
//! The SDK's own `DisplayErrorContext` ends with the error's `Debug` form
//! (`… (Unhandled(Unhandled { source: DispatchFailure(…`), which is what an operator used to read
//! instead of a sentence. [`one_line`] walks `source()` instead, joins the causes with `: `,
//! flattens multi-line messages (the credential chain lists its providers on lines of their
//! own), and leaves out a cause whose text the line already holds, so nothing is said twice.

use std::error::Error;

/// `err` and its causes as one line: `message: cause: cause…`.
pub fn one_line(err: &(dyn Error + 'static)) -> String {
    let mut line = String::new();
    let mut next = Some(err);
    while let Some(e) = next {
        let text = e
            .to_string()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        if !text.is_empty() && !line.contains(&text) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&text);
        }
        next = e.source();
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Layer {
        text: &'static str,
        source: Option<Box<Layer>>,
    }

    impl std::fmt::Display for Layer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.text)
        }
    }

    impl Error for Layer {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            self.source.as_deref().map(|s| s as &(dyn Error + 'static))
        }
    }

    fn chain(texts: &[&'static str]) -> Layer {
        texts
            .iter()
            .rev()
            .fold(None, |source, text| {
                Some(Layer {
                    text,
                    source: source.map(Box::new),
                })
            })
            .unwrap()
    }

    #[test]
    fn causes_are_joined_flattened_and_never_repeated() {
        let err = chain(&[
            "dispatch failure",
            "other",
            "no credentials found in chain. Attempted:\n  Environment: not set\n  Profile: none",
        ]);
        assert_eq!(
            one_line(&err),
            "dispatch failure: other: no credentials found in chain. Attempted: Environment: not set Profile: none"
        );
        // A message that already quotes its cause (thiserror's `{source}`) says it once.
        let err = chain(&["cannot read x.toml: No such file", "No such file", ""]);
        assert_eq!(one_line(&err), "cannot read x.toml: No such file");
        assert!(!one_line(&err).contains('\n'));
    }
}
