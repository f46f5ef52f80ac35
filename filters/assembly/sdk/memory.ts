// The host writes strings and buffers into guest memory it asks for through
// these exports. The blocks are unmanaged (outside the GC) and the guest
// frees them with heap.free once it has copied what it needs.

export function proxy_on_memory_allocate(size: usize): usize {
  return heap.alloc(size);
}

export function malloc(size: usize): usize {
  return heap.alloc(size);
}
