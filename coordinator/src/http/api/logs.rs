//! A run's log: as JSON pages after a cursor, and as a live Server-Sent Events stream that
//! resumes after `Last-Event-ID`. A line's cursor is its place in the run's log (plan before
//! apply, attempts in order, lines in order), the order the user service streams it in.

use super::dto::{LogLineJson, LogPage, LogQuery};
use super::{call, Params, Problem, Reply};
use crate::http::App;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use tofuflow_proto::v1;
use tofuflow_proto::v1::user_service_server::UserService;
use tokio_stream::StreamExt;

/// Whether the run has ended (an unreadable state counts as ended).
fn ended(r: &v1::Run) -> bool {
    r.state
        .parse::<crate::runs::RunState>()
        .map(|s| crate::runs::is_terminal(s, crate::api::convert::kind_from_pb(r.kind)))
        .unwrap_or(true)
}

/// The first line index after `after` (a cursor), or 0.
fn start_of(after: Option<&str>) -> Result<u64, Problem> {
    match after.map(str::trim).filter(|a| !a.is_empty()) {
        None => Ok(0),
        Some(a) => a.parse::<u64>().map(|n| n + 1).map_err(|_| {
            Problem::bad_request(format!("cursor {a:?} is not a line's cursor (a number)"))
        }),
    }
}

/// Lines after `after`, at most `limit`; `complete` once the run has ended and nothing follows.
#[utoipa::path(get, path = "/api/v1/runs/{id}/logs", tag = "runs", params(("id" = String, Path), LogQuery),
    responses((status = 200, body = LogPage), (status = 404, body = Problem)))]
pub async fn page(
    State(app): State<App>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Params(q): Params<LogQuery>,
) -> Reply<LogPage> {
    let start = start_of(q.after.as_deref())?;
    let limit = q.limit.unwrap_or(1000).clamp(1, 10_000) as usize;
    let run = call!(
        app,
        headers,
        get_run,
        v1::GetRunRequest {
            run_id: id.clone(),
            ..Default::default()
        }
    );
    let msg = v1::RunLogsRequest {
        run_id: id,
        follow: false,
        offset: start,
    };
    let mut stream = call!(app, headers, run_logs, msg);
    let (mut lines, mut index, mut more) = (Vec::new(), start, false);
    while let Some(l) = stream.next().await {
        let l = l?;
        if lines.len() == limit {
            more = true;
            break;
        }
        lines.push(LogLineJson::new(index, l));
        index += 1;
    }
    Ok(Json(LogPage {
        next: lines.last().map(|l| l.cursor.clone()).or(q.after),
        complete: ended(&run) && !more,
        lines,
    }))
}

/// The log as it is written: `log` events (id = the line's cursor, data = the line as JSON),
/// then one `end` event when the run has ended. A reconnect with `Last-Event-ID` (or `?after=`)
/// resumes after that line; 204 once the run has ended and nothing follows (browsers stop
/// reconnecting).
#[utoipa::path(get, path = "/api/v1/runs/{id}/logs/stream", tag = "runs",
    params(("id" = String, Path), LogQuery, ("Last-Event-ID" = Option<String>, Header, description = "resume after this line")),
    responses((status = 200, content_type = "text/event-stream", description = "log and end events"),
        (status = 204, description = "the run has ended and no line follows the cursor"), (status = 404, body = Problem)))]
pub async fn stream(
    State(app): State<App>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Params(q): Params<LogQuery>,
) -> Result<Response, Problem> {
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or(q.after);
    let start = start_of(resume.as_deref())?;
    let run = call!(
        app,
        headers,
        get_run,
        v1::GetRunRequest {
            run_id: id.clone(),
            ..Default::default()
        }
    );
    if ended(&run) && start > 0 {
        let mut after = call!(
            app,
            headers,
            run_logs,
            v1::RunLogsRequest {
                run_id: id.clone(),
                follow: false,
                offset: start,
            }
        );
        if after.next().await.is_none() {
            return Ok(StatusCode::NO_CONTENT.into_response());
        }
    }
    let lines = call!(
        app,
        headers,
        run_logs,
        v1::RunLogsRequest {
            run_id: id.clone(),
            follow: true,
            offset: start,
        }
    );
    let api = app.api.clone().ok_or_else(super::unavailable)?;
    // The stream begins at the cursor: its lines are numbered from there.
    let mut next = start as usize;
    let events = lines
        .map(move |l| {
            next += 1;
            (next - 1, l)
        })
        .map(|(i, l)| match l {
            Ok(l) => Event::default()
                .id(i.to_string())
                .event("log")
                .json_data(LogLineJson::new(i as u64, l))
                .map_err(|e| e.to_string()),
            Err(s) => Ok(Event::default().event("error").data(s.message())),
        })
        .chain(
            tokio_stream::once(())
                .then(move |()| end_event(api.clone(), headers.clone(), id.clone())),
        );
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// The `end` event: the run's final state.
async fn end_event(api: super::Api, headers: HeaderMap, id: String) -> Result<Event, String> {
    let state = match api
        .request(
            &headers,
            v1::GetRunRequest {
                run_id: id,
                ..Default::default()
            },
        )
        .await
    {
        Ok(req) => match api.user.get_run(req).await {
            Ok(r) => r.into_inner().state,
            Err(s) => s.message().to_string(),
        },
        Err(p) => p.detail,
    };
    Ok(Event::default()
        .event("end")
        .json_data(serde_json::json!({ "state": state }))
        .unwrap_or_else(|_| Event::default().event("end").data("{}")))
}
