//! nf_tables over netlink: just enough to own one `netdev` table — create it, fill it with
//! chains, sets, elements and rules, and replace it — in one transaction (a batch).
//!
//! [`Batch`] encodes messages and does no I/O; [`Socket`] sends a batch and reads back the
//! kernel's verdict. The kernel applies a batch all or nothing: a packet sees the ruleset
//! before it or after it, never a mix.
//!
//! Why not a crate: the nf_tables crates are GPL (rustables) or bind the C libnftnl (GPL);
//! mcr is MIT OR Apache-2.0, and what it needs is a few hundred lines of attributes, all
//! constants below taken from `linux/netfilter/nf_tables.h` and `nfnetlink.h`.

use std::io;

/// `NETLINK_NETFILTER`.
const NETLINK_NETFILTER: isize = 12;
/// `NFNL_SUBSYS_NFTABLES`: the high byte of every nf_tables message type.
const SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
/// `NFPROTO_NETDEV`.
pub const FAMILY_NETDEV: u8 = 5;

/// `NFT_MSG_*` message types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
enum Msg {
    NewTable = 0,
    DelTable = 2,
    NewChain = 3,
    NewRule = 6,
    NewSet = 9,
    NewSetElem = 12,
}

const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_APPEND: u16 = 0x800;
const NLM_F_CREATE: u16 = 0x400;
const NLMSG_ERROR: u16 = 0x2;
const NLA_F_NESTED: u16 = 0x8000;

// Attributes.
const NFTA_TABLE_NAME: u16 = 1;
const NFTA_TABLE_FLAGS: u16 = 2;
/// The table belongs to the netlink socket that created it: only that socket may change it,
/// and the kernel deletes it when that socket closes (Linux 5.12).
const NFT_TABLE_F_OWNER: u32 = 2;
const NFTA_CHAIN_TABLE: u16 = 1;
const NFTA_CHAIN_NAME: u16 = 3;
const NFTA_CHAIN_HOOK: u16 = 4;
const NFTA_CHAIN_POLICY: u16 = 5;
const NFTA_CHAIN_TYPE: u16 = 7;
const NFTA_HOOK_HOOKNUM: u16 = 1;
const NFTA_HOOK_PRIORITY: u16 = 2;
const NFTA_HOOK_DEV: u16 = 3;
/// `NF_NETDEV_INGRESS`: after packet taps (`AF_PACKET` with `ETH_P_ALL`), before the IP stack.
const NF_NETDEV_INGRESS: u32 = 0;
const NFTA_RULE_TABLE: u16 = 1;
const NFTA_RULE_CHAIN: u16 = 2;
const NFTA_RULE_EXPRESSIONS: u16 = 4;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_EXPR_NAME: u16 = 1;
const NFTA_EXPR_DATA: u16 = 2;
const NFTA_META_DREG: u16 = 1;
const NFTA_META_KEY: u16 = 2;
const NFTA_CMP_SREG: u16 = 1;
const NFTA_CMP_OP: u16 = 2;
const NFTA_CMP_DATA: u16 = 3;
const NFTA_DATA_VALUE: u16 = 1;
const NFTA_DATA_VERDICT: u16 = 2;
const NFTA_VERDICT_CODE: u16 = 1;
const NFTA_PAYLOAD_DREG: u16 = 1;
const NFTA_PAYLOAD_BASE: u16 = 2;
const NFTA_PAYLOAD_OFFSET: u16 = 3;
const NFTA_PAYLOAD_LEN: u16 = 4;
const NFTA_LOOKUP_SET: u16 = 1;
const NFTA_LOOKUP_SREG: u16 = 2;
const NFTA_IMMEDIATE_DREG: u16 = 1;
const NFTA_IMMEDIATE_DATA: u16 = 2;
const NFTA_SET_TABLE: u16 = 1;
const NFTA_SET_NAME: u16 = 2;
const NFTA_SET_KEY_TYPE: u16 = 4;
const NFTA_SET_KEY_LEN: u16 = 5;
const NFTA_SET_ID: u16 = 10;
const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_SET_ELEM_KEY: u16 = 1;

const NF_DROP: u32 = 0;
const NF_ACCEPT: u32 = 1;
const NFT_REG_VERDICT: u32 = 0;
/// `NFT_REG_1`: the first 16-byte register, which is also 32-bit registers 0–3.
pub const REG_1: u32 = 1;
/// `NFT_REG32_00`: the first 32-bit register; concatenated keys fill 0, 1, 2…
const NFT_REG32_00: u32 = 8;
const NFT_CMP_EQ: u32 = 0;

