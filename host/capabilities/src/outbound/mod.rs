//! Outbound HTTP (`wasi:http/outgoing-handler`): denied unless the manifest allows the host.
//!
//! `allowed-outbound-hosts` takes patterns `[scheme://]host[:port]`:
//! - `api.example.com` matches that host over https on 443 and http on 80;
//! - `*.example.com` matches any subdomain (not `example.com` itself);
//! - `https://api.example.com:8443` pins scheme and port; `:*` allows any port;
//! - `*` alone allows everything (for development).
//!
//! A denied request fails in the guest with `HTTP-request-denied`, and the host logs which
//! function asked for which URL and the line to add to the manifest.
//!
//! An allowed name is then resolved, and addresses that are not public (loopback, private,
//! link-local with the metadata service at 169.254.169.254, unique-local `fc00::/7`...) are
//! refused with `destination-IP-prohibited` unless `allowed-outbound-addresses` lists their
//! range (`["10.0.0.0/8"]`) or the host pattern names that address literally
//! (`http://127.0.0.1:8080`). The connection goes to the address that was checked
//! (`send.rs`), with connect, first-byte and between-bytes timeouts.

mod addresses;
mod send;

use std::sync::Arc;

use toml::Spanned;
use wasmfn_host_core::manifest::{KeySpec, ManifestError, ManifestSection, Merge, ParseContext};
use wasmfn_host_core::outbound::{OutboundGate, SendResult};
use wasmfn_host_core::{
    AppCapability, AppContext, Capability, Context, FunctionInfo, InstanceState,
};
use wasmtime::component::Linker;

/// One allowed pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPattern {
    scheme: Option<String>,
    host: String,
    port: PortRule,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum PortRule {
    Default,
    Any,
    Exact(u16),
}

impl std::str::FromStr for HostPattern {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = |why: &str| Err(format!("`{s}` is not a host pattern: {why}"));
        let (scheme, rest) = match s.split_once("://") {
            Some((sc @ ("http" | "https"), rest)) => (Some(sc.to_string()), rest),
            Some(_) => return bad("the scheme must be http or https"),
            None => (None, s),
        };
        if rest.contains('/') {
            return bad("give a host, not a URL path");
        }
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, "*")) => (h, PortRule::Any),
            Some((h, p)) => match p.parse() {
                Ok(p) => (h, PortRule::Exact(p)),
                Err(_) => return bad("the port must be a number or `*`"),
            },
            None => (rest, PortRule::Default),
        };
        let name = host.strip_prefix("*.").unwrap_or(host);
        let valid = host == "*"
            || (!name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.'));
        if !valid {
            return bad("hosts are names or addresses, optionally starting with `*.`");
        }
        Ok(HostPattern {
            scheme,
            host: host.to_ascii_lowercase(),
            port,
        })
    }
}

impl HostPattern {
    /// The pattern as data, for hosts that check it elsewhere (the Workers adapter):
    /// `{"scheme": "https" | null, "host": "*.example.com", "port": "default" | "any" | 8443}`.
    pub fn to_json(&self) -> serde_json::Value {
        let port = match self.port {
            PortRule::Default => serde_json::json!("default"),
            PortRule::Any => serde_json::json!("any"),
            PortRule::Exact(p) => serde_json::json!(p),
        };
        serde_json::json!({"scheme": self.scheme, "host": self.host, "port": port})
    }

    /// Whether a request to `scheme://host:port` matches.
    pub fn allows(&self, scheme: &str, host: &str, port: u16) -> bool {
        if self.host == "*" && self.scheme.is_none() && self.port == PortRule::Default {
            return true;
        }
        if self.scheme.as_deref().is_some_and(|s| s != scheme) {
            return false;
        }
        let host = host.to_ascii_lowercase();
        let host_ok = match self.host.strip_prefix("*.") {
            _ if self.host == "*" => true,
            Some(suffix) => host.len() > suffix.len() + 1 && host.ends_with(&format!(".{suffix}")),
            None => host == self.host,
        };
        let port_ok = match self.port {
            PortRule::Any => true,
            PortRule::Exact(p) => p == port,
            PortRule::Default => port == if scheme == "https" { 443 } else { 80 },
        };
        host_ok && port_ok
    }
}

