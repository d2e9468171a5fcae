//! `capfence`: the operator and sidecar command line.

fn main() {
    println!("capfence {}", env!("CARGO_PKG_VERSION"));
}