/// `NFT_META_*` keys mcr matches on.
#[derive(Debug, Clone, Copy)]
#[repr(u32)]
pub enum Meta {
    /// The frame's EtherType (`skb->protocol`), network byte order.
    Protocol = 1,
    /// The transport protocol, as the kernel found it behind the network header.
    L4Proto = 16,
}

/// `NFT_PAYLOAD_*_HEADER`.
#[derive(Debug, Clone, Copy)]
#[repr(u32)]
pub enum Base {
    Network = 1,
    /// Never matches a non-first IPv4 fragment (the kernel sets no transport header).
    Transport = 2,
}

/// nftables' own datatype numbers (`TYPE_IPADDR`, `TYPE_INET_SERVICE`), so `nft list` shows
/// a set's keys as addresses and ports; a concatenation shifts each by 6 bits.
pub const TYPE_IPV4_ADDR: u32 = 7;
pub const TYPE_IPV6_ADDR: u32 = 8;
pub const TYPE_INET_SERVICE: u32 = 13;

/// The key type of a concatenation of `types`, as nftables writes it.
pub fn concat_type(types: &[u32]) -> u32 {
    types.iter().fold(0, |acc, t| (acc << 6) | t)
}

/// One expression of a rule.
#[derive(Debug, Clone)]
pub enum Expr<'a> {
    /// Loads a meta key into a register.
    Meta { key: Meta, dreg: u32 },
    /// Continues only if the register holds `data`.
    CmpEq { sreg: u32, data: &'a [u8] },
    /// Loads `len` bytes at `offset` of a header into a register.
    Payload {
        base: Base,
        offset: u32,
        len: u32,
        dreg: u32,
    },
    /// Continues only if the registers from `sreg` on hold a key of `set`.
    Lookup { set: &'a str, sreg: u32 },
    /// Counts packets and bytes (`nft list` shows them).
    Counter,
    /// Drops the packet.
    Drop,
}

impl Expr<'_> {
    /// 32-bit register number `n` (0-based), for concatenated keys.
    pub fn reg32(n: u32) -> u32 {
        NFT_REG32_00 + n
    }
}

/// Builds one batch of nf_tables messages; [`Batch::finish`] gives the bytes to send.
#[derive(Debug)]
pub struct Batch {
    buf: Vec<u8>,
    /// Where the message being written starts.
    start: usize,
    /// Where the latest command (not the batch framing) starts: [`Batch::finish`] asks the
    /// kernel to acknowledge it.
    last_command: Option<usize>,
    seq: u32,
    /// Each message's sequence number and what it did, to name a refused one.
    what: Vec<(u32, String)>,
}

impl Batch {
    pub fn new(first_seq: u32) -> Batch {
        let mut b = Batch {
            buf: Vec::with_capacity(4096),
            start: 0,
            last_command: None,
            seq: first_seq,
            what: Vec::new(),
        };
        b.header(NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, 0, SUBSYS_NFTABLES);
        b.end_message();
        b
    }

    /// Creates table `name` in `family`, owned by the sending socket.
    pub fn new_table(&mut self, family: u8, name: &str) {
        self.message(
            Msg::NewTable,
            NLM_F_CREATE,
            family,
            format!("create table {name}"),
        );
        self.attr_str(NFTA_TABLE_NAME, name);
        self.attr_u32(NFTA_TABLE_FLAGS, NFT_TABLE_F_OWNER);
        self.end_message();
    }

    /// Deletes table `name` and everything in it.
    pub fn del_table(&mut self, family: u8, name: &str) {
        self.message(Msg::DelTable, 0, family, format!("delete table {name}"));
        self.attr_str(NFTA_TABLE_NAME, name);
        self.end_message();
    }

