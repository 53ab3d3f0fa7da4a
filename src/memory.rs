//! The gateway process's own memory: how glibc's allocator is set up, and handing back
//! what the process no longer uses (free heap pages, code pages only start-up touched).
//! The one place with `unsafe` (the library forbids it): each call is a libc call that
//! changes nothing but how this process's pages are kept.

/// glibc's malloc raises its mmap threshold to the size of the largest block freed, up to
/// 32 MiB. After the first login, argon2id's 19 MiB work area is therefore taken from
/// the heap, and every thread that hashed keeps it: each login thread left ~19.5 MB
/// resident for good. A fixed threshold keeps blocks of 1 MiB and more in their own
/// mappings, returned to the system when freed, so the steady state does not depend on
/// how many logins happened. Small allocations (terminal buffers) are unaffected.
///
/// glibc also gives each thread that allocates its own arena, up to 8 per core. A
/// terminal's allocations then spread over the arenas of every worker and blocking
/// thread that touched it, each arena keeping its own partly used pages: one arena per
/// core cuts an idle terminal's resident memory by about a tenth (23.5 → 20.6 KiB per
/// `pty` connection, 106 → 98 KiB per `ssh` one; `load-tests/idle-memory.sh`) while the
/// per-thread caches keep small allocations lock-free.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn tune_allocator() {
    let arenas = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .clamp(2, 64) as libc::c_int;
    // SAFETY: `mallopt` only sets allocator parameters; it is called first thing in
    // `main`, before any other thread exists, with a valid parameter and value.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
        libc::mallopt(libc::M_ARENA_MAX, arenas);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn tune_allocator() {}

/// Hands free heap pages back to the system. glibc returns memory only from the top of a
/// heap; start-up (the admin's argon2id hash, building the router and rendering the
/// OpenAPI document) leaves ~4 MB free in the middle of the main heap, and a burst of
/// connections that has ended leaves the same in every arena, resident for good. It
/// walks the free lists: little on an idle gateway, about a millisecond on a busy one,
/// so it runs off the async workers.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn release_free_heap() {
    // SAFETY: `malloc_trim` is thread-safe (it takes each arena's lock) and only
    // releases pages that hold no allocation.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn release_free_heap() {}

/// CPU time (user and system) this process has used since it started; `None` where the
/// system does not tell.
pub fn cpu_time() -> Option<std::time::Duration> {
    use nix::sys::resource::{getrusage, UsageWho};
    let usage = getrusage(UsageWho::RUSAGE_SELF).ok()?;
    let span = |t: nix::sys::time::TimeVal| {
        let secs = u64::try_from(t.tv_sec()).unwrap_or(0);
        let micros = u64::try_from(t.tv_usec()).unwrap_or(0);
        std::time::Duration::from_secs(secs) + std::time::Duration::from_micros(micros)
    };
    Some(span(usage.user_time()) + span(usage.system_time()))
}

/// Whether the gateway was quiet over one release period: it used less than 1 % of one
/// core. Code pages are released only after a quiet period. On a busy gateway they are
/// the working set: every worker would fault them back within milliseconds (after the
/// TLB flushes the unmapping costs), so releasing them would save nothing and put the
/// faults on the requests and keystrokes being served. A user typing costs the gateway
/// well under 1 % of a core, so a gateway that only has terminals open still releases.
pub fn was_quiet(cpu: std::time::Duration, period: std::time::Duration) -> bool {
    cpu.saturating_mul(100) < period
}

/// Unmaps the resident pages of the executable's read-only segments (code, constants,
/// unwind tables) from this process; returns how many bytes of mappings it covered.
///
/// Why: the binary is ~33 MB, and start-up (the router, the OpenAPI document, TLS,
/// redb, the tracing stack) and a login touch code spread over most of it; the kernel
/// maps it in 64 KiB fault-around blocks, so an idle gateway kept ~15 MB of code
/// resident that it would not run again, three quarters of its RSS. These pages are
/// clean, private, never-written mappings of the file: `MADV_DONTNEED` only drops this
/// process's page-table entries, the page cache keeps the pages, and code that runs
/// again is mapped back by a minor fault (~64 KiB a fault), the same as after start-up.
/// The kernel itself drops such pages whenever memory is short; this does it early, for
/// this process only. Measured: ~0.5 ms a call; idle RSS 19.5 → 9 MB; echo latency of a
/// busy terminal unchanged even with a release every second (`load-tests/RESULTS.md`).
///
/// A segment that holds a private copy of any page (a debugger's breakpoint, an uprobe,
/// a text relocation) is left alone: dropping it would revert that write. Writable
/// segments, including RELRO (relocated, then made read-only), are never touched.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
pub fn release_code_pages() -> std::io::Result<usize> {
    use std::io::{Read, Seek, SeekFrom};

    let page = page_size();
    let mut pagemap = std::fs::File::open("/proc/self/pagemap")?;
    let mut released = 0;
    for (start, end) in read_only_segments(page) {
        let pages = (end - start) / page;
        let mut entries = vec![0u8; pages * 8];
        pagemap.seek(SeekFrom::Start((start / page * 8) as u64))?;
        pagemap.read_exact(&mut entries)?;
        if entries
            .chunks_exact(8)
            .map(|e| u64::from_ne_bytes(e.try_into().unwrap_or([0; 8])))
            .any(is_private_copy)
        {
            tracing::debug!(start, end, "a code segment holds private pages; kept");
            continue;
        }
        // SAFETY: [start, end) is a page-aligned range inside a read-only PT_LOAD segment
        // of the running executable, mapped privately from its file, with no private
        // page (checked just above; nothing in the process writes to read-only
        // mappings). Dropping such pages cannot change what the process reads there: the
        // next access maps the same file page again.
        let rc =
            unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        released += end - start;
    }
    Ok(released)
}

