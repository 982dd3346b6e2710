//! The coordinator's one error type, and the single mapping from error kind to gRPC code and
//! HTTP status, so handlers just use `?`.

use axum::http::StatusCode;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    InvalidInput(String),
    /// The request does not fit the current state (stale lease, illegal action).
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    PermissionDenied(String),
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("broker error: {0}")]
    Amqp(#[from] lapin::Error),
    #[error("{0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn grpc_code(&self) -> tonic::Code {
        match self {
            Error::NotFound(_) => tonic::Code::NotFound,
            Error::InvalidInput(_) => tonic::Code::InvalidArgument,
            Error::Conflict(_) => tonic::Code::FailedPrecondition,
            Error::Unauthenticated(_) => tonic::Code::Unauthenticated,
            Error::PermissionDenied(_) => tonic::Code::PermissionDenied,
            Error::Db(_) | Error::Amqp(_) => tonic::Code::Unavailable,
            Error::Internal(_) => tonic::Code::Internal,
        }
    }

    pub fn http_status(&self) -> StatusCode {
        match self {
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::InvalidInput(_) => StatusCode::BAD_REQUEST,
            Error::Conflict(_) => StatusCode::CONFLICT,
            Error::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            Error::PermissionDenied(_) => StatusCode::FORBIDDEN,
            Error::Db(_) | Error::Amqp(_) | Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<Error> for tonic::Status {
    fn from(e: Error) -> Self {
        if matches!(e, Error::Db(_) | Error::Internal(_)) {
            tracing::error!(error = %e, "request failed");
        }
        tonic::Status::new(e.grpc_code(), e.to_string())
    }
}
