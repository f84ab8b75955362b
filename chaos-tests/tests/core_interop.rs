//! The sans-IO `ike` core against strongSwan's charon, over real UDP in
//! network namespaces, driven by the `ike-probe` binary: both roles, then
//! liveness, CHILD rekey, IKE rekey, a second CHILD SA and deletes.

use std::time::Duration;

use chaos_tests::{Charon, CharonConn, Lab, Ns};

const PROBE: &str = env!("CARGO_BIN_EXE_ike-probe");
const PSK: &str = "interop-secret-0123456789";

fn lab() -> (Lab, Ns, Ns) {
    let (mut lab, a, b) = Lab::gateways("core");
    // The protected subnets behind each gateway.
    lab.lan(&a, &["198.19.1.1/24"]);
    lab.lan(&b, &["198.19.2.1/24"]);
    (lab, a, b)
}

fn charon_b(lab: &mut Lab, b: &Ns, f: impl FnOnce(&mut CharonConn)) -> Charon {
    let mut c = CharonConn::psk("probe", "198.18.0.2", "198.18.0.1", "b.test", "a.test", PSK);
    f(&mut c);
    Charon::start(lab, b, "charon-b", &[c])
}

fn probe(lab: &mut Lab, a: &Ns, role: &str, extra: &[&str]) {
    let mut argv = vec![
        PROBE,
        "--role",
        role,
        "--local",
        "198.18.0.1",
        "--remote",
        "198.18.0.2",
        "--local-id",
        "a.test",
        "--remote-id",
        "b.test",
        "--psk",
        PSK,
    ];
    argv.extend_from_slice(extra);
    lab.spawn(a, "probe", &argv, &[]);
}

fn wait_log(lab: &Lab, name: &str, needle: &str, secs: u64) -> bool {
    Lab::wait_until(Duration::from_secs(secs), || lab.log(name).contains(needle))
}

#[test]
fn core_initiator_with_charon_responder_through_rekeys() {
    let (mut lab, a, b) = lab();
    let charon = charon_b(&mut lab, &b, |_| {});
    probe(
        &mut lab,
        &a,
        "initiator",
        &[
            "--then",
            "liveness,rekey-child,rekey-ike,liveness,create-child,delete-child",
            "--hold",
            "30",
        ],
    );
    assert!(
        wait_log(&lab, "probe", "actions complete", 40),
        "probe:\n{}",
        lab.log("probe")
    );
    let log = lab.log("probe");
    eprintln!("probe transcript:\n{log}");
    assert!(
        log.contains("established b.test AES_GCM_16_256/PRF_HMAC_SHA2_256/CURVE_25519"),
        "{log}"
    );
    assert!(
        log.contains("encap=true"),
        "kernel-libipsec peers use UDP encapsulation: {log}"
    );
    assert!(!log.contains("rejected"), "{log}");
    let sas = charon.list_sas();
    assert!(charon.has_installed("net"), "charon:\n{sas}");
    assert_eq!(
        sas.matches("INSTALLED").count(),
        1,
        "one CHILD SA left after delete-child:\n{sas}"
    );
}

#[test]
fn charon_initiator_with_core_responder_through_rekeys() {
    let (mut lab, a, b) = lab();
    probe(
        &mut lab,
        &a,
        "responder",
        &["--then", "rekey-child,rekey-ike,liveness", "--hold", "30"],
    );
    let charon = charon_b(&mut lab, &b, |_| {});
    charon.initiate("net");
    assert!(
        wait_log(&lab, "probe", "actions complete", 40),
        "probe:\n{}",
        lab.log("probe")
    );
    let log = lab.log("probe");
    assert!(log.contains("established b.test"), "{log}");
    assert!(!log.contains("rejected"), "{log}");
    let sas = charon.list_sas();
    assert!(charon.has_installed("net"), "charon:\n{sas}");
    assert_eq!(
        sas.matches("INSTALLED").count(),
        1,
        "old CHILD SA deleted after rekey:\n{sas}"
    );
}

#[test]
fn core_delete_removes_charons_sas() {
    let (mut lab, a, b) = lab();
    let charon = charon_b(&mut lab, &b, |_| {});
    probe(&mut lab, &a, "initiator", &["--then", "delete"]);
    assert_eq!(
        lab.wait_exit("probe", Duration::from_secs(30))
            .map(|s| s.success()),
        Some(true),
        "{}",
        lab.log("probe")
    );
    assert!(
        Lab::wait_until(Duration::from_secs(5), || !charon
            .list_sas()
            .contains("ESTABLISHED")),
        "{}",
        charon.list_sas()
    );
}

#[test]
fn core_and_charon_agree_on_each_ike_suite() {
    for suite in [
        "aes128gcm16-prfsha384-ecp384",
        "chacha20poly1305-prfsha256-x25519",
        "aes256gcm16-prfsha512-ecp256",
    ] {
        let (mut lab, a, b) = lab();
        let charon = charon_b(&mut lab, &b, |c| {
            c.proposals = suite.into();
            // kernel-libipsec has no ESN: "IPsec SA: ESN not supported".
            c.esp_proposals = "chacha20poly1305,aes128gcm16".into();
        });
        probe(
            &mut lab,
            &a,
            "initiator",
            &[
                "--ike",
                suite,
                "--esp",
                "aes128gcm16",
                "--then",
                "rekey-child",
                "--hold",
                "20",
            ],
        );
        assert!(
            wait_log(&lab, "probe", "actions complete", 30),
            "{suite}: {}",
            lab.log("probe")
        );
        assert!(
            charon.has_installed("net"),
            "{suite}: {}",
            charon.list_sas()
        );
        assert!(
            lab.log("probe").contains("AES_GCM_16_128/NO_EXT_SEQ"),
            "{}",
            lab.log("probe")
        );
    }
}

#[test]
fn charon_reports_wrong_psk_and_core_names_the_failure() {
    let (mut lab, a, b) = lab();
    let charon = charon_b(&mut lab, &b, |c| c.psk = "another-secret-entirely".into());
    probe(&mut lab, &a, "initiator", &[]);
    let status = lab.wait_exit("probe", Duration::from_secs(30));
    assert_eq!(status.map(|s| s.success()), Some(false));
    assert!(
        lab.log("probe")
            .contains("closed peer rejected our authentication: AUTHENTICATION_FAILED"),
        "{}",
        lab.log("probe")
    );
    assert!(!charon.list_sas().contains("ESTABLISHED"));
    assert!(
        lab.log("charon-b").contains("MAC mismatched"),
        "charon log names the failure"
    );
}
