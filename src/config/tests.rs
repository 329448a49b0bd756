//! Tests of the configuration: the table, each value type, range checks,
//! keys, the ceph.conf reader and the JSON form.

use super::value::{iec_cast, si_cast, NumErr};
use super::*;

fn set_err(key: &str, value: &str) -> Error {
    let mut c = Config::default();
    let e = c
        .set(key, value)
        .expect_err(&format!("{key} = {value:?} must fail"));
    assert_eq!(e.errno, libc::EINVAL, "{e:?}");
    assert_eq!(
        c,
        Config::default(),
        "a failed set must not change the config"
    );
    e
}

fn set_ok(key: &str, value: &str) -> Config {
    let mut c = Config::default();
    c.set(key, value)
        .unwrap_or_else(|e| panic!("{key} = {value:?}: {}", e.msg));
    c
}

// ----- table and defaults -------------------------------------------

#[test]
fn table_lists_ceph_options_then_ibstack_extensions() {
    let expected: [(&str, OptType, &str); 33] = [
        ("ms_async_rdma_device_name", OptType::Str, ""),
        ("ms_async_rdma_enable_hugepage", OptType::Bool, "false"),
        ("ms_async_rdma_buffer_size", OptType::Size, "131072"),
        ("ms_async_rdma_send_buffers", OptType::Uint, "1024"),
        ("ms_async_rdma_receive_buffers", OptType::Uint, "32768"),
        ("ms_async_rdma_receive_queue_len", OptType::Uint, "4096"),
        ("ms_async_rdma_support_srq", OptType::Bool, "true"),
        ("ms_async_rdma_port_num", OptType::Uint, "1"),
        ("ms_async_rdma_polling_us", OptType::Uint, "1000"),
        ("ms_async_rdma_gid_idx", OptType::Int, "0"),
        ("ms_async_rdma_local_gid", OptType::Str, ""),
        ("ms_async_rdma_roce_ver", OptType::Int, "1"),
        ("ms_async_rdma_sl", OptType::Int, "3"),
        ("ms_async_rdma_dscp", OptType::Int, "96"),
        ("ms_async_rdma_cm", OptType::Bool, "false"),
        ("ms_async_rdma_type", OptType::Str, "ib"),
        ("ms_tcp_listen_backlog", OptType::Int, "512"),
        ("ibstack_path_mtu", OptType::Uint, "1024"),
        ("ibstack_rx_first_block", OptType::Uint, "256"),
        ("ibstack_qp_history_len", OptType::Uint, "64"),
        ("ibstack_max_inflight_per_conn", OptType::Uint, "0"),
        ("ibstack_cq_depth", OptType::Uint, "30000"),
        ("ibstack_stack_thread", OptType::Bool, "true"),
        ("ibstack_retry_cnt", OptType::Uint, "7"),
        ("ibstack_tcp_keepalive", OptType::Uint, "30"),
        ("ibstack_handshake_timeout_ms", OptType::Uint, "5000"),
        ("ibstack_max_rx_per_conn", OptType::Uint, "0"),
        ("ibstack_preload_ports", OptType::Str, "3300,6789,6800-7300"),
        ("ibstack_preload_accept_tcp", OptType::Bool, "true"),
        ("ibstack_preload_fallback", OptType::Bool, "true"),
        ("ibstack_gid_select", OptType::Str, "index"),
        ("ibstack_tx_coalesce", OptType::Bool, "true"),
        ("ibstack_max_inline", OptType::Uint, "128"),
    ];
    let got: Vec<(&str, OptType, &str)> = options()
        .iter()
        .map(|o| (o.name, o.ty, o.default))
        .collect();
    assert_eq!(got, expected.to_vec());
    for o in options() {
        assert!(!o.desc.is_empty(), "{} has no description", o.name);
        assert_eq!(
            o.desc.starts_with("ibstack extension"),
            o.name.starts_with("ibstack_"),
            "{}",
            o.name
        );
    }
}

#[test]
fn type_names_are_cephs() {
    let names: Vec<&str> = [
        OptType::Str,
        OptType::Bool,
        OptType::Size,
        OptType::Uint,
        OptType::Int,
    ]
    .iter()
    .map(|t| t.name())
    .collect();
    assert_eq!(names, ["str", "bool", "size", "uint", "int"]);
}

#[test]
fn defaults_equal_the_table() {
    let c = Config::default();
    assert_eq!(c.device_name, "");
    assert!(!c.enable_hugepage);
    assert_eq!(c.buffer_size, 131072);
    assert_eq!(c.send_buffers, 1024);
    assert_eq!(c.receive_buffers, 32768);
    assert_eq!(c.receive_queue_len, 4096);
    assert!(c.support_srq);
    assert_eq!(c.port_num, 1);
    assert_eq!(c.polling_us, 1000);
    assert_eq!(c.gid_idx, 0);
    assert_eq!(c.local_gid, "");
    assert_eq!(c.roce_ver, 1);
    assert_eq!(c.sl, 3);
    assert_eq!(c.dscp, 96);
    assert!(!c.cm);
    assert_eq!(c.rdma_type, "ib");
    assert_eq!(c.tcp_listen_backlog, 512);
    assert_eq!(c.path_mtu, 1024);
    assert_eq!(c.rx_first_block, 256);
    assert_eq!(c.qp_history_len, 64);
    assert_eq!(c.max_inflight_per_conn, 0);
    assert_eq!(c.cq_depth, 30000);
    assert!(c.stack_thread);
    assert_eq!(c.retry_cnt, 7);
    assert_eq!(c.tcp_keepalive, 30);
    assert_eq!(c.handshake_timeout_ms, 5000);
    assert_eq!(c.max_rx_per_conn, 0);
    assert_eq!(c.preload_ports, "3300,6789,6800-7300");
    assert!(c.preload_accept_tcp && c.preload_fallback);
    assert_eq!(c.gid_select, "index");
    assert!(c.tx_coalesce);
    assert_eq!(c.max_inline, 128);
    // get() of every option is the table's default text.
    for o in options() {
        assert_eq!(c.get(o.name).unwrap(), o.default, "{}", o.name);
    }
}