    /// Creates a filter chain on `device`'s ingress hook that accepts what no rule drops.
    pub fn new_ingress_chain(&mut self, family: u8, table: &str, chain: &str, device: &str) {
        self.message(
            Msg::NewChain,
            NLM_F_CREATE,
            family,
            format!("create chain {chain} on device {device}"),
        );
        self.attr_str(NFTA_CHAIN_TABLE, table);
        self.attr_str(NFTA_CHAIN_NAME, chain);
        let hook = self.nest(NFTA_CHAIN_HOOK);
        self.attr_u32(NFTA_HOOK_HOOKNUM, NF_NETDEV_INGRESS);
        self.attr_u32(NFTA_HOOK_PRIORITY, 0);
        self.attr_str(NFTA_HOOK_DEV, device);
        self.end_nest(hook);
        self.attr_u32(NFTA_CHAIN_POLICY, NF_ACCEPT);
        self.attr_str(NFTA_CHAIN_TYPE, "filter");
        self.end_message();
    }

    /// Creates a hash set of `key_len`-byte keys (each field padded to 4 bytes).
    pub fn new_set(&mut self, family: u8, table: &str, set: &str, key_type: u32, key_len: u32) {
        self.message(
            Msg::NewSet,
            NLM_F_CREATE,
            family,
            format!("create set {set}"),
        );
        self.attr_str(NFTA_SET_TABLE, table);
        self.attr_str(NFTA_SET_NAME, set);
        self.attr_u32(NFTA_SET_KEY_TYPE, key_type);
        self.attr_u32(NFTA_SET_KEY_LEN, key_len);
        self.attr_u32(NFTA_SET_ID, self.seq);
        self.end_message();
    }

