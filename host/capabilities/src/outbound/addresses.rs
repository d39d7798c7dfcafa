//! Which addresses a function may connect to: every public unicast address, and of the rest
//! (loopback, private, link-local with the cloud metadata service, carrier-grade NAT,
//! multicast, reserved...) only what the manifest allows by range.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

/// Why an address is not public, or `None` when it is.
pub fn internal_kind(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_kind(v4),
        IpAddr::V6(v6) => {
            // An IPv4 address in IPv6 clothing is judged as the IPv4 address it carries.
            if let Some(v4) = v6.to_ipv4_mapped() {
                return v4_kind(v4);
            }
            let s = v6.segments();
            if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
                // NAT64 (64:ff9b::/96) reaches the IPv4 address in its low 32 bits.
                let [a, b] = s[6].to_be_bytes();
                let [c, d] = s[7].to_be_bytes();
                return v4_kind(Ipv4Addr::new(a, b, c, d));
            }
            v6_kind(v6)
        }
    }
}

fn v4_kind(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match () {
        () if ip.is_loopback() => "a loopback address",
        () if ip.is_unspecified() || a == 0 => "a 'this network' address",
        () if a == 169 && b == 254 => {
            "a link-local address (the cloud metadata service lives here)"
        }
        () if ip.is_private() => "a private address",
        () if a == 100 && (64..128).contains(&b) => "a carrier-grade NAT address",
        () if a == 192 && b == 0 && c == 0 => "an IETF protocol address",
        () if a == 198 && (18..20).contains(&b) => "a benchmarking address",
        () if ip.is_documentation() => "a documentation address",
        () if ip.is_multicast() => "a multicast address",
        () if a >= 240 => "a reserved address",
        () => return None,
    })
}

fn v6_kind(ip: Ipv6Addr) -> Option<&'static str> {
    let first = ip.segments()[0];
    Some(match () {
        () if ip.is_loopback() => "a loopback address",
        () if ip.is_unspecified() => "the unspecified address",
        () if first & 0xfe00 == 0xfc00 => "a unique local (private) address",
        () if first & 0xffc0 == 0xfe80 => "a link-local address",
        () if first & 0xff00 == 0xff00 => "a multicast address",
        () if first == 0x2001 && ip.segments()[1] == 0x0db8 => "a documentation address",
        () if ip.segments()[..6] == [0, 0, 0, 0, 0, 0] => "an IPv4-compatible address",
        () => return None,
    })
}

/// The ranges of internal addresses a function may reach (`allowed-outbound-addresses`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AddressRanges(pub Vec<IpNet>);

impl AddressRanges {
    /// Whether `ip` falls in one of the ranges.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        self.0.iter().any(|net| net.contains(&ip))
    }
}

/// Parse one `allowed-outbound-addresses` entry: `10.0.0.0/8`, `fd00::/8` or one address.
pub fn parse_range(s: &str) -> Result<IpNet, String> {
    if let Ok(net) = s.parse::<IpNet>() {
        if net.trunc() != net {
            return Err(format!(
                "`{s}` has host bits set; the range is written `{}`",
                net.trunc()
            ));
        }
        return Ok(net);
    }
    s.parse::<IpAddr>().map(IpNet::from).map_err(|_| {
        format!(
            "`{s}` is not an address range: write it as `10.0.0.0/8`, `fd00::/8` or one address"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(s: &str) -> Option<&'static str> {
        internal_kind(s.parse().unwrap())
    }

    #[test]
    fn internal_addresses_are_recognised() {
        for internal in [
            "127.0.0.1",
            "127.255.0.9",
            "0.0.0.0",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fd00:ec2::254",
            "fc00::1",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "::127.0.0.1",
        ] {
            assert!(kind(internal).is_some(), "{internal} is internal");
        }
        for public in [
            "93.184.216.34",
            "8.8.8.8",
            "172.32.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert_eq!(kind(public), None, "{public} is public");
        }
        assert!(kind("169.254.169.254").unwrap().contains("metadata"));
    }

    #[test]
    fn ranges() {
        let r = AddressRanges(vec![
            parse_range("10.0.0.0/8").unwrap(),
            parse_range("::1").unwrap(),
        ]);
        assert!(r.contains("10.9.9.9".parse().unwrap()));
        assert!(r.contains("::ffff:10.0.0.1".parse().unwrap()));
        assert!(r.contains("::1".parse().unwrap()));
        assert!(!r.contains("127.0.0.1".parse().unwrap()));
        assert!(parse_range("10.0.0.1/8")
            .unwrap_err()
            .contains("10.0.0.0/8"));
        assert!(parse_range("localhost").is_err());
    }
}
