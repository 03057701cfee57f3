//! An error with its causes on one line, each cause once. Error types here often show
//! their cause in their own message too (`state directory /x: Read-only file system (os
//! error 30)`, with that `io::Error` as the source); printing the whole chain would repeat
//! it (`...: Read-only file system (os error 30): Read-only file system (os error 30)`).

use std::error::Error;

/// `error: cause: cause...`, leaving out each cause whose text is already shown.
pub fn display<'a>(chain: impl IntoIterator<Item = &'a (dyn Error + 'static)>) -> String {
    let mut out = String::new();
    for e in chain {
        let text = e.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("state directory /x: {source}")]
    struct Dir {
        source: std::io::Error,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("state: {0}")]
    struct State(#[source] Dir);

    #[derive(Debug, thiserror::Error)]
    #[error("could not open the stores")]
    struct Opening(#[source] State);

    #[test]
    fn each_cause_is_shown_once() {
        let io = std::io::Error::from_raw_os_error(30);
        let e = Opening(State(Dir { source: io }));
        let mut chain: Vec<&(dyn Error + 'static)> = Vec::new();
        let mut cause: Option<&(dyn Error + 'static)> = Some(&e);
        while let Some(c) = cause {
            chain.push(c);
            cause = c.source();
        }
        let shown = display(chain);
        assert_eq!(
            shown,
            "could not open the stores: state: state directory /x: Read-only file system (os error 30)"
        );
        assert_eq!(shown.matches("Read-only file system").count(), 1);
    }
}
