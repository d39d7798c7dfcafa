//! OpenTelemetry trace export over OTLP/HTTP (protobuf), off unless configured.
//!
//! On when `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or `OTEL_EXPORTER_OTLP_ENDPOINT` is set (the
//! standard variables; the latter gains `/v1/traces`), or the manifest says where:
//!
//! ```toml
//! [telemetry]
//! otlp-endpoint = "http://127.0.0.1:4318"   # the collector's OTLP/HTTP base address
//! service-name = "shop"                     # default: OTEL_SERVICE_NAME, else "wasmfn"
//! ```
//!
//! `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none` turn it off again. Spans are
//! batched and exported from the SDK's own thread (`OTEL_BSP_*` tune the batches), so an
//! invocation only records; the sampler is the SDK's default (parent-based, always on) unless
//! `OTEL_TRACES_SAMPLER` says otherwise.

use std::sync::OnceLock;
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_sdk::trace::SdkTracerProvider;
use serde::Deserialize;
use toml::Spanned;
use tracing_subscriber::filter::{filter_fn, Filtered};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer as _;
use wasmfn_host_core::manifest::{ManifestError, ManifestSection, ParseContext, Shape, TableSpec};

/// The `[telemetry]` table of a manifest.
#[derive(Debug, Clone, Default)]
pub struct TelemetryConfig {
    /// The OTLP/HTTP base address (`/v1/traces` is added).
    pub otlp_endpoint: Option<String>,
    /// The `service.name` resource attribute.
    pub service_name: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawTelemetry {
    otlp_endpoint: Option<Spanned<String>>,
    service_name: Option<String>,
}

/// The manifest section that owns `[telemetry]`.
pub struct TelemetrySection;

impl ManifestSection for TelemetrySection {
    fn tables(&self) -> &'static [TableSpec] {
        &[TableSpec {
            name: "telemetry",
            shape: Shape::Single,
        }]
    }

    fn parse(&self, cx: &mut ParseContext<'_>) -> Result<(), ManifestError> {
        let Some(raw) = cx.take_table::<RawTelemetry>("telemetry")? else {
            return Ok(());
        };
        if let Some(endpoint) = &raw.otlp_endpoint {
            let ok = endpoint
                .get_ref()
                .parse::<http::Uri>()
                .ok()
                .is_some_and(|u| {
                    matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some()
                });
            if !ok {
                return Err(cx.locator().at(
                    endpoint.span(),
                    "telemetry.otlp-endpoint",
                    format!(
                        "`{}` is not an http:// or https:// address (e.g. \"http://127.0.0.1:4318\", a collector's OTLP/HTTP port)",
                        endpoint.get_ref()
                    ),
                ));
            }
        }
        cx.insert(TelemetryConfig {
            otlp_endpoint: raw.otlp_endpoint.map(Spanned::into_inner),
            service_name: raw.service_name,
        });
        Ok(())
    }
}

/// Where traces go, resolved from the environment and the manifest.
#[derive(Debug, Clone)]
pub struct ExportSettings {
    /// The full traces URL, when the manifest gave it (else the exporter reads the
    /// environment itself).
    endpoint: Option<String>,
    service_name: String,
}

impl ExportSettings {
    /// Export settings if tracing is configured: by the standard environment variables, or
    /// by `manifest` (its `[telemetry]`); `None` means off.
    pub fn resolve(manifest: Option<&TelemetryConfig>) -> Option<Self> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        if env("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"))
            || env("OTEL_TRACES_EXPORTER").is_some_and(|v| v.eq_ignore_ascii_case("none"))
        {
            return None;
        }
        let from_env = env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_some()
            || env("OTEL_EXPORTER_OTLP_ENDPOINT").is_some();
        let from_manifest = manifest.and_then(|m| m.otlp_endpoint.clone());
        if !from_env && from_manifest.is_none() {
            return None;
        }
        let service_name = env("OTEL_SERVICE_NAME")
            .or_else(|| manifest.and_then(|m| m.service_name.clone()))
            .unwrap_or_else(|| "wasmfn".to_string());
        Some(Self {
            // The standard variables win over the manifest, as they do for every SDK.
            endpoint: (!from_env)
                .then(|| from_manifest.map(|e| format!("{}/v1/traces", e.trim_end_matches('/'))))
                .flatten(),
            service_name,
        })
    }
}

/// The installed exporter: flushes what is buffered when dropped (at exit).
pub struct TraceExport {
    provider: SdkTracerProvider,
}

impl TraceExport {
    /// Export every finished span now (a Lambda environment may be frozen after it answers).
    pub fn flush(&self) {
        if let Err(e) = self.provider.force_flush() {
            tracing::warn!("exporting traces failed: {e}");
        }
    }
}

