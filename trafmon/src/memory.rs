//! Giving memory back after a burst of work.

/// Allocations of this size and up get mappings of their own
/// ([`map_large_allocations`]): glibc's initial threshold.
#[cfg(target_env = "gnu")]
const LARGE: libc::c_int = 128 * 1024;

/// Makes glibc serve every large allocation (a flush's deltas and keys, a
/// batch read's buffer) from a mapping of its own, unmapped when freed
/// and grown in place, for the whole run. Left to itself, glibc raises
/// that threshold to the size of each mapped block freed (up to 32 MiB),
/// so after the first flush such blocks came from the heap, where growing
/// one copies it and freed ones stay resident. Measured in the bench's
/// memory run (100 000 keys): the agent's peak fell from 28.3 to 24.8
/// MiB. musl maps large blocks by itself and has no `mallopt`. Call it
/// first thing, before any thread starts.
pub fn map_large_allocations() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only sets a parameter of the allocator; no thread
    // allocates concurrently this early.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, LARGE);
    }
}

/// Returns freed heap pages to the kernel. A flush or a scrape of many
/// keys allocates and frees tens of MB at once; glibc keeps freed pages
/// of its heap resident (and apart per thread arena), so the next burst on
/// another thread would add to them instead of reusing them. musl gives
/// memory back by itself and has no `malloc_trim`.
pub fn release_freed() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}
