//! The process turns transparent huge pages off for itself (its own test binary: the
//! setting applies to the whole process).

#[cfg(target_os = "linux")]
#[test]
fn transparent_huge_pages_are_off_after_the_call() {
    let thp = || {
        std::fs::read_to_string("/proc/self/status")
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("THP_enabled:").map(|v| v.trim().to_string()))
            .expect("a THP_enabled line (Linux 5.0 and later)")
    };
    assert!(
        std::env::var_os("MIMALLOC_ALLOW_THP").is_none(),
        "unset MIMALLOC_ALLOW_THP to run this test"
    );
    let before = thp();
    assert!(scorestream::os_memory::keep_transparent_huge_pages_off());
    assert_eq!(thp(), "0", "THP_enabled was {before} before the call");
}