/// The table, `Default`, the setters and the getters agree for every
/// option: each option's setter and getter use the same field, no two options
/// share a field, and the table's default text is what `get` returns.
#[test]
fn each_option_sets_and_gets_its_own_field() {
    // For every option, in table order, a canonical value that is not its default.
    let other = [
        ("ms_async_rdma_device_name", "mlx5_1"),
        ("ms_async_rdma_enable_hugepage", "true"),
        ("ms_async_rdma_buffer_size", "65536"),
        ("ms_async_rdma_send_buffers", "2000"),
        ("ms_async_rdma_receive_buffers", "1000000"),
        ("ms_async_rdma_receive_queue_len", "8192"),
        ("ms_async_rdma_support_srq", "false"),
        ("ms_async_rdma_port_num", "2"),
        ("ms_async_rdma_polling_us", "0"),
        ("ms_async_rdma_gid_idx", "3"),
        ("ms_async_rdma_local_gid", "fe80::1"),
        ("ms_async_rdma_roce_ver", "2"),
        ("ms_async_rdma_sl", "5"),
        ("ms_async_rdma_dscp", "104"),
        ("ms_async_rdma_cm", "true"),
        ("ms_async_rdma_type", "iwarp"),
        ("ms_tcp_listen_backlog", "-1"),
        ("ibstack_path_mtu", "2048"),
        ("ibstack_rx_first_block", "0"),
        ("ibstack_qp_history_len", "1000"),
        ("ibstack_max_inflight_per_conn", "16"),
        ("ibstack_cq_depth", "60000"),
        ("ibstack_stack_thread", "false"),
        ("ibstack_retry_cnt", "6"),
        ("ibstack_tcp_keepalive", "0"),
        ("ibstack_handshake_timeout_ms", "0"),
        ("ibstack_max_rx_per_conn", "64"),
        ("ibstack_preload_ports", "6800"),
        ("ibstack_preload_accept_tcp", "false"),
        ("ibstack_preload_fallback", "false"),
        ("ibstack_gid_select", "auto"),
        ("ibstack_tx_coalesce", "false"),
        ("ibstack_max_inline", "0"),
    ];
    assert_eq!(other.len(), options().len());
    let defaults = Config::default();
    for (o, (name, text)) in options().iter().zip(other) {
        assert_eq!(o.name, name, "the list above follows the table");
        assert!(!o.desc.starts_with(' '), "{name}: {:?}", o.desc);
        assert_eq!(defaults.get(name).unwrap(), o.default, "{name}");
        assert_ne!(text, o.default, "{name}");

        let mut c = Config::default();
        c.set(name, text).unwrap();
        assert_ne!(c, defaults, "setting {name} changed no field");
        for p in options() {
            let want = if p.name == name { text } else { p.default };
            assert_eq!(
                c.get(p.name).unwrap(),
                want,
                "after setting {name}: {}",
                p.name
            );
        }
        c.set(name, o.default).unwrap();
        assert_eq!(c, defaults, "setting {name} back to its default text");
    }
}

#[test]
fn setting_every_default_text_gives_the_default_config() {
    // Start from values that differ from the defaults in every field.
    let mut c = Config::default();
    for (k, v) in [
        ("ms_async_rdma_device_name", "x"),
        ("ms_async_rdma_enable_hugepage", "true"),
        ("ms_async_rdma_buffer_size", "4096"),
        ("ms_async_rdma_send_buffers", "7"),
        ("ms_async_rdma_receive_buffers", "7"),
        ("ms_async_rdma_receive_queue_len", "7"),
        ("ms_async_rdma_support_srq", "false"),
        ("ms_async_rdma_port_num", "2"),
        ("ms_async_rdma_polling_us", "7"),
        ("ms_async_rdma_gid_idx", "7"),
        ("ms_async_rdma_local_gid", "x"),
        ("ms_async_rdma_roce_ver", "2"),
        ("ms_async_rdma_sl", "7"),
        ("ms_async_rdma_dscp", "7"),
        ("ms_async_rdma_cm", "true"),
        ("ms_async_rdma_type", "iwarp"),
        ("ms_tcp_listen_backlog", "7"),
        ("ibstack_path_mtu", "4096"),
        ("ibstack_rx_first_block", "7"),
        ("ibstack_qp_history_len", "7"),
        ("ibstack_max_inflight_per_conn", "7"),
        ("ibstack_cq_depth", "7"),
    ] {
        c.set(k, v).unwrap();
        assert_ne!(c.get(k).unwrap(), find_option(k).unwrap().default, "{k}");
    }
    for o in options() {
        c.set(o.name, o.default).unwrap();
    }
    assert_eq!(c, Config::default());
}

// ----- size (IEC) -----------------------------------------------------

#[test]
fn size_accepts_iec_units() {
    for (text, bytes) in [
        ("131072", 131072u64),
        ("128K", 131072),
        ("128Ki", 131072),
        ("128KB", 131072),
        ("128KiB", 131072),
        ("1M", 1 << 20),
        ("1MiB", 1 << 20),
        ("1G", 1 << 30),
        ("100B", 100),
        ("+4K", 4096),
        ("1", 1),
    ] {
        let c = set_ok("ms_async_rdma_buffer_size", text);
        assert_eq!(c.buffer_size, bytes, "{text}");
        assert_eq!(
            c.get("ms_async_rdma_buffer_size").unwrap(),
            bytes.to_string()
        );
    }
}

#[test]
fn iec_cast_matches_ceph_beyond_our_range() {
    assert_eq!(iec_cast("1T"), Ok(1 << 40));
    assert_eq!(iec_cast("1P"), Ok(1 << 50));
    assert_eq!(iec_cast("15E"), Ok(15 << 60));
    assert_eq!(iec_cast("16E"), Err(NumErr::TooBig));
    assert_eq!(iec_cast("-0"), Ok(0));
    assert_eq!(iec_cast("-1"), Err(NumErr::Negative));
    assert_eq!(iec_cast("1Bi"), Err(NumErr::BadUnit("Bi".into())));
    assert_eq!(iec_cast("1KX"), Err(NumErr::BadUnit("KX".into())));
    assert_eq!(iec_cast("1KiBB"), Err(NumErr::BadUnit("KiBB".into())));
    assert_eq!(iec_cast("99999999999999999999"), Err(NumErr::TooBig));
    assert_eq!(iec_cast("K"), Err(NumErr::NotNumber));
}

#[test]
fn size_rejects_bad_text() {
    for bad in [
        "-1", "-4K", "1X", "1k", "1kb", "1.5K", "", "K", "1 K", " 1", "12abc", "0x10", "1Bi",
    ] {
        let e = set_err("ms_async_rdma_buffer_size", bad);
        assert!(e.msg.contains("ms_async_rdma_buffer_size"), "{}", e.msg);
        assert!(e.msg.contains("(size)"), "{}", e.msg);
        assert!(e.msg.contains(&format!("{bad:?}")), "{}", e.msg);
    }
    assert!(set_err("ms_async_rdma_buffer_size", "-1")
        .msg
        .contains("negative"));
    assert!(set_err("ms_async_rdma_buffer_size", "1X")
        .msg
        .contains("unknown unit suffix \"X\""));
    assert!(set_err("ms_async_rdma_buffer_size", "16E")
        .msg
        .contains("too large"));
}