    /// Adds `keys` to `set`, in messages small enough for netlink's 16-bit attribute length.
    pub fn add_elements<'k>(
        &mut self,
        family: u8,
        table: &str,
        set: &str,
        keys: impl IntoIterator<Item = &'k [u8]>,
    ) {
        /// About 24 bytes each: 2,000 keep the elements attribute under 64 KiB.
        const PER_MESSAGE: usize = 2000;
        let mut keys = keys.into_iter().peekable();
        while keys.peek().is_some() {
            self.message(
                Msg::NewSetElem,
                NLM_F_CREATE,
                family,
                format!("add elements to set {set}"),
            );
            self.attr_str(NFTA_SET_ELEM_LIST_TABLE, table);
            self.attr_str(NFTA_SET_ELEM_LIST_SET, set);
            let list = self.nest(NFTA_SET_ELEM_LIST_ELEMENTS);
            for key in keys.by_ref().take(PER_MESSAGE) {
                let elem = self.nest(NFTA_LIST_ELEM);
                let k = self.nest(NFTA_SET_ELEM_KEY);
                self.attr(NFTA_DATA_VALUE, key);
                self.end_nest(k);
                self.end_nest(elem);
            }
            self.end_nest(list);
            self.end_message();
        }
    }

    /// Appends a rule made of `exprs` to `chain`.
    pub fn add_rule(&mut self, family: u8, table: &str, chain: &str, exprs: &[Expr<'_>]) {
        self.message(
            Msg::NewRule,
            NLM_F_CREATE | NLM_F_APPEND,
            family,
            format!("add rule to chain {chain}"),
        );
        self.attr_str(NFTA_RULE_TABLE, table);
        self.attr_str(NFTA_RULE_CHAIN, chain);
        let list = self.nest(NFTA_RULE_EXPRESSIONS);
        for e in exprs {
            let elem = self.nest(NFTA_LIST_ELEM);
            self.expr(e);
            self.end_nest(elem);
        }
        self.end_nest(list);
        self.end_message();
    }

    /// Ends the batch. The last message asks for an acknowledgement, so a batch that went
    /// through is told apart from one that never ran.
    pub fn finish(mut self) -> Finished {
        if let Some(at) = self.last_command {
            let flags = u16::from_ne_bytes([self.buf[at + 6], self.buf[at + 7]]) | NLM_F_ACK;
            self.buf[at + 6..at + 8].copy_from_slice(&flags.to_ne_bytes());
        }
        self.header(NFNL_MSG_BATCH_END, NLM_F_REQUEST, 0, SUBSYS_NFTABLES);
        self.end_message();
        Finished {
            bytes: self.buf,
            what: self.what,
            next_seq: self.seq,
        }
    }

    fn expr(&mut self, e: &Expr<'_>) {
        let name = match e {
            Expr::Meta { .. } => "meta",
            Expr::CmpEq { .. } => "cmp",
            Expr::Payload { .. } => "payload",
            Expr::Lookup { .. } => "lookup",
            Expr::Counter => "counter",
            Expr::Drop => "immediate",
        };
        self.attr_str(NFTA_EXPR_NAME, name);
        if matches!(e, Expr::Counter) {
            return;
        }
        let data = self.nest(NFTA_EXPR_DATA);
        match *e {
            Expr::Meta { key, dreg } => {
                self.attr_u32(NFTA_META_DREG, dreg);
                self.attr_u32(NFTA_META_KEY, key as u32);
            }
            Expr::CmpEq { sreg, data } => {
                self.attr_u32(NFTA_CMP_SREG, sreg);
                self.attr_u32(NFTA_CMP_OP, NFT_CMP_EQ);
                let d = self.nest(NFTA_CMP_DATA);
                self.attr(NFTA_DATA_VALUE, data);
                self.end_nest(d);
            }
            Expr::Payload {
                base,
                offset,
                len,
                dreg,
            } => {
                self.attr_u32(NFTA_PAYLOAD_DREG, dreg);
                self.attr_u32(NFTA_PAYLOAD_BASE, base as u32);
                self.attr_u32(NFTA_PAYLOAD_OFFSET, offset);
                self.attr_u32(NFTA_PAYLOAD_LEN, len);
            }
            Expr::Lookup { set, sreg } => {
                self.attr_str(NFTA_LOOKUP_SET, set);
                self.attr_u32(NFTA_LOOKUP_SREG, sreg);
            }
            Expr::Counter => {}
            Expr::Drop => {
                self.attr_u32(NFTA_IMMEDIATE_DREG, NFT_REG_VERDICT);
                let d = self.nest(NFTA_IMMEDIATE_DATA);
                let v = self.nest(NFTA_DATA_VERDICT);
                self.attr_u32(NFTA_VERDICT_CODE, NF_DROP);
                self.end_nest(v);
                self.end_nest(d);
            }
        }
        self.end_nest(data);
    }

    fn message(&mut self, msg: Msg, flags: u16, family: u8, what: String) {
        self.what.push((self.seq, what));
        self.last_command = Some(self.buf.len());
        let ty = (SUBSYS_NFTABLES << 8) | msg as u16;
        self.header(ty, NLM_F_REQUEST | flags, family, 0);
    }

    /// `nlmsghdr` (length filled by [`Batch::end_message`]) and `nfgenmsg`.
    fn header(&mut self, ty: u16, flags: u16, family: u8, res_id: u16) {
        self.start = self.buf.len();
        self.buf.extend_from_slice(&0u32.to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(&flags.to_ne_bytes());
        self.buf.extend_from_slice(&self.seq.to_ne_bytes());
        self.buf.extend_from_slice(&0u32.to_ne_bytes());
        self.buf.push(family);
        self.buf.push(0); // NFNETLINK_V0
        self.buf.extend_from_slice(&res_id.to_be_bytes());
        self.seq = self.seq.wrapping_add(1);
    }

    fn end_message(&mut self) {
        let len = (self.buf.len() - self.start) as u32;
        self.buf[self.start..self.start + 4].copy_from_slice(&len.to_ne_bytes());
    }

    fn attr(&mut self, ty: u16, value: &[u8]) {
        let len = (4 + value.len()) as u16;
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(value);
        self.buf.resize(align(self.buf.len()), 0);
    }

    fn attr_u32(&mut self, ty: u16, value: u32) {
        self.attr(ty, &value.to_be_bytes());
    }

    /// A NUL-terminated string, as the kernel's `NLA_STRING` attributes are sent.
    fn attr_str(&mut self, ty: u16, value: &str) {
        let mut v = Vec::with_capacity(value.len() + 1);
        v.extend_from_slice(value.as_bytes());
        v.push(0);
        self.attr(ty, &v);
    }

    fn nest(&mut self, ty: u16) -> usize {
        let at = self.buf.len();
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf
            .extend_from_slice(&(ty | NLA_F_NESTED).to_ne_bytes());
        at
    }

    fn end_nest(&mut self, at: usize) {
        let len = u16::try_from(self.buf.len() - at).expect("nested attribute under 64 KiB");
        self.buf[at..at + 2].copy_from_slice(&len.to_ne_bytes());
    }
}

/// Netlink's 4-byte alignment.
fn align(n: usize) -> usize {
    (n + 3) & !3
}

/// An encoded batch.
#[derive(Debug)]
pub struct Finished {
    bytes: Vec<u8>,
    what: Vec<(u32, String)>,
    next_seq: u32,
}

impl Finished {
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.what.is_empty()
    }

    /// The sequence number the next batch should start at.
    pub fn next_seq(&self) -> u32 {
        self.next_seq
    }
}

