//! Routes and handlers: the HTML pages, their JSON twins, static files.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;
use xems_axum::{LinkOptions, Session, Xems, XemsError};
use xems_core::{SessionId, SessionMeta, Timestamp, UpdateOutcome};

use crate::pages;
use crate::{ACTIVE, ACTIVE_MAX_LIFETIME, AppState, MAX_OTP_ATTEMPTS, PENDING, PENDING_TTL, TotpRefusal, WIDGETS};

type AppRef = Arc<AppState>;

/// The value of a password-checked session waiting for its OTP.
#[derive(Serialize, Deserialize)]
struct Pending {
    uid: String,
    attempts: u32,
}

/// The value of a signed-in session.
#[derive(Serialize, Deserialize)]
pub(crate) struct Active {
    pub(crate) uid: String,
    pub(crate) email: String,
    pub(crate) name: String,
    pub(crate) role: String,
    /// Unix milliseconds.
    pub(crate) login_at: u64,
}

pub(crate) fn routes(state: AppRef) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/login", get(login_page).post(login_form))
        .route("/mfa", get(mfa_page).post(mfa_form))
        .route("/dashboard", get(dashboard_page))
        .route("/sessions", get(sessions_page))
        .route("/sessions/revoke-others", post(revoke_others_form))
        .route("/sessions/revoke", post(revoke_one_form))
        .route("/logout", post(logout_form))
        .route("/api/login", post(api_login))
        .route("/api/mfa", post(api_mfa))
        .route("/api/demo/totp", get(api_demo_totp))
        .route("/api/me", get(api_me))
        .route("/api/widgets/{n}", get(api_widget))
        .route("/api/sessions", get(api_sessions))
        .route("/api/sessions/revoke-others", post(api_revoke_others))
        .route("/api/logout", post(api_logout))
        .route("/static/app.css", get(|| static_file("text/css", include_str!("../static/app.css"))))
        .route("/static/dashboard.js", get(|| static_file("text/javascript", include_str!("../static/dashboard.js"))))
        .route("/static/mfa.js", get(|| static_file("text/javascript", include_str!("../static/mfa.js"))))
        .with_state(state)
}

/// Headers every response carries: no inline script or style can run, the
/// pages cannot be framed, nothing leaks through the referrer.
pub(crate) async fn security_headers(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

async fn static_file(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "public, max-age=300")], body).into_response()
}

fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

fn see_other(to: &str) -> Response {
    Redirect::to(to).into_response()
}

fn api_error(status: StatusCode, error: &str, extra: serde_json::Value) -> Response {
    let mut body = json!({ "error": error });
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    (status, Json(body)).into_response()
}

// ---------------------------------------------------------------------------
// The flow, shared by pages and API.

enum LoginOutcome {
    /// Password accepted: the client now holds an `otp-pending` session.
    Pending,
    BadCredentials,
}

async fn do_login(state: &AppRef, xems: &Xems, email: String, password: String) -> Result<LoginOutcome, XemsError> {
    let password = zeroize::Zeroizing::new(password);
    let checker = state.clone();
    let uid =
        tokio::task::spawn_blocking(move || checker.users.verify_password(&email, &password).map(|u| u.id.clone()))
            .await
            .ok()
            .flatten();
    let Some(uid) = uid else {
        tracing::info!(target: "xems::portal", "login refused: wrong email or password");
        return Ok(LoginOutcome::BadCredentials);
    };
    // A client logging in again first loses whatever its cookie held: a
    // signed-in session or an unfinished MFA step.
    if xems.has_token() {
        unlink_any(xems).await?;
    }
    let pending = serde_json::to_vec(&Pending { uid: uid.clone(), attempts: 0 }).expect("serializable");
    xems.link_in(PENDING, &pending, LinkOptions::new().with_ttl(PENDING_TTL).with_absolute_ttl(PENDING_TTL)).await?;
    tracing::info!(target: "xems::portal", user = %uid, "password accepted; waiting for the OTP");
    Ok(LoginOutcome::Pending)
}

enum MfaOutcome {
    Verified,
    Wrong { attempts_left: u32, replayed: bool },
    Locked,
    Expired,
    Busy,
}

