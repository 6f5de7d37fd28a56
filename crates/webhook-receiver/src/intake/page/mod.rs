//! The agent's own page, `GET /`: what it heals and what it did, for a human with a browser.
//!
//! - [`view`] gathers the data through the agent's read paths (live replicas, incidents, open
//!   escalations); [`render`] writes the HTML with [`html`], which escapes everything that is
//!   not a literal of this crate: incidents carry untrusted log lines and alert text.
//! - The data needs the bearer token: `GET /` without it shows a login form; `POST /login` with
//!   the token sets an HttpOnly, SameSite=Strict cookie holding a MAC of it ([`session`]); GET
//!   pages accept that cookie or the Bearer header. Endpoints that change state accept the Bearer
//!   header only, so the cookie gives a cross-site request nothing to do.
//! - No script, no external asset, a strict Content-Security-Policy; the page reloads itself.

mod html;
mod render;
mod session;
mod view;

use axum::extract::rejection::FormRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::Deserialize;

use super::AppState;

/// A login form is a few hundred bytes.
const MAX_LOGIN_BYTES: usize = 4096;

/// No script runs, nothing loads from elsewhere, forms post only here, no framing.
const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; \
                   frame-ancestors 'none'; base-uri 'none'";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(index))
        .route(
            "/login",
            post(login).layer(DefaultBodyLimit::max(MAX_LOGIN_BYTES)),
        )
        .route("/logout", post(logout))
}

/// Whether a GET request may see the agent's data: the Bearer header carries the token, or the
/// login cookie proves it was given. (There is always a token: see [`crate::token`].)
pub fn may_read(s: &AppState, headers: &HeaderMap) -> bool {
    if s.authorized(headers) {
        return true;
    }
    let token = &s.token;
    let cookie = headers.get(header::COOKIE).and_then(|v| v.to_str().ok());
    session::valid(token, cookie, s.engine.context().clock.now())
}

async fn index(State(s): State<AppState>, headers: HeaderMap) -> Response {
    if !may_read(&s, &headers) {
        return page(StatusCode::OK, render::login(None));
    }
    let data = view::gather(&s).await;
    page(StatusCode::OK, render::dashboard(&data))
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
}

async fn login(
    State(s): State<AppState>,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Response {
    let token = &s.token;
    let Ok(Form(form)) = form else {
        return page(
            StatusCode::BAD_REQUEST,
            render::login(Some("Send the token with the form.")),
        );
    };
    if !token.matches(&form.token) {
        tracing::warn!("a login to the agent's page with a wrong token");
        return page(
            StatusCode::UNAUTHORIZED,
            render::login(Some("Wrong token.")),
        );
    }
    see_home(Some(session::set_cookie(
        token,
        s.engine.context().clock.now(),
    )))
}

async fn logout() -> Response {
    see_home(Some(session::clear_cookie()))
}

/// An HTML page with the headers every page here carries.
fn page(status: StatusCode, body: String) -> Response {
    let mut r = (status, body).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    r
}

/// 303 to `/` (a reload then does not post the form again), setting `cookie` if given.
fn see_home(cookie: Option<String>) -> Response {
    let mut r = (StatusCode::SEE_OTHER, [(header::LOCATION, "/")]).into_response();
    if let Some(value) = cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        r.headers_mut().insert(header::SET_COOKIE, value);
    }
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}
