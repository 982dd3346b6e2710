//! The coordinator's one error type, and the single mapping from error kind to gRPC code and
//! HTTP status, so handlers just use `?`.

use axum::http::StatusCode;

/// Everything that can go wrong in the coordinator, by kind: the kind decides the gRPC code and
/// the HTTP status ([`Error::grpc_code`], [`Error::http_status`]).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The run, task, blob or version asked for does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The request itself is wrong: a bad name, a missing field, a malformed body.
    #[error("{0}")]
    InvalidInput(String),
    /// The request does not fit the current state (stale lease, illegal action).
    #[error("{0}")]
    Conflict(String),
    /// No credential, or one that is not valid.
    #[error("{0}")]
    Unauthenticated(String),
    /// A valid caller that may not do this (a role too low, a pool or workspace not theirs).
    #[error("{0}")]
    PermissionDenied(String),
    /// A report or write from a lease that is no longer the live one (the agent was fenced).
    #[error("stale lease: task {task} attempt {attempt} epoch {epoch} is not the live lease ({current})")]
    StaleLease {
        task: String,
        attempt: u32,
        epoch: i64,
        /// What the live lease is now, in words.
        current: String,
    },
    /// A workspace's state is locked by someone else; `holder` is their LockInfo (JSON).
    #[error("workspace {workspace:?} is locked: {holder}")]
    Locked { workspace: String, holder: String },
    /// A stored value that cannot be decoded: never replaced by a default.
    #[error("stored {table}.{column} is damaged: {detail}")]
    Corrupt {
        table: &'static str,
        column: &'static str,
        detail: String,
    },
    /// Well-formed, but not acceptable as it is (an idempotency key reused for another request).
    #[error("{0}")]
    Unprocessable(String),
    /// Too large, too many: the caller must send less.
    #[error("{0}")]
    TooLarge(String),
    /// The database failed (or could not be reached: then the message says to retry).
    #[error("database error: {0}{hint}", hint = if unreachable(.0) { " (the database is not reachable now: retry shortly)" } else { "" })]
    Db(#[from] sqlx::Error),
    /// RabbitMQ failed.
    #[error("broker error: {0}")]
    Amqp(#[from] lapin::Error),
    /// A fault of the coordinator itself.
    #[error("{0}")]
    Internal(String),
}

/// The coordinator's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The gRPC code a caller of the gRPC APIs sees for this error.
    pub fn grpc_code(&self) -> tonic::Code {
        match self {
            Error::NotFound(_) => tonic::Code::NotFound,
            Error::InvalidInput(_) | Error::Unprocessable(_) => tonic::Code::InvalidArgument,
            Error::Conflict(_) => tonic::Code::FailedPrecondition,
            Error::Unauthenticated(_) => tonic::Code::Unauthenticated,
            Error::PermissionDenied(_) => tonic::Code::PermissionDenied,
            Error::StaleLease { .. } => tonic::Code::FailedPrecondition,
            Error::Locked { .. } => tonic::Code::FailedPrecondition,
            Error::TooLarge(_) => tonic::Code::ResourceExhausted,
            Error::Corrupt { .. } => tonic::Code::DataLoss,
            Error::Db(_) | Error::Amqp(_) => tonic::Code::Unavailable,
            Error::Internal(_) => tonic::Code::Internal,
        }
    }

    /// The HTTP status a caller of the HTTP side sees for this error.
    pub fn http_status(&self) -> StatusCode {
        match self {
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::InvalidInput(_) => StatusCode::BAD_REQUEST,
            Error::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Error::Conflict(_) => StatusCode::CONFLICT,
            Error::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            Error::PermissionDenied(_) => StatusCode::FORBIDDEN,
            Error::StaleLease { .. } => StatusCode::CONFLICT,
            Error::Locked { .. } => StatusCode::LOCKED,
            Error::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Error::Db(e) if unreachable(e) => StatusCode::SERVICE_UNAVAILABLE,
            Error::Amqp(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::Db(_) | Error::Internal(_) | Error::Corrupt { .. } => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }
}

/// Whether a database error means the database could not be reached (down, restarting,
/// every connection busy): the caller may retry, nothing was done.
pub(crate) fn unreachable(e: &sqlx::Error) -> bool {
    matches!(
        e,
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_)
    )
}

impl From<Error> for tonic::Status {
    fn from(e: Error) -> Self {
        if matches!(e, Error::Db(_) | Error::Internal(_) | Error::Corrupt { .. }) {
            tracing::error!(error = %e, "request failed");
        }
        let mut s = tonic::Status::new(e.grpc_code(), e.to_string());
        // The table's HTTP status, for the HTTP API that calls the user service.
        if let Ok(v) = e.http_status().as_u16().to_string().parse() {
            s.metadata_mut()
                .insert(crate::http::api::HTTP_STATUS_KEY, v);
        }
        s
    }
}

impl axum::response::IntoResponse for Error {
    /// The HTTP side's answer for an error: its status and the message as a line of text.
    fn into_response(self) -> axum::response::Response {
        if matches!(
            self,
            Error::Db(_) | Error::Internal(_) | Error::Corrupt { .. }
        ) {
            tracing::error!(error = %self, "request failed");
        }
        (self.http_status(), format!("{self}\n")).into_response()
    }
}