/// A function's outbound allow-list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OutboundPolicy {
    /// Allowed patterns; empty denies everything.
    pub allowed: Vec<HostPattern>,
    /// Internal address ranges it may reach besides public addresses.
    pub addresses: AddressRanges,
}

impl OutboundPolicy {
    /// Whether `uri` may be requested.
    pub fn allows(&self, uri: &http::Uri) -> bool {
        let scheme = uri.scheme_str().unwrap_or("https");
        let Some(host) = uri.host() else { return false };
        let port = uri
            .port_u16()
            .unwrap_or(if scheme == "https" { 443 } else { 80 });
        self.allowed.iter().any(|p| p.allows(scheme, host, port))
    }
}

impl OutboundPolicy {
    /// Whether a request whose host is `target` may connect to `ip`: any public address; an
    /// internal one when its range is allowed or when a pattern names that very address.
    fn may_connect(&self, target: &send::Target, ip: std::net::IpAddr) -> bool {
        addresses::internal_kind(ip).is_none()
            || self.addresses.contains(ip)
            || (target.literal() == Some(ip)
                && self.allowed.iter().any(|p| p.host.parse() == Ok(ip)))
    }
}

pub use addresses::AddressRanges;

/// The gate of one function: its policy, and the manifest line to add when it refuses.
struct PolicyGate(Arc<OutboundPolicy>);

impl OutboundGate for PolicyGate {
    fn send(
        &self,
        function: &str,
        request: http::Request<wasmtime_wasi_http::WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
    ) -> Box<dyn std::future::Future<Output = SendResult> + Send> {
        use wasmtime_wasi_http::Error;
        if !self.allows_name(function, request.uri()) {
            return Box::new(async { Err(Error::HttpRequestDenied) });
        }
        let policy = self.0.clone();
        let function = function.to_string();
        Box::new(async move {
            let target = send::Target::of(request.uri())?;
            let timeout = options
                .and_then(|o| o.connect_timeout)
                .unwrap_or(send::CONNECT_TIMEOUT);
            let resolved = send::resolve(&target, timeout).await?;
            let (allowed, refused): (Vec<_>, Vec<_>) = resolved
                .into_iter()
                .partition(|a| policy.may_connect(&target, a.ip()));
            if allowed.is_empty() {
                if let Some(addr) = refused.first() {
                    let kind = addresses::internal_kind(addr.ip()).unwrap_or("an internal address");
                    tracing::warn!(
                        target: "guest",
                        function,
                        "outbound request to {} denied: `{}` is {}, {kind}; allow it with allowed-outbound-addresses = [\"{}\"] in [functions.{function}]",
                        request.uri(),
                        target.host,
                        addr.ip(),
                        ipnet::IpNet::from(addr.ip()),
                    );
                }
                return Err(Error::DestinationIpProhibited);
            }
            send::send_to(request, &target, &allowed, options).await
        })
    }
}

impl PolicyGate {
    /// Whether the allow-list names the request's host; logs the line to add when it does not.
    fn allows_name(&self, function: &str, uri: &http::Uri) -> bool {
        if self.0.allows(uri) {
            return true;
        }
        let scheme = uri.scheme_str().unwrap_or("https");
        let host = uri.host().unwrap_or("");
        let pattern = match uri.port_u16() {
            Some(port) => format!("{scheme}://{host}:{port}"),
            None => host.to_string(),
        };
        tracing::warn!(
            target: "guest",
            function,
            "outbound request to {scheme}://{} denied; allow it with allowed-outbound-hosts = [\"{pattern}\"] in [functions.{function}]",
            uri.authority().map(|a| a.as_str()).unwrap_or(""),
        );
        false
    }
}

/// The outbound HTTP capability: `wasi:http/outgoing-handler` itself is linked by core (with
/// the rest of `wasi:http`); this capability gives each function its allow-list.
#[derive(Default)]
pub struct OutboundCapability;

