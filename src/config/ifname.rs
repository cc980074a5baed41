//! Interface names as the kernel accepts them; whether one exists is a run-time question
//! (see `crate::links`).

use std::fmt;

/// Longest interface name Linux accepts, in bytes (`IFNAMSIZ` minus the NUL).
const MAX_IFNAME_LEN: usize = 15;

/// A network interface name the Linux kernel would accept.
///
/// Mirrors the kernel's `dev_valid_name()`: 1–15 bytes, not "." or "..",
/// and no '/', ':' or whitespace. Whether the interface exists is a run-time
/// question and is not answered here.
///
/// Held inline (at most 15 bytes), so names are copied, compared and hashed without touching
/// the heap — a large config holds one per input and output.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct IfName {
    len: u8,
    bytes: [u8; MAX_IFNAME_LEN],
}

impl IfName {
    /// Checks `name` against the kernel's rules.
    ///
    /// # Errors
    /// A short reason, such as "it contains ':', which Linux does not allow
    /// in interface names", for the caller to put in a message.
    pub fn new(name: &str) -> Result<IfName, String> {
        if name.is_empty() {
            return Err("the name is empty".to_string());
        }
        if name.len() > MAX_IFNAME_LEN {
            return Err(format!(
                "it is {} bytes long and Linux allows at most {MAX_IFNAME_LEN}",
                name.len()
            ));
        }
        if name == "." || name == ".." {
            return Err(format!("{name:?} is reserved"));
        }
        if let Some(c) = name.chars().find(|&c| forbidden_in_ifname(c)) {
            return Err(format!(
                "it contains {c:?}, which Linux does not allow in interface names"
            ));
        }
        let mut bytes = [0; MAX_IFNAME_LEN];
        bytes[..name.len()].copy_from_slice(name.as_bytes());
        Ok(IfName {
            len: name.len() as u8,
            bytes,
        })
    }

    #[must_use]
    pub fn as_str(&self) -> &str {
        // Built from a `&str` in `new`, and never changed since.
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or_default()
    }
}

/// Ordered as the names' text, as when they were `String`s (listings are sorted by name).
impl Ord for IfName {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl PartialOrd for IfName {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Debug for IfName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("IfName").field(&self.as_str()).finish()
    }
}

/// The kernel rejects '/', ':' and whatever its `isspace()` accepts; its
/// Latin-1 table counts byte 0xA0 as a space, so a character whose UTF-8
/// encoding contains that byte is rejected too. NUL is rejected because it
/// would silently cut the name short when handed to the kernel.
fn forbidden_in_ifname(c: char) -> bool {
    let mut utf8 = [0u8; 4];
    matches!(
        c,
        '/' | ':' | '\0' | ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r'
    ) || c.encode_utf8(&mut utf8).bytes().any(|b| b == 0xA0)
}

impl fmt::Display for IfName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl AsRef<str> for IfName {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ifname(s: &str) -> IfName {
        IfName::new(s).expect("valid interface name")
    }

    #[test]
    fn interface_names_follow_the_kernel_rules() {
        for ok in ["eth0", "a", "123456789012345", "vlan.100", "br-lan_0", "é"] {
            assert_eq!(ifname(ok).as_str(), ok);
        }
        for bad in [
            "",
            "1234567890123456",
            ".",
            "..",
            "a/b",
            "eth0:1",
            "a b",
            "a\tb",
            "a\x0bb",
            "a\0b",
            "a\u{a0}b", // UTF-8 C2 A0: the kernel's isspace() rejects 0xA0
        ] {
            assert!(IfName::new(bad).is_err(), "{bad:?} should be rejected");
        }
        // 15 bytes, but fewer characters: the limit is in bytes.
        assert!(IfName::new("ééééééé").is_ok());
        assert!(IfName::new("éééééééé").is_err());
        let name = ifname("eth1");
        assert_eq!(name.to_string(), "eth1");
        assert_eq!(AsRef::<str>::as_ref(&name), "eth1");
    }

    #[test]
    fn names_order_hash_and_print_as_their_text() {
        let mut names: Vec<IfName> = ["eth2", "eth10", "a", "ab", "veth-x.100", "123456789012345"]
            .into_iter()
            .map(ifname)
            .collect();
        names.sort();
        let text: Vec<&str> = names.iter().map(IfName::as_str).collect();
        assert_eq!(
            text,
            ["123456789012345", "a", "ab", "eth10", "eth2", "veth-x.100"]
        );
        assert_eq!(format!("{:?}", ifname("eth0")), "IfName(\"eth0\")");
        assert_eq!(ifname("eth0").to_string(), "eth0");
        let set: std::collections::HashSet<IfName> = [ifname("eth0"), ifname("eth0")].into();
        assert_eq!(set.len(), 1);
    }
}