#[test]
fn buffer_size_range() {
    assert_eq!(
        set_ok("ms_async_rdma_buffer_size", "1GiB").buffer_size,
        1 << 30
    );
    let e = set_err("ms_async_rdma_buffer_size", "0");
    assert!(e.msg.contains("1..=1073741824"), "{}", e.msg);
    let e = set_err("ms_async_rdma_buffer_size", "2G");
    assert!(
        e.msg.contains("1..=1073741824") && e.msg.contains("\"2G\""),
        "{}",
        e.msg
    );
    set_err("ms_async_rdma_buffer_size", "1073741825");
}

// ----- uint / int (SI) ------------------------------------------------

#[test]
fn uint_uses_si_powers_of_1000() {
    for (text, n) in [
        ("1K", 1000u32),
        ("2M", 2_000_000),
        ("4G", 4_000_000_000),
        ("+7", 7),
        ("-0", 0),
        ("0", 0),
    ] {
        assert_eq!(
            set_ok("ms_async_rdma_polling_us", text).polling_us,
            n,
            "{text}"
        );
    }
    assert_eq!(
        set_ok("ms_async_rdma_send_buffers", "1K").send_buffers,
        1000
    );
    assert_eq!(
        set_ok("ms_async_rdma_receive_buffers", "64K").receive_buffers,
        64000
    );
    assert_eq!(
        set_ok("ms_async_rdma_polling_us", "4294967295").polling_us,
        u32::MAX
    );
}

#[test]
fn si_cast_matches_ceph() {
    assert_eq!(si_cast("1E", false), Ok(1_000_000_000_000_000_000));
    assert_eq!(si_cast("18E", false), Ok(18_000_000_000_000_000_000));
    assert_eq!(si_cast("19E", false), Err(NumErr::TooBig));
    assert_eq!(si_cast("-9E", true), Ok(-9_000_000_000_000_000_000));
    assert_eq!(si_cast("10E", true), Err(NumErr::TooBig));
    assert_eq!(si_cast("9223372036854775808", false), Err(NumErr::TooBig));
    // 'B' is recognised but not stripped, so the number does not parse.
    assert_eq!(si_cast("100B", false), Err(NumErr::NotNumber));
    // strtoll skips leading white space; only the last char is a unit.
    assert_eq!(si_cast(" 5K", false), Ok(5000));
    assert_eq!(si_cast(" 5", false), Err(NumErr::BadUnit("5".into())));
    assert_eq!(si_cast("1Ki", false), Err(NumErr::BadUnit("i".into())));
}

#[test]
fn uint_rejects_bad_text_and_overflow() {
    let e = set_err("ms_async_rdma_port_num", "abc");
    assert!(
        e.msg
            .starts_with("ms_async_rdma_port_num = \"abc\": expected an unsigned integer (uint)"),
        "{}",
        e.msg
    );
    let e = set_err("ms_async_rdma_polling_us", "-1");
    assert!(
        e.msg.contains("negative") && e.msg.contains("(uint)"),
        "{}",
        e.msg
    );
    let e = set_err("ms_async_rdma_polling_us", "4294967296");
    assert!(
        e.msg.contains("32 bits") && e.msg.contains("0..=4294967295"),
        "{}",
        e.msg
    );
    set_err("ms_async_rdma_polling_us", "5G");
    set_err("ms_async_rdma_polling_us", "99999999999999999999");
    let e = set_err("ms_async_rdma_polling_us", "1k");
    assert!(e.msg.contains("unknown unit suffix \"k\""), "{}", e.msg);
    for bad in [
        "1Ki", "100B", "1.5", "", " 7", "7 ", "0x10", "1,000", "K", "+-1",
    ] {
        let e = set_err("ms_async_rdma_receive_buffers", bad);
        assert!(e.msg.contains("(uint)"), "{bad:?}: {}", e.msg);
    }
}

#[test]
fn int_parsing_and_overflow() {
    assert_eq!(set_ok("ms_tcp_listen_backlog", "-5").tcp_listen_backlog, -5);
    assert_eq!(
        set_ok("ms_tcp_listen_backlog", "1K").tcp_listen_backlog,
        1000
    );
    assert_eq!(
        set_ok("ms_tcp_listen_backlog", "-2147483648").tcp_listen_backlog,
        i32::MIN
    );
    let e = set_err("ms_tcp_listen_backlog", "3000000000");
    assert!(
        e.msg.contains("(int)") && e.msg.contains("32-bit"),
        "{}",
        e.msg
    );
    set_err("ms_tcp_listen_backlog", "3G");
    let e = set_err("ms_async_rdma_sl", "x3");
    assert!(e.msg.contains("expected an integer (int)"), "{}", e.msg);
}

// ----- bool -------------------------------------------------------------

#[test]
fn bool_follows_cephs_rule() {
    for (text, b) in [
        ("true", true),
        ("TRUE", true),
        ("True", true),
        ("false", false),
        ("FaLsE", false),
        ("1", true),
        ("0", false),
        ("-1", true),
        ("2", true),
        ("+0", false),
        ("00", false),
        ("2147483647", true),
    ] {
        assert_eq!(set_ok("ms_async_rdma_cm", text).cm, b, "{text}");
    }
    for bad in [
        "yes",
        "no",
        "on",
        "off",
        "",
        "t",
        "0x1",
        "1.0",
        "2147483648",
        "1K",
    ] {
        let e = set_err("ms_async_rdma_support_srq", bad);
        assert!(e.msg.contains("ms_async_rdma_support_srq"), "{}", e.msg);
        assert!(e.msg.contains("expected a boolean (bool)"), "{}", e.msg);
    }
}

// ----- str ----------------------------------------------------------------

#[test]
fn strings_are_taken_as_is() {
    assert_eq!(
        set_ok("ms_async_rdma_device_name", "mlx5_0").device_name,
        "mlx5_0"
    );
    let gid = "fe80:0000:0000:0000:0a0b:0cff:fe0d:0e0f";
    assert_eq!(set_ok("ms_async_rdma_local_gid", gid).local_gid, gid);
    assert_eq!(set_ok("ms_async_rdma_type", "iwarp").rdma_type, "iwarp");
    // Ceph treats every value but "iwarp" as ib; the device layer warns about them.
    for other in ["roce", "IB", ""] {
        assert_eq!(set_ok("ms_async_rdma_type", other).rdma_type, other);
    }
}

// ----- range checks -------------------------------------------------------

