//! The agent's own page (`GET /`), from the browser's side: the real agent in-process over the
//! in-memory runtime (no Docker needed), its real router on port 0. Without a login no data is
//! shown; a wrong token gets 401 and no cookie; the right one a cookie (never the token) that
//! shows the replicas and an incident's timeline; hostile text in a log line and in an alert
//! annotation comes out as text, never as markup; the cookie opens no state-changing endpoint.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::{header, redirect, Client, Method, StatusCode};
use test_support::MemoryRuntime;
use webhook_receiver::clock::Clock;

const TOKEN: &str = "page-s3cret-token";
const LOG_SCRIPT: &str = "<script>alert('from a log line')</script>";
const ALERT_HTML: &str = "<img src=x onerror=alert(1)>";

struct Page {
    url: String,
    http: Client,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn start(rt: Arc<MemoryRuntime>) -> Page {
    let (url, tx) = support::start_in_memory(
        rt,
        &["--debounce-ms", "50", "--reconcile-interval", "0s"],
        support::token(TOKEN),
    )
    .await;
    Page {
        url,
        // Redirects and cookies by hand: the test looks at each.
        http: Client::builder()
            .redirect(redirect::Policy::none())
            .build()
            .unwrap(),
        _stop: tx,
    }
}

fn stack() -> Arc<MemoryRuntime> {
    let rt = Arc::new(MemoryRuntime::new(Clock::system()));
    for n in 1..=3 {
        rt.add("p", "webapp", n);
    }
    rt
}

impl Page {
    /// `method path` with the session cookie, as the browser sends it after logging in.
    async fn with_cookie(&self, method: Method, path: &str, cookie: &str) -> reqwest::Response {
        self.http
            .request(method, format!("{}{path}", self.url))
            .header(header::COOKIE, cookie)
            .send()
            .await
            .unwrap()
    }

    async fn get(&self, cookie: Option<&str>) -> (StatusCode, String) {
        let mut req = self.http.get(format!("{}/", self.url));
        if let Some(c) = cookie {
            req = req.header(header::COOKIE, c);
        }
        let r = req.send().await.unwrap();
        (r.status(), r.text().await.unwrap())
    }

