//! `[streams.NAME]` of `wasmfn.toml`.
//!
//! ```toml
//! [streams.user-changes]
//! function = "audit"             # a `stream` function
//! batch-size = 100
//! max-retries = 2
//! on-failure = "bisect"          # or "park"
//! ```

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;
use wasmfn_host_core::manifest::{
    named_entries, ManifestError, ManifestSection, ParseContext, Shape, TableSpec,
};
use wasmfn_host_core::parse_duration;

use super::{OnFailure, StreamConfig};

/// The streams of a manifest (the section's result).
#[derive(Debug, Clone, Default)]
pub struct StreamManifest {
    /// `[streams.NAME]`.
    pub streams: Vec<StreamConfig>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawStream {
    function: String,
    batch_size: Option<Spanned<i64>>,
    max_retries: Option<Spanned<i64>>,
    retry_backoff: Option<Spanned<String>>,
    on_failure: Option<Spanned<String>>,
}

/// The stream trigger's part of the manifest.
#[derive(Default)]
pub struct StreamSection;

impl ManifestSection for StreamSection {
    fn tables(&self) -> &'static [TableSpec] {
        &[TableSpec {
            name: "streams",
            shape: Shape::Named,
        }]
    }

    fn parse(&self, cx: &mut ParseContext<'_>) -> Result<(), ManifestError> {
        let raw: BTreeMap<String, RawStream> = cx.take_table("streams")?.unwrap_or_default();
        let raw = named_entries(cx, "streams", raw)?;
        let loc = cx.locator();
        let at = |span, key: &str, msg: String| loc.at(span, key, msg);
        let mut streams = Vec::new();
        for (name, r) in &raw {
            let mut c = StreamConfig::new(name, &r.function);
            let key = |k: &str| format!("streams.{name}.{k}");
            if let Some(n) = &r.batch_size {
                if !(1..=10_000).contains(n.get_ref()) {
                    return Err(at(
                        n.span(),
                        &key("batch-size"),
                        format!("{} is out of range 1..=10000", n.get_ref()),
                    ));
                }
                c.batch_size = *n.get_ref() as usize;
            }
            if let Some(n) = &r.max_retries {
                if !(0..=100).contains(n.get_ref()) {
                    return Err(at(
                        n.span(),
                        &key("max-retries"),
                        format!("{} is out of range 0..=100", n.get_ref()),
                    ));
                }
                c.max_retries = *n.get_ref() as u32;
            }
            if let Some(d) = &r.retry_backoff {
                c.retry_backoff = parse_duration(d.get_ref())
                    .map_err(|e| at(d.span(), &key("retry-backoff"), e))?;
            }
            if let Some(p) = &r.on_failure {
                c.on_failure = match p.get_ref().as_str() {
                    "bisect" => OnFailure::Bisect,
                    "park" => OnFailure::Park,
                    other => {
                        return Err(at(
                            p.span(),
                            &key("on-failure"),
                            format!("`{other}`: use \"bisect\" or \"park\""),
                        ))
                    }
                };
            }
            streams.push(c);
        }
        for s in &streams {
            cx.declare("stream", &s.name);
        }
        cx.insert(StreamManifest { streams });
        Ok(())
    }
}
