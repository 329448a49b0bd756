//! The three-record exchange that connects a QP (reference §2.4), as a
//! resumable state machine over a caller-supplied connected TCP fd:
//!
//! * connector: send #1 (peer_qpn 0) → read #2 → RTR, RTS → send #3 (ack);
//! * acceptor: read #1 → RTR, RTS → send #2 (peer_qpn = connector's QPN) →
//!   read #3.
//!
//! `step` never blocks on a non-blocking fd: it returns what it waits for.
//! `run` drives it to the end with poll(2) and a deadline.

use super::QueuePair;
use crate::error::{Error, Result};
use crate::handshake::exchange::{deadline_from, wait_ready};
use crate::handshake::{CmMeta, RecordReader, RecordWriter};
use crate::history::QpEvent;
use std::os::fd::RawFd;
use std::sync::atomic::Ordering::Relaxed;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Opened the TCP connection; sends the first record.
    Connector,
    /// Accepted the TCP connection; answers.
    Acceptor,
}

/// What a `step` is waiting for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    Done,
    /// Call again when the fd is readable.
    WantRead,
    /// Call again when the fd is writable.
    WantWrite,
}

#[derive(Debug)]
enum Stage {
    Send(RecordWriter, Next),
    Recv(RecordReader, Expect),
    Done,
    Failed(Error),
}

#[derive(Debug, Clone, Copy)]
enum Next {
    AwaitReply,
    AwaitAck,
    Finished,
}

#[derive(Debug, Clone, Copy)]
enum Expect {
    Syn,
    Reply,
    Ack,
}

#[derive(Debug)]
pub struct Handshake {
    role: Role,
    stage: Stage,
    /// Filled once the peer's first record arrived.
    peer: Option<CmMeta>,
}

impl Handshake {
    pub fn new(role: Role, qp: &QueuePair) -> Handshake {
        let stage = match role {
            Role::Connector => Stage::Send(RecordWriter::new(&CmMeta { peer_qpn: 0, ..qp.local_meta() }), Next::AwaitReply),
            Role::Acceptor => Stage::Recv(RecordReader::new(), Expect::Syn),
        };
        Handshake { role, stage, peer: None }
    }

    pub fn role(&self) -> Role {
        self.role
    }
    pub fn is_done(&self) -> bool {
        matches!(self.stage, Stage::Done)
    }
    pub fn peer(&self) -> Option<CmMeta> {
        self.peer
    }
    /// The poll(2) events the next `step` needs (0 when finished or failed).
    pub fn wants(&self) -> i16 {
        match self.stage {
            Stage::Send(..) => libc::POLLOUT,
            Stage::Recv(..) => libc::POLLIN,
            _ => 0,
        }
    }

    /// Where the exchange stands, for messages: what it waits for.
    pub fn stage_name(&self) -> String {
        match &self.stage {
            Stage::Send(_, Next::AwaitReply) => "sending record #1 (connector's)".into(),
            Stage::Send(_, Next::AwaitAck) => "sending record #2 (acceptor's reply)".into(),
            Stage::Send(_, Next::Finished) => "sending record #3 (connector's ack)".into(),
            Stage::Recv(r, e) => {
                let which = match e {
                    Expect::Syn => "the connector's record #1",
                    Expect::Reply => "the acceptor's record #2",
                    Expect::Ack => "the connector's record #3",
                };
                format!("waiting for {which} ({} of {} bytes received)", r.bytes_so_far(), crate::handshake::RECORD_LEN)
            }
            Stage::Done => "after the exchange".into(),
            Stage::Failed(_) => "after a failure".into(),
        }
    }

    /// The caller's deadline passed: fails the exchange with ETIMEDOUT naming
    /// the stage reached (counted as a handshake error) and returns the error.
    pub fn expire(&mut self, qp: &QueuePair, peer: &str, timeout_ms: u32) -> Error {
        if let Stage::Failed(e) = &self.stage {
            return e.clone();
        }
        let e = Error::new(
            libc::ETIMEDOUT,
            format!(
                "QP {}: cm_meta handshake with {peer} timed out after {timeout_ms} ms {} (ibstack_handshake_timeout_ms)",
                qp.qp_num(),
                self.stage_name()
            ),
        );
        qp.env.counters.handshake_errors.fetch_add(1, Relaxed);
        let e = qp.fail(e);
        self.stage = Stage::Failed(e.clone());
        e
    }