#[test]
fn range_checks() {
    let ok: &[(&str, &str)] = &[
        ("ms_async_rdma_port_num", "1"),
        ("ms_async_rdma_port_num", "255"),
        ("ms_async_rdma_sl", "0"),
        ("ms_async_rdma_sl", "15"),
        ("ms_async_rdma_dscp", "0"),
        ("ms_async_rdma_dscp", "255"),
        ("ms_async_rdma_gid_idx", "0"),
        ("ms_async_rdma_gid_idx", "65535"),
        ("ms_async_rdma_send_buffers", "1"),
        ("ms_async_rdma_receive_queue_len", "1"),
        ("ms_async_rdma_polling_us", "0"),
        ("ms_async_rdma_roce_ver", "0"),
        ("ms_async_rdma_roce_ver", "2"),
        ("ibstack_cq_depth", "1"),
        ("ibstack_rx_first_block", "0"),
    ];
    for (k, v) in ok {
        let c = set_ok(k, v);
        assert_eq!(c.get(k).unwrap(), *v, "{k}");
    }
    let bad: &[(&str, &str, &str)] = &[
        ("ms_async_rdma_port_num", "0", "1..=255"),
        ("ms_async_rdma_port_num", "256", "1..=255"),
        ("ms_async_rdma_sl", "16", "0..=15"),
        ("ms_async_rdma_sl", "-1", "0..=15"),
        ("ms_async_rdma_dscp", "256", "0..=255"),
        ("ms_async_rdma_dscp", "-1", "0..=255"),
        ("ms_async_rdma_gid_idx", "-1", "0..=65535"),
        ("ms_async_rdma_gid_idx", "65536", "0..=65535"),
        ("ms_async_rdma_send_buffers", "0", "1..="),
        ("ms_async_rdma_receive_queue_len", "0", "1..="),
        ("ms_async_rdma_roce_ver", "3", "0..=2"),
        ("ms_async_rdma_roce_ver", "-1", "0..=2"),
        ("ibstack_cq_depth", "0", "1..="),
    ];
    for (k, v, range) in bad {
        let e = set_err(k, v);
        assert!(
            e.msg.contains(k) && e.msg.contains(&format!("{v:?}")),
            "{}",
            e.msg
        );
        assert!(e.msg.contains(range), "{k}={v}: {}", e.msg);
        let ty = find_option(k).unwrap().ty.name();
        assert!(e.msg.contains(&format!("({ty})")), "{}", e.msg);
    }
}

#[test]
fn max_inline_is_bounded() {
    // 0 turns inlining off; anything up to 1024 bytes is taken as given.
    for v in ["0", "1", "64", "128", "400", "1024"] {
        assert_eq!(set_ok("ibstack_max_inline", v).max_inline.to_string(), v);
    }
    assert_eq!(set_ok("ibstack_max_inline", "1K").max_inline, 1000);
    for bad in ["1025", "4096", "1M", "-1", "auto"] {
        let e = set_err("ibstack_max_inline", bad);
        assert!(e.msg.contains("ibstack_max_inline"), "{}", e.msg);
    }
    // The range error says what is allowed and why.
    let e = set_err("ibstack_max_inline", "2048");
    assert!(e.msg.contains("0..=1024") && e.msg.contains("at most 1024 bytes"), "{}", e.msg);
}

#[test]
fn path_mtu_must_be_an_ib_mtu() {
    for mtu in [256u32, 512, 1024, 2048, 4096] {
        assert_eq!(set_ok("ibstack_path_mtu", &mtu.to_string()).path_mtu, mtu);
    }
    for bad in ["0", "1000", "1500", "9000", "8192"] {
        let e = set_err("ibstack_path_mtu", bad);
        assert!(e.msg.contains("256, 512, 1024, 2048, 4096"), "{}", e.msg);
    }
    // SI: 4K is 4000, not an MTU.
    set_err("ibstack_path_mtu", "4K");
}

#[test]
fn gid_select_is_index_or_auto() {
    assert_eq!(set_ok("ibstack_gid_select", "auto").gid_select, "auto");
    assert_eq!(set_ok("ibstack_gid_select", "index").gid_select, "index");
    for bad in ["", "Auto", "1", "roce"] {
        let e = set_err("ibstack_gid_select", bad);
        assert!(e.msg.contains("\"index\", \"auto\""), "{}", e.msg);
    }
}

// ----- keys -------------------------------------------------------------

#[test]
fn normalize_key_follows_ceph() {
    assert_eq!(
        normalize_key("ms async rdma device name"),
        "ms_async_rdma_device_name"
    );
    assert_eq!(normalize_key("  ms_async_rdma_sl \t"), "ms_async_rdma_sl");
    assert_eq!(normalize_key("ms  \t async"), "ms_async");
    assert_eq!(
        normalize_key("ms-async-rdma-port-num"),
        "ms_async_rdma_port_num"
    );
    assert_eq!(normalize_key("MS_Async"), "MS_Async");
    assert_eq!(normalize_key(""), "");
}

#[test]
fn set_and_get_accept_spaced_and_dashed_keys() {
    let mut c = Config::default();
    c.set("ms async rdma port num", "2").unwrap();
    c.set("ms-async-rdma-sl", "5").unwrap();
    c.set("  ms_async_rdma_dscp  ", "10").unwrap();
    assert_eq!((c.port_num, c.sl, c.dscp), (2, 5, 10));
    assert_eq!(c.get("ms async rdma sl").unwrap(), "5");
    assert_eq!(c.get("ibstack-cq-depth").unwrap(), "30000");
}

#[test]
fn unknown_key_names_the_key_and_a_close_match() {
    let e = set_err("ms_async_rdma_gid_index", "1");
    assert!(e.msg.contains("\"ms_async_rdma_gid_index\""), "{}", e.msg);
    assert!(
        e.msg.contains("did you mean ms_async_rdma_gid_idx?"),
        "{}",
        e.msg
    );

    let e = set_err("ms_async_rdma_bufer_size", "1");
    assert!(
        e.msg.contains("did you mean ms_async_rdma_buffer_size?"),
        "{}",
        e.msg
    );

    let e = set_err("port_num", "1");
    assert!(
        e.msg.contains("did you mean ms_async_rdma_port_num?"),
        "{}",
        e.msg
    );

    let e = set_err("MS_ASYNC_RDMA_PORT_NUM", "1");
    assert!(
        e.msg.contains("did you mean ms_async_rdma_port_num?"),
        "{}",
        e.msg
    );
    assert!(e.msg.contains("case-sensitive"), "{}", e.msg);

    let e = set_err("osd_pool_default_size", "3");
    assert!(
        e.msg.contains("osd_pool_default_size") && !e.msg.contains("did you mean"),
        "{}",
        e.msg
    );

    let e = Config::default()
        .get("ms_async_rdma_gid_index")
        .unwrap_err();
    assert_eq!(e.errno, libc::EINVAL);
    assert!(
        e.msg.contains("did you mean ms_async_rdma_gid_idx?"),
        "{}",
        e.msg
    );

    assert_eq!(set_err("", "1").errno, libc::EINVAL);
}

// ----- get round trip -----------------------------------------------------