    async fn login(&self, token: &str) -> reqwest::Response {
        // What a browser sends for the form: `token=...`, URL-encoded.
        let encoded: String = token
            .bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' => (b as char).to_string(),
                b => format!("%{b:02X}"),
            })
            .collect();
        self.http
            .post(format!("{}/login", self.url))
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(format!("token={encoded}"))
            .send()
            .await
            .unwrap()
    }

    /// Logs in with the right token; returns the `name=value` to send back.
    async fn cookie(&self) -> String {
        let r = self.login(TOKEN).await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        assert_eq!(r.headers()[header::LOCATION], "/");
        let set = r.headers()[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .to_string();
        set.split(';').next().unwrap().to_string()
    }

    /// The page (logged in) once it contains everything in `want`.
    async fn until(&self, cookie: &str, want: &[&str]) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (status, body) = self.get(Some(cookie)).await;
            assert_eq!(status, StatusCode::OK);
            if want.iter().all(|w| body.contains(w)) {
                return body;
            }
            assert!(Instant::now() < deadline, "no {want:?} in:\n{body}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test]
async fn without_a_login_the_page_is_a_form_and_shows_no_data() {
    let rt = stack();
    let page = start(rt.clone()).await;
    rt.exit("p-webapp-2", 137, true);

    for cookie in [
        None,
        Some("healstack_page=v1.99999999999.00"),
        Some("healstack_page=page-s3cret-token"),
    ] {
        let (status, body) = page.get(cookie).await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            body.contains("<form method=\"post\" action=\"/login\""),
            "{body}"
        );
        assert!(
            !body.contains("p-webapp"),
            "{cookie:?} showed data:\n{body}"
        );
        assert!(!body.contains("http-equiv=\"refresh\""), "{body}");
    }
}

#[tokio::test]
async fn a_wrong_token_gets_401_and_no_cookie() {
    let page = start(stack()).await;
    for wrong in ["", "page-s3cret", "PAGE-S3CRET-TOKEN", "page-s3cret-token "] {
        let r = page.login(wrong).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{wrong:?}");
        assert!(r.headers().get(header::SET_COOKIE).is_none(), "{wrong:?}");
        assert!(r.text().await.unwrap().contains("Wrong token."));
    }
    // Not a form at all.
    let r = page
        .http
        .post(format!("{}/login", page.url))
        .body(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.headers().get(header::SET_COOKIE).is_none());
}

#[tokio::test]
async fn the_right_token_shows_the_replicas_and_an_incidents_timeline() {
    let rt = stack();
    let page = start(rt.clone()).await;

    let r = page.login(TOKEN).await;
    let set = r.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .to_string();
    for attr in [
        "healstack_page=v1.",
        "HttpOnly",
        "SameSite=Strict",
        "Path=/",
    ] {
        assert!(set.contains(attr), "{set}");
    }
    assert!(!set.contains(TOKEN), "the cookie holds the token: {set}");
    let cookie = set.split(';').next().unwrap().to_string();

    let (status, body) = page.get(Some(&cookie)).await;
    assert_eq!(status, StatusCode::OK);
    for n in 1..=3 {
        assert!(body.contains(&format!("p-webapp-{n}")), "{body}");
    }
    assert!(body.contains("http-equiv=\"refresh\""), "{body}");
    assert!(body.contains("None yet."), "{body}");

    // A replica is OOM-killed; the agent heals it, and the page tells the story.
    rt.exit("p-webapp-2", 137, true);
    let body = page.until(&cookie, &["recovered in"]).await;
    for want in [
        "oom_killed",
        "Triggers",
        "Evidence",
        "Timeline: tool calls and actions",
        "<b>restart_container</b>",
        "<b>verify</b>",
        "Verification",
        "<span class=\"badge healed\">healed</span>",
    ] {
        assert!(body.contains(want), "no {want:?} in:\n{body}");
    }

    // The Bearer header works too (curl), and a logout ends the cookie.
    let r = page
        .http
        .get(format!("{}/", page.url))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert!(r.text().await.unwrap().contains("p-webapp-1"));
    let r = page.with_cookie(Method::POST, "/logout", &cookie).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(r.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
}

#[tokio::test]
async fn hostile_text_in_logs_and_alerts_is_rendered_inert() {
    let rt = stack();
    let page = start(rt.clone()).await;
    let cookie = page.cookie().await;

    // What the attacker controls: a replica's log output and an alert's annotations.
    rt.set_logs(
        "p-webapp-2",
        &format!("starting\n{LOG_SCRIPT}\nmemory allocation failed"),
    );
    rt.exit("p-webapp-2", 137, true);
    let mut alert = support::webapp_alert();
    alert["alerts"][0]["annotations"]["summary"] = ALERT_HTML.into();
    let r = page
        .http
        .post(format!("{}/webhook", page.url))
        .bearer_auth(TOKEN)
        .json(&alert)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());

    let body = page
        .until(&cookie, &["memory allocation failed", "onerror"])
        .await;
    assert!(
        body.contains("&lt;script&gt;alert(&#39;from a log line&#39;)&lt;/script&gt;"),
        "the log line is not shown as text:\n{body}"
    );
    assert!(
        body.contains("&lt;img src=x onerror=alert(1)&gt;"),
        "the annotation is not shown as text:\n{body}"
    );
    // The page has no script of its own: any `<script` or `<img` would be injected.
    assert!(!body.to_ascii_lowercase().contains("<script"), "{body}");
    assert!(!body.to_ascii_lowercase().contains("<img"), "{body}");

    // And a browser would not run one anyway.
    let r = page.with_cookie(Method::GET, "/", &cookie).await;
    let csp = r.headers()[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert!(!csp.contains("script-src"), "{csp}");
}

#[tokio::test]
async fn the_cookie_opens_no_endpoint_that_changes_state() {
    let page = start(stack()).await;
    let cookie = page.cookie().await;
    let r = page
        .with_cookie(Method::POST, "/reset?replica=p-webapp-1", &cookie)
        .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = page
        .http
        .post(format!("{}/webhook", page.url))
        .header(header::COOKIE, &cookie)
        .json(&support::webapp_alert())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // Nor the JSON API: the cookie opens the page and nothing else.
    let r = page.with_cookie(Method::GET, "/incidents", &cookie).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}
