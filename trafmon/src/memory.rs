//! Giving memory back after a burst of work.

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
