//! `scorestream query`: reads state through a running instance's HTTP API (any instance:
//! it forwards to the owner).

use std::time::Duration;

/// What to ask for.
#[derive(Clone, Debug)]
pub enum Target {
    Customer(String),
    Leaderboard {
        board: String,
        period: Option<String>,
        limit: Option<u32>,
    },
}

/// Percent-encodes a path segment (RFC 3986 unreserved characters pass).
fn segment(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The URL for `target` on the instance at `base` (e.g. `http://localhost:8080`).
pub fn url(base: &str, target: &Target) -> String {
    let base = base.trim_end_matches('/');
    match target {
        Target::Customer(id) => format!("{base}/customers/{}", segment(id)),
        Target::Leaderboard {
            board,
            period,
            limit,
        } => {
            let mut q = Vec::new();
            if let Some(p) = period {
                q.push(format!("period={}", segment(p)));
            }
            if let Some(l) = limit {
                q.push(format!("limit={l}"));
            }
            let q = if q.is_empty() {
                String::new()
            } else {
                format!("?{}", q.join("&"))
            };
            format!("{base}/leaderboards/{}{q}", segment(board))
        }
    }
}

/// Accepts `http://…` and `https://…` base URLs; a bare `host:port` (a common slip: that
/// is how `http_addr` is written) is refused with the URL that was probably meant.
pub fn check_base_url(text: &str) -> Result<String, String> {
    let t = text.trim();
    match t.split_once("://") {
        Some(("http" | "https", rest)) if !rest.is_empty() => Ok(t.to_string()),
        Some((scheme, _)) => Err(format!(
            "'{t}': the scheme must be http or https, not '{scheme}'"
        )),
        None => Err(format!(
            "'{t}' has no scheme: write http://{t} (or https://{t})"
        )),
    }
}

/// Asks the instance; `Ok` holds the pretty JSON body of a 2xx answer, `Err` what to tell
/// the user (the error body, the status, when to retry).
pub async fn run(base: &str, target: &Target, timeout: Duration) -> Result<String, String> {
    let url = url(base, target);
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .map_err(|e| e.to_string())?;
    let response = client.get(&url).send().await.map_err(|e| {
        if e.is_connect() {
            format!("cannot connect to {base} (is a ScoreStream instance running there? set --url or SCORESTREAM_URL): {e}")
        } else if e.is_timeout() {
            format!("{url} did not answer within {timeout:?}")
        } else {
            format!("{url}: {e}")
        }
    })?;
    let status = response.status();
    let retry = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let served_by = response
        .headers()
        .get("x-scorestream-served-by")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = response.text().await.map_err(|e| e.to_string())?;
    let pretty = serde_json::from_str::<serde_json::Value>(&body)
        .map(|v| serde_json::to_string_pretty(&v).unwrap_or(body.clone()))
        .unwrap_or(body);
    if status.is_success() {
        if let Some(s) = served_by {
            eprintln!("(answered by {s})");
        }
        return Ok(pretty);
    }
    let mut msg = format!(
        "{} {}\n{pretty}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    );
    if let Some(r) = retry {
        msg.push_str(&format!(
            "\nthe owning task is not ready (restoring or rebalancing); retry in {r} s"
        ));
    }
    Err(msg)
}

/// `scorestream query`: prints the answer's body, or the error.
pub async fn command(base: &str, target: super::args::QueryTarget) -> std::process::ExitCode {
    use super::args::QueryTarget;
    let target = match target {
        QueryTarget::Customer { id } => Target::Customer(id),
        QueryTarget::Leaderboard {
            board,
            period,
            limit,
        } => Target::Leaderboard {
            board,
            period,
            limit,
        },
    };
    match run(base, &target, Duration::from_secs(15)).await {
        Ok(body) => {
            println!("{body}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_base_url_needs_its_scheme() {
        assert_eq!(check_base_url("http://h:1").as_deref(), Ok("http://h:1"));
        assert!(check_base_url("https://h").is_ok());
        let e = check_base_url("localhost:8080").unwrap_err();
        assert!(
            e.contains("no scheme") && e.contains("http://localhost:8080"),
            "{e}"
        );
        assert!(check_base_url("ftp://h").unwrap_err().contains("'ftp'"));
    }

    #[test]
    fn ids_and_boards_are_percent_encoded() {
        assert_eq!(
            url("http://h:1/", &Target::Customer("CUST 1/ä".into())),
            "http://h:1/customers/CUST%201%2F%C3%A4"
        );
        assert_eq!(
            url(
                "http://h:1",
                &Target::Leaderboard {
                    board: "xp".into(),
                    period: Some("daily:2024-01-15".into()),
                    limit: Some(5)
                }
            ),
            "http://h:1/leaderboards/xp?period=daily%3A2024-01-15&limit=5"
        );
    }
}