/// Counts the attempt first (compare-and-set on the pending session's
/// version, retried on conflict), then checks the code: concurrent guesses
/// each spend an attempt, none is lost.
async fn do_mfa(state: &AppRef, xems: &Xems, code: &str) -> Result<MfaOutcome, XemsError> {
    let mut counted = None;
    for _ in 0..16 {
        let Some(session) = xems.get_in(PENDING).await? else { return Ok(MfaOutcome::Expired) };
        let mut pending: Pending = session.json()?;
        if pending.attempts >= MAX_OTP_ATTEMPTS {
            xems.unlink_in(PENDING).await?;
            return Ok(MfaOutcome::Locked);
        }
        pending.attempts += 1;
        let value = serde_json::to_vec(&pending).expect("serializable");
        match xems.update_in(PENDING, session.meta().version, &value).await? {
            UpdateOutcome::Updated(_) => {
                counted = Some(pending);
                break;
            }
            UpdateOutcome::Conflict { .. } => continue,
            UpdateOutcome::NotFound => return Ok(MfaOutcome::Expired),
        }
    }
    let Some(pending) = counted else { return Ok(MfaOutcome::Busy) };
    let Some(user) = state.users.get(&pending.uid) else { return Ok(MfaOutcome::Expired) };
    match user.check_totp(code) {
        Ok(()) => {
            let active = Active {
                uid: user.id.clone(),
                email: user.email.clone(),
                name: user.name.clone(),
                role: user.role.clone(),
                login_at: unix_ms(),
            };
            let value = zeroize::Zeroizing::new(serde_json::to_vec(&active).expect("serializable"));
            let opts = LinkOptions::new().with_subject(user.id.clone()).with_absolute_ttl(ACTIVE_MAX_LIFETIME);
            match xems.migrate(PENDING, Some(&value), opts).await? {
                Some(meta) => {
                    tracing::info!(target: "xems::portal", user = %user.id, session = %meta.id, "OTP accepted; signed in");
                    Ok(MfaOutcome::Verified)
                }
                None => Ok(MfaOutcome::Expired),
            }
        }
        Err(refusal) => {
            tracing::info!(target: "xems::portal", user = %user.id, attempt = pending.attempts, ?refusal, "OTP refused");
            if pending.attempts >= MAX_OTP_ATTEMPTS {
                xems.unlink_in(PENDING).await?;
                return Ok(MfaOutcome::Locked);
            }
            Ok(MfaOutcome::Wrong {
                attempts_left: MAX_OTP_ATTEMPTS - pending.attempts,
                replayed: refusal == TotpRefusal::Replayed,
            })
        }
    }
}

// ---------------------------------------------------------------------------
// Pages.

async fn index(session: Option<Session>) -> Response {
    see_other(if session.is_some() { "/dashboard" } else { "/login" })
}

#[derive(Deserialize)]
struct LoginQuery {
    #[serde(default)]
    notice: Option<String>,
}

#[derive(Deserialize)]
struct LoginForm {
    email: String,
    password: String,
}

fn login_notice(q: &LoginQuery) -> Option<&'static str> {
    match q.notice.as_deref() {
        Some("bye") => {
            Some("You are logged out. Your session is revoked in the store, not just forgotten by the browser.")
        }
        Some("expired") => Some("Your verification step expired (2 minutes). Log in again."),
        Some("locked") => Some("Too many wrong codes: that sign-in attempt is closed. Log in again."),
        _ => None,
    }
}

async fn login_page(State(state): State<AppRef>, session: Option<Session>, Query(q): Query<LoginQuery>) -> Response {
    if session.is_some() {
        return see_other("/dashboard");
    }
    pages::login(&state, login_notice(&q), None, "").into_response()
}

async fn login_form(
    State(state): State<AppRef>,
    xems: Xems,
    Form(form): Form<LoginForm>,
) -> Result<Response, XemsError> {
    let email = form.email.clone();
    Ok(match do_login(&state, &xems, form.email, form.password).await? {
        LoginOutcome::Pending => see_other("/mfa"),
        LoginOutcome::BadCredentials => {
            (StatusCode::UNAUTHORIZED, pages::login(&state, None, Some("Wrong email or password."), &email))
                .into_response()
        }
    })
}

