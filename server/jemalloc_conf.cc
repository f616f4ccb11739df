// jemalloc's compiled-in options for every program that links
// seqkv_allocator (jemalloc reads the global `malloc_conf` at start-up;
// MALLOC_CONF in the environment still overrides it).
//
// oversize_threshold:0 keeps allocations above 8 MiB in the ordinary arenas.
// By default jemalloc gives them a dedicated arena that returns every freed
// extent to the kernel at once, so each 32 MiB chunk buffer (a Put's chunk, a
// Get's message buffers, gRPC's receive slices) was mapped and faulted in
// afresh: on the 2-core VM, 32 MiB Gets ran 8-10x faster without it, at a
// tenth of the server CPU per byte (docs/benchmarks/bench.md). Freed large
// extents are still returned to the kernel after dirty_decay_ms (10 s).
extern "C" {
// NOLINTNEXTLINE: jemalloc looks the symbol up by this exact name.
const char* malloc_conf = "oversize_threshold:0";
}
