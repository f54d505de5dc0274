//! HTML for the viewer: everything shown is escaped, bidi and control characters included,
//! and every page carries a strict Content-Security-Policy.

use std::fmt::Write as _;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// No script, style or image from anywhere but the viewer itself, no frames, no plugins,
/// forms only to the viewer.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'self'; img-src 'self'; \
     script-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; \
     base-uri 'none'";

/// The viewer's style sheet: readable on a laptop, no external font or image.
pub(super) const STYLE: &str = "\
body{font:14px/1.45 system-ui,sans-serif;margin:0;color:#1d1d1f;background:#fafafa}\
header{background:#1d2b3a;color:#fff;padding:.6rem 1.2rem}header a{color:#fff}\
h1{font-size:1.2rem;margin:0}main{padding:1rem 1.2rem}\
form.filters{display:flex;flex-wrap:wrap;gap:.5rem 1rem;margin-bottom:1rem}\
form.filters label{display:flex;flex-direction:column;font-size:.8rem}\
input,select,button{font:inherit;padding:.2rem .4rem}\
table{border-collapse:collapse;width:100%;background:#fff}\
th,td{border-bottom:1px solid #ddd;padding:.3rem .5rem;text-align:left;vertical-align:top}\
th{background:#eef1f4}caption{text-align:left;font-weight:600;padding:.4rem 0}\
.denied,.failure,.error{color:#a00}.changed{background:#fff3bf}.redacted{color:#777;font-style:italic}\
.escape{color:#a00;background:#fee;font-family:monospace}\
pre{background:#fff;border:1px solid #ddd;padding:.6rem;overflow:auto}\
dl{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem}dt{font-weight:600}\
a:focus,button:focus,input:focus{outline:2px solid #0a58ca}";

/// The viewer's one script: new rows on top of a live table (no framework, no build step).
pub(super) const SCRIPT: &str = "(function () {
  var table = document.querySelector('table[data-live]');
  if (!table || !window.EventSource) { return; }
  var body = table.querySelector('tbody');
  var status = document.getElementById('live-status');
  var source = new EventSource(table.getAttribute('data-live'));
  source.addEventListener('row', function (event) {
    body.insertAdjacentHTML('afterbegin', event.data);
    if (status) { status.textContent = 'Live: new events appear at the top.'; }
  });
  source.onerror = function () {
    if (status) { status.textContent = 'Live updates interrupted; they resume on their own.'; }
  };
})();
";

/// `text` for HTML: `&`, `<`, `>`, `"` and `'` as entities, and each character that could
/// reorder or hide what is shown (bidi controls, other format and control characters) as a
/// visible `\u{..}`.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if hidden(c) => {
                let _ = write!(
                    out,
                    "<span class=\"escape\">\\u{{{:04x}}}</span>",
                    u32::from(c)
                );
            }
            c => out.push(c),
        }
    }
    out
}

/// Characters that do not show as themselves: controls (but tab and newline), bidi
/// embeddings, overrides, isolates and marks, and other invisible format characters.
fn hidden(c: char) -> bool {
    (c.is_control() && c != '\n' && c != '\t')
        || matches!(
            c,
            '\u{200b}'..='\u{200f}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2060}'..='\u{2069}'
                | '\u{061c}'
                | '\u{feff}'
                | '\u{00ad}'
        )
}

/// An event's value as text, escaped: a string as itself, anything else as JSON, and a
/// redacted or missing value shown as such.
pub(super) fn value(value: &serde_json::Value) -> String {
    use serde_json::Value;
    match value {
        Value::String(text) if text == "[REDACTED]" => {
            "<span class=\"redacted\">[REDACTED]</span>".to_owned()
        }
        Value::String(text) => escape(text),
        Value::Null => "<span class=\"redacted\">(none)</span>".to_owned(),
        other => escape(&other.to_string()),
    }
}

/// A whole page: the layout around `body`, with the security headers.
pub(super) fn page(base: &str, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title><link rel=\"stylesheet\" href=\"{base}/viewer.css\">\
         <script src=\"{base}/viewer.js\" defer></script></head>\
         <body><header><h1><a href=\"{home}\">Audit trail</a></h1><nav aria-label=\"Views\">\
         <a href=\"{home}\">Events</a> · <a href=\"{base}/alerts\">Alerts</a> · \
         <a href=\"{base}/status\">Status</a></nav></header>\
         <main>{body}</main></body></html>",
        title = escape(title),
        base = escape(base),
        home = escape(&super::home(base)),
    );
    secured(StatusCode::OK, "text/html; charset=utf-8", html)
}

/// An error page with `status`, its message escaped.
pub(super) fn error(base: &str, status: StatusCode, message: &str) -> Response {
    let mut response = page(
        base,
        "Audit trail: error",
        &format!(
            "<h2>{}</h2><p role=\"alert\">{}</p>",
            status,
            escape(message)
        ),
    );
    *response.status_mut() = status;
    response
}

/// A response with the viewer's security headers: the CSP, no sniffing, no referrer, no
/// caching (the trail's contents are sensitive).
pub(super) fn secured(status: StatusCode, content_type: &'static str, body: String) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_bidi_and_controls_are_shown_not_obeyed() {
        assert_eq!(
            escape("<script>alert('x')</script> & \"q\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
        let shown = escape("admin\u{202e}txt.exe\u{0007}\u{200b}");
        assert!(
            shown.contains("\\u{202e}") && shown.contains("\\u{0007}"),
            "{shown}"
        );
        assert!(shown.contains("\\u{200b}"), "{shown}");
        assert!(!shown.contains('\u{202e}') && !shown.contains('\u{7}'));
        assert_eq!(escape("Zoë, 東京\n"), "Zoë, 東京\n");
    }
}