async fn mfa_page(State(state): State<AppRef>, xems: Xems) -> Result<Response, XemsError> {
    let Some(session) = xems.get_in(PENDING).await? else { return Ok(see_other("/login?notice=expired")) };
    let pending: Pending = session.json()?;
    Ok(pages::mfa(&state, &pending.uid, session.meta(), pending.attempts, None).into_response())
}

#[derive(Deserialize)]
struct CodeForm {
    code: String,
}

async fn mfa_form(State(state): State<AppRef>, xems: Xems, Form(form): Form<CodeForm>) -> Result<Response, XemsError> {
    Ok(match do_mfa(&state, &xems, &form.code).await? {
        MfaOutcome::Verified => see_other("/dashboard"),
        MfaOutcome::Expired => see_other("/login?notice=expired"),
        MfaOutcome::Locked => see_other("/login?notice=locked"),
        MfaOutcome::Busy => (StatusCode::TOO_MANY_REQUESTS, "too many concurrent attempts").into_response(),
        MfaOutcome::Wrong { replayed, .. } => {
            let Some(session) = xems.get_in(PENDING).await? else { return Ok(see_other("/login?notice=expired")) };
            let pending: Pending = session.json()?;
            let error = if replayed {
                "That code was already used. Wait for the next one."
            } else {
                "Wrong code. Check the authenticator and try again."
            };
            (StatusCode::UNAUTHORIZED, pages::mfa(&state, &pending.uid, session.meta(), pending.attempts, Some(error)))
                .into_response()
        }
    })
}

async fn dashboard_page(State(state): State<AppRef>, session: Option<Session>) -> Result<Response, XemsError> {
    let Some(session) = session else { return Ok(see_other("/login")) };
    let active: Active = session.json()?;
    Ok(pages::dashboard(&state, &active, &session).into_response())
}

#[derive(Deserialize)]
struct SessionsQuery {
    #[serde(default)]
    revoked: Option<usize>,
}

async fn sessions_page(
    State(state): State<AppRef>,
    xems: Xems,
    session: Option<Session>,
    Query(q): Query<SessionsQuery>,
) -> Result<Response, XemsError> {
    let Some(session) = session else { return Ok(see_other("/login")) };
    let active: Active = session.json()?;
    let mut list = xems.list_sessions(&active.uid).await?;
    sort_sessions(&mut list, session.id());
    Ok(pages::sessions(&state, &active, &list, session.id(), q.revoked).into_response())
}

fn sort_sessions(list: &mut [SessionMeta], current: SessionId) {
    list.sort_by_key(|m| (m.id != current, std::cmp::Reverse(m.created_at.as_millis())));
}

async fn revoke_others_form(xems: Xems, session: Option<Session>) -> Result<Response, XemsError> {
    let Some(session) = session else { return Ok(see_other("/login")) };
    let active: Active = session.json()?;
    let n = xems.revoke_others(&active.uid).await?;
    tracing::info!(target: "xems::portal", user = %active.uid, revoked = n, "logged out everywhere else");
    Ok(see_other(&format!("/sessions?revoked={n}")))
}

#[derive(Deserialize)]
struct RevokeForm {
    id: String,
}

async fn revoke_one_form(
    xems: Xems,
    session: Option<Session>,
    Form(form): Form<RevokeForm>,
) -> Result<Response, XemsError> {
    let Some(session) = session else { return Ok(see_other("/login")) };
    let active: Active = session.json()?;
    let revoked = match SessionId::new(&form.id) {
        Some(id) if id != session.id() => usize::from(xems.revoke_session(&active.uid, &id).await?),
        _ => 0,
    };
    Ok(see_other(&format!("/sessions?revoked={revoked}")))
}

/// xUnlink: revokes the session the cookie holds (a signed-in one, or a
/// half-finished MFA step) and clears the cookie.
async fn unlink_any(xems: &Xems) -> Result<bool, XemsError> {
    if xems.get_in(PENDING).await?.is_some() { xems.unlink_in(PENDING).await } else { xems.unlink().await }
}

