//! The `client_id` a client gives each message it sends: a UUID it makes up once and keeps for
//! every resend of that message.

/// A UUID of version 7 (RFC 9562): the Unix time in milliseconds in its first 48 bits, then
/// the version, then 74 bits of `random` (the top four bits of `random[0]` and the top two of
/// `random[2]` are not used).
///
/// Ids made one after another sort in the order they were made, to the millisecond. The server
/// keeps a unique index of the ids with their senders, to answer a resend with the message
/// already stored: ids of version 4, random throughout, land anywhere in that index, so every
/// message rewrote some old page of it, and SQLite's throughput fell by a third
/// (docs/BENCHMARKS.md, item 28); these land at its end, every sender's at the same end (item 30).
pub fn time_ordered(unix_ms: u64, random: [u8; 10]) -> String {
    let mut bytes = [0u8; 16];
    bytes[..6].copy_from_slice(&unix_ms.to_be_bytes()[2..]);
    bytes[6] = 0x70 | (random[0] & 0x0f);
    bytes[7] = random[1];
    bytes[8] = 0x80 | (random[2] & 0x3f);
    bytes[9..].copy_from_slice(&random[3..]);
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &hex[0..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_of_rfc_9562_comes_out_as_written_there() {
        // RFC 9562, appendix A.6: unix_ts_ms 0x017F22E279B0, rand_a 0xCC3, rand_b 0x18C4DC0C0C07398F.
        let random = [0x0c, 0xc3, 0x18, 0xc4, 0xdc, 0x0c, 0x0c, 0x07, 0x39, 0x8f];
        assert_eq!(time_ordered(0x017F_22E2_79B0, random), "017f22e2-79b0-7cc3-98c4-dc0c0c07398f");
    }

    #[test]
    fn the_version_and_variant_bits_hold_whatever_the_random_bytes() {
        let id = time_ordered(u64::MAX, [0xff; 10]);
        assert_eq!(id, "ffffffff-ffff-7fff-bfff-ffffffffffff", "only the time's low 48 bits are kept");
        assert_eq!(time_ordered(0, [0; 10]), "00000000-0000-7000-8000-000000000000");
    }

    #[test]
    fn a_later_millisecond_sorts_after_whatever_the_random_part() {
        let earlier = time_ordered(1_764_000_000_000, [0xff; 10]);
        let later = time_ordered(1_764_000_000_001, [0; 10]);
        assert!(earlier < later, "{earlier} before {later}");
    }
}
