//! The storage challenge, computed off chain exactly as `StorageMarket.challengeIndex` computes it
//! on chain (chain/contracts/README.md, "Challenge"):
//!
//! ```text
//! seedBlock(p) = startBlock + p * periodBlocks - 1
//! index(p)     = uint256(keccak256(abi.encode(blockhash(seedBlock(p)), dealId, slot))) mod leafCount
//! ```

use alloy::primitives::{B256, U256, keccak256};

/// The block whose hash seeds period `period`'s challenge: the last block before the period.
pub fn seed_block(start_block: u64, period: u64, period_blocks: u64) -> u64 {
    (start_block + period * period_blocks).saturating_sub(1)
}

/// The first block of period `period`.
pub fn period_start(start_block: u64, period: u64, period_blocks: u64) -> u64 {
    start_block + period * period_blocks
}

/// The period that block `block` falls in, or `None` before the first period.
pub fn period_at(start_block: u64, period_blocks: u64, block: u64) -> Option<u64> {
    block.checked_sub(start_block).map(|offset| offset / period_blocks.max(1))
}

/// The segment of slot `slot` of deal `deal_id` challenged by `seed`, among `leaf_count` segments.
pub fn challenge_index(seed: B256, deal_id: U256, slot: U256, leaf_count: u64) -> u64 {
    let mut encoded = [0u8; 96];
    encoded[..32].copy_from_slice(seed.as_slice());
    encoded[32..64].copy_from_slice(&deal_id.to_be_bytes::<32>());
    encoded[64..].copy_from_slice(&slot.to_be_bytes::<32>());
    let word = U256::from_be_bytes(keccak256(encoded).0);
    let index = word % U256::from(leaf_count.max(1));
    index.to::<u64>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_is_the_keccak_of_the_abi_encoding_modulo_the_leaf_count() {
        let seed = B256::repeat_byte(0xab);
        // keccak256(abi.encode(seed, 7, 3)) computed independently: the encoding is three words.
        let mut words = Vec::new();
        words.extend_from_slice(seed.as_slice());
        words.extend_from_slice(&U256::from(7).to_be_bytes::<32>());
        words.extend_from_slice(&U256::from(3).to_be_bytes::<32>());
        let expected = U256::from_be_bytes(keccak256(&words).0) % U256::from(1000);
        assert_eq!(challenge_index(seed, U256::from(7), U256::from(3), 1000), expected.to::<u64>());
        assert_eq!(challenge_index(seed, U256::from(7), U256::from(3), 1), 0);
        assert_ne!(
            (0..16).map(|s| challenge_index(seed, U256::from(7), U256::from(s), 1 << 20)).collect::<Vec<_>>(),
            vec![challenge_index(seed, U256::from(7), U256::ZERO, 1 << 20); 16],
            "slots get different segments"
        );
    }

    #[test]
    fn periods_and_seed_blocks() {
        assert_eq!(seed_block(120, 0, 20), 119);
        assert_eq!(seed_block(120, 3, 20), 179);
        assert_eq!(period_start(120, 3, 20), 180);
        assert_eq!(period_at(120, 20, 119), None);
        assert_eq!(period_at(120, 20, 120), Some(0));
        assert_eq!(period_at(120, 20, 179), Some(2));
        assert_eq!(period_at(120, 20, 180), Some(3));
    }
}