async fn logout_form(xems: Xems) -> Result<Response, XemsError> {
    unlink_any(&xems).await?;
    Ok(see_other("/login?notice=bye"))
}

// ---------------------------------------------------------------------------
// JSON API.

async fn api_login(
    State(state): State<AppRef>,
    xems: Xems,
    Json(form): Json<LoginForm>,
) -> Result<Response, XemsError> {
    Ok(match do_login(&state, &xems, form.email, form.password).await? {
        LoginOutcome::Pending => Json(json!({
            "next": "mfa",
            "expires_in_seconds": PENDING_TTL.as_secs(),
            "attempts_left": MAX_OTP_ATTEMPTS,
        }))
        .into_response(),
        LoginOutcome::BadCredentials => api_error(StatusCode::UNAUTHORIZED, "wrong email or password", json!({})),
    })
}

async fn api_mfa(State(state): State<AppRef>, xems: Xems, Json(form): Json<CodeForm>) -> Result<Response, XemsError> {
    Ok(match do_mfa(&state, &xems, &form.code).await? {
        MfaOutcome::Verified => Json(json!({ "next": "dashboard" })).into_response(),
        MfaOutcome::Wrong { attempts_left, replayed } => api_error(
            StatusCode::UNAUTHORIZED,
            if replayed { "code already used" } else { "wrong code" },
            json!({ "attempts_left": attempts_left }),
        ),
        MfaOutcome::Locked => api_error(StatusCode::GONE, "too many wrong codes: log in again", json!({})),
        MfaOutcome::Expired => api_error(StatusCode::GONE, "no pending verification: log in again", json!({})),
        MfaOutcome::Busy => api_error(StatusCode::TOO_MANY_REQUESTS, "too many concurrent attempts", json!({})),
    })
}

/// The demo's "authenticator app": the demo user's current code, only for a
/// client that passed the password step.
async fn api_demo_totp(State(state): State<AppRef>, xems: Xems) -> Result<Response, XemsError> {
    let Some(session) = xems.get_in(PENDING).await? else {
        return Ok(api_error(StatusCode::UNAUTHORIZED, "no pending verification", json!({})));
    };
    let pending: Pending = session.json()?;
    let Some(user) = state.users.get(&pending.uid) else {
        return Ok(api_error(StatusCode::GONE, "no such user", json!({})));
    };
    let (code, valid_for) = user.current_totp();
    Ok(Json(json!({ "code": code, "valid_for_seconds": valid_for })).into_response())
}

async fn api_me(session: Session) -> Result<Response, XemsError> {
    let active: Active = session.json()?;
    Ok(Json(json!({
        "user": active.uid,
        "email": active.email,
        "name": active.name,
        "role": active.role,
        "session": session.id().as_str(),
        "expires_at": session.meta().expires_at.as_millis(),
        "token_outcome": outcome_name(session.outcome()),
    }))
    .into_response())
}

fn outcome_name(o: xems_core::ResolveOutcome) -> &'static str {
    match o {
        xems_core::ResolveOutcome::Current => "current",
        xems_core::ResolveOutcome::Rotated => "rotated",
        xems_core::ResolveOutcome::Grace => "grace",
    }
}

async fn api_widget(
    State(state): State<AppRef>,
    session: Session,
    Path(n): Path<usize>,
) -> Result<Response, XemsError> {
    if n >= WIDGETS {
        return Ok(api_error(StatusCode::NOT_FOUND, "no such widget", json!({})));
    }
    // A widget's backend takes a few milliseconds, so the requests of one
    // burst overlap as they would in production.
    let jitter = 2 + (unix_ms().wrapping_mul(31).wrapping_add(n as u64 * 7)) % 12;
    tokio::time::sleep(Duration::from_millis(jitter)).await;
    let mut widget = widget_data(&state, n).await;
    widget["outcome"] = json!(outcome_name(session.outcome()));
    Ok(Json(widget).into_response())
}