impl Drop for TraceExport {
    fn drop(&mut self) {
        // Spans still in the batch are sent before the process ends.
        if let Err(e) = self.provider.shutdown_with_timeout(Duration::from_secs(5)) {
            eprintln!("warning: exporting the last traces failed: {e}");
        }
    }
}

/// The layer [`layer`] makes.
pub type OtlpLayer<S> = Filtered<
    tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::SdkTracer>,
    tracing_subscriber::filter::FilterFn<fn(&tracing::Metadata<'_>) -> bool>,
    S,
>;

/// [`layer`] when `settings` say to export; a layer that cannot be built is reported on
/// stderr and leaves tracing off (the host serves anyway).
pub fn optional_layer<S>(
    settings: Option<&ExportSettings>,
) -> (Option<OtlpLayer<S>>, Option<TraceExport>)
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    match settings.map(layer) {
        Some(Ok((layer, export))) => (Some(layer), Some(export)),
        Some(Err(e)) => {
            eprintln!("warning: traces are not exported: {e:#}");
            (None, None)
        }
        None => (None, None),
    }
}

/// A `tracing` layer that turns wasmfn's spans (target `wasmfn::trace`) into OpenTelemetry
/// spans exported over OTLP, and the guard that flushes them. Also turns span creation on
/// ([`wasmfn_host_core::trace::enable`]).
pub fn layer<S>(settings: &ExportSettings) -> anyhow::Result<(OtlpLayer<S>, TraceExport)>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    let mut exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_http_client(BlockingClient::default());
    if let Some(endpoint) = &settings.endpoint {
        exporter = exporter.with_endpoint(endpoint);
    }
    let exporter = exporter.build()?;
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(settings.service_name.clone())
        .build();
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build();
    let tracer = provider.tracer("wasmfn");
    wasmfn_host_core::trace::enable();
    let only_ours: fn(&tracing::Metadata<'_>) -> bool =
        |m| m.is_span() && m.target() == "wasmfn::trace";
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        // Thread ids, source locations and the (one) target on every span cost more than
        // they tell here.
        .with_threads(false)
        .with_location(false)
        .with_tracked_inactivity(false)
        .with_target(false)
        .with_filter(filter_fn(only_ours));
    Ok((layer, TraceExport { provider }))
}

/// Posts OTLP batches with reqwest's blocking client. The batch processor exports from its
/// own thread (outside any tokio runtime), where a blocking client is what fits; it is made
/// on that thread the first time, since reqwest's blocking client may not be created inside
/// an async context.
#[derive(Debug, Default)]
struct BlockingClient {
    client: OnceLock<reqwest::blocking::Client>,
    /// When the last failure was logged: a collector that is down is reported once a minute,
    /// not once a batch.
    last_warning: std::sync::Mutex<Option<std::time::Instant>>,
}

/// How often an unreachable or refusing collector is logged.
const WARN_EVERY: Duration = Duration::from_secs(60);

impl BlockingClient {
    fn post(
        &self,
        request: http::Request<bytes::Bytes>,
    ) -> Result<http::Response<bytes::Bytes>, opentelemetry_http::HttpError> {
        let client = match self.client.get() {
            Some(c) => c,
            None => {
                let built = reqwest::blocking::Client::builder()
                    .timeout(EXPORT_TIMEOUT)
                    .build()?;
                self.client.get_or_init(|| built)
            }
        };
        let (parts, body) = request.into_parts();
        let response = client
            .request(parts.method, parts.uri.to_string())
            .headers(parts.headers)
            .body(body)
            .send()?;
        let status = response.status();
        let body = response.bytes()?;
        Ok(http::Response::builder().status(status).body(body)?)
    }

    fn warn(&self, uri: &http::Uri, problem: &dyn std::fmt::Display) {
        let mut last = self.last_warning.lock().unwrap_or_else(|p| p.into_inner());
        if last.is_some_and(|t| t.elapsed() < WARN_EVERY) {
            return;
        }
        *last = Some(std::time::Instant::now());
        tracing::warn!(target: "wasmfn::telemetry",
            "exporting traces to {uri} failed, spans are being dropped: {problem} (check OTEL_EXPORTER_OTLP_ENDPOINT or [telemetry] otlp-endpoint; repeated at most once a minute)");
    }
}

/// How long one export may take (OTLP's default timeout).
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for BlockingClient {
    async fn send_bytes(
        &self,
        request: http::Request<bytes::Bytes>,
    ) -> Result<http::Response<bytes::Bytes>, opentelemetry_http::HttpError> {
        let uri = request.uri().clone();
        let result = self.post(request);
        match &result {
            Ok(r) if !r.status().is_success() => self.warn(&uri, &r.status()),
            Ok(_) => {}
            Err(e) => self.warn(&uri, e),
        }
        result
    }
}