/// Why a batch did not apply.
#[derive(Debug, thiserror::Error)]
pub enum NftError {
    /// The socket could not be opened or the batch not sent.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The kernel refused a message; the whole batch was rolled back.
    #[error("{what}: {source}")]
    Refused { what: String, source: io::Error },
    /// Neither an error nor the acknowledgement came back.
    #[error("no answer from nf_tables")]
    NoAnswer,
}

impl NftError {
    /// The OS error behind it, if any.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            NftError::Io(e) | NftError::Refused { source: e, .. } => e.raw_os_error(),
            NftError::NoAnswer => None,
        }
    }
}

/// A `NETLINK_NETFILTER` socket. Tables it creates with the owner flag live as long as it.
pub struct Socket {
    inner: netlink_sys::Socket,
}

impl Socket {
    pub fn open() -> io::Result<Socket> {
        let mut inner = netlink_sys::Socket::new(NETLINK_NETFILTER)?;
        inner.bind_auto()?;
        Ok(Socket { inner })
    }

    /// Asks for a send buffer that holds `bytes` in one message (a batch must be one
    /// message). Needs `CAP_NET_ADMIN` past `net.core.wmem_max`.
    pub fn fit(&self, bytes: usize) {
        use std::os::fd::AsFd;
        let size = libc::c_int::try_from(bytes.saturating_mul(2)).unwrap_or(libc::c_int::MAX);
        let fd = self.inner.as_fd();
        if let Err(e) = crate::sys::setsockopt(fd, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, &size) {
            log::debug!("nf_tables socket: SO_SNDBUFFORCE {size}: {e}");
        }
    }

    /// Sends `batch` and reads the kernel's answer. nfnetlink handles a batch inside the
    /// `sendmsg` call, so every answer is queued by the time it returns.
    pub fn apply(&mut self, batch: &Finished) -> Result<(), NftError> {
        let sent = self.inner.send(&batch.bytes, 0)?;
        if sent != batch.bytes.len() {
            return Err(io::Error::other("nf_tables batch sent in part").into());
        }
        let Some(&(last, _)) = batch.what.last() else {
            return Ok(());
        };
        let mut acked = false;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match self.inner.recv(&mut &mut buf[..], libc::MSG_DONTWAIT) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e.into()),
            };
            for (seq, errno) in errors(&buf[..n]) {
                if errno != 0 {
                    let what = batch
                        .what
                        .iter()
                        .find(|(s, _)| *s == seq)
                        .map_or_else(|| "start a transaction".to_string(), |(_, w)| w.clone());
                    self.drain();
                    return Err(NftError::Refused {
                        what,
                        source: io::Error::from_raw_os_error(errno),
                    });
                }
                acked |= seq == last;
            }
        }
        if acked {
            Ok(())
        } else {
            Err(NftError::NoAnswer)
        }
    }

    /// Reads whatever else is queued, so the next batch starts clean.
    fn drain(&mut self) {
        let mut buf = vec![0u8; 64 * 1024];
        while self
            .inner
            .recv(&mut &mut buf[..], libc::MSG_DONTWAIT)
            .is_ok_and(|n| n > 0)
        {}
    }
}