#[test]
fn get_round_trips_every_option() {
    let mut c = Config::default();
    let values = [
        ("ms_async_rdma_device_name", "mlx5_1", "mlx5_1"),
        ("ms_async_rdma_enable_hugepage", "True", "true"),
        ("ms_async_rdma_buffer_size", "64KiB", "65536"),
        ("ms_async_rdma_send_buffers", "2K", "2000"),
        ("ms_async_rdma_receive_buffers", "1M", "1000000"),
        ("ms_async_rdma_receive_queue_len", "8192", "8192"),
        ("ms_async_rdma_support_srq", "0", "false"),
        ("ms_async_rdma_port_num", "2", "2"),
        ("ms_async_rdma_polling_us", "0", "0"),
        ("ms_async_rdma_gid_idx", "3", "3"),
        ("ms_async_rdma_local_gid", "fe80::1", "fe80::1"),
        ("ms_async_rdma_roce_ver", "2", "2"),
        ("ms_async_rdma_sl", "+5", "5"),
        ("ms_async_rdma_dscp", "104", "104"),
        ("ms_async_rdma_cm", "7", "true"),
        ("ms_async_rdma_type", "iwarp", "iwarp"),
        ("ms_tcp_listen_backlog", "-1", "-1"),
        ("ibstack_path_mtu", "2048", "2048"),
        ("ibstack_rx_first_block", "0", "0"),
        ("ibstack_qp_history_len", "1K", "1000"),
        ("ibstack_max_inflight_per_conn", "16", "16"),
        ("ibstack_cq_depth", "60000", "60000"),
        ("ibstack_stack_thread", "FALSE", "false"),
        ("ibstack_retry_cnt", "5", "5"),
        ("ibstack_tcp_keepalive", "1K", "1000"),
        ("ibstack_handshake_timeout_ms", "2K", "2000"),
        ("ibstack_max_rx_per_conn", "1K", "1000"),
        ("ibstack_preload_ports", "3300", "3300"),
        ("ibstack_preload_accept_tcp", "0", "false"),
        ("ibstack_preload_fallback", "TRUE", "true"),
        ("ibstack_gid_select", "auto", "auto"),
        ("ibstack_tx_coalesce", "0", "false"),
        ("ibstack_max_inline", "1K", "1000"),
    ];
    assert_eq!(values.len(), options().len());
    for (k, input, canonical) in values {
        c.set(k, input).unwrap();
        assert_eq!(c.get(k).unwrap(), canonical, "{k}");
    }
    // Feeding every canonical text back reproduces the same config.
    for o in options() {
        let mut d = Config::default();
        for p in options() {
            d.set(p.name, &c.get(p.name).unwrap()).unwrap();
        }
        assert_eq!(d, c, "{}", o.name);
    }
}

// ----- ceph.conf ----------------------------------------------------------

const CEPH_CONF: &str = r#"# /etc/ceph/ceph.conf for a three-node RDMA test cluster
; generated by hand

[global]
    fsid = 0f3c2a8e-5b1d-4c7e-9a61-2d4f8b7c9e10
    mon initial members = a, b, c
    mon host = [v2:10.0.0.1:3300,v1:10.0.0.1:6789],[v2:10.0.0.2:3300,v1:10.0.0.2:6789]
    auth cluster required = cephx
    osd pool default size = 3
    ms_type = async+rdma
    ms cluster type = async+rdma
    ms async rdma device name = mlx5_0        ; the ConnectX-5
    ms_async_rdma_port_num = 1
    ms-async-rdma-gid-idx = 3                 # RoCEv2 GID
    ms_async_rdma_local_gid = "fe80:0000:0000:0000:0a0b:0cff:fe0d:0e0f"
    ms_async_rdma_buffer_size = 128K
    ms_async_rdma_send_buffers = 2K
    ms_async_rdma_type = "ib"
    ibstack_path_mtu = 4096

[osd]
    osd data = /var/lib/ceph/osd/$cluster-$id
    admin socket = "/var/run/ceph/$cluster-$name.asok"
    ms_async_rdma_receive_buffers = 64K
    ms_async_rdma_enable_hugepage = true
    ms_async_rdma_polling_us = \
        500

[osd.3]
    host = node3
    ms_async_rdma_device_name = mlx5_1
    ms_async_rdma_sl = 5
    ms_async_rdma_support_srq = false
    ms_async_rdma_polling_us = 250
    ibstack_cq_depth = 60000

[mon]
    mon data = /var/lib/ceph/mon/$cluster-$id
    ms_async_rdma_cm = 1
    ms_tcp_listen_backlog = 1024

[client]
    rbd cache = true
"#;

fn global_expected() -> Config {
    Config {
        device_name: "mlx5_0".into(),
        port_num: 1,
        gid_idx: 3,
        local_gid: "fe80:0000:0000:0000:0a0b:0cff:fe0d:0e0f".into(),
        buffer_size: 131072,
        send_buffers: 2000,
        rdma_type: "ib".into(),
        path_mtu: 4096,
        ..Config::default()
    }
}

fn osd_expected() -> Config {
    Config {
        receive_buffers: 64000,
        enable_hugepage: true,
        polling_us: 500,
        ..global_expected()
    }
}

fn load(text: &str, section: &str) -> Result<Config> {
    let mut c = Config::default();
    c.load_str(text, "ceph.conf", section).map(|_| c)
}

#[test]
fn realistic_ceph_conf_per_section() {
    assert_eq!(load(CEPH_CONF, "").unwrap(), global_expected());
    assert_eq!(load(CEPH_CONF, "global").unwrap(), global_expected());
    assert_eq!(load(CEPH_CONF, "osd").unwrap(), osd_expected());
    assert_eq!(
        load(CEPH_CONF, "osd.3").unwrap(),
        Config {
            device_name: "mlx5_1".into(),
            sl: 5,
            support_srq: false,
            polling_us: 250,
            cq_depth: 60000,
            ..osd_expected()
        }
    );
    // Another OSD gets [osd] but not [osd.3].
    assert_eq!(load(CEPH_CONF, "osd.7").unwrap(), osd_expected());
    assert_eq!(
        load(CEPH_CONF, "mon").unwrap(),
        Config {
            cm: true,
            tcp_listen_backlog: 1024,
            ..global_expected()
        }
    );
    assert_eq!(load(CEPH_CONF, "client.admin").unwrap(), global_expected());
}

