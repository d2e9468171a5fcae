// Only the ledger seals the records it appends.
pub fn forge(mut record: capfence::AuditRecord) {
    record.seal("0");
}

fn main() {}
