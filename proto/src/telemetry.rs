//! Logging and tracing for the binaries, and the W3C trace-context carriers that let one trace
//! cover a run: CLI → coordinator (gRPC field) → AMQP header `traceparent` → agent → gRPC
//! metadata `traceparent` → `TRACEPARENT` in tofu's environment.
//!
//! Logs go to stderr (text or JSON, levels from `TOFUFLOW_LOG`). Spans are exported over OTLP/gRPC
//! when `OTEL_EXPORTER_OTLP_ENDPOINT` is set (the standard OpenTelemetry variable).

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use std::collections::HashMap;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// Flushes exported spans when dropped (keep it alive for the life of `main`).
pub struct Guard {
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(p) = self.provider.take() {
            let _ = p.shutdown();
        }
    }
}

/// Sets up logging, and OTLP export when configured. Call inside the Tokio runtime.
pub fn init(service: &'static str, log_format: &str) -> Result<Guard, String> {
    init_with_writer(
        service,
        log_format,
        tracing_subscriber::fmt::writer::BoxMakeWriter::new(std::io::stderr),
    )
}

/// [`init`], with the log written through `writer` (the agent's masks secrets).
pub fn init_with_writer(
    service: &'static str,
    log_format: &str,
    writer: tracing_subscriber::fmt::writer::BoxMakeWriter,
) -> Result<Guard, String> {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TOFUFLOW_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let fmt = if log_format == "json" {
        tracing_subscriber::fmt::layer()
            .json()
            .with_writer(writer)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_writer(writer)
            .boxed()
    };
    let (otel, provider) = match std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT")
        .ok()
        .filter(|s| !s.is_empty())
    {
        Some(endpoint) => {
            use opentelemetry_otlp::WithExportConfig;
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint.clone())
                .build()
                .map_err(|e| format!("cannot set up OTLP export to {endpoint}: {e}"))?;
            let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(
                    opentelemetry_sdk::Resource::builder()
                        .with_service_name(service)
                        .build(),
                )
                .build();
            let layer = tracing_opentelemetry::layer()
                .with_tracer(provider.tracer(service))
                .boxed();
            (Some(layer), Some(provider))
        }
        None => (None, None),
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(otel)
        .try_init()
        .map_err(|e| e.to_string())?;
    Ok(Guard { provider })
}

/// Makes `span` a child of the remote `traceparent` (ignored when malformed or empty).
pub fn set_parent(span: &tracing::Span, traceparent: &str) {
    if !crate::valid_traceparent(traceparent) {
        return;
    }
    let carrier = HashMap::from([("traceparent".to_string(), traceparent.to_string())]);
    let cx = TraceContextPropagator::new().extract(&carrier);
    let _ = span.set_parent(cx);
}

/// The `traceparent` of `span`, when spans are being exported (else `None`).
pub fn traceparent_of(span: &tracing::Span) -> Option<String> {
    let mut carrier: HashMap<String, String> = HashMap::new();
    TraceContextPropagator::new().inject_context(&span.context(), &mut carrier);
    carrier
        .remove("traceparent")
        .filter(|t| crate::valid_traceparent(t))
}

/// Adds `traceparent` gRPC metadata for the current span (coordinator calls from the agent).
pub fn with_trace<T>(msg: T, traceparent: Option<&str>) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    if let Some(tp) = traceparent.filter(|t| crate::valid_traceparent(t)) {
        if let Ok(v) = tp.parse() {
            req.metadata_mut().insert("traceparent", v);
        }
    }
    req
}

/// Reads `traceparent` gRPC metadata.
pub fn from_metadata(md: &tonic::metadata::MetadataMap) -> Option<String> {
    md.get("traceparent")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .filter(|t| crate::valid_traceparent(t))
}

/// Returns a token cancelled on the first SIGINT or SIGTERM (`what` says what that starts); a
/// second signal exits the process at once with status 130.
pub fn stop_on_signals(what: &'static str) -> tokio_util::sync::CancellationToken {
    async fn signal() {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    let token = tokio_util::sync::CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        signal().await;
        tracing::info!("signal received: {what} (send again to exit at once)");
        t.cancel();
        signal().await;
        std::process::exit(130);
    });
    token
}