impl ManifestSection for OutboundCapability {
    fn function_keys(&self) -> &'static [KeySpec] {
        &[
            KeySpec {
                name: "allowed-outbound-hosts",
                merge: Merge::Replace,
            },
            KeySpec {
                name: "allowed-outbound-addresses",
                merge: Merge::Replace,
            },
        ]
    }

    fn parse_function_keys(&self, cx: &mut ParseContext<'_>) -> Result<(), ManifestError> {
        for (function, list) in
            cx.take_function_values::<Vec<Spanned<String>>>("allowed-outbound-hosts")?
        {
            let mut allowed = Vec::new();
            for h in list {
                allowed.push(h.get_ref().parse().map_err(|m: String| {
                    cx.at(
                        h.span(),
                        &format!("functions.{function}.allowed-outbound-hosts"),
                        m,
                    )
                })?);
            }
            cx.function_settings(&function)
                .get_or_default::<OutboundPolicy>()
                .allowed = allowed;
        }
        for (function, list) in
            cx.take_function_values::<Vec<Spanned<String>>>("allowed-outbound-addresses")?
        {
            let mut ranges = Vec::new();
            for r in list {
                ranges.push(addresses::parse_range(r.get_ref()).map_err(|m| {
                    cx.at(
                        r.span(),
                        &format!("functions.{function}.allowed-outbound-addresses"),
                        m,
                    )
                })?);
            }
            cx.function_settings(&function)
                .get_or_default::<OutboundPolicy>()
                .addresses = AddressRanges(ranges);
        }
        Ok(())
    }
}

impl Capability for OutboundCapability {
    fn name(&self) -> &'static str {
        "outbound-http"
    }

    fn add_to_linker(&self, _linker: &mut Linker<InstanceState>) -> anyhow::Result<()> {
        Ok(())
    }

    fn configure_app(
        &self,
        _app: &AppContext<'_>,
    ) -> anyhow::Result<Option<Box<dyn AppCapability>>> {
        Ok(Some(Box::new(OutboundApp)))
    }
}

struct OutboundApp;

impl AppCapability for OutboundApp {
    fn prepare(&self, function: &FunctionInfo<'_>) -> Result<Option<Context>, String> {
        if !function.imports_any(|i| i == "wasi:http/outgoing-handler") {
            return Ok(None);
        }
        let policy = function
            .settings
            .get::<OutboundPolicy>()
            .cloned()
            .unwrap_or_default();
        let gate: Arc<dyn OutboundGate> = Arc::new(PolicyGate(Arc::new(policy)));
        Ok(Some(Arc::new(gate)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(patterns: &[&str]) -> OutboundPolicy {
        OutboundPolicy {
            allowed: patterns.iter().map(|p| p.parse().unwrap()).collect(),
            ..OutboundPolicy::default()
        }
    }

    #[test]
    fn matching() {
        let uri = |s: &str| s.parse::<http::Uri>().unwrap();
        let p = policy(&["api.example.com", "*.cdn.net", "http://127.0.0.1:*"]);
        assert!(p.allows(&uri("https://api.example.com/x")));
        assert!(p.allows(&uri("http://api.example.com/x")));
        assert!(!p.allows(&uri("https://api.example.com:8443/x")));
        assert!(p.allows(&uri("https://a.b.cdn.net/")));
        assert!(!p.allows(&uri("https://cdn.net/")));
        assert!(p.allows(&uri("http://127.0.0.1:9999/")));
        assert!(!p.allows(&uri("https://127.0.0.1:9999/")));
        assert!(!p.allows(&uri("https://evil.com/")));
        assert!(!OutboundPolicy::default().allows(&uri("https://api.example.com/")));
        assert!(policy(&["*"]).allows(&uri("http://anything:1234/")));
        for bad in ["ftp://x", "x/y", "x:abc", "a b"] {
            assert!(bad.parse::<HostPattern>().is_err(), "{bad}");
        }
    }
}
