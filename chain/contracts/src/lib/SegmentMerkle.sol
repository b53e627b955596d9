// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

/// @title SegmentMerkle
/// @notice The keccak Merkle commitment over a shard's proof segments, bit for bit the rules of the
/// Rust store (`storage/src/merkle.rs`, fixtures in `storage/fixtures/merkle-v1.json`):
///
/// 1. A shard of `shardLen` bytes is cut into `n = ceil(shardLen / segmentSize)` segments; the last
///    one is zero-padded to `segmentSize`.
/// 2. Leaf `i < n` is `keccak256(0x00 || segment_i)` (the full, padded segment).
/// 3. The tree has depth `d`, the smallest `d` with `2^d >= n` (`d = 0` when `n <= 1`); positions
///    `n .. 2^d - 1` hold the empty leaf `bytes32(0)`.
/// 4. Every inner node, empty subtrees included, is `keccak256(0x01 || left || right)`.
/// 5. A proof of segment `i` is the padded segment plus the `d` siblings from the leaf level up;
///    at level `j` the running hash is the left input iff bit `j` of `i` is 0.
library SegmentMerkle {
    /// Domain byte before a segment.
    bytes1 internal constant LEAF_DOMAIN = 0x00;
    /// Domain byte before two child hashes.
    bytes1 internal constant NODE_DOMAIN = 0x01;
    /// The deepest tree the Rust store builds (`MAX_DEPTH` in merkle.rs).
    uint256 internal constant MAX_DEPTH = 48;

    /// Number of segments of a shard: `ceil(shardLen / segmentSize)` (0 for an empty shard).
    function leafCount(uint256 shardLen, uint256 segmentSize) internal pure returns (uint256) {
        return (shardLen + segmentSize - 1) / segmentSize;
    }

    /// Depth of a tree over `n` leaves: the smallest `d` with `2^d >= n`, 0 for `n <= 1`.
    function depthFor(uint256 n) internal pure returns (uint256 d) {
        while ((uint256(1) << d) < n) {
            ++d;
        }
    }

    /// Root implied by `segment` at position `index` with the bottom-up `siblings`.
    /// @dev Hashes in the scratch memory past the free pointer without moving it. Only the low
    /// `siblings.length` bits of `index` are read; callers check `index < n` themselves.
    function rootFromPath(bytes calldata segment, bytes32[] calldata siblings, uint256 index)
        internal
        pure
        returns (bytes32 h)
    {
        assembly ("memory-safe") {
            let ptr := mload(0x40)
            // Leaf: 0x00 || segment.
            mstore8(ptr, 0x00)
            calldatacopy(add(ptr, 1), segment.offset, segment.length)
            h := keccak256(ptr, add(segment.length, 1))
            // Nodes: 0x01 || left || right, in the same 65 bytes each time.
            mstore8(ptr, 0x01)
            // Branch-free ordering: with b = bit j of the index, h goes to byte 1 + 32b and the
            // sibling to byte 33 - 32b of the 65-byte buffer.
            let left := add(ptr, 1)
            let right := add(ptr, 33)
            let end := add(siblings.offset, shl(5, siblings.length))
            for { let s := siblings.offset } lt(s, end) { s := add(s, 0x20) } {
                let b := shl(5, and(index, 1))
                mstore(add(left, b), h)
                mstore(sub(right, b), calldataload(s))
                h := keccak256(ptr, 65)
                index := shr(1, index)
            }
        }
    }

    /// Full check with the Rust verifier's rules: the segment has exactly `segmentSize` bytes, the
    /// index is inside the shard, the path has exactly `depth` siblings and leads to `root`.
    function verify(
        bytes32 root,
        uint256 shardLen,
        uint256 segmentSize,
        uint256 index,
        bytes calldata segment,
        bytes32[] calldata siblings
    ) internal pure returns (bool) {
        uint256 n = leafCount(shardLen, segmentSize);
        return segment.length == segmentSize && index < n && siblings.length == depthFor(n)
            && rootFromPath(segment, siblings, index) == root;
    }
}
