//! Credentials never reach a message: the values of the credential
//! variables the store reads are masked in every error text, and the query
//! string of any URL (where presigned URLs and SAS tokens carry secrets) is
//! dropped.

/// Environment variables whose values are secrets (or name an account) for
/// the stores this build talks to.
fn is_secret_var(name: &str) -> bool {
    let n = name.to_ascii_uppercase();
    let cloud = ["AWS_", "GOOGLE_", "AZURE_", "GCS_", "GCP_"]
        .iter()
        .any(|p| n.starts_with(p));
    cloud
        && ["KEY", "SECRET", "TOKEN", "PASSWORD", "SAS", "CREDENTIAL"]
            .iter()
            .any(|w| n.contains(w))
}

/// `text` with every secret variable's value replaced by `***` and URL
/// query strings removed.
pub fn redact(text: &str) -> String {
    let mut out = text.to_string();
    for (k, v) in std::env::vars() {
        if is_secret_var(&k) && v.len() >= 4 {
            out = out.replace(&v, "***");
        }
    }
    strip_queries(&out)
}

/// Drops `?...` after `http://` and `https://` URLs (up to the next space or quote).
fn strip_queries(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("http") {
        let (head, tail) = rest.split_at(i);
        out.push_str(head);
        let end = tail
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | ')' | '>'))
            .unwrap_or(tail.len());
        let url = &tail[..end];
        out.push_str(match url.find('?') {
            Some(q) if url.starts_with("http://") || url.starts_with("https://") => &url[..q],
            _ => url,
        });
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_and_query_strings_are_masked() {
        assert!(is_secret_var("AWS_SECRET_ACCESS_KEY"));
        assert!(is_secret_var("AWS_ACCESS_KEY_ID"));
        assert!(is_secret_var("AZURE_STORAGE_SAS_TOKEN"));
        assert!(!is_secret_var("AWS_ENDPOINT_URL"));
        assert!(!is_secret_var("HOME"));
        assert_eq!(
            strip_queries("GET https://h/b/o?X-Amz-Signature=abc failed (see http://x/y)"),
            "GET https://h/b/o failed (see http://x/y)"
        );
    }
}
