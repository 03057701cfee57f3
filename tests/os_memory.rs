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

/// glibc's arenas (`<heap nr=…>` in `malloc_info`'s report).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn malloc_arenas() -> usize {
    let dir = tempfile::tempdir().unwrap();
    let path = std::ffi::CString::new(dir.path().join("info.xml").to_str().unwrap()).unwrap();
    // SAFETY: a FILE opened for writing, handed to malloc_info and closed once.
    unsafe {
        let f = libc::fopen(path.as_ptr(), c"w".as_ptr());
        assert!(!f.is_null());
        assert_eq!(libc::malloc_info(0, f), 0);
        libc::fclose(f);
    }
    let xml = std::fs::read_to_string(dir.path().join("info.xml")).unwrap();
    xml.matches("<heap nr=").count()
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[test]
fn glibc_malloc_keeps_to_the_arena_limit_when_new_threads_allocate() {
    assert!(
        std::env::var_os("MALLOC_ARENA_MAX").is_none(),
        "unset MALLOC_ARENA_MAX to run this test"
    );
    assert!(scorestream::os_memory::limit_malloc_arenas(1));
    // Counted after the call: the test harness's other threads may have taken arenas of
    // their own before it (they run beside this test).
    let before = malloc_arenas();
    // Without the limit each new thread that calls malloc gets an arena of its own (up to
    // eight per core); these eight allocate at once, as RocksDB's and librdkafka's threads do.
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(8));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                // SAFETY: plain malloc and free of a block this thread owns.
                unsafe {
                    let p = libc::malloc(4096);
                    assert!(!p.is_null());
                    barrier.wait();
                    libc::free(p);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let after = malloc_arenas();
    assert!(
        after <= before.max(1),
        "{after} arenas after eight allocating threads, {before} before them"
    );
}