/// Twelve widgets: six live figures of the store, six simulated metrics.
async fn widget_data(state: &AppRef, n: usize) -> serde_json::Value {
    const TITLES: [(&str, &str); WIDGETS] = [
        ("Active sessions", "sandbox active"),
        ("Pending MFA", "sandbox otp-pending"),
        ("Tokens rotated", "since start"),
        ("Grace hits", "concurrent requests saved"),
        ("Replays caught", "rotated tokens reused late"),
        ("Sessions migrated", "otp-pending → active"),
        ("Requests / s", "simulated"),
        ("p99 latency", "simulated, ms"),
        ("CPU", "simulated, %"),
        ("Memory", "simulated, MiB"),
        ("Error rate", "simulated, %"),
        ("Uptime", "this portal"),
    ];
    let (title, detail) = TITLES[n];
    let t = unix_ms() as f64 / 1000.0;
    let wave = |k: f64, base: f64, amp: f64| base + amp * ((t / 7.0 + n as f64 + k) * 0.9).sin();
    let spark: Vec<f64> = (0..16).map(|i| (wave(-(15 - i) as f64 * 0.35, 50.0, 40.0) * 10.0).round() / 10.0).collect();
    let value = if n < 6 {
        let stats = match state.store.dyn_stats().await {
            Ok(stats) => stats,
            Err(e) => {
                tracing::warn!(target: "xems::portal", code = e.code(), error = %e, "store figures unavailable");
                return json!({ "id": n, "title": title, "value": "n/a", "detail": detail, "spark": spark });
            }
        };
        let c = &stats.counters;
        let records = |name: &str| stats.sandbox(name).map_or(0, |s| s.records);
        match n {
            0 => records(ACTIVE).to_string(),
            1 => records(PENDING).to_string(),
            2 => c.rotated.to_string(),
            3 => c.grace_hits.to_string(),
            4 => c.reuse_detected.to_string(),
            _ => c.migrated.to_string(),
        }
    } else {
        match n {
            6 => format!("{:.0}", wave(0.0, 1800.0, 600.0)),
            7 => format!("{:.1}", wave(0.0, 12.0, 6.0)),
            8 => format!("{:.0}%", wave(0.0, 45.0, 30.0)),
            9 => format!("{:.0}", wave(0.0, 512.0, 64.0)),
            10 => format!("{:.2}%", wave(0.0, 0.4, 0.35).max(0.0)),
            _ => xems_core::format_duration(Duration::from_secs(state.started.elapsed().as_secs().max(1))),
        }
    };
    json!({ "id": n, "title": title, "value": value, "detail": detail, "spark": spark })
}

/// When a session was last used: its idle expiry slides by its TTL on every
/// request.
pub(crate) fn last_seen(m: &SessionMeta) -> Timestamp {
    Timestamp::from_millis(m.expires_at.as_millis().saturating_sub(m.ttl.as_millis() as u64))
}

fn session_json(m: &SessionMeta, current: SessionId, now: Timestamp) -> serde_json::Value {
    json!({
        "id": m.id.as_str(),
        "current": m.id == current,
        "created_at": m.created_at.as_millis(),
        "last_seen_ms_ago": now.saturating_since(last_seen(m)).as_millis() as u64,
        "expires_at": m.expires_at.as_millis(),
    })
}

async fn api_sessions(xems: Xems, session: Session) -> Result<Response, XemsError> {
    let active: Active = session.json()?;
    let mut list = xems.list_sessions(&active.uid).await?;
    sort_sessions(&mut list, session.id());
    let now = Timestamp::now();
    let sessions: Vec<_> = list.iter().map(|m| session_json(m, session.id(), now)).collect();
    Ok(Json(json!({ "sessions": sessions })).into_response())
}

async fn api_revoke_others(xems: Xems, session: Session) -> Result<Response, XemsError> {
    let active: Active = session.json()?;
    let n = xems.revoke_others(&active.uid).await?;
    Ok(Json(json!({ "revoked": n })).into_response())
}

async fn api_logout(xems: Xems) -> Result<Response, XemsError> {
    let revoked = unlink_any(&xems).await?;
    Ok(Json(json!({ "revoked": revoked })).into_response())
}
