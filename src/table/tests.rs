//! The table's unit tests: lookups, compiles against made-up interfaces, and what a
//! recompile keeps.
use super::test_support::*;
use super::*;

/// The flow index a lookup finds.
fn find(t: &Table, ifindex: u32, src: IpAddr, dst: IpAddr, port: u16) -> Option<u32> {
    t.lookup(ifindex, src, dst, port).map(Hit::flow)
}

const TWO_FLOWS: &str = r#"
    [[flow]]
    name = "a"
    input = { interface = "eth0", group = "239.1.1.1", port = 5001 }
    outputs = [ { interface = "eth1", group = "239.9.9.9", port = 5099 } ]
    [[flow]]
    name = "b"
    input = { interface = "eth0", group = "239.1.1.2", port = 5001, source = "10.0.0.5" }
    outputs = [ { interface = "eth1", group = "239.9.9.10", port = 5099 },
                { interface = "eth2", group = "239.9.9.10", port = 5099 } ]
    [[flow]]
    name = "c"
    input = { interface = "eth0", group = "239.1.1.2", port = 5001 }
    outputs = [ { interface = "eth1", group = "239.9.9.11", port = 5099 } ]
"#;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn lookup_matches_interface_group_port_and_prefers_the_source_specific_flow() {
    let t = compile(TWO_FLOWS, &mut FakeEnv::default(), None);
    let any = ip("10.9.9.9");
    assert_eq!(find(&t, 1, any, ip("239.1.1.1"), 5001), Some(0));
    assert_eq!(
        find(&t, 2, any, ip("239.1.1.1"), 5001),
        None,
        "wrong interface"
    );
    assert_eq!(find(&t, 1, any, ip("239.1.1.1"), 5002), None, "wrong port");
    assert_eq!(find(&t, 1, any, ip("239.1.1.3"), 5001), None, "wrong group");
    assert_eq!(
        find(&t, 1, ip("10.0.0.5"), ip("239.1.1.2"), 5001),
        Some(1),
        "SSM flow"
    );
    assert_eq!(
        find(&t, 1, any, ip("239.1.1.2"), 5001),
        Some(2),
        "other sources: ASM flow"
    );
    assert_eq!(t.flow(1).unwrap().outputs.len(), 2);
    assert_eq!(t.input_ifindexes().into_iter().collect::<Vec<_>>(), vec![1]);
    assert_eq!(t.memberships().len(), 3);
}

#[test]
fn an_ssm_only_flow_does_not_match_other_sources() {
    let src = r#"
        [[flow]]
        name = "s"
        input = { interface = "eth0", group = "232.1.1.1", port = 9, source = "10.0.0.1" }
        outputs = [ { interface = "eth1", group = "239.9.9.9", port = 9 } ]
    "#;
    let t = compile(src, &mut FakeEnv::default(), None);
    assert_eq!(find(&t, 1, ip("10.0.0.1"), ip("232.1.1.1"), 9), Some(0));
    assert_eq!(find(&t, 1, ip("10.0.0.2"), ip("232.1.1.1"), 9), None);
}

#[test]
fn unchanged_flows_and_outputs_keep_counters_and_sockets_across_compiles() {
    let mut env = FakeEnv::default();
    let old = compile(TWO_FLOWS, &mut env, None);
    assert_eq!(env.opened, 2, "one set of sockets per output interface");
    let sockets = |t: &Table, f: usize, o: usize| {
        t.flows[f].outputs[o]
            .path
            .as_ref()
            .unwrap()
            .sockets()
            .clone()
    };
    assert!(Arc::ptr_eq(&sockets(&old, 0, 0), &sockets(&old, 2, 0)));
    assert!(Arc::ptr_eq(&sockets(&old, 0, 0), &sockets(&old, 1, 0)));
    assert!(!Arc::ptr_eq(&sockets(&old, 1, 0), &sockets(&old, 1, 1)));
    assert_eq!(old.senders().len(), 2);
    old.flows[0].stats.add(100, 1);
    let changed = TWO_FLOWS.replace("239.9.9.11", "239.9.9.12");
    let new = compile(&changed, &mut env, Some(&old));
    assert_eq!(
        env.opened, 2,
        "a changed output reuses its interface's sockets"
    );
    assert!(Arc::ptr_eq(&old.flows[0].stats, &new.flows[0].stats));
    assert!(Arc::ptr_eq(&sockets(&old, 1, 1), &sockets(&new, 1, 1)));
    assert!(Arc::ptr_eq(&sockets(&old, 2, 0), &sockets(&new, 2, 0)));
    assert!(
        Arc::ptr_eq(&old.flows[2].stats, &new.flows[2].stats),
        "input unchanged"
    );
    assert!(!Arc::ptr_eq(
        &old.flows[2].outputs[0].stats,
        &new.flows[2].outputs[0].stats
    ));
    let new_again = compile(&changed, &mut env, Some(&new));
    assert_eq!(env.opened, 2, "nothing changed: nothing reopened");
    assert_eq!(new_again.links(), new.links());
    assert_eq!(new.generation(), 2);
}

