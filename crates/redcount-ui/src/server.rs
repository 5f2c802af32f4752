//! The HTTP side: pages and assets embedded in the binary, the JSON API, `GET /events` (server-sent
//! events pushed at every reader tick) and `GET /metrics`. Nothing here reads Redis: every handler
//! answers from the reader's latest snapshot.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use tokio::sync::watch;
use tokio_stream::wrappers::WatchStream;
use tokio_stream::{Stream, StreamExt};

use crate::metrics::Metrics;
use crate::model::Snapshot;

const INDEX_HTML: &str = include_str!("../assets/index.html");
const APP_JS: &str = include_str!("../assets/app.js");
const APP_CSS: &str = include_str!("../assets/app.css");

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// The reader's latest snapshot.
    pub snapshot: watch::Receiver<Arc<Snapshot>>,
    /// The Prometheus series.
    pub metrics: Arc<Metrics>,
    /// The address served, for the Host check.
    pub listen: SocketAddr,
}

/// Every route of the dashboard.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(jobs_page))
        .route("/jobs/{name}", get(job_page))
        .route(
            "/assets/app.js",
            get(|| async { asset(APP_JS, "text/javascript") }),
        )
        .route(
            "/assets/app.css",
            get(|| async { asset(APP_CSS, "text/css") }),
        )
        .route("/api/jobs", get(api_jobs))
        .route("/api/jobs/{name}", get(api_job))
        .route("/events", get(events))
        .route("/metrics", get(metrics))
        .layer(middleware::from_fn_with_state(state.clone(), check_host))
        .with_state(state)
}

/// On loopback, only requests that name a loopback host: a web page elsewhere cannot point a name
/// of its own at 127.0.0.1 and read the dashboard from the user's browser (DNS rebinding).
async fn check_host(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if state.listen.ip().is_loopback() {
        let host = request
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        let name = host.rsplit_once(':').map_or(host, |(name, _)| name);
        if !matches!(name, "127.0.0.1" | "localhost" | "[::1]") {
            return (
                StatusCode::MISDIRECTED_REQUEST,
                "this dashboard answers on its loopback address only\n",
            )
                .into_response();
        }
    }
    next.run(request).await
}

/// The jobs page, with the overview of this moment in it: a browser (or a crawler that never runs
/// the event stream) sees the jobs at once, not "connecting…".
async fn jobs_page(State(state): State<AppState>) -> Response {
    let overview = state.snapshot.borrow().overview.clone();
    page("overview", serde_json::to_string(&*overview))
}

/// A job's page, with its detail of this moment in it (when the reader has seen the job).
async fn job_page(State(state): State<AppState>, Path(name): Path<String>) -> Response {
    let detail = state.snapshot.borrow().details.get(&name).cloned();
    match detail {
        Some(detail) => page("job", serde_json::to_string(&*detail)),
        None => page("none", Ok("null".into())),
    }
}

/// The page with `data` embedded as `{"kind": KIND, "data": ...}` in a JSON script element. `<`
/// is written `\u003c` (the same string to JSON), so no text in it can close the element.
fn page(kind: &str, data: serde_json::Result<String>) -> Response {
    let data = data
        .unwrap_or_else(|_| "null".into())
        .replace('<', "\\u003c");
    let initial = format!(
        "<script type=\"application/json\" id=\"initial\">{{\"kind\":\"{kind}\",\"data\":{data}}}</script>"
    );
    let html = INDEX_HTML.replace("<!-- initial -->", &initial);
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        html,
    )
        .into_response()
}

fn asset(body: &'static str, kind: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(kind)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        body,
    )
}

async fn api_jobs(State(state): State<AppState>) -> impl IntoResponse {
    let overview = state.snapshot.borrow().overview.clone();
    Json(overview)
}

async fn api_job(State(state): State<AppState>, Path(name): Path<String>) -> Response {
    let detail = state.snapshot.borrow().details.get(&name).cloned();
    match detail {
        Some(detail) => Json(detail).into_response(),
        None => (StatusCode::NOT_FOUND, format!("no job '{name}' here\n")).into_response(),
    }
}

/// `?job=NAME` follows one job; without it, the jobs page.
#[derive(serde::Deserialize)]
struct Follow {
    job: Option<String>,
}

/// One message per reader tick (twice a second): `overview`, or `job` for `?job=NAME` (`missing`
/// while the reader has not seen it).
async fn events(
    State(state): State<AppState>,
    Query(follow): Query<Follow>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let stream = WatchStream::new(state.snapshot.clone()).map(move |snapshot| {
        let event = match &follow.job {
            None => Event::default()
                .event("overview")
                .json_data(&*snapshot.overview),
            Some(name) => match snapshot.details.get(name) {
                Some(detail) => Event::default().event("job").json_data(&**detail),
                None => Ok(Event::default().event("missing").data(name.as_str())),
            },
        };
        Ok(event.unwrap_or_else(|e| Event::default().event("error").data(e.to_string())))
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(5)))
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        )],
        state.metrics.encode(),
    )
}