#[test]
fn load_file_reads_a_real_file_and_reports_os_errors() {
    let dir = std::env::temp_dir().join(format!("ibstack-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("ceph.conf");
    std::fs::write(&path, CEPH_CONF).unwrap();
    let mut c = Config::default();
    c.load_file(&path, "osd").unwrap();
    assert_eq!(c, osd_expected());

    // A bad value is reported with the path and line.
    let bad = dir.join("bad.conf");
    std::fs::write(&bad, "[global]\n\nms_async_rdma_port_num = abc\n").unwrap();
    let e = c.load_file(&bad, "").unwrap_err();
    assert_eq!(e.errno, libc::EINVAL);
    assert!(
        e.msg.starts_with(&format!("{}:3: ", bad.display())),
        "{}",
        e.msg
    );
    assert_eq!(c, osd_expected());

    // Invalid UTF-8 is rejected with its line.
    let bin = dir.join("bin.conf");
    std::fs::write(
        &bin,
        b"[global]\nms_async_rdma_device_name = \xe2\x28\xa1\n",
    )
    .unwrap();
    let e = c.load_file(&bin, "").unwrap_err();
    assert_eq!(e.errno, libc::EINVAL);
    assert!(
        e.msg.contains(":2:") && e.msg.contains("UTF-8"),
        "{}",
        e.msg
    );

    let missing = dir.join("does-not-exist.conf");
    let e = c.load_file(&missing, "").unwrap_err();
    assert_eq!(e.errno, libc::ENOENT);
    assert!(e.msg.contains(&missing.display().to_string()), "{}", e.msg);

    let e = c.load_file(&dir, "").unwrap_err();
    assert_eq!(e.errno, libc::EISDIR, "{}", e.msg);

    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(c, osd_expected());
}

#[test]
fn bad_value_message_names_file_line_key_value_and_type() {
    let text = "[global]\nfsid = x\n\n\n\n\n\n\n\n\n\nms_async_rdma_port_num = \"abc\"\n";
    let e = load(text, "").unwrap_err();
    assert_eq!(e.errno, libc::EINVAL);
    assert!(
        e.msg.starts_with(
            "ceph.conf:12: ms_async_rdma_port_num = \"abc\": expected an unsigned integer (uint)"
        ),
        "{}",
        e.msg
    );
    let e = load("[osd]\nms async rdma enable hugepage = maybe\n", "osd.1").unwrap_err();
    assert!(
        e.msg
            .starts_with("ceph.conf:2: ms_async_rdma_enable_hugepage = \"maybe\""),
        "{}",
        e.msg
    );
    assert!(e.msg.contains("(bool)"), "{}", e.msg);
    let e = load("[global]\nms_async_rdma_buffer_size = 12Q\n", "").unwrap_err();
    assert!(
        e.msg
            .starts_with("ceph.conf:2: ms_async_rdma_buffer_size = \"12Q\""),
        "{}",
        e.msg
    );
    assert!(e.msg.contains("(size)"), "{}", e.msg);
}

#[test]
fn overriding_follows_section_priority_not_file_order() {
    let text = "[osd.3]\nms_async_rdma_sl = 7\n[osd]\nms_async_rdma_sl = 6\n[global]\nms_async_rdma_sl = 5\n";
    assert_eq!(load(text, "osd.3").unwrap().sl, 7);
    assert_eq!(load(text, "osd.4").unwrap().sl, 6);
    assert_eq!(load(text, "osd").unwrap().sl, 6);
    assert_eq!(load(text, "").unwrap().sl, 5);
    assert_eq!(load(text, "mon").unwrap().sl, 5);
}

#[test]
fn last_occurrence_wins_and_sections_merge() {
    let text =
        "[global]\nms_async_rdma_sl = 1\nms_async_rdma_sl = 2\n[osd]\nms_async_rdma_dscp = 8\n\
                [global]\nms_async_rdma_sl = 4\nms_async_rdma_dscp = 9\n";
    let c = load(text, "osd").unwrap();
    assert_eq!((c.sl, c.dscp), (4, 8));
}

#[test]
fn only_the_winning_value_is_type_checked() {
    let text = "[global]\nms_async_rdma_port_num = abc\n[osd.3]\nms_async_rdma_port_num = 2\n";
    assert_eq!(load(text, "osd.3").unwrap().port_num, 2);
    let e = load(text, "osd").unwrap_err();
    assert!(
        e.msg
            .starts_with("ceph.conf:2: ms_async_rdma_port_num = \"abc\""),
        "{}",
        e.msg
    );
    // Values in sections that do not apply are not type-checked.
    assert_eq!(
        load("[mon]\nms_async_rdma_sl = 99\n", "osd").unwrap(),
        Config::default()
    );
}

#[test]
fn syntax_errors_anywhere_fail_the_load() {
    let cases: &[(&str, &str)] = &[
        (
            "[global]\nms_async_rdma_sl = 1\n[osd\nms_async_rdma_sl = 2\n",
            "ceph.conf:3: malformed section header \"[osd\"",
        ),
        (
            "[global]\n        who_what_where\n",
            "ceph.conf:2: expected \"key = value\"",
        ),
        (
            "[global]\n[]\n",
            "ceph.conf:2: malformed section header \"[]\"",
        ),
        ("[global] junk\n", "ceph.conf:1: unexpected text \"junk\""),
        (
            "[mon]\nkeyring = \"unterminated quoted string\n[osd]\n",
            "ceph.conf:2: unterminated quoted value of keyring",
        ),
        (
            "[mon]\nms_async_rdma_type = \"ib\" extra\n",
            "ceph.conf:2: unexpected text \"extra\"",
        ),
        ("[mon]\n = 3\n", "ceph.conf:2: missing option name"),
        ("[mon]\nfoo[1] = 3\n", "ceph.conf:2: '[' is not allowed"),
        ("[mon # comment]\n", "ceph.conf:1: malformed section header"),
    ];
    for (text, want) in cases {
        for section in ["", "osd", "client.admin"] {
            let mut c = Config::default();
            c.set("ms_async_rdma_sl", "9").unwrap();
            let before = c.clone();
            let e = c.load_str(text, "ceph.conf", section).unwrap_err();
            assert_eq!(e.errno, libc::EINVAL);
            assert!(e.msg.starts_with(want), "{text:?}: {}", e.msg);
            assert_eq!(c, before, "{text:?}");
        }
    }
    let e = load("[global]\n        who_what_where\n", "").unwrap_err();
    assert!(e.msg.contains("\"who_what_where\""), "{}", e.msg);
}

#[test]
fn unknown_key_in_our_namespace_is_an_error_foreign_keys_are_ignored() {
    let text =
        "[global]\nfsid = 1\nmon host = a,b\nms_bind_ipv6 = true\nms tcp read timeout = 900\n\
                \n[osd]\nms_async_rdma_gid_index = 1\n";
    assert_eq!(load(text, "").unwrap(), Config::default());
    assert_eq!(load(text, "mon").unwrap(), Config::default());
    let e = load(text, "osd.0").unwrap_err();
    assert_eq!(e.errno, libc::EINVAL);
    assert!(
        e.msg
            .starts_with("ceph.conf:8: unknown option \"ms_async_rdma_gid_index\""),
        "{}",
        e.msg
    );
    assert!(
        e.msg.contains("did you mean ms_async_rdma_gid_idx?"),
        "{}",
        e.msg
    );

    let e = load("[global]\nibstack_cq_size = 5\n", "").unwrap_err();
    assert!(
        e.msg.contains("ceph.conf:2:") && e.msg.contains("ibstack_cq_depth"),
        "{}",
        e.msg
    );
    let e = load("[global]\nMS_ASYNC_RDMA_SL = 5\n", "").unwrap_err();
    assert!(
        e.msg.contains("did you mean ms_async_rdma_sl?"),
        "{}",
        e.msg
    );
}

#[test]
fn comments_quotes_escapes_and_continuations() {
    let text = concat!(
        "; leading comment\n",
        "# another\n",
        "[global]   ; comment after a header\n",
        "ms_async_rdma_device_name = mlx5_\\#0 # trailing comment\n",
        "ms_async_rdma_local_gid = \"a;b#c\"   ; quotes keep ; and #\n",
        "ms_async_rdma_type = 'iwarp'\n",
        "ms_async_rdma_sl = \\\n",
        "   1\\\n",
        "2\n",
        "# a comment ending in a backslash does not continue \\\n",
        "ms_async_rdma_dscp = 8\n",
        "\tms_async_rdma_roce_ver\t=\t\"  2  \"\n",
        "ms_async_rdma_port_num =  \"2\" \n",
        "ibstack_qp_history_len =\n",
    );
    // An empty value for a uint is an error; drop that line for the success case.
    let ok_text = text.replace("ibstack_qp_history_len =\n", "");
    let c = load(&ok_text, "").unwrap();
    assert_eq!(c.device_name, "mlx5_#0");
    assert_eq!(c.local_gid, "a;b#c");
    assert_eq!(c.rdma_type, "iwarp");
    assert_eq!(c.sl, 12);
    assert_eq!(c.dscp, 8);
    assert_eq!(
        c.roce_ver, 2,
        "quoted values are trimmed after unquoting, as in Ceph"
    );
    assert_eq!(c.port_num, 2);
    let e = load(text, "").unwrap_err();
    assert!(
        e.msg
            .starts_with("ceph.conf:14: ibstack_qp_history_len = \"\""),
        "{}",
        e.msg
    );
    assert!(e.msg.contains("empty"), "{}", e.msg);

    // Ceph's own escaping examples.
    let esc = "[apple \\]\\[]\nms_async_rdma_device_name = the \\\"scare quotes\\\"\n\
               [mon]\nms_async_rdma_local_gid = \"nested \\\"quotes\\\"\"\n\
               [osd]\nms_async_rdma_local_gid = \"backslash\\\\\"\n";
    assert_eq!(
        load(esc, "apple ][").unwrap().device_name,
        "the \"scare quotes\""
    );
    assert_eq!(load(esc, "mon").unwrap().local_gid, "nested \"quotes\"");
    assert_eq!(load(esc, "osd").unwrap().local_gid, "backslash\\");
}

#[test]
fn line_endings_leading_keys_and_section_names() {
    // CRLF, no final newline, a byte-order mark.
    let c = load(
        "\u{feff}[global]\r\nms_async_rdma_sl = 4\r\nms_async_rdma_dscp = 12",
        "",
    )
    .unwrap();
    assert_eq!((c.sl, c.dscp), (4, 12));
    let e = load("[global]\r\n\r\nms_async_rdma_sl = 44\r\n", "").unwrap_err();
    assert!(
        e.msg.starts_with("ceph.conf:3: ms_async_rdma_sl = \"44\""),
        "{}",
        e.msg
    );
    // Keys before the first header belong to [global].
    let c = load("ms_async_rdma_sl = 2\n[osd]\nms_async_rdma_dscp = 1\n", "").unwrap();
    assert_eq!((c.sl, c.dscp), (2, 96));
    // Section names are not trimmed (as in Ceph): [ osd ] is not [osd].
    assert_eq!(
        load("[ osd ]\nms_async_rdma_sl = 2\n", "osd").unwrap().sl,
        3
    );
    assert_eq!(
        load("[ osd ]\nms_async_rdma_sl = 2\n", " osd ").unwrap().sl,
        3
    );
    // Empty text and comment-only text load as defaults.
    assert_eq!(load("", "osd.1").unwrap(), Config::default());
    assert_eq!(
        load("# nothing\n\n   ; here\n", "").unwrap(),
        Config::default()
    );
}

#[test]
fn failed_loads_and_sets_leave_the_config_unchanged() {
    let mut c = Config::default();
    c.set("ms_async_rdma_device_name", "mlx5_9").unwrap();
    let before = c.clone();
    // Valid lines first, then a bad value: nothing of it is applied.
    let text = "[global]\nms_async_rdma_sl = 1\nms_async_rdma_dscp = 2\nms_async_rdma_cq = 3\n";
    assert!(c.load_str(text, "x.conf", "").is_err());
    assert_eq!(c, before);
    let text = "[global]\nms_async_rdma_sl = 1\nms_async_rdma_port_num = 0\n";
    assert!(c.load_str(text, "x.conf", "").is_err());
    assert_eq!(c, before);
    let text = "[global]\nms_async_rdma_sl = 1\n[broken\n";
    assert!(c.load_str(text, "x.conf", "").is_err());
    assert_eq!(c, before);
    assert!(c.set("ms_async_rdma_sl", "16").is_err());
    assert!(c.set("nope", "1").is_err());
    assert_eq!(c, before);
    // And a good load applies everything.
    c.load_str(
        "[global]\nms_async_rdma_sl = 1\nms_async_rdma_dscp = 2\n",
        "x.conf",
        "",
    )
    .unwrap();
    assert_eq!((c.sl, c.dscp, c.device_name.as_str()), (1, 2, "mlx5_9"));
}

// ----- JSON -------------------------------------------------------------

#[derive(Debug, PartialEq)]
enum Json {
    Obj(Vec<(String, Json)>),
    Str(String),
    Num(String),
    Bool(bool),
}

/// A small strict JSON parser (objects, strings, numbers, booleans).
fn parse_json(s: &str) -> std::result::Result<Json, String> {
    struct P<'a> {
        b: &'a [u8],
        i: usize,
    }
    impl P<'_> {
        fn ws(&mut self) {
            while self.i < self.b.len() && matches!(self.b[self.i], b' ' | b'\t' | b'\n' | b'\r') {
                self.i += 1;
            }
        }
        fn eat(&mut self, c: u8) -> std::result::Result<(), String> {
            self.ws();
            if self.b.get(self.i) == Some(&c) {
                self.i += 1;
                Ok(())
            } else {
                Err(format!("expected {:?} at {}", c as char, self.i))
            }
        }
        fn value(&mut self) -> std::result::Result<Json, String> {
            self.ws();
            match self.b.get(self.i) {
                Some(b'{') => {
                    self.i += 1;
                    let mut v = Vec::new();
                    self.ws();
                    if self.b.get(self.i) == Some(&b'}') {
                        self.i += 1;
                        return Ok(Json::Obj(v));
                    }
                    loop {
                        self.ws();
                        let k = self.string()?;
                        self.eat(b':')?;
                        let val = self.value()?;
                        v.push((k, val));
                        self.ws();
                        match self.b.get(self.i) {
                            Some(b',') => self.i += 1,
                            Some(b'}') => {
                                self.i += 1;
                                return Ok(Json::Obj(v));
                            }
                            _ => return Err(format!("expected , or }} at {}", self.i)),
                        }
                    }
                }
                Some(b'"') => Ok(Json::Str(self.string()?)),
                Some(b't') if self.b[self.i..].starts_with(b"true") => {
                    self.i += 4;
                    Ok(Json::Bool(true))
                }
                Some(b'f') if self.b[self.i..].starts_with(b"false") => {
                    self.i += 5;
                    Ok(Json::Bool(false))
                }
                Some(b'-' | b'0'..=b'9') => {
                    let start = self.i;
                    if self.b[self.i] == b'-' {
                        self.i += 1;
                    }
                    let d = self.i;
                    while self.i < self.b.len() && self.b[self.i].is_ascii_digit() {
                        self.i += 1;
                    }
                    let digits = &self.b[d..self.i];
                    if digits.is_empty() || (digits.len() > 1 && digits[0] == b'0') {
                        return Err(format!("bad number at {start}"));
                    }
                    Ok(Json::Num(
                        String::from_utf8(self.b[start..self.i].to_vec()).unwrap(),
                    ))
                }
                _ => Err(format!("unexpected input at {}", self.i)),
            }
        }
        fn string(&mut self) -> std::result::Result<String, String> {
            if self.b.get(self.i) != Some(&b'"') {
                return Err(format!("expected string at {}", self.i));
            }
            self.i += 1;
            let mut out = Vec::new();
            loop {
                let c = *self.b.get(self.i).ok_or("unterminated string")?;
                self.i += 1;
                match c {
                    b'"' => return String::from_utf8(out).map_err(|e| e.to_string()),
                    b'\\' => {
                        let e = *self.b.get(self.i).ok_or("bad escape")?;
                        self.i += 1;
                        let ch = match e {
                            b'"' => '"',
                            b'\\' => '\\',
                            b'/' => '/',
                            b'n' => '\n',
                            b'r' => '\r',
                            b't' => '\t',
                            b'b' => '\x08',
                            b'f' => '\x0c',
                            b'u' => {
                                let hex = std::str::from_utf8(
                                    self.b.get(self.i..self.i + 4).ok_or("bad \\u")?,
                                )
                                .map_err(|e| e.to_string())?;
                                self.i += 4;
                                char::from_u32(
                                    u32::from_str_radix(hex, 16).map_err(|e| e.to_string())?,
                                )
                                .ok_or("bad \\u")?
                            }
                            _ => return Err(format!("bad escape at {}", self.i)),
                        };
                        let mut buf = [0u8; 4];
                        out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                    }
                    c if c < 0x20 => return Err(format!("raw control character at {}", self.i)),
                    c => out.push(c),
                }
            }
        }
    }
    let mut p = P {
        b: s.as_bytes(),
        i: 0,
    };
    let v = p.value()?;
    p.ws();
    if p.i != p.b.len() {
        return Err(format!("trailing input at {}", p.i));
    }
    Ok(v)
}