    /// Advances as far as the fd allows. Errors are final: the QP is not
    /// usable for this peer (the caller retires it with `to_dead`).
    pub fn step(&mut self, qp: &QueuePair, fd: RawFd) -> Result<Progress> {
        self.step_as(qp, fd, false)
    }

    /// `step`; with `ready`, the caller has just seen the fd ready for
    /// [`wants`](Self::wants), and no read or write blocks even on a blocking fd.
    fn step_as(&mut self, qp: &QueuePair, fd: RawFd, ready: bool) -> Result<Progress> {
        loop {
            let r = self.advance(qp, fd, ready);
            match r {
                Ok(Some(p)) => return Ok(p),
                Ok(None) => continue,
                Err(e) => {
                    qp.env.counters.handshake_errors.fetch_add(1, Relaxed);
                    let e = qp.fail(e.context(format_args!("QP {}: cm_meta handshake ({:?})", qp.qp_num(), self.role)));
                    self.stage = Stage::Failed(e.clone());
                    return Err(e);
                }
            }
        }
    }

    /// One stage: `Ok(None)` = moved on, call again.
    fn advance(&mut self, qp: &QueuePair, fd: RawFd, ready: bool) -> Result<Option<Progress>> {
        let hist = &qp.env.history;
        match &mut self.stage {
            Stage::Done => Ok(Some(Progress::Done)),
            Stage::Failed(e) => Err(e.clone()),
            Stage::Send(w, next) => {
                if !(if ready { w.poll_ready(fd)? } else { w.poll(fd)? }) {
                    return Ok(Some(Progress::WantWrite));
                }
                let next = *next;
                let which = match next {
                    Next::AwaitReply => "#1 (connector's, peer_qpn 0)",
                    Next::AwaitAck => "#2 (acceptor's reply)",
                    Next::Finished => "#3 (connector's ack)",
                };
                hist.record(qp.qp_num(), QpEvent::RecordSent, which);
                self.stage = match next {
                    Next::AwaitReply => Stage::Recv(RecordReader::new(), Expect::Reply),
                    Next::AwaitAck => Stage::Recv(RecordReader::new(), Expect::Ack),
                    Next::Finished => Stage::Done,
                };
                Ok(None)
            }
            Stage::Recv(r, expect) => {
                let got = if ready { r.poll_ready(fd)? } else { r.poll(fd)? };
                let Some(m) = got else { return Ok(Some(Progress::WantRead)) };
                let expect = *expect;
                let which = match expect {
                    Expect::Syn => "#1",
                    Expect::Reply => "#2",
                    Expect::Ack => "#3",
                };
                hist.record(qp.qp_num(), QpEvent::RecordReceived, &format!("{which}: {}", m.describe()));
                self.stage = self.on_record(qp, expect, m)?;
                Ok(None)
            }
        }
    }

    fn on_record(&mut self, qp: &QueuePair, expect: Expect, m: CmMeta) -> Result<Stage> {
        let me = qp.qp_num();
        let proto = |what: String| Error::new(libc::EPROTO, format!("{what} (record: {})", m.describe()));
        match expect {
            Expect::Syn => {
                if m.peer_qpn != 0 {
                    return Err(proto(format!(
                        "expected the connector's first record (peer_qpn 0) but peer_qpn is {:#x}: both sides think \
                         they accepted",
                        m.peer_qpn
                    )));
                }
                self.activate(qp, &m)?;
                Ok(Stage::Send(RecordWriter::new(&CmMeta { peer_qpn: m.local_qpn, ..qp.local_meta() }), Next::AwaitAck))
            }
            Expect::Reply => {
                if m.peer_qpn != me {
                    return Err(proto(format!(
                        "the acceptor's reply names QP {:#x} as its peer but ours is {me:#x}",
                        m.peer_qpn
                    )));
                }
                self.activate(qp, &m)?;
                Ok(Stage::Send(RecordWriter::new(&CmMeta { peer_qpn: m.local_qpn, ..qp.local_meta() }), Next::Finished))
            }
            Expect::Ack => {
                let peer = self.peer.expect("ack follows the first record");
                if m.peer_qpn != me || m.local_qpn != peer.local_qpn {
                    return Err(proto(format!(
                        "the connector's ack does not match: expected qpn {:#x} peer_qpn {me:#x}",
                        peer.local_qpn
                    )));
                }
                Ok(Stage::Done)
            }
        }
    }

