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