#[cfg(not(target_os = "linux"))]
pub fn release_code_pages() -> std::io::Result<usize> {
    Ok(0)
}

/// A `/proc/self/pagemap` entry for a page that is an anonymous private copy: present
/// (bit 63) or swapped (bit 62), and not a file page (bit 61).
#[cfg(target_os = "linux")]
fn is_private_copy(entry: u64) -> bool {
    let present_or_swapped = entry & (0b11 << 62) != 0;
    let file_page = entry & (1 << 61) != 0;
    present_or_swapped && !file_page
}

#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size).unwrap_or(4096).max(4096)
}

/// The executable's non-writable `PT_LOAD` segments, as page-aligned address ranges
/// (pages only partly inside a segment are left out).
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn read_only_segments(page: usize) -> Vec<(usize, usize)> {
    struct Found {
        page: usize,
        ranges: Vec<(usize, usize)>,
    }
    unsafe extern "C" fn first_object(
        info: *mut libc::dl_phdr_info,
        _size: libc::size_t,
        data: *mut libc::c_void,
    ) -> libc::c_int {
        // SAFETY: glibc passes a valid `dl_phdr_info` for the duration of the call, whose
        // `dlpi_phdr` points at `dlpi_phnum` program headers; `data` is the `Found` that
        // `read_only_segments` passed in and holds exclusively during the iteration.
        let (info, found) = unsafe { (&*info, &mut *(data as *mut Found)) };
        let headers =
            unsafe { std::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum as usize) };
        let relro: Vec<(usize, usize)> = headers
            .iter()
            .filter(|h| h.p_type == libc::PT_GNU_RELRO)
            .map(|h| {
                let start = info.dlpi_addr as usize + h.p_vaddr as usize;
                (start, start + h.p_memsz as usize)
            })
            .collect();
        for h in headers {
            if h.p_type != libc::PT_LOAD || h.p_flags & libc::PF_W != 0 {
                continue;
            }
            let start = info.dlpi_addr as usize + h.p_vaddr as usize;
            let end = start + h.p_memsz as usize;
            if relro.iter().any(|&(a, b)| a < end && start < b) {
                continue;
            }
            let start = start.div_ceil(found.page) * found.page;
            let end = end / found.page * found.page;
            if start < end {
                found.ranges.push((start, end));
            }
        }
        // The first object is the executable; stop there.
        1
    }
    let mut found = Found {
        page,
        ranges: Vec::new(),
    };
    // SAFETY: the callback only reads what glibc hands it and writes to `found`, which
    // outlives the call.
    unsafe {
        libc::dl_iterate_phdr(
            Some(first_object),
            &mut found as *mut Found as *mut libc::c_void,
        );
    }
    found.ranges
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_period_is_quiet_below_one_percent_of_a_core() {
        use std::time::Duration;
        let period = Duration::from_secs(10);
        assert!(was_quiet(Duration::ZERO, period));
        assert!(was_quiet(Duration::from_millis(99), period));
        assert!(!was_quiet(Duration::from_millis(100), period));
        assert!(!was_quiet(Duration::from_secs(20), period));
        assert!(!was_quiet(Duration::MAX, period));
    }

    #[test]
    fn cpu_time_grows_with_work() {
        let before = cpu_time().expect("getrusage");
        let mut x = 0u64;
        let started = std::time::Instant::now();
        while started.elapsed() < std::time::Duration::from_millis(50) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        assert!(cpu_time().expect("getrusage") > before);
    }

    #[test]
    fn pagemap_entries_tell_private_copies_from_file_pages() {
        assert!(!is_private_copy(0), "absent page");
        assert!(!is_private_copy((1 << 63) | (1 << 61)), "file page");
        assert!(is_private_copy(1 << 63), "anonymous page");
        assert!(is_private_copy(1 << 62), "swapped anonymous page");
    }

    #[test]
    fn releasing_code_pages_leaves_the_program_running() {
        let segments = read_only_segments(page_size());
        assert!(!segments.is_empty(), "no read-only segment found");
        let work = || {
            let mut words: Vec<String> = "the quick brown fox"
                .split(' ')
                .map(str::to_uppercase)
                .collect();
            words.sort();
            words.join(",")
        };
        let before = work();
        let released = release_code_pages().expect("release");
        assert!(released > 0);
        // Code and constants read the same once mapped back.
        assert_eq!(work(), before);
        assert_eq!(release_code_pages().expect("release again"), released);
    }
}