/// `(sequence, errno)` of every `NLMSG_ERROR` in `buf` (errno 0 is an acknowledgement).
fn errors(buf: &[u8]) -> Vec<(u32, i32)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 16 <= buf.len() {
        let word = |o: usize| u32::from_ne_bytes(buf[o..o + 4].try_into().unwrap());
        let len = word(at) as usize;
        let ty = u16::from_ne_bytes([buf[at + 4], buf[at + 5]]);
        if len < 16 || at + len > buf.len() {
            break;
        }
        // nlmsgerr: the error, then the header of the message it answers.
        if ty == NLMSG_ERROR && len >= 16 + 4 + 16 {
            let errno = -(word(at + 16) as i32);
            let seq = word(at + 20 + 8);
            out.push((seq, errno));
        }
        at += align(len);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Walks a batch's messages: (type, flags, seq, body).
    fn messages(bytes: &[u8]) -> Vec<(u16, u16, u32, &[u8])> {
        let mut out = Vec::new();
        let mut at = 0;
        while at < bytes.len() {
            let len = u32::from_ne_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
            let ty = u16::from_ne_bytes([bytes[at + 4], bytes[at + 5]]);
            let flags = u16::from_ne_bytes([bytes[at + 6], bytes[at + 7]]);
            let seq = u32::from_ne_bytes(bytes[at + 8..at + 12].try_into().unwrap());
            out.push((ty, flags, seq, &bytes[at + 16..at + len]));
            at += align(len);
        }
        assert_eq!(at, bytes.len(), "messages fill the batch exactly");
        out
    }

    /// Top-level attributes of a message body after the 4-byte nfgenmsg.
    fn attrs(body: &[u8]) -> Vec<(u16, &[u8])> {
        let mut out = Vec::new();
        let mut at = 4;
        while at < body.len() {
            let len = u16::from_ne_bytes([body[at], body[at + 1]]) as usize;
            let ty = u16::from_ne_bytes([body[at + 2], body[at + 3]]);
            out.push((ty & !NLA_F_NESTED, &body[at + 4..at + len]));
            at += align(len);
        }
        out
    }

    #[test]
    fn a_batch_is_framed_by_begin_and_end_and_acks_only_its_last_message() {
        let mut b = Batch::new(100);
        b.new_table(FAMILY_NETDEV, "mcr_1");
        b.new_set(FAMILY_NETDEV, "mcr_1", "asm_eth0", 461, 8);
        let done = b.finish();
        let m = messages(&done.bytes);
        assert_eq!(m.len(), 4);
        assert_eq!(m[0].0, NFNL_MSG_BATCH_BEGIN);
        assert_eq!(m[3].0, NFNL_MSG_BATCH_END);
        assert_eq!(m[1].0, (SUBSYS_NFTABLES << 8) | Msg::NewTable as u16);
        assert_eq!(m[1].1 & NLM_F_ACK, 0);
        assert_eq!(m[2].1 & NLM_F_ACK, NLM_F_ACK);
        assert_eq!(
            m.iter().map(|x| x.2).collect::<Vec<_>>(),
            [100, 101, 102, 103]
        );
        assert_eq!(done.next_seq(), 104);
        let table = attrs(m[1].3);
        assert_eq!(table[0], (NFTA_TABLE_NAME, &b"mcr_1\0"[..]));
        assert_eq!(table[1], (NFTA_TABLE_FLAGS, &2u32.to_be_bytes()[..]));
    }

    #[test]
    fn many_elements_split_into_messages_under_the_attribute_limit() {
        let keys: Vec<[u8; 12]> = (0..5000u32)
            .map(|i| {
                let mut k = [0u8; 12];
                k[..4].copy_from_slice(&i.to_be_bytes());
                k
            })
            .collect();
        let mut b = Batch::new(1);
        b.add_elements(FAMILY_NETDEV, "t", "s", keys.iter().map(|k| &k[..]));
        let done = b.finish();
        let m = messages(&done.bytes);
        assert_eq!(m.len(), 2 + 3, "2,000 + 2,000 + 1,000");
        let mut seen = 0;
        for (_, _, _, body) in &m[1..4] {
            let a = attrs(body);
            let (ty, list) = a[2];
            assert_eq!(ty, NFTA_SET_ELEM_LIST_ELEMENTS);
            assert!(list.len() < 65536);
            seen += list.len() / (4 + 4 + 4 + 12);
        }
        assert_eq!(seen, 5000);
    }

    #[test]
    fn answers_are_read_as_sequence_and_errno() {
        // An NLMSG_ERROR with errno -EPERM answering message 7, then an ack of 8.
        let mut buf = Vec::new();
        for (seq, err) in [(7u32, -1i32), (8, 0)] {
            buf.extend_from_slice(&36u32.to_ne_bytes());
            buf.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
            buf.extend_from_slice(&0u16.to_ne_bytes());
            buf.extend_from_slice(&0u32.to_ne_bytes());
            buf.extend_from_slice(&0u32.to_ne_bytes());
            buf.extend_from_slice(&err.to_ne_bytes());
            buf.extend_from_slice(&[0u8; 8]);
            buf.extend_from_slice(&seq.to_ne_bytes());
            buf.extend_from_slice(&[0u8; 4]);
        }
        assert_eq!(errors(&buf), [(7, 1), (8, 0)]);
    }

    #[test]
    fn concatenated_key_types_shift_by_six_bits() {
        assert_eq!(concat_type(&[TYPE_IPV4_ADDR, TYPE_INET_SERVICE]), 461);
    }
}
