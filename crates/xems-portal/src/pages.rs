//! Server-rendered HTML. Every dynamic string goes through [`esc`]; scripts
//! and styles are static files (the CSP forbids inline ones).

use std::fmt::Write as _;
use std::time::Duration;

use axum::response::Html;
use xems_axum::Session;
use xems_core::{SessionId, SessionMeta, Timestamp};

use crate::web::{Active, last_seen};
use crate::{AppState, DEMO_EMAIL, DEMO_PASSWORD, MAX_OTP_ATTEMPTS, WIDGETS};

/// HTML-escapes text for element content and quoted attributes.
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=59 => format!("{s} s"),
        60..=3599 => format!("{} min", s / 60),
        3600..=86_399 => format!("{} h {} min", s / 3600, (s % 3600) / 60),
        _ => format!("{} d", s / 86_400),
    }
}

fn ago(t: Timestamp, now: Timestamp) -> String {
    let d = now.saturating_since(t);
    if d < Duration::from_secs(2) { "just now".to_owned() } else { format!("{} ago", human(d)) }
}

fn until(t: Timestamp, now: Timestamp) -> String {
    format!("in {}", human(t.saturating_since(now)))
}

struct Page<'a> {
    title: &'a str,
    user: Option<&'a str>,
    body: String,
    scripts: &'a [&'a str],
}

