//! "Did you mean": the closest known name to a misspelt one (`strsim`, as clap and cargo do).

/// The candidate most like `unknown`, if one is close enough to be a likely typo.
pub fn closest<'a>(
    unknown: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(unknown, c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// Rewrites serde's `` unknown field `x`, expected one of `a`, `b` `` as
/// `` unknown key `x` (did you mean `a`?) ``, keeping the list when nothing is close.
/// `None` when `message` is not about an unknown field.
pub fn unknown_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    let (unknown, rest) = rest.split_once('`')?;
    let expected: Vec<&str> = rest.split('`').skip(1).step_by(2).collect();
    Some(match closest(unknown, expected.iter().copied()) {
        Some(best) => format!("unknown key `{unknown}` (did you mean `{best}`?)"),
        None if expected.is_empty() => format!("unknown key `{unknown}`"),
        None => format!(
            "unknown key `{unknown}` (expected one of {})",
            expected.join(", ")
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_the_closest_known_key() {
        let m = "unknown field `aplication_id`, expected one of `application_id`, `bootstrap_servers`, `state_dir`";
        assert_eq!(
            unknown_field(m).as_deref(),
            Some("unknown key `aplication_id` (did you mean `application_id`?)")
        );
        let m = "unknown field `zzz`, expected `backend` or `cache_bytes`";
        assert_eq!(
            unknown_field(m).as_deref(),
            Some("unknown key `zzz` (expected one of backend, cache_bytes)")
        );
        assert_eq!(unknown_field("invalid type: string"), None);
    }
}