#[test]
fn json_parser_rejects_invalid_json() {
    for bad in [
        "{",
        "{\"a\":}",
        "{\"a\":1,}",
        "{\"a\":\"x\ny\"}",
        "{\"a\":01}",
        "{\"a\":1} x",
        "{a:1}",
    ] {
        assert!(parse_json(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn to_json_of_defaults() {
    let expected = concat!(
        "{\"ms_async_rdma_device_name\":\"\",\"ms_async_rdma_enable_hugepage\":false,",
        "\"ms_async_rdma_buffer_size\":131072,\"ms_async_rdma_send_buffers\":1024,",
        "\"ms_async_rdma_receive_buffers\":32768,\"ms_async_rdma_receive_queue_len\":4096,",
        "\"ms_async_rdma_support_srq\":true,\"ms_async_rdma_port_num\":1,",
        "\"ms_async_rdma_polling_us\":1000,\"ms_async_rdma_gid_idx\":0,",
        "\"ms_async_rdma_local_gid\":\"\",\"ms_async_rdma_roce_ver\":1,\"ms_async_rdma_sl\":3,",
        "\"ms_async_rdma_dscp\":96,\"ms_async_rdma_cm\":false,\"ms_async_rdma_type\":\"ib\",",
        "\"ms_tcp_listen_backlog\":512,\"ibstack_path_mtu\":1024,\"ibstack_rx_first_block\":256,",
        "\"ibstack_qp_history_len\":64,\"ibstack_max_inflight_per_conn\":0,\"ibstack_cq_depth\":30000,",
        "\"ibstack_stack_thread\":true,\"ibstack_retry_cnt\":7,\"ibstack_tcp_keepalive\":30,",
        "\"ibstack_handshake_timeout_ms\":5000,\"ibstack_max_rx_per_conn\":0,",
        "\"ibstack_preload_ports\":\"3300,6789,6800-7300\",\"ibstack_preload_accept_tcp\":true,",
        "\"ibstack_preload_fallback\":true,\"ibstack_gid_select\":\"index\",\"ibstack_tx_coalesce\":true,",
        "\"ibstack_max_inline\":128}"
    );
    let json = Config::default().to_json();
    assert_eq!(json, expected);
    assert!(parse_json(&json).is_ok());
}

#[test]
fn to_json_escapes_strings_and_lists_every_option() {
    let mut c = Config::default();
    let nasty = "a\"b\\c\nd\te\u{1}f\u{7f}é";
    c.set("ms_async_rdma_device_name", nasty).unwrap();
    c.set("ms_tcp_listen_backlog", "-3").unwrap();
    let json = c.to_json();
    let Json::Obj(fields) = parse_json(&json).unwrap_or_else(|e| panic!("{e}: {json}")) else {
        panic!("not an object: {json}");
    };
    let names: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
    let want: Vec<&str> = options().iter().map(|o| o.name).collect();
    assert_eq!(names, want);
    for ((k, v), o) in fields.iter().zip(options()) {
        let text = c.get(k).unwrap();
        let expected = match o.ty {
            OptType::Str => Json::Str(text),
            OptType::Bool => Json::Bool(text == "true"),
            _ => Json::Num(text),
        };
        assert_eq!(*v, expected, "{k}");
    }
    assert_eq!(fields[0].1, Json::Str(nasty.to_owned()));
}