fn render(state: &AppState, page: Page<'_>) -> Html<String> {
    let nav = match page.user {
        Some(name) => format!(
            r#"<a href="/dashboard">Dashboard</a><a href="/sessions">Your sessions</a>
<span class="who">{}</span>
<form method="post" action="/logout" class="inline"><button class="ghost" id="logout">Log out</button></form>"#,
            esc(name)
        ),
        None => String::new(),
    };
    let scripts: String =
        page.scripts.iter().map(|s| format!(r#"<script src="/static/{s}" defer></script>"#)).collect();
    Html(format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · xems portal</title>
<link rel="stylesheet" href="/static/app.css">
{scripts}
</head>
<body>
<header class="top">
  <a class="brand" href="/"><span class="logo">◆</span> xems <span class="muted">portal</span></a>
  <nav>{nav}</nav>
</header>
<main>
{body}
</main>
<footer>
  Sessions sealed with AES-256-GCM · tokens rotate on every request and live only in an HttpOnly cookie ·
  store: <code>{store}</code>
</footer>
</body>
</html>
"#,
        title = esc(page.title),
        body = page.body,
        store = esc(&state.options.store_label),
    ))
}

pub(crate) fn login(state: &AppState, notice: Option<&str>, error: Option<&str>, email: &str) -> Html<String> {
    let mut body = String::from(r#"<section class="card narrow"><h1>Sign in</h1>"#);
    body.push_str(r#"<p class="muted">Password first, then a one-time code: two steps, two sandboxes.</p>"#);
    if let Some(n) = notice {
        let _ = write!(body, r#"<p class="notice" id="notice">{}</p>"#, esc(n));
    }
    if let Some(e) = error {
        let _ = write!(body, r#"<p class="error" id="error">{}</p>"#, esc(e));
    }
    let _ = write!(
        body,
        r#"<form method="post" action="/login" class="stack" id="login-form">
  <label>Email <input type="email" name="email" id="email" autocomplete="username" required value="{email}"></label>
  <label>Password <input type="password" name="password" id="password" autocomplete="current-password" required></label>
  <button type="submit" id="login-submit">Continue</button>
</form>
<aside class="demo">
  <h2>Demo account</h2>
  <dl>
    <dt>Email</dt><dd><code id="demo-email">{demo_email}</code></dd>
    <dt>Password</dt><dd><code id="demo-password">{demo_password}</code></dd>
  </dl>
  <p class="muted">The password is checked against an argon2id hash. The next step asks for the
  account's TOTP code; this demo shows it to you.</p>
</aside>
</section>"#,
        email = esc(email),
        demo_email = esc(DEMO_EMAIL),
        demo_password = esc(DEMO_PASSWORD),
    );
    render(state, Page { title: "Sign in", user: None, body, scripts: &[] })
}

pub(crate) fn mfa(state: &AppState, uid: &str, meta: &SessionMeta, attempts: u32, error: Option<&str>) -> Html<String> {
    let now = Timestamp::now();
    let left = MAX_OTP_ATTEMPTS.saturating_sub(attempts);
    let expires_in = meta.expires_at.saturating_since(now).as_secs();
    let (code, valid_for, secret) = match state.users.get(uid) {
        Some(user) => {
            let (code, valid_for) = user.current_totp();
            (code, valid_for, user.totp_secret_base32())
        }
        None => (String::from("------"), 0, String::new()),
    };
    let mut body = String::from(r#"<section class="card narrow"><h1>Two-factor verification</h1>"#);
    let _ = write!(
        body,
        r#"<p class="muted">Your password is accepted. This step lives in the <code>otp-pending</code> sandbox:
it expires <strong data-expires-in="{expires_in}" id="pending-expiry">in {expires_in} s</strong> and allows
<strong id="attempts-left">{left}</strong> more attempt{plural}.</p>"#,
        plural = if left == 1 { "" } else { "s" },
    );
    if let Some(e) = error {
        let _ = write!(body, r#"<p class="error" id="error">{}</p>"#, esc(e));
    }
    let _ = write!(
        body,
        r#"<form method="post" action="/mfa" class="stack" id="mfa-form">
  <label>6-digit code <input name="code" id="code" inputmode="numeric" pattern="[0-9]{{6}}" maxlength="6"
    autocomplete="one-time-code" required autofocus></label>
  <button type="submit" id="mfa-submit">Verify</button>
</form>
<aside class="demo authenticator">
  <h2>Demo authenticator</h2>
  <p class="code" id="demo-code">{code}</p>
  <div class="bar"><span id="code-bar" data-valid-for="{valid_for}"></span></div>
  <p class="muted">RFC 6238, SHA-1, 6 digits, 30 s steps. A real app would not show this: add the secret
  <code>{secret}</code> (new on every start of the portal) to an authenticator to try it for real. Each
  code is accepted once.</p>
</aside>
</section>"#,
        code = esc(&code),
        secret = esc(&secret),
    );
    render(state, Page { title: "Verify", user: None, body, scripts: &["mfa.js"] })
}

pub(crate) fn dashboard(state: &AppState, active: &Active, session: &Session) -> Html<String> {
    let mut widgets = String::new();
    for i in 0..WIDGETS {
        let _ = write!(
            widgets,
            r#"<article class="widget" id="w{i}" data-state="loading"><h3>…</h3><p class="value">…</p>
<svg viewBox="0 0 100 30" preserveAspectRatio="none" aria-hidden="true"><path d=""></path></svg><p class="detail muted"></p></article>"#
        );
    }
    let body = format!(
        r#"<section class="hero">
  <div>
    <h1>Welcome, {name}</h1>
    <p class="muted">Signed in as <code>{email}</code> ({role}). Session <code id="session-id">{sid}</code>:
    its token changed on this page load and changes again on every widget request.</p>
  </div>
  <div class="controls">
    <button id="burst">Refresh burst</button>
    <button id="bursts20" class="ghost">Run 20 bursts</button>
    <label class="toggle"><input type="checkbox" id="auto"> auto-refresh</label>
  </div>
</section>
<section class="stats" id="stats">
  <div><span id="s-bursts">0</span><small>bursts</small></div>
  <div><span id="s-requests">0</span><small>requests</small></div>
  <div><span id="s-ok">0</span><small>ok</small></div>
  <div><span id="s-unauthorized" class="bad">0</span><small>401</small></div>
  <div><span id="s-failed">0</span><small>other errors</small></div>
  <div><span id="s-rotated">0</span><small>rotated</small></div>
  <div><span id="s-grace">0</span><small>grace hits</small></div>
</section>
<section class="grid" id="widgets">{widgets}</section>"#,
        name = esc(&active.name),
        email = esc(&active.email),
        role = esc(&active.role),
        sid = esc(session.id().as_str()),
    );
    render(state, Page { title: "Dashboard", user: Some(&active.name), body, scripts: &["dashboard.js"] })
}

pub(crate) fn sessions(
    state: &AppState,
    active: &Active,
    list: &[SessionMeta],
    current: SessionId,
    revoked: Option<usize>,
) -> Html<String> {
    let now = Timestamp::now();
    let mut rows = String::new();
    for m in list {
        let this = m.id == current;
        let action = if this {
            r#"<span class="pill">this device</span>"#.to_owned()
        } else {
            format!(
                r#"<form method="post" action="/sessions/revoke" class="inline"><input type="hidden" name="id" value="{}"><button class="ghost small">Sign out</button></form>"#,
                esc(m.id.as_str())
            )
        };
        let _ = write!(
            rows,
            r#"<tr{cls}><td><code>{id}</code></td><td>{created}</td><td>{seen}</td><td>{expires}</td><td>{action}</td></tr>"#,
            cls = if this { r#" class="current""# } else { "" },
            id = esc(m.id.as_str()),
            created = ago(m.created_at, now),
            seen = ago(last_seen(m), now),
            expires = until(m.expires_at, now),
        );
    }
    let notice = match revoked {
        Some(0) => r#"<p class="notice" id="notice">No other session to sign out.</p>"#.to_owned(),
        Some(n) => format!(
            r#"<p class="notice" id="notice">Signed out {n} other session{}: their tokens are revoked in the store.</p>"#,
            if n == 1 { "" } else { "s" }
        ),
        None => String::new(),
    };
    let others = list.len().saturating_sub(1);
    let body = format!(
        r#"<section class="card">
  <h1>Your sessions</h1>
  <p class="muted">Every browser or device where <code>{email}</code> is signed in. Ids are public and stable
  across rotations; tokens are never shown.</p>
  {notice}
  <table class="sessions" id="sessions-table">
    <thead><tr><th>Session</th><th>Signed in</th><th>Last active</th><th>Expires if idle</th><th></th></tr></thead>
    <tbody>{rows}</tbody>
  </table>
  <form method="post" action="/sessions/revoke-others" class="right">
    <button id="revoke-others" {disabled}>Log out everywhere else ({others})</button>
  </form>
</section>"#,
        email = esc(&active.email),
        disabled = if others == 0 { "disabled" } else { "" },
    );
    render(state, Page { title: "Your sessions", user: Some(&active.name), body, scripts: &[] })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping() {
        xems_testkit::logs::capture();
        assert_eq!(esc(r#"<a href="x">'&'</a>"#), "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
    }

    #[test]
    fn durations_read_well() {
        xems_testkit::logs::capture();
        assert_eq!(human(Duration::from_secs(42)), "42 s");
        assert_eq!(human(Duration::from_secs(900)), "15 min");
        assert_eq!(human(Duration::from_secs(3 * 3600 + 120)), "3 h 2 min");
        assert_eq!(human(Duration::from_secs(3 * 86_400)), "3 d");
    }
}
