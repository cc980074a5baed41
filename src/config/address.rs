//! What an address in the file may be, for both families: the rules `validate` applies to
//! groups, sources and unicast destinations, as pure functions of the address.
//!
//! Each rule returns `None` when the address is acceptable, else the end of a sentence
//! ("is …; do …") that the validator prefixes with the key and the address.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// IPv6 multicast scope (RFC 4291 §2.7): the low nibble of the second byte.
pub fn ipv6_scope(group: Ipv6Addr) -> u8 {
    group.octets()[1] & 0x0f
}

/// Whether `group` is in a source-specific multicast range (RFC 4607): 232.0.0.0/8, or
/// ff3x::/32 (flags P and T set, prefix length and prefix zero).
pub fn is_ssm(group: IpAddr) -> bool {
    match group {
        IpAddr::V4(g) => g.octets()[0] == 232,
        IpAddr::V6(g) => {
            let o = g.octets();
            o[0] == 0xff && o[1] & 0xf0 == 0x30 && o[2] == 0 && o[3] == 0
        }
    }
}

/// The SSM range of `group`'s family, for messages.
pub fn ssm_range(group: IpAddr) -> &'static str {
    match group {
        IpAddr::V4(_) => "232.0.0.0/8",
        IpAddr::V6(_) => "ff3x::/32",
    }
}

/// Why `group` cannot be relayed (`side` is "input" or "output"), if it cannot; `example`
/// is a valid group of the same family for the hint.
pub fn group_problem(group: IpAddr, example: &str) -> Option<String> {
    match group {
        IpAddr::V4(g) if !g.is_multicast() => Some(format!(
            "is not a multicast address; use an address in 224.0.0.0/4, such as {example} (239.0.0.0/8 is for use within an organisation)"
        )),
        IpAddr::V6(g) if !g.is_multicast() => Some(
            "is not a multicast address; use an IPv6 group in ff00::/8, such as ff3e::1:1 (source-specific) or ff05::1:1 (site-local)".to_string(),
        ),
        IpAddr::V6(g) => match ipv6_scope(g) {
            0 | 0xf => Some("has a reserved scope (0 or f); use a group of link (ff02::), site (ff05::), organisation (ff08::) or global (ff0e::) scope".to_string()),
            1 => Some("is interface-local (ff01::/16, scope 1), which never leaves the host; use a group of link (ff02::) or wider scope".to_string()),
            _ => None,
        },
        IpAddr::V4(_) => None,
    }
}

/// Why `addr` cannot be a unicast source or destination (multicast, unspecified or
/// broadcast), if it cannot.
pub fn not_unicast(addr: IpAddr) -> Option<&'static str> {
    match addr {
        IpAddr::V4(a) if a.is_multicast() => Some("a multicast address"),
        IpAddr::V4(a) if a.is_unspecified() => Some("the unspecified address"),
        IpAddr::V4(a) if a.is_broadcast() => Some("the broadcast address"),
        IpAddr::V6(a) if a.is_multicast() => Some("a multicast address"),
        IpAddr::V6(a) if a.is_unspecified() => Some("the unspecified address"),
        IpAddr::V6(a) if a.to_ipv4_mapped().is_some() => {
            Some("an IPv4-mapped address (write the IPv4 address itself)")
        }
        _ => None,
    }
}

/// The family's name, for messages.
pub fn family(addr: IpAddr) -> &'static str {
    match addr {
        IpAddr::V4(_) => "IPv4",
        IpAddr::V6(_) => "IPv6",
    }
}

/// An example address of `group`'s family for hints.
pub fn example_source(group: IpAddr) -> IpAddr {
    match group {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::new(10, 0, 0, 5)),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 5)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ssm_ranges_of_both_families() {
        for g in [
            "232.0.0.1",
            "232.255.1.1",
            "ff3e::1234",
            "ff35::1",
            "ff32::8000:1",
        ] {
            assert!(is_ssm(ip(g)), "{g}");
        }
        for g in [
            "239.1.1.1",
            "233.1.1.1",
            "ff0e::1",
            "ff3e:30:2001:db8::1",
            "ff1e::1",
        ] {
            assert!(!is_ssm(ip(g)), "{g}");
        }
    }

    #[test]
    fn groups_need_multicast_and_a_scope_that_leaves_the_host() {
        assert!(group_problem(ip("239.1.1.1"), "239.1.1.1").is_none());
        assert!(group_problem(ip("10.1.1.1"), "239.1.1.1").is_some());
        assert!(group_problem(ip("ff02::fb"), "").is_none());
        assert!(group_problem(ip("ff3e::1"), "").is_none());
        assert!(group_problem(ip("2001:db8::1"), "")
            .unwrap()
            .contains("ff00::/8"));
        assert!(group_problem(ip("ff01::1"), "")
            .unwrap()
            .contains("interface-local"));
        assert!(group_problem(ip("ff00::1"), "")
            .unwrap()
            .contains("reserved"));
        assert!(group_problem(ip("ff1f::1"), "")
            .unwrap()
            .contains("reserved"));
    }

    #[test]
    fn unicast_rules_for_both_families() {
        assert_eq!(not_unicast(ip("10.0.0.1")), None);
        assert_eq!(not_unicast(ip("2001:db8::1")), None);
        assert_eq!(not_unicast(ip("fe80::1")), None);
        assert_eq!(not_unicast(ip("ff02::1")), Some("a multicast address"));
        assert_eq!(not_unicast(ip("::")), Some("the unspecified address"));
        assert!(not_unicast(ip("::ffff:10.0.0.1")).is_some());
        assert_eq!(
            not_unicast(ip("255.255.255.255")),
            Some("the broadcast address")
        );
    }
}
