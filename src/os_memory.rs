//! How the process asks the kernel for memory.

/// Turns transparent huge pages off for this process (`prctl(PR_SET_THP_DISABLE)`), unless
/// `MIMALLOC_ALLOW_THP` is set, which mimalloc then honours itself.
///
/// mimalloc asks for huge pages (`madvise(MADV_HUGEPAGE)`) for its regions, and each
/// partly used 2 MiB page is resident as a whole: in the load run at 100,000 customers
/// peak RSS was 152–159 MB for the minimal workload and 170–173 MB for the whole topology
/// with them, 134–135 and 137–145 MB without. App CPU moved by −4 and +5 % (minimal) and
/// +1 and +3 % (full) in two rounds, within the box's noise (BENCHMARKS.md stop 26).
///
/// Call it first in `main`: it applies to every thread, for memory touched from then on.
/// Returns whether huge pages are off.
pub fn keep_transparent_huge_pages_off() -> bool {
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_some() {
        return false;
    }
    #[cfg(target_os = "linux")]
    {
        // SAFETY: PR_SET_THP_DISABLE takes plain integer arguments and touches no memory
        // of ours.
        unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) == 0 }
    }
    #[cfg(not(target_os = "linux"))]
    {
        false
    }
}

/// Limits glibc's malloc to `arenas` arenas (`mallopt(M_ARENA_MAX)`), unless
/// `MALLOC_ARENA_MAX` is set, which glibc then honours itself. Returns whether it set the
/// limit.
///
/// Rust code allocates with mimalloc; glibc's malloc serves the C and C++ libraries
/// (RocksDB, librdkafka). By default glibc gives each new thread that allocates an arena of
/// its own, up to eight per core, and every arena keeps its own free memory resident. With
/// two stream threads, their clients' and RocksDB's threads held ~69 MB in such arenas at
/// the minimal workload's peak against ~54 MB with one. One arena per stream thread, two
/// threads, 100,000 customers: peak RSS minimal 168 / 160 → 145 / 145 MB, whole topology
/// 184 / 194 → 157 / 165 MB; app CPU within the box's noise (docs/operations.md "Memory",
/// BENCHMARKS.md stop 27).
///
/// Call it before the stream threads and their clients start: glibc fixes the limit when
/// it first needs one.
pub fn limit_malloc_arenas(arenas: usize) -> bool {
    if std::env::var_os("MALLOC_ARENA_MAX").is_some() {
        return false;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let arenas = arenas.clamp(1, i32::MAX as usize) as libc::c_int;
        // SAFETY: mallopt takes two integers; M_ARENA_MAX only bounds arenas created later.
        unsafe { libc::mallopt(libc::M_ARENA_MAX, arenas) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        let _ = arenas;
        false
    }
}
