//! Errors as `application/problem+json` (RFC 9457). The status comes from the coordinator's
//! one error table (`Error::http_status`), carried through the user service's gRPC status.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// The gRPC status metadata key that carries the error table's HTTP status.
pub use tofuflow_proto::HTTP_STATUS_KEY;

/// A problem: `type` is `about:blank`, so `title` is the status's phrase; `detail` says what
/// went wrong and what to do.
#[derive(Serialize, ToSchema, Debug)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
}

impl Problem {
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Problem {
        Problem {
            kind: "about:blank".into(),
            title: status.canonical_reason().unwrap_or("Error").into(),
            status: status.as_u16(),
            detail: detail.into(),
        }
    }

    pub fn bad_request(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::BAD_REQUEST, detail)
    }
}

impl From<tonic::Status> for Problem {
    /// The table's status when the user service set it, else one from the gRPC code.
    fn from(s: tonic::Status) -> Problem {
        let status = s
            .metadata()
            .get(HTTP_STATUS_KEY)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u16>().ok())
            .and_then(|v| StatusCode::from_u16(v).ok())
            .unwrap_or(match s.code() {
                tonic::Code::Unauthenticated => StatusCode::UNAUTHORIZED,
                tonic::Code::PermissionDenied => StatusCode::FORBIDDEN,
                tonic::Code::InvalidArgument => StatusCode::BAD_REQUEST,
                tonic::Code::NotFound => StatusCode::NOT_FOUND,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            });
        Problem::new(status, s.message())
    }
}

impl From<crate::error::Error> for Problem {
    fn from(e: crate::error::Error) -> Problem {
        Problem::from(tonic::Status::from(e))
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self).unwrap_or_default();
        (
            status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            body,
        )
            .into_response()
    }
}