    fn activate(&mut self, qp: &QueuePair, peer: &CmMeta) -> Result<()> {
        self.peer = Some(*peer);
        qp.to_rtr(peer)?;
        qp.to_rts()
    }

    /// Drives the exchange to the end, waiting on the fd as needed; the
    /// deadline holds on blocking and non-blocking fds alike (every read or
    /// write waits for readiness first and then never blocks).
    /// `timeout_ms < 0` waits forever; `ETIMEDOUT` names the stage reached.
    pub fn run(&mut self, qp: &QueuePair, fd: RawFd, timeout_ms: i32) -> Result<()> {
        let deadline = deadline_from(timeout_ms);
        loop {
            let events = self.wants();
            if events != 0 && !wait_ready(fd, events, deadline)? {
                let what = if events == libc::POLLIN { "waiting for the peer's record" } else { "sending our record" };
                let e = Error::new(
                    libc::ETIMEDOUT,
                    format!("QP {}: cm_meta handshake timed out after {timeout_ms} ms {what}", qp.qp_num()),
                );
                qp.env.counters.handshake_errors.fetch_add(1, Relaxed);
                let e = qp.fail(e);
                self.stage = Stage::Failed(e.clone());
                return Err(e);
            }
            if self.step_as(qp, fd, true)? == Progress::Done {
                return Ok(());
            }
        }
    }
}

impl Role {
    /// The C API's value: 0 connector, 1 acceptor; anything else is -EINVAL.
    pub fn from_raw(role: u32) -> Result<Role> {
        match role {
            0 => Ok(Role::Connector),
            1 => Ok(Role::Acceptor),
            r => Err(Error::inval(format!("role {r} is neither IBSTACK_ROLE_CONNECTOR (0) nor IBSTACK_ROLE_ACCEPTOR (1)"))),
        }
    }
}

/// A QP's handshake for callers that drive it step by step: empty until the
/// first step or run, which fixes the role; a later call with the other role
/// is -EINVAL. Calls are serialized.
#[derive(Default)]
pub struct HandshakeSlot {
    hs: parking_lot::Mutex<Option<Handshake>>,
}

impl HandshakeSlot {
    fn with<R>(&self, qp: &QueuePair, role: Role, f: impl FnOnce(&mut Handshake) -> Result<R>) -> Result<R> {
        let mut hs = self.hs.lock();
        let h = hs.get_or_insert_with(|| Handshake::new(role, qp));
        if h.role() != role {
            return Err(Error::inval(format!("the handshake of QP {} was started as {:?}", qp.qp_num(), h.role())));
        }
        f(h)
    }

    /// One non-blocking step (see [`Handshake::step`]).
    pub fn step(&self, qp: &QueuePair, fd: RawFd, role: Role) -> Result<Progress> {
        self.with(qp, role, |h| h.step(qp, fd))
    }

    /// The whole exchange (see [`Handshake::run`]).
    pub fn run(&self, qp: &QueuePair, fd: RawFd, role: Role, timeout_ms: i32) -> Result<()> {
        self.with(qp, role, |h| h.run(qp, fd, timeout_ms))
    }

    /// The poll(2) events the pending step waits for; 0 before the first step.
    pub fn wants(&self) -> i16 {
        self.hs.lock().as_ref().map_or(0, |h| h.wants())
    }
}
