//! Lambda's trace header: `_X_AMZN_TRACE_ID` (also the Runtime API's `Lambda-Runtime-Trace-Id`)
//! in X-Ray's form, `Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1`,
//! read as a W3C `traceparent` so that the invocation's spans join the caller's trace.

/// The W3C `traceparent` for an X-Ray trace header, if it has a root and a parent.
///
/// X-Ray's trace id is a version (`1`), 8 hex digits of epoch seconds and 24 random ones; the
/// W3C id is those 32 digits together. `Sampled=0` clears the sampled flag; a header without
/// `Sampled` (a lazy decision) is taken as sampled.
pub fn traceparent(header: &str) -> Option<String> {
    let (mut root, mut parent, mut sampled) = (None, None, true);
    for part in header.split(';') {
        let Some((key, value)) = part.trim().split_once('=') else {
            continue;
        };
        match key {
            "Root" => root = Some(value),
            "Parent" => parent = Some(value),
            "Sampled" => sampled = value != "0",
            _ => {}
        }
    }
    let mut fields = root?.split('-');
    let (Some("1"), Some(time), Some(random), None) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return None;
    };
    let parent = parent?;
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    if !hex(time, 8) || !hex(random, 24) || !hex(parent, 16) {
        return None;
    }
    let trace_id = format!("{time}{random}").to_ascii_lowercase();
    let parent = parent.to_ascii_lowercase();
    if trace_id.bytes().all(|b| b == b'0') || parent.bytes().all(|b| b == b'0') {
        return None;
    }
    Some(format!(
        "00-{trace_id}-{parent}-{}",
        if sampled { "01" } else { "00" }
    ))
}

#[cfg(test)]
mod tests {
    use super::traceparent;

    #[test]
    fn x_ray_headers_become_traceparents() {
        assert_eq!(
            traceparent(
                "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
            )
            .as_deref(),
            Some("00-5759e988bd862e3fe1be46a994272793-53995c3f42cd8ad8-01")
        );
        assert_eq!(
            traceparent("Root=1-5759E988-BD862E3FE1BE46A994272793;Parent=53995C3F42CD8AD8;Sampled=0;Lineage=a:1")
                .as_deref(),
            Some("00-5759e988bd862e3fe1be46a994272793-53995c3f42cd8ad8-00")
        );
        // No parent (the first segment of a trace), another version, bad digits: nothing.
        for bad in [
            "Root=1-5759e988-bd862e3fe1be46a994272793",
            "Root=2-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8",
            "Root=1-5759e98-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8",
            "Root=1-5759e988-bd862e3fe1be46a99427279z;Parent=53995c3f42cd8ad8",
            "garbage",
            "",
        ] {
            assert_eq!(traceparent(bad), None, "{bad}");
        }
    }
}
