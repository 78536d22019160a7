//! Exporting spans to OpenTelemetry over OTLP/HTTP (cargo feature `otlp`).
//!
//! AllFrame's spans carry what a trace viewer needs: each request's span
//! (`request`: method, path, correlation id) and, inside it, each
//! command's (`command`: `command`, `aggregate`, `aggregate_id`,
//! `stream_id`, `version`, `position`, `outcome`, `correlation_id`), also
//! for commands a saga sends. [`Otlp`] turns them into OpenTelemetry spans
//! and sends them in batches to a collector, from a thread of its own.
//!
//! ```no_run
//! use tracing_subscriber::layer::SubscriberExt;
//! use tracing_subscriber::util::SubscriberInitExt;
//!
//! # fn main() -> Result<(), allframe::telemetry::OtlpError> {
//! // OTEL_EXPORTER_OTLP_ENDPOINT=http://collector:4318 and the other
//! // standard OTEL_EXPORTER_OTLP_* variables configure it.
//! let otlp = allframe::telemetry::Otlp::from_env("bank")?;
//! tracing_subscriber::registry()
//!     .with(tracing_subscriber::fmt::layer())
//!     .with(otlp.layer())
//!     .init();
//! // … serve; then send what is still buffered:
//! otlp.shutdown()?;
//! # Ok(())
//! # }
//! ```

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use tracing_opentelemetry::OpenTelemetryLayer;
use tracing_subscriber::registry::LookupSpan;

/// An exporter could not be built or could not send what it held.
#[derive(Debug, thiserror::Error)]
#[error("OpenTelemetry export: {0}")]
pub struct OtlpError(String);

/// An OTLP/HTTP span exporter: hand [`Otlp::layer`] to a `tracing`
/// subscriber, and call [`Otlp::shutdown`] before the process ends so the
/// last batch is sent.
#[derive(Debug, Clone)]
pub struct Otlp {
    provider: SdkTracerProvider,
}

impl Otlp {
    /// An exporter configured by the standard variables:
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` (a base URL, `/v1/traces` appended;
    /// `http://localhost:4318` when unset) or
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (used as it is),
    /// `OTEL_EXPORTER_OTLP_PROTOCOL` (`http/protobuf`, the default, or
    /// `http/json`), `OTEL_EXPORTER_OTLP_HEADERS` and
    /// `OTEL_EXPORTER_OTLP_TIMEOUT`. Spans name the service
    /// `service_name`.
    pub fn from_env(service_name: &str) -> Result<Self, OtlpError> {
        Self::build(service_name, None)
    }

    /// [`Otlp::from_env`] when a variable names a collector
    /// (`OTEL_EXPORTER_OTLP_ENDPOINT` or
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, not empty); `None` otherwise,
    /// for services that export only where one is configured.
    pub fn from_env_if_named(service_name: &str) -> Result<Option<Self>, OtlpError> {
        set(&[
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        ])
        .then(|| Self::from_env(service_name))
        .transpose()
    }

    /// An exporter sending to `endpoint`, the full URL of the collector's
    /// traces route (for example `http://collector:4318/v1/traces`); the
    /// other settings come from the variables [`Otlp::from_env`] reads.
    pub fn to(endpoint: &str, service_name: &str) -> Result<Self, OtlpError> {
        Self::build(service_name, Some(endpoint))
    }

    fn build(service_name: &str, endpoint: Option<&str>) -> Result<Self, OtlpError> {
        let mut exporter = opentelemetry_otlp::SpanExporter::builder().with_http();
        if let Some(endpoint) = endpoint {
            exporter = exporter.with_endpoint(endpoint);
        }
        // Protobuf unless a variable asks for JSON: with both encodings
        // built in, the exporter's own default would be JSON.
        if !set(&[
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ]) {
            exporter = exporter.with_protocol(opentelemetry_otlp::Protocol::HttpBinary);
        }
        let exporter = exporter
            .build()
            .map_err(|error| OtlpError(error.to_string()))?;
        let resource = Resource::builder()
            .with_service_name(service_name.to_owned())
            .build();
        let provider = SdkTracerProvider::builder()
            .with_resource(resource)
            .with_batch_exporter(exporter)
            .build();
        Ok(Self { provider })
    }

    /// The `tracing` layer that turns spans into OpenTelemetry spans for
    /// this exporter.
    pub fn layer<S>(&self) -> OpenTelemetryLayer<S, SdkTracer>
    where
        S: tracing::Subscriber + for<'span> LookupSpan<'span>,
    {
        tracing_opentelemetry::layer().with_tracer(self.provider.tracer("allframe"))
    }

    /// Sends every span still buffered and stops the exporter; spans ended
    /// afterwards are dropped. It blocks until the collector answered or
    /// timed out: from async code, call it in `spawn_blocking`.
    pub fn shutdown(&self) -> Result<(), OtlpError> {
        self.provider
            .shutdown()
            .map_err(|error| OtlpError(error.to_string()))
    }
}

/// Whether any of the environment variables `names` is set and not empty.
fn set(names: &[&str]) -> bool {
    names
        .iter()
        .any(|name| std::env::var_os(name).is_some_and(|value| !value.is_empty()))
}
