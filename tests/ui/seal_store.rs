// Stores are written only by the runtime: a store's transaction (and the
// `Tx` that appends records) cannot be reached from outside the crate.
use capfence::store::Store;
use capfence::store::memory::MemoryStore;

fn main() {
    let store = MemoryStore::new();
    let _ = store.transaction(&mut |_tx| Ok(()));
}
