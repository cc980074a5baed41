//! What a reload changes: the pure difference between two tables' needs.
//!
//! Ordering rules the relay applies around this diff (see `Relay::reload`): rings for new
//! interfaces are opened and groups new to an interface are joined *before* the new table is
//! published; groups no longer used are left, and rings no longer used are released, *after*
//! it. A membership present in both is in neither list, so it is never left and re-joined.

use std::collections::BTreeSet;

use crate::membership::Membership;

/// One membership or interface change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Change {
    AddInterface(u32),
    Join(Membership),
    Leave(Membership),
    RemoveInterface(u32),
}

/// What a table needs from the host: input interfaces and memberships.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Needs {
    pub interfaces: BTreeSet<u32>,
    pub memberships: BTreeSet<Membership>,
}

/// The changes that turn `old` into `new`, in the order they must be applied: interfaces
/// added, groups joined, (publish), groups left, interfaces removed.
pub fn diff(old: &Needs, new: &Needs) -> Vec<Change> {
    let mut changes = Vec::new();
    changes.extend(
        new.interfaces
            .difference(&old.interfaces)
            .map(|&i| Change::AddInterface(i)),
    );
    changes.extend(
        new.memberships
            .difference(&old.memberships)
            .map(|&m| Change::Join(m)),
    );
    changes.extend(
        old.memberships
            .difference(&new.memberships)
            .map(|&m| Change::Leave(m)),
    );
    changes.extend(
        old.interfaces
            .difference(&new.interfaces)
            .map(|&i| Change::RemoveInterface(i)),
    );
    changes
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn m(ifindex: u32, g: u8, source: Option<u8>) -> Membership {
        Membership {
            ifindex,
            group: Ipv4Addr::new(239, 1, 1, g).into(),
            source: source.map(|s| Ipv4Addr::new(10, 0, 0, s).into()),
        }
    }

    fn needs(ms: &[Membership]) -> Needs {
        Needs {
            interfaces: ms.iter().map(|m| m.ifindex).collect(),
            memberships: ms.iter().copied().collect(),
        }
    }

    /// (name, old memberships, new memberships, expected changes)
    type Case = (&'static str, Vec<Membership>, Vec<Membership>, Vec<Change>);

    #[test]
    fn diff_table() {
        use Change::*;
        let cases: Vec<Case> = vec![
            (
                "no change",
                vec![m(1, 1, None)],
                vec![m(1, 1, None)],
                vec![],
            ),
            (
                "empty to one",
                vec![],
                vec![m(1, 1, None)],
                vec![AddInterface(1), Join(m(1, 1, None))],
            ),
            (
                "one to empty",
                vec![m(1, 1, None)],
                vec![],
                vec![Leave(m(1, 1, None)), RemoveInterface(1)],
            ),
            (
                "swap a group, keep the other",
                vec![m(1, 1, None), m(1, 2, None)],
                vec![m(1, 1, None), m(1, 3, None)],
                vec![Join(m(1, 3, None)), Leave(m(1, 2, None))],
            ),
            (
                "any-source to source-specific is a join and a leave",
                vec![m(1, 1, None)],
                vec![m(1, 1, Some(5))],
                vec![Join(m(1, 1, Some(5))), Leave(m(1, 1, None))],
            ),
            (
                "move a group to another interface",
                vec![m(1, 1, None)],
                vec![m(2, 1, None)],
                vec![
                    AddInterface(2),
                    Join(m(2, 1, None)),
                    Leave(m(1, 1, None)),
                    RemoveInterface(1),
                ],
            ),
        ];
        for (name, old, new, want) in cases {
            assert_eq!(diff(&needs(&old), &needs(&new)), want, "{name}");
        }
    }

    #[test]
    fn three_hundred_groups_added_then_removed() {
        let base = vec![m(1, 1, None)];
        let mut big = base.clone();
        for i in 0..300u32 {
            big.push(Membership {
                ifindex: 1,
                group: Ipv4Addr::from(0xef02_0000 + i).into(),
                source: None,
            });
        }
        let up = diff(&needs(&base), &needs(&big));
        assert_eq!(up.len(), 300);
        assert!(up.iter().all(|c| matches!(c, Change::Join(_))));
        let down = diff(&needs(&big), &needs(&base));
        assert_eq!(down.len(), 300);
        assert!(down.iter().all(|c| matches!(c, Change::Leave(_))));
    }
}