#[test]
fn changing_the_egress_mode_reopens_every_interface() {
    let mut env = FakeEnv::default();
    let old = compile(TWO_FLOWS, &mut env, None);
    let mode = |t: &Table| {
        t.flows[0].outputs[0]
            .path
            .as_ref()
            .unwrap()
            .sockets()
            .mode()
    };
    assert_eq!(mode(&old), EgressMode::Packet);
    let udp = format!("[relay]\negress = \"udp\"\n{TWO_FLOWS}");
    let new = compile(&udp, &mut env, Some(&old));
    assert_eq!(env.opened, 4, "both interfaces' sockets opened again");
    assert_eq!(mode(&new), EgressMode::Udp);
    assert!(
        Arc::ptr_eq(&old.flows[0].stats, &new.flows[0].stats),
        "flow counters stay: the input did not change"
    );
}

#[test]
fn a_missing_input_makes_its_flow_wait_and_a_missing_output_waits_alone() {
    let src = TWO_FLOWS.replace("eth2", "nope0").replace(
        "name = \"c\"\n    input = { interface = \"eth0\"",
        "name = \"c\"\n    input = { interface = \"late0\"",
    );
    let mut env = FakeEnv::default();
    let t = compile(&src, &mut env, None);
    assert_eq!(
        env.opened, 1,
        "eth1's sockets, for c's output too: ready when its input comes"
    );
    assert!(t.flows[2].outputs[0].path.is_some());
    assert_eq!(t.flows[2].state(1), FlowState::Waiting);
    assert_eq!(t.flows[1].state(1), FlowState::Idle, "no packet yet");
    t.flows[1].stats.add(10, 1_000_000_000);
    assert_eq!(t.flows[1].state(5_000_000_000), FlowState::Active);
    assert_eq!(
        t.flows[1].state(7_000_000_000),
        FlowState::Idle,
        "5 s default"
    );
    assert_eq!(t.flows[1].outputs[1].waiting, Some(Waiting::Missing));
    assert!(t.flows[1].outputs[1].path.is_none());
    assert_eq!(
        find(&t, 1, ip("10.9.9.9"), ip("239.1.1.2"), 5001),
        None,
        "c waits: not in the index"
    );
    assert_eq!(t.memberships().len(), 2, "no membership for c");
    let missing = t.missing();
    assert_eq!(missing.len(), 2);
    assert_eq!(missing[&IfName::new("nope0").unwrap()], vec!["b"]);
    assert_eq!(missing[&IfName::new("late0").unwrap()], vec!["c"]);
}

#[test]
fn changed_link_facts_reopen_the_output_and_keep_its_counters() {
    let c = config(TWO_FLOWS);
    let mut env = FakeEnv::default();
    let view = links(&c);
    let old = Table::compile(&c, &view, &mut env, None, 1).unwrap();
    let mut moved = view.clone();
    let eth1 = IfName::new("eth1").unwrap();
    moved.get_mut(&eth1).unwrap().as_mut().unwrap().mac[0] = 6;
    let new = Table::compile(&c, &moved, &mut env, Some(&old), 2).unwrap();
    assert_eq!(env.opened, 2 + 1, "eth1's sockets reopened");
    let (o, n) = (&old.flows[0].outputs[0], &new.flows[0].outputs[0]);
    assert!(!Arc::ptr_eq(
        o.path.as_ref().unwrap().sockets(),
        n.path.as_ref().unwrap().sockets()
    ));
    assert!(Arc::ptr_eq(&o.stats, &n.stats), "counters stay");
    moved.get_mut(&eth1).unwrap().as_mut().unwrap().up = false;
    let down = Table::compile(&c, &moved, &mut env, Some(&new), 3).unwrap();
    assert_eq!(down.flows[0].outputs[0].waiting, Some(Waiting::Down));
    assert_eq!(env.opened, 3, "nothing opened on a down interface");
    moved.get_mut(&eth1).unwrap().as_mut().unwrap().up = true;
    moved.get_mut(&eth1).unwrap().as_mut().unwrap().ipv4.clear();
    let bare = Table::compile(&c, &moved, &mut env, Some(&down), 4).unwrap();
    assert_eq!(
        bare.flows[0].outputs[0].waiting,
        Some(Waiting::NoAddress(false))
    );
    assert!(bare.flows[0].outputs[0].path.is_none());
    assert_eq!(env.opened, 3, "no socket that would send from 0.0.0.0");
    // With its own source address an output needs no address on the interface, and it
    // has sockets of its own, apart from its neighbours'.
    let sourced = TWO_FLOWS.replacen("port = 5099 }", "port = 5099, source = \"192.0.2.10\" }", 1);
    let c = config(&sourced);
    let t = Table::compile(&c, &moved, &mut env, None, 5).unwrap();
    assert!(t.flows[0].outputs[0].path.is_some(), "sourced: sends");
    assert_eq!(
        t.flows[2].outputs[0].waiting,
        Some(Waiting::NoAddress(false))
    );
    assert!(t.senders().contains_key(&(
        Some(eth1.clone()),
        false,
        Some(IpAddr::from([192, 0, 2, 10]))
    )));
    assert!(!down
        .senders()
        .contains_key(&(Some(eth1.clone()), false, None)));
}
