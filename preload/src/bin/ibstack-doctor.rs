//! ibstack-doctor: check a host against a Ceph daemon's RDMA configuration
//! before the daemon starts.
//!
//! usage: ibstack-doctor [-c ceph.conf] [-n osd.3] [--json] [--peer HOST:PORT]
//!
//! One line per check (`ok`, `problem` with the fix, `note`); the exit status
//! is the number of problems (at most 125). The checks are ibstack::doctor's,
//! the same the guard (libibstack_preload.so) runs inside a daemon.

use ibstack::doctor::{self, Scope, Target};
use std::path::PathBuf;

const USAGE: &str = "usage: ibstack-doctor [-c ceph.conf] [-n NAME] [--json] [--peer HOST:PORT]\n\
  -c, --conf FILE     the daemon's ceph.conf (default: $CEPH_CONF, else /etc/ceph/ceph.conf)\n\
  -n, --name NAME     the daemon's section, e.g. osd.3, mon.a (default client.admin)\n\
  --json              one JSON object instead of lines\n\
  --peer HOST:PORT    also: TCP reachability, the cm_meta handshake and one exchange over RDMA\n\
exit status: the number of problems";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (mut conf, mut name, mut json, mut peer) = (None, None, false, None);
    let mut i = 1;
    while i < args.len() {
        let a = args[i].as_str();
        let mut val = || {
            i += 1;
            args.get(i).cloned().unwrap_or_else(|| {
                eprintln!("ibstack-doctor: {a} needs a value\n{USAGE}");
                std::process::exit(126)
            })
        };
        match a {
            "-c" | "--conf" => conf = Some(val()),
            "-n" | "--name" => name = Some(val()),
            "--peer" => peer = Some(val()),
            "--json" => json = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                return;
            }
            _ => {
                eprintln!("ibstack-doctor: unknown argument {a:?}\n{USAGE}");
                std::process::exit(126)
            }
        }
        i += 1;
    }
    let conf_named = conf.is_some();
    let conf = conf
        .or_else(|| std::env::var("CEPH_CONF").ok())
        .unwrap_or_else(|| "/etc/ceph/ceph.conf".to_string());
    let t = Target { conf: PathBuf::from(conf), section: name.unwrap_or_else(|| "client.admin".into()), overrides: vec![], conf_named };
    let mut report = doctor::run(&t, Scope { systemd: true });
    if let Some(p) = peer {
        let (host, port) = match p.rsplit_once(':').and_then(|(h, p)| p.parse::<u16>().ok().map(|p| (h.to_string(), p))) {
            Some(hp) => hp,
            None => {
                eprintln!("ibstack-doctor: --peer wants HOST:PORT, got {p:?}");
                std::process::exit(126)
            }
        };
        let (loaded, _) = doctor::load(&t);
        let cfg = loaded.map(|l| l.cfg).unwrap_or_default();
        report.checks.extend(doctor::peer_checks(&cfg, host.trim_start_matches('[').trim_end_matches(']'), port));
    }
    if json {
        println!("{}", report.to_json());
    } else {
        println!("# ibstack-doctor: {} section [{}]", t.conf.display(), t.section);
        for c in &report.checks {
            println!("{}", c.line());
        }
        println!("# {} problem(s)", report.problems());
    }
    std::process::exit(report.problems().min(125) as i32);
}
