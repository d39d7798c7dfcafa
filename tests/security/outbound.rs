//! Outbound HTTP checks addresses, not only names: a name (or a wildcard) that leads to
//! loopback, private, link-local or metadata addresses is refused unless the manifest allows
//! that range; a pattern naming an address literally allows that address.

use std::io::{Read as _, Write as _};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::common::{Fixture, Server};

/// A loopback HTTP server answering 204 to everything, counting connections.
fn target() -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            counter.fetch_add(1, Ordering::SeqCst);
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = s.write_all(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n");
        }
    });
    (port, hits)
}

/// Probes `named` (allows `localhost:*`), `wild` (allows `*`), `ranged` (`localhost:*` plus
/// the loopback range) and `literal` (`http://127.0.0.1:PORT`).
fn probes(port: u16) -> (Fixture, Server) {
    let f = Fixture::with_guests(&[]);
    for name in ["named", "wild", "ranged", "literal"] {
        f.copy_guest("capabilities", name);
    }
    // The probe imports every store kind; each function gets the default stores.
    let stores = "kv = [\"default\"]\nsql = [\"default\"]\nblob = [\"default\"]\n";
    f.write(
        "wasmfn.toml",
        format!(
            "[functions.named]\n{stores}allowed-outbound-hosts = [\"localhost:*\"]\n\n\
             [functions.wild]\n{stores}allowed-outbound-hosts = [\"*\"]\n\n\
             [functions.ranged]\n{stores}allowed-outbound-hosts = [\"localhost:*\"]\n\
             allowed-outbound-addresses = [\"127.0.0.0/8\", \"::1\"]\n\n\
             [functions.literal]\n{stores}allowed-outbound-hosts = [\"http://127.0.0.1:{port}\"]\n"
        ),
    );
    let server = f.serve();
    (f, server)
}

#[test]
fn names_and_wildcards_do_not_reach_internal_addresses() {
    let (port, hits) = target();
    let (_f, server) = probes(port);
    for (function, url) in [
        ("named", format!("http://localhost:{port}/")),
        ("wild", format!("http://127.0.0.1:{port}/")),
        ("wild", format!("http://[::ffff:127.0.0.1]:{port}/")),
        (
            "wild",
            "http://169.254.169.254/latest/meta-data/".to_string(),
        ),
        (
            "wild",
            "http://[fd00:ec2::254]/latest/meta-data/".to_string(),
        ),
        ("wild", "http://10.0.0.1/".to_string()),
    ] {
        let (status, body) = server.get(&format!("/{function}/fetch?url={url}"));
        assert_eq!(status, 403, "{function} {url}: {body}");
        assert!(
            body.contains("DestinationIpProhibited"),
            "{function} {url}: {body}"
        );
    }
    assert_eq!(hits.load(Ordering::SeqCst), 0, "no connection was made");
    let log = server.wait_for_log("169.254.169.254");
    assert!(
        log.contains("metadata")
            && log.contains(
                "allowed-outbound-addresses = [\"169.254.169.254/32\"] in [functions.wild]"
            ),
        "{log}"
    );
}

#[test]
fn allowed_ranges_and_literal_addresses_connect() {
    let (port, hits) = target();
    let (_f, server) = probes(port);
    let (status, body) = server.get(&format!("/ranged/fetch?url=http://localhost:{port}/"));
    assert_eq!((status, body.as_str()), (200, "status 204"));
    let (status, body) = server.get(&format!("/literal/fetch?url=http://127.0.0.1:{port}/"));
    assert_eq!((status, body.as_str()), (200, "status 204"));
    assert_eq!(hits.load(Ordering::SeqCst), 2);
}
